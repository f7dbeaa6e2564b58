"""Array-API twins of :mod:`cext.numba.gmres` and :mod:`cext.cupy.gmres`: GMRES's basis passes.

Blocked classical Gram-Schmidt applied twice, as two matrix products per
pass over the basis block ``V[:j + 1]``, the second update skipped where it
is below rounding (the rule of :mod:`cext.numba.gmres`). Complex bases use
the Hermitian inner product ``h_i = v_i^H w`` (the coefficients are
complex, unlike :func:`cext.reference.blas1.dot`, which keeps only the real
part).
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from ._common import _store


def _norm(xp, v) -> float:
    """``||v||`` as a Python float (NaN where the sum of squares is not a number)."""
    if xp.isdtype(v.dtype, "complex floating"):
        squares = float(xp.sum(xp.real(v) ** 2 + xp.imag(v) ** 2))
    else:
        squares = float(xp.sum(v * v))
    return math.sqrt(squares) if squares >= 0.0 else math.nan


def gmres_project(V, j, w, h, tau):
    """Orthogonalise ``w`` against rows ``0..j`` of ``V`` (two classical Gram-Schmidt passes)
    and scale it to unit norm; returns ``(w, h)``.

    The second pass's update is applied when its coefficients exceed
    ``tau u ||w_1||`` (``u`` the unit roundoff of ``V``'s dtype).
    ``h[0..j]``: the coefficients ``v_i^H w`` summed over the passes applied;
    ``h[j + 1]``: ``||w||`` after orthogonalisation, before scaling;
    ``h[j + 2]``: ``||w||`` on entry; the rest of ``h`` is kept. ``w``
    is scaled to unit norm when ``h[j + 1]`` is positive and finite. Written
    into ``w`` and ``h`` where the namespace allows, else new arrays.
    """
    xp = array_namespace(V, w, h)
    rows = j + 1
    basis = V[:rows, ...]
    adjoint = xp.conj(basis) if xp.isdtype(V.dtype, "complex floating") else basis
    norm_in = _norm(xp, w)
    first = adjoint @ w
    projected = w - first @ basis
    second = adjoint @ projected
    unit = float(xp.finfo(V.dtype).eps) / 2
    if _norm(xp, second) <= tau * unit * _norm(xp, projected):
        second = xp.zeros_like(second)  # below rounding: not applied
    else:
        projected = projected - second @ basis
    norm = _norm(xp, projected)
    if 0.0 < norm < math.inf:
        projected = projected * (1.0 / norm)
    coefficients = xp.astype(first, h.dtype) + xp.astype(second, h.dtype)
    norms = xp.asarray([norm, norm_in], dtype=h.dtype)
    return (_store(xp, w, projected),
            _store(xp, h, xp.concat([coefficients, norms, h[rows + 2:]])))


def gmres_combine(V, y, k, out):
    """``out + sum_{i < k} y[i] V[i]``, rounded once to ``out``'s dtype; returns ``out``."""
    xp = array_namespace(V, y, out)
    if k == 0:
        return out
    return _store(xp, out, out + y[:k] @ V[:k, ...])
