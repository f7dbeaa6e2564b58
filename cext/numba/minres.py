"""The vector passes of one MINRES iteration, fused (Numba).

One preconditioned Lanczos step and the MINRES update (Paige and Saunders,
SIAM J. Numer. Anal. 12, 1975; the variables of scipy's ``minres``, which
:mod:`linsolve.krylov.minres` follows) in three passes over memory where
scipy's NumPy expressions make about fifteen:

1. ``r1 = sq (A y) + sy y + sr r1``, returning ``y . r1``: the product with
   ``A`` (CSR, DIA, or one already computed, ``q``), the shift and the
   previous Lanczos vector in the pass that sums the rows; with ``sq =
   1/beta``, ``sy = -shift/beta``, ``sr = -beta/oldb`` that is scipy's
   ``y = A v - shift v - (beta/oldb) r1`` for ``v = y/beta``, and the dot
   is ``beta`` times its ``alfa = v . y`` (computed after the subtraction,
   as Paige's stable variant of Lanczos and scipy do).
2. ``p -= c r2``, returning ``p . p`` (the next ``beta^2`` without ``M``).
3. ``w1 = sv y + s1 w1 + s2 w2; x += phi w1``: the new search direction
   (written over the oldest, ``w1[i]`` is read before it is written) and the
   iterate; :func:`minres_update_residual` also updates the residual
   ``r = sr r + sp p`` and returns ``r . r``.

Scalars arrive as Python floats: vectors are updated in float64 and rounded
once to the arrays' dtype, and dots accumulate in float64, as in
:mod:`cext.numba.blas1`. No fastmath: NaN and Inf must reach the returned
dots (the solver's breakdown tests read them). Each kernel returns the
arrays it wrote, then the dot, as its twin in :mod:`cext.reference.minres`
does (which returns new arrays where the namespace cannot write in place).

Row loops follow :mod:`cext.numba.spmv` (unsigned index views, blocks of
rows per task, each row summed in CSR order) and :mod:`cext.numba.dia` (a
tuple of offsets, one accumulator per row). CSR rows are summed two at a
time as interleaved chains, as :mod:`cext.numba.spmv` does, except on one
thread when rows hold :data:`LONG_ROWS` entries or more on average
(:func:`single_rows`): there one row at a time is faster. Either way each
row's sum, and the order in which the rows enter the dot, are the same, so
the bits do not depend on the choice.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .spmv import _BLOCK, range_pair_sums, unsigned_view

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)

LONG_ROWS = 10
"""Mean CSR row length from which the fused products, on one thread, sum one row at a time.

Measured per fused product (the Lanczos and BiCGStab kernels alike, best of
15-31, ratio one row / two rows at a time): one thread, P1 tetrahedra (13.8
entries a row) 0.93-0.95, P2 tetrahedra (26.5) 0.97-0.99, elasticity
(38.3) 0.97-0.99, P1 triangles (7.0) 1.00-1.01, 2-D convection-diffusion
(5.0) 1.04; two threads, P1 tetrahedra 1.02-1.05 (bandwidth-bound there, the
second chain's overlap pays). On rows of 4-19 entries the pair loop's common
part ends early and its two tail loops take varying trip counts; a single
chain ends once per row."""
_SERIAL = dict(_JIT, parallel=False)
_INLINE = dict(nogil=True, cache=True, boundscheck=False, inline="always")
# the pure vector passes: 'reassoc' lets LLVM split the dot into several partial
# sums (as cext.numba.blas1 does); no 'nnan'/'ninf', so NaN and Inf survive
_VECTOR = dict(_JIT, fastmath={"reassoc", "contract"})


def single_rows(indptr) -> bool:
    """Whether the CSR rows are long enough (:data:`LONG_ROWS`) to be summed one at a time
    (on one thread)."""
    n = indptr.shape[0] - 1
    return n > 0 and int(indptr[n]) - int(indptr[0]) >= LONG_ROWS * n


def csr_minres_lanczos(indptr, indices, data, y, r1, sq, sy, sr):
    """``r1 = sq (A @ y) + sy y + sr r1`` for CSR ``A`` in one pass; return ``(r1, y . r1)``.

    ``r1`` must not be ``y``.
    """
    if nb.get_num_threads() > 1:
        kernel = _csr_lanczos
    else:
        kernel = _csr_lanczos_single_serial if single_rows(indptr) else _csr_lanczos_serial
    total = kernel(unsigned_view(indptr), unsigned_view(indices), data, y, r1, sq, sy, sr)
    return r1, total


def dia_minres_lanczos(offsets, values, y, r1, sq, sy, sr):
    """As :func:`csr_minres_lanczos` for row-aligned DIA ``values[d, i] = A[i, i + offsets[d]]``."""
    kernel = _dia_lanczos if nb.get_num_threads() > 1 else _dia_lanczos_serial
    return r1, kernel(offsets, values, y, r1, sq, sy, sr)


def minres_lanczos(q, y, r1, sq, sy, sr):
    """``r1 = sq q + sy y + sr r1`` (``q = A @ y`` computed before); return ``(r1, y . r1)``."""
    return r1, _lanczos(q, y, r1, sq, sy, sr)


def minres_orthogonalize(p, r2, c):
    """``p -= c r2``; return ``(p, p . p)``."""
    return p, _orthogonalize(p, r2, c)


def minres_update(x, w1, w2, y, sv, s1, s2, phi):
    """``w1 = sv y + s1 w1 + s2 w2``; ``x += phi w1``; return ``(x, w1)``."""
    _update(x, w1, w2, y, sv, s1, s2, phi)
    return x, w1


def minres_update_residual(x, w1, w2, y, sv, s1, s2, phi, r, p, sr, sp):
    """:func:`minres_update`, and ``r = sr r + sp p`` in the same pass; return ``(x, w1, r, r . r)``."""
    return x, w1, r, _update_residual(x, w1, w2, y, sv, s1, s2, phi, r, p, sr, sp)


@nb.njit(**_INLINE)
def _combine(y, r1, sq, sy, sr, i, ay):
    """Row ``i``: ``r1[i] = sq ay + sy y[i] + sr r1[i]``; returns ``y[i] r1[i]`` (the new one)."""
    value = r1.dtype.type(sq * ay + sy * y[i] + sr * r1[i])
    r1[i] = value
    return y[i] * value


@nb.njit(**_INLINE)
def _csr_rows(indptr, indices, data, y, r1, sq, sy, sr, lo, hi):
    partial = 0.0
    i = lo
    start = indptr[lo]
    while i + 1 < hi:
        middle = indptr[i + 1]
        end = indptr[i + 2]
        a0, a1 = range_pair_sums(start, middle, middle, end, indices, data, y, 0.0)
        partial += _combine(y, r1, sq, sy, sr, i, a0)
        partial += _combine(y, r1, sq, sy, sr, i + 1, a1)
        start = end
        i += 2
    if i < hi:
        acc = 0.0
        for jj in range(start, indptr[i + 1]):
            acc += data[jj] * y[indices[jj]]
        partial += _combine(y, r1, sq, sy, sr, i, acc)
    return partial


@nb.njit(**_INLINE)
def _csr_rows_single(indptr, indices, data, y, r1, sq, sy, sr, lo, hi):
    """:func:`_csr_rows` one row at a time (long rows, :data:`LONG_ROWS`): the same bits."""
    partial = 0.0
    start = indptr[lo]
    for i in range(lo, hi):
        end = indptr[i + 1]
        acc = 0.0
        for jj in range(start, end):
            acc += data[jj] * y[indices[jj]]
        partial += _combine(y, r1, sq, sy, sr, i, acc)
        start = end
    return partial


# Separate kernels for the two row loops, not a flag: one function holding
# both loops made the pair loop 4 % slower (2-D convection-diffusion, one thread).
@nb.njit(**_JIT)
def _csr_lanczos(indptr, indices, data, y, r1, sq, sy, sr):
    n = r1.shape[0]
    total = 0.0
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        total += _csr_rows(indptr, indices, data, y, r1, sq, sy, sr, lo, min(n, lo + _BLOCK))
    return total


# One thread (the policy in cext.threads chose it): a plain loop over all rows,
# without the task machinery of a parallel region held to one thread.
@nb.njit(**_SERIAL)
def _csr_lanczos_serial(indptr, indices, data, y, r1, sq, sy, sr):
    return _csr_rows(indptr, indices, data, y, r1, sq, sy, sr, 0, r1.shape[0])


@nb.njit(**_SERIAL)
def _csr_lanczos_single_serial(indptr, indices, data, y, r1, sq, sy, sr):
    return _csr_rows_single(indptr, indices, data, y, r1, sq, sy, sr, 0, r1.shape[0])


@nb.njit(**_INLINE)
def _dia_rows(offsets, values, y, r1, sq, sy, sr, lo, hi):
    n = r1.shape[0]
    ndiag = len(offsets)
    partial = 0.0
    for i in range(lo, hi):
        acc = 0.0
        for d in range(ndiag):
            j = i + offsets[d]
            if j >= 0 and j < n:
                acc += values[d, i] * y[np.uint64(j)]  # unsigned: no wrap-around test
        partial += _combine(y, r1, sq, sy, sr, i, acc)
    return partial


@nb.njit(**_JIT)
def _dia_lanczos(offsets, values, y, r1, sq, sy, sr):
    n = r1.shape[0]
    total = 0.0
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        total += _dia_rows(offsets, values, y, r1, sq, sy, sr, lo, min(n, lo + _BLOCK))
    return total


@nb.njit(**_SERIAL)
def _dia_lanczos_serial(offsets, values, y, r1, sq, sy, sr):
    return _dia_rows(offsets, values, y, r1, sq, sy, sr, 0, r1.shape[0])


@nb.njit(**_VECTOR)
def _lanczos(q, y, r1, sq, sy, sr):
    total = 0.0
    for i in prange(r1.shape[0]):
        value = r1.dtype.type(sq * q[i] + sy * y[i] + sr * r1[i])
        r1[i] = value
        total += y[i] * value
    return total


@nb.njit(**_VECTOR)
def _orthogonalize(p, r2, c):
    total = 0.0
    for i in prange(p.shape[0]):
        value = p.dtype.type(p[i] - c * r2[i])
        p[i] = value
        total += value * value
    return total


@nb.njit(**_VECTOR)
def _update(x, w1, w2, y, sv, s1, s2, phi):
    for i in prange(x.shape[0]):
        w = w1.dtype.type(sv * y[i] + s1 * w1[i] + s2 * w2[i])
        w1[i] = w
        x[i] = x[i] + phi * w


@nb.njit(**_VECTOR)
def _update_residual(x, w1, w2, y, sv, s1, s2, phi, r, p, sr, sp):
    total = 0.0
    for i in prange(x.shape[0]):
        w = w1.dtype.type(sv * y[i] + s1 * w1[i] + s2 * w2[i])
        w1[i] = w
        x[i] = x[i] + phi * w
        value = r.dtype.type(sr * r[i] + sp * p[i])
        r[i] = value
        total += value * value
    return total
