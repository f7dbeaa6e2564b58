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

    ``tau < 0``: one classical pass and the late check of ``V[j]``, as
    :func:`cext.numba.gmres.gmres_project` (``h`` needs ``2 j + 4``
    entries). Where ``V[j]`` is corrected, ``V`` is written in place (the
    one-pass mode needs a namespace that writes in place).
    """
    xp = array_namespace(V, w, h)
    rows = j + 1
    basis = V[:rows, ...]
    adjoint = xp.conj(basis) if xp.isdtype(V.dtype, "complex floating") else basis
    norm_in = _norm(xp, w)
    first = adjoint @ w
    projected = w - first @ basis
    if tau < 0.0:
        return _one_pass(xp, V, j, w, h, -tau, basis, adjoint, first, norm_in)
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


SEVERE = 4096.0
"""As :data:`cext.numba.gmres.SEVERE`."""


def _one_pass(xp, V, j, w, h, threshold, basis, adjoint, first, norm_in):
    """``gmres_project`` for ``tau < 0`` (see :func:`gmres_project`)."""
    rows = j + 1
    d = adjoint[:j, ...] @ V[j, ...]
    unit = float(xp.finfo(V.dtype).eps) / 2
    offset = _norm(xp, d) if j > 0 else 0.0
    status = 0
    if j > 0 and not offset ** 2 <= j * (threshold * unit) ** 2:
        status = 2 if not offset <= SEVERE * unit else 1
    tail = xp.concat([xp.astype(d, h.dtype), xp.asarray([status], dtype=h.dtype)])
    if status == 2:
        return w, _store(xp, h, xp.concat([h[:rows + 2], tail, h[2 * j + 4:]]))
    if status == 1:  # CGS2's second update of V[j], and w's coefficient on the new row
        V[j, ...] = V[j, ...] - d @ basis[:j, ...]
        first = xp.concat([first[:j], first[j:] - xp.sum(d * first[:j])])
        basis = V[:rows, ...]
    projected = w - first @ basis
    norm = _norm(xp, projected)
    if 0.0 < norm < math.inf:
        projected = projected * (1.0 / norm)
    head = xp.concat([xp.astype(first, h.dtype), xp.asarray([norm, norm_in], dtype=h.dtype)])
    return (_store(xp, w, projected),
            _store(xp, h, xp.concat([head, tail, h[2 * j + 4:]])))


def gmres_combine(V, y, k, out):
    """``out + sum_{i < k} y[i] V[i]``, rounded once to ``out``'s dtype; returns ``out``."""
    xp = array_namespace(V, y, out)
    if k == 0:
        return out
    return _store(xp, out, out + y[:k] @ V[:k, ...])
