"""Diagonal-storage (DIA) sparse matrix-vector products (Numba).

For stencil matrices (a few diagonals, e.g. 5-point Poisson) DIA streams
values without column indices and keeps one register accumulator per row.
Storage is row-aligned: ``values[d, i] = A[i, i + offsets[d]]`` (zero
outside the matrix). Mirrors :mod:`cext.cupy.dia` and
:mod:`cext.reference.dia`.

``offsets`` is a *tuple* of ints, not an array: Numba then compiles one
version per number of diagonals with a constant inner trip count, which it
unrolls and vectorises across rows (several times faster than the same
loop over an array of offsets).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

# No fastmath: each out[i] is summed in diagonal order, as the reference
# does, and NaN/Inf must survive into the returned dot product.
_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)


@nb.njit(**_JIT)
def dia_spmv(offsets, values, x, out):
    """``out = A @ x`` for the row-aligned DIA matrix ``(offsets, values)``."""
    n = out.shape[0]
    ndiag = len(offsets)
    for i in prange(n):
        acc = 0.0
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                acc += values[d, i] * x[np.uint64(j)]  # unsigned: no wrap-around test
        out[i] = acc


@nb.njit(**_JIT)
def dia_spmv_dot(offsets, values, p, q):
    """``q = A @ p``; return ``p . q`` computed in the same pass over the rows."""
    n = q.shape[0]
    ndiag = len(offsets)
    total = 0.0
    for i in prange(n):
        acc = 0.0
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                acc += values[d, i] * p[np.uint64(j)]
        q[i] = acc
        total += p[i] * acc
    return total


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _dia_spmv_dot_serial(offsets, values, p, q):
    """:func:`dia_spmv_dot` as a plain loop, for one thread (the compiled CG iterations):
    the same sums in the same order, without entering a parallel region."""
    n = q.shape[0]
    ndiag = len(offsets)
    total = 0.0
    for i in range(n):
        acc = 0.0
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                acc += values[d, i] * p[np.uint64(j)]
        q[i] = acc
        total += p[i] * acc
    return total


@nb.njit(**_JIT)
def dia_symmetry_probe(offsets, values, x, y):
    """``(x.Ay, y.Ax, |Ax|^2, |Ay|^2, |x|^2, |y|^2)`` in one pass over the DIA rows
    (:func:`cext.numba.spmv.csr_symmetry_probe` for DIA storage)."""
    n = x.shape[0]
    ndiag = len(offsets)
    xAy = 0.0
    yAx = 0.0
    AxAx = 0.0
    AyAy = 0.0
    xx = 0.0
    yy = 0.0
    for i in prange(n):
        Ax = 0.0
        Ay = 0.0
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                a = values[d, i]
                Ax += a * x[np.uint64(j)]
                Ay += a * y[np.uint64(j)]
        xAy += x[i] * Ay
        yAx += y[i] * Ax
        AxAx += Ax * Ax
        AyAy += Ay * Ay
        xx += x[i] * x[i]
        yy += y[i] * y[i]
    return xAy, yAx, AxAx, AyAy, xx, yy
