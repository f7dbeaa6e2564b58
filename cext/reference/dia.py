"""Array-API twins of :mod:`cext.numba.dia` and :mod:`cext.cupy.dia`: DIA products."""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store
from .blas1 import dot
from .block import _inner


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


def dia_symmetry_probe(offsets, values, x, y):
    """``(x.Ay, y.Ax, |Ax|^2, |Ay|^2, |x|^2, |y|^2)`` for row-aligned DIA storage."""
    from .spmv import _probe

    xp = array_namespace(x, y)
    return _probe(lambda v: dia_spmv(offsets, values, v, xp.empty_like(v)), x, y)


def dia_spmm_dot(offsets, values, P, Q, dots):
    """``(Q, dots)``: ``Q = A @ P`` column by column (:func:`dia_spmv`), ``dots[j] = P[:, j] .
    Q[:, j]``."""
    xp = array_namespace(values, P, Q)
    columns = [dia_spmv(offsets, values, P[:, j], xp.zeros_like(P[:, j]))
               for j in range(P.shape[1])]
    product = xp.stack(columns, axis=1) if columns else xp.zeros_like(Q)
    return _store(xp, Q, product), _store(xp, dots, _inner(xp, P, product))
