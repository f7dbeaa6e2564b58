"""Array-API twins of :mod:`cext.numba.dia` and :mod:`cext.cupy.dia`: DIA products."""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store
from .blas1 import dot


def dia_spmv(offsets, values, x, out):
    """``out = A @ x`` for row-aligned DIA storage ``values[d, i] = A[i, i + offsets[d]]``;
    returns ``out``."""
    xp = array_namespace(values, x, out)
    n = out.shape[0]
    acc = xp.zeros(n, dtype=out.dtype)
    for d, off in enumerate(offsets):
        off = int(off)
        lo, hi = max(0, -off), min(n, n - off)
        if lo >= hi:
            continue
        term = values[d, lo:hi] * x[lo + off:hi + off]
        acc = xp.concat([acc[:lo], acc[lo:hi] + term, acc[hi:]])
    return _store(xp, out, acc)


def dia_spmv_dot(offsets, values, p, q) -> float:
    """``q = A @ p`` (in place); return ``p . q``."""
    dia_spmv(offsets, values, p, q)
    return dot(p, q)
