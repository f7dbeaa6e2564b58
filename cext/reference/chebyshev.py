"""Array-API twins of :mod:`cext.numba.chebyshev`: one step of the Chebyshev iteration.

The step in its three-term form (see :mod:`cext.numba.chebyshev` for the
derivation and the buffer scheme)::

    cur = sy * y;  prev = sw * w
    out = cur + (a * (cur - prev) + b * (r - sy * (A @ y)))

:func:`chebyshev_combine` is the vector part, written once: the kernels
here use it after a reference product, and :mod:`linsolve.precond.chebyshev`
uses it on every operator that has no fused kernel (dense, matrix-free,
CuPy), where it returns a new array (no in-place writes, as JAX needs). The
step kernels return ``out`` like the other array-writing kernels.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store
from .dia import dia_spmv
from .spmv import csr_spmv


def chebyshev_combine(r, y, w, ay, sy, sw, a, b):
    """Return ``sy y + (a (sy y - sw w) + b (r - sy ay))`` as a new array; ``ay = A @ y``.

    Examples
    --------
    >>> import numpy as np
    >>> chebyshev_combine(np.ones(2), np.ones(2), np.zeros(2), np.ones(2), 0.5, 0.0, 1.0, 2.0)
    array([2., 2.])
    """
    cur = sy * y
    return cur + (a * (cur - sw * w) + b * (r - sy * ay))


def csr_chebyshev_step(indptr, indices, data, r, y, w, out, sy, sw, a, b):
    """``out = chebyshev_combine(r, y, w, A @ y, ...)`` for CSR ``A``; returns ``out``.

    ``out`` may be ``w``. On a namespace without item assignment (JAX) the
    result comes back as a new array instead, as the reference kernels do.
    """
    xp = array_namespace(data, r, y, w, out)
    ay = csr_spmv(indptr, indices, data, y, xp.empty_like(out))
    return _store(xp, out, chebyshev_combine(r, y, w, ay, sy, sw, a, b))


def dia_chebyshev_step(offsets, values, r, y, w, out, sy, sw, a, b):
    """As :func:`csr_chebyshev_step` for row-aligned DIA storage ``(offsets, values)``."""
    xp = array_namespace(values, r, y, w, out)
    ay = dia_spmv(offsets, values, y, xp.empty_like(out))
    return _store(xp, out, chebyshev_combine(r, y, w, ay, sy, sw, a, b))
