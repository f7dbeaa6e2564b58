"""Array-API twins of :mod:`cext.numba.minres` and :mod:`cext.cupy.minres`: MINRES's vector passes.

Each kernel returns the arrays it writes, then its dot: written in place
where the namespace allows it (NumPy, CuPy, ``array_api_strict``), new
arrays where it does not (JAX), so :func:`linsolve.krylov.minres.minres`
runs one code path on every namespace. Dots are :func:`dot`'s: for complex
arrays the real part of ``u^H v`` (MINRES on a Hermitian ``A`` with a
Hermitian positive definite ``M`` needs only real inner products: ``alfa``
and ``beta^2`` are real up to rounding).
"""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store
from .blas1 import dot
from .dia import dia_spmv
from .spmv import csr_spmv


def minres_lanczos(q, y, r1, sq, sy, sr):
    """``r1 = sq q + sy y + sr r1`` (``q = A @ y``); return ``(r1, y . r1)``.

    Examples
    --------
    >>> import numpy as np
    >>> r1, d = minres_lanczos(np.ones(2), np.ones(2), np.zeros(2), 2.0, -1.0, 0.0)
    >>> r1.tolist(), d
    ([1.0, 1.0], 2.0)
    """
    xp = array_namespace(q, y, r1)
    r1 = _store(xp, r1, sq * q + sy * y + sr * r1)
    return r1, dot(y, r1)


def csr_minres_lanczos(indptr, indices, data, y, r1, sq, sy, sr):
    """:func:`minres_lanczos` with ``q = A @ y`` for CSR ``(indptr, indices, data)``."""
    xp = array_namespace(data, y, r1)
    return minres_lanczos(csr_spmv(indptr, indices, data, y, xp.empty_like(r1)), y, r1, sq, sy,
                          sr)


def dia_minres_lanczos(offsets, values, y, r1, sq, sy, sr):
    """:func:`minres_lanczos` with ``q = A @ y`` for row-aligned DIA ``(offsets, values)``."""
    xp = array_namespace(values, y, r1)
    return minres_lanczos(dia_spmv(offsets, values, y, xp.empty_like(r1)), y, r1, sq, sy, sr)


def minres_orthogonalize(p, r2, c):
    """``p -= c r2``; return ``(p, p . p)``."""
    xp = array_namespace(p, r2)
    p = _store(xp, p, p - c * r2)
    return p, dot(p, p)


def minres_update(x, w1, w2, y, sv, s1, s2, phi):
    """``w1 = sv y + s1 w1 + s2 w2``; ``x += phi w1``; return ``(x, w1)``."""
    xp = array_namespace(x, w1, w2, y)
    w1 = _store(xp, w1, sv * y + s1 * w1 + s2 * w2)
    return _store(xp, x, x + phi * w1), w1


def minres_update_residual(x, w1, w2, y, sv, s1, s2, phi, r, p, sr, sp):
    """:func:`minres_update` and ``r = sr r + sp p``; return ``(x, w1, r, r . r)``."""
    xp = array_namespace(r, p)
    x, w1 = minres_update(x, w1, w2, y, sv, s1, s2, phi)
    r = _store(xp, r, sr * r + sp * p)
    return x, w1, r, dot(r, r)
