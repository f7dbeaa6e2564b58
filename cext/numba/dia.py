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

:func:`dia_spmm_dot` multiplies an ``(n, k)`` block in the layout, lanes
and chunked column sums of :mod:`cext.numba.block` (its CSR twin
:func:`cext.numba.block.csr_spmm_dot`): every column of the product has the
bits of :func:`dia_spmv` on that column, and the ``k`` dots those of
:func:`cext.numba.block.block_dots`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .block import (_CHUNK, LANES, _chunk_total, _lanes_add_to, _lanes_dot, _lanes_fit,
                    _lanes_madd, _lanes_store, _lanes_zero, _stack_lanes)

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


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _inner_rows(offsets, n):
    """``(lo, hi)``: rows ``lo .. hi - 1`` reach every diagonal inside the matrix (no bounds
    test needed there); ``lo >= hi`` where no row does."""
    lo = 0
    hi = n
    for d in range(len(offsets)):
        lo = max(lo, -offsets[d])
        hi = min(hi, n - offsets[d])
    return lo, hi


# -- the product fused with p'Ap, for CG --------------------------------------------------
# Rows are taken in blocks of _ROWS. Inside a block, the rows that reach every
# diagonal inside the matrix (all but a band at each end) run as one loop with
# unsigned indices and no bounds test, which LLVM vectorises across rows; each
# row is still summed in diagonal order, so q has the bits of the checked loop
# (and of dia_spmv). The block's share of p.q is summed in eight interleaved
# partial sums: one running sum over the rows is a chain of dependent adds
# (about 4 cycles a row), which cost more than the product itself (n = 4096,
# 5 diagonals, one core: 6.0 us for the chain, 2.6 us for the product). The
# blocks' sums are added in block order, so one thread and the serial twin
# give the same bits; more threads regroup the block sums.
_ROWS = 512
"""Rows per block of :func:`dia_spmv_dot` (a multiple of 8)."""


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _checked_rows(offsets, values, p, q, lo, hi):
    """``q[lo:hi]`` = rows ``lo .. hi - 1`` of ``A @ p``, skipping the entries outside."""
    n = q.shape[0]
    ndiag = len(offsets)
    for i in range(lo, hi):
        acc = 0.0
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                acc += values[d, i] * p[np.uint64(j)]  # unsigned: no wrap-around test
        q[i] = acc


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _block_spmv_dot(offsets, values, p, q, block, inner_lo, inner_hi):
    """Rows of block ``block`` of ``q = A @ p``; return their share of ``p . q`` (float64)."""
    n = q.shape[0]
    ndiag = len(offsets)
    start = block * _ROWS
    end = min(n, start + _ROWS)
    lo = min(max(start, inner_lo), end)
    hi = max(min(end, inner_hi), lo)
    _checked_rows(offsets, values, p, q, start, lo)
    for k in range(lo, hi):
        # index arithmetic in uint64 (offsets wrap modulo 2**64): the loads are
        # then contiguous in k, where signed indices made LLVM emit gathers
        i = np.uint64(k)
        acc = 0.0
        for d in range(ndiag):
            acc += values[d, i] * p[i + np.uint64(offsets[d])]
        q[i] = acc
    _checked_rows(offsets, values, p, q, hi, end)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    i = start
    while i + 8 <= end:
        # float64 products: exact for float32 p and q
        s0 += np.float64(p[i]) * np.float64(q[i])
        s1 += np.float64(p[i + 1]) * np.float64(q[i + 1])
        s2 += np.float64(p[i + 2]) * np.float64(q[i + 2])
        s3 += np.float64(p[i + 3]) * np.float64(q[i + 3])
        s4 += np.float64(p[i + 4]) * np.float64(q[i + 4])
        s5 += np.float64(p[i + 5]) * np.float64(q[i + 5])
        s6 += np.float64(p[i + 6]) * np.float64(q[i + 6])
        s7 += np.float64(p[i + 7]) * np.float64(q[i + 7])
        i += 8
    while i < end:
        s0 += np.float64(p[i]) * np.float64(q[i])
        i += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@nb.njit(**_JIT)
def _dia_spmv_dot(offsets, values, p, q):
    n = q.shape[0]
    inner_lo, inner_hi = _inner_rows(offsets, n)
    total = 0.0
    for block in prange((n + _ROWS - 1) // _ROWS):
        total += _block_spmv_dot(offsets, values, p, q, block, inner_lo, inner_hi)
    return total


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _dia_spmv_dot_serial(offsets, values, p, q):
    """:func:`dia_spmv_dot` as a plain loop, for one thread (the compiled CG iterations):
    the same sums in the same order, without entering a parallel region."""
    n = q.shape[0]
    inner_lo, inner_hi = _inner_rows(offsets, n)
    total = 0.0
    for block in range((n + _ROWS - 1) // _ROWS):
        total += _block_spmv_dot(offsets, values, p, q, block, inner_lo, inner_hi)
    return total


def dia_spmv_dot(offsets, values, p, q) -> float:
    """``q = A @ p``; return ``p . q``, summed block by block while each block of ``q`` is
    still in cache.

    Each ``q[i]`` has the bits of :func:`dia_spmv`; ``p . q`` is summed in
    float64 by blocks of rows, eight partial sums a block (the same bits on
    one thread whichever kernel runs; more threads regroup the blocks).
    """
    kernel = _dia_spmv_dot if nb.get_num_threads() > 1 else _dia_spmv_dot_serial
    return kernel(offsets, values, p, q)


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


# -- a DIA matrix times an (n, k) block -------------------------------------------------
@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _dia_spmm_lanes(offsets, values, P, Q, lo, hi, inner_lo, inner_hi, group, partial, lanes,
                    sums):
    """Columns ``group .. group + 7`` of rows ``lo .. hi - 1`` of ``Q = A @ P`` (float64),
    and their share of the column dots added to ``partial``.

    Each lane sums its row over the diagonals in :func:`dia_spmv`'s order,
    skipping those that leave the matrix; the rows that leave it on no
    diagonal skip the test, which changes no bits.
    """
    n, k = Q.shape
    ndiag = len(offsets)
    p, q = P.reshape(-1), Q.reshape(-1)
    _lanes_zero(sums)
    for i in range(lo, hi):
        _lanes_zero(lanes)
        if i >= inner_lo and i < inner_hi:
            for d in range(ndiag):
                _lanes_madd(lanes, values[d, i], p, (i + offsets[d]) * k + group)
        else:
            for d in range(ndiag):
                j = i + offsets[d]
                if j >= 0 and j < n:
                    _lanes_madd(lanes, values[d, i], p, j * k + group)
        _lanes_store(lanes, q, i * k + group)
        _lanes_dot(p, q, i * k + group, sums)
    _lanes_add_to(sums, partial, group)


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _dia_spmm_rest(offsets, values, P, Q, lo, hi, first, partial):
    """Columns ``first .. k - 1`` of rows ``lo .. hi - 1`` of ``Q = A @ P`` in scalar sums
    (any dtype; float64 accumulators, as :func:`dia_spmv`'s), their dots added to
    ``partial``."""
    n, k = Q.shape
    ndiag = len(offsets)
    acc = np.empty(k)
    for i in range(lo, hi):
        for c in range(first, k):
            acc[c] = 0.0
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                a = values[d, i]
                row = np.uint64(j)  # unsigned: no wrap-around test
                for c in range(first, k):
                    acc[c] += a * P[row, c]
        for c in range(first, k):
            Q[i, c] = acc[c]
            partial[c] += P[i, c] * Q[i, c]


@nb.njit(**_JIT)
def _dia_spmm_dot_lanes(offsets, values, P, Q, dots):
    n, k = Q.shape
    inner_lo, inner_hi = _inner_rows(offsets, n)
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    groups = k // LANES * LANES
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        lanes = _stack_lanes()
        sums = _stack_lanes()
        for group in range(0, groups, LANES):
            _dia_spmm_lanes(offsets, values, P, Q, lo, hi, inner_lo, inner_hi, group,
                            partial[c], lanes, sums)
        if groups < k:
            _dia_spmm_rest(offsets, values, P, Q, lo, hi, groups, partial[c])
    _chunk_total(partial, dots)


@nb.njit(**_JIT)
def _dia_spmm_dot_scalar(offsets, values, P, Q, dots):
    n, k = Q.shape
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        _dia_spmm_rest(offsets, values, P, Q, lo, min(n, lo + _CHUNK), 0, partial[c])
    _chunk_total(partial, dots)


def dia_spmm_dot(offsets, values, P, Q, dots) -> None:
    """``Q = A @ P`` for the row-aligned DIA matrix ``(offsets, values)`` and ``(n, k)``
    blocks; ``dots[j] = P[:, j] . Q[:, j]``.

    float64 C-ordered blocks with ``k >= 8``: groups of eight columns in
    vector lanes, the rest in scalar sums. Every column of ``Q`` has the bits
    of :func:`dia_spmv` on that column; ``dots`` those of
    :func:`cext.numba.block.block_dots` ``(P, Q)``, whatever the thread count.
    """
    lanes = _lanes_fit(P, Q) and values.dtype == np.float64
    kernel = _dia_spmm_dot_lanes if lanes else _dia_spmm_dot_scalar
    kernel(offsets, values, P, Q, dots)
