"""One fused step of the Chebyshev iteration per pass over ``A`` (Numba).

The step of the three-term recurrence (Golub and Varga's Chebyshev
semi-iterative form of Saad, *Iterative Methods for Sparse Linear Systems*,
2nd ed., Algorithm 12.1, with ``d_{k-1} = z_k - z_{k-1}`` and the residual
``r - A z_k`` computed from its definition)::

    cur = sy * y;  prev = sw * w
    out = cur + (a * (cur - prev) + b * (r - sy * (A @ y)))

for each row in the same loop that sums the row of ``A @ y``: the product,
the residual, the direction and the iterate update in one pass that reads
``A``, ``y`` (gathered), ``r`` and ``w`` and writes ``out``. ``out`` may be
``w`` itself (row ``i`` reads ``w[i]`` before it writes ``out[i]``, and no
other row reads either), so after the second step the iteration runs on two
buffers, each step overwriting the older iterate. ``y`` must not be
``out``. The scales ``sy, sw`` let the first two steps read ``z_1 = r /
theta`` from ``r`` without storing it (``y = r, sy = 1/theta, sw = 0``, then
``w = r, sw = 1/theta``); later steps pass 1, which is exact.

Mirrors :mod:`cext.reference.chebyshev` (the array-API twin and test
oracle). Kernels are dumb: the caller (:mod:`linsolve.precond.chebyshev`)
checks shapes, dtypes and aliasing, and passes the scalars in the arrays'
dtype, so float32 matrices run in float32 throughout (the row sums too:
no float64 accumulator, unlike :mod:`cext.numba.spmv`, whose float32 rows
are summed in float64).

Row loops follow :mod:`cext.numba.spmv`: unsigned index views, contiguous
blocks of rows per task with the row start carried over, two rows summed as
interleaved chains. DIA follows :mod:`cext.numba.dia` (tuple of offsets,
one accumulator per row, diagonal order).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .spmv import _BLOCK, range_pair_sums, unsigned_view

# No fastmath: a NaN or Inf in r or A must reach the result (pcg detects it
# from r'z). Each row of A @ y is summed in CSR (diagonal) order.
_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)
_SERIAL = dict(_JIT, parallel=False)
_INLINE = dict(nogil=True, cache=True, boundscheck=False, inline="always")


def csr_chebyshev_step(indptr, indices, data, r, y, w, out, sy, sw, a, b):
    """``out = sy y + a (sy y - sw w) + b (r - sy A y)`` for CSR ``A``, one pass; returns ``out``.

    ``out`` may be ``w``; it must not be ``y``. Scalars of the arrays' dtype.
    """
    kernel = _csr_step if nb.get_num_threads() > 1 else _csr_step_serial
    kernel(unsigned_view(indptr), unsigned_view(indices), data, r, y, w, out, sy, sw, a, b)
    return out


def dia_chebyshev_step(offsets, values, r, y, w, out, sy, sw, a, b):
    """As :func:`csr_chebyshev_step` for row-aligned DIA ``values[d, i] = A[i, i + offsets[d]]``."""
    kernel = _dia_step if nb.get_num_threads() > 1 else _dia_step_serial
    kernel(offsets, values, r, y, w, out, sy, sw, a, b)
    return out


@nb.njit(**_INLINE)
def _update(r, y, w, out, sy, sw, a, b, i, ay):
    # the parentheses fix the order the reference twin uses
    cur = sy * y[i]
    out[i] = cur + (a * (cur - sw * w[i]) + b * (r[i] - sy * ay))


@nb.njit(**_INLINE)
def _csr_rows(indptr, indices, data, r, y, w, out, sy, sw, a, b, lo, hi):
    """Rows ``lo..hi-1``: two at a time, each row's sum a separate chain in CSR order."""
    zero = data.dtype.type(0)  # the accumulators stay in the matrix's precision
    i = lo
    start = indptr[lo]
    while i + 1 < hi:
        middle = indptr[i + 1]
        end = indptr[i + 2]
        a0, a1 = range_pair_sums(start, middle, middle, end, indices, data, y, zero)
        _update(r, y, w, out, sy, sw, a, b, i, a0)
        _update(r, y, w, out, sy, sw, a, b, i + 1, a1)
        start = end
        i += 2
    if i < hi:
        acc = zero
        for jj in range(start, indptr[i + 1]):
            acc += data[jj] * y[indices[jj]]
        _update(r, y, w, out, sy, sw, a, b, i, acc)


@nb.njit(**_JIT)
def _csr_step(indptr, indices, data, r, y, w, out, sy, sw, a, b):
    n = out.shape[0]
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        _csr_rows(indptr, indices, data, r, y, w, out, sy, sw, a, b, lo, min(n, lo + _BLOCK))


# One thread (the policy in cext.threads chose it): a plain loop over all
# rows, without the task machinery of a parallel region held to one thread.
@nb.njit(**_SERIAL)
def _csr_step_serial(indptr, indices, data, r, y, w, out, sy, sw, a, b):
    _csr_rows(indptr, indices, data, r, y, w, out, sy, sw, a, b, 0, out.shape[0])


@nb.njit(**_INLINE)
def _dia_rows(offsets, values, r, y, w, out, sy, sw, a, b, lo, hi):
    n = out.shape[0]
    ndiag = len(offsets)
    zero = values.dtype.type(0)
    for i in range(lo, hi):
        acc = zero
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                acc += values[d, i] * y[np.uint64(j)]  # unsigned: no wrap-around test
        _update(r, y, w, out, sy, sw, a, b, i, acc)


@nb.njit(**_JIT)
def _dia_step(offsets, values, r, y, w, out, sy, sw, a, b):
    n = out.shape[0]
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        _dia_rows(offsets, values, r, y, w, out, sy, sw, a, b, lo, min(n, lo + _BLOCK))


@nb.njit(**_SERIAL)
def _dia_step_serial(offsets, values, r, y, w, out, sy, sw, a, b):
    _dia_rows(offsets, values, r, y, w, out, sy, sw, a, b, 0, out.shape[0])
