"""CSR sparse matrix-vector products, parallel over blocks of rows (Numba).

Kernels are dumb: raw arrays in, results written into ``out``; shapes and
dtypes are checked by the Python wrapper that calls them
(:mod:`linsolve.operators`). Mirrors :mod:`cext.cupy.spmv` and
:mod:`cext.reference.spmv`.

Three choices, each measured against scipy's SpMV (``python -m bench speed``):

- Index arrays are viewed as *unsigned* before the jitted loop. Numba must
  otherwise handle negative (wrap-around) indices on every ``x[indices[jj]]``,
  which made the serial loop slower than scipy's.
- Each task walks a contiguous block of rows and carries the row start from
  the previous row's end, so ``indptr`` is read once per row (faster than
  a plain ``prange`` over rows).
- Rows are summed two at a time, interleaved. A row's sum is a chain of
  dependent additions (about 4 cycles each), which left one core well
  behind scipy on finite-element rows of 7-27 entries; two independent
  chains let the core overlap them (four rows at a time was slower again).
  Each row is still summed in CSR order.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

# No ``fastmath``: the PCG driver relies on NaN/Inf surviving into the dot
# product it returns. Row sums stay in CSR order, so each entry of ``out`` is
# bit-identical to a serial CSR loop (and to scipy's).
_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)
_SERIAL = dict(_JIT, parallel=False)

_BLOCK = 1024  # rows per task


_UNSIGNED = {np.dtype(signed): np.dtype(unsigned) for signed, unsigned in
             ((np.int32, np.uint32), (np.int64, np.uint64), (np.int16, np.uint16),
              (np.int8, np.uint8))}


def unsigned_view(index_array: np.ndarray) -> np.ndarray:
    """The same memory as unsigned integers (no copy); indices are never negative."""
    # a table, not the dtype's name edited: building a dtype from a string cost
    # microseconds a call, which a small system's every product paid twice
    unsigned = _UNSIGNED.get(index_array.dtype)
    if unsigned is not None:
        return index_array.view(unsigned)
    if index_array.dtype.kind == "i":
        return index_array.view(index_array.dtype.str.replace("i", "u"))
    return index_array


def csr_spmv(indptr, indices, data, x, out) -> None:
    """``out = A @ x`` for the CSR matrix ``(indptr, indices, data)``."""
    kernel = _csr_spmv if nb.get_num_threads() > 1 else _csr_spmv_serial
    kernel(unsigned_view(indptr), unsigned_view(indices), data, x, out)


def csr_spmv_dot(indptr, indices, data, p, q) -> float:
    """``q = A @ p``; return ``p . q`` computed in the same pass over the rows."""
    kernel = _csr_spmv_dot if nb.get_num_threads() > 1 else _csr_spmv_dot_serial
    return kernel(unsigned_view(indptr), unsigned_view(indices), data, p, q)


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def range_pair_sums(s0, e0, s1, e1, indices, data, x, zero):
    """Sums of ``data * x[indices]`` over two entry ranges, as two interleaved chains.

    Each sum is taken in CSR order (the same bits as one loop each); two
    independent chains let the core overlap their latencies. ``zero`` is the
    accumulators' start (and type).
    """
    a0 = zero
    a1 = zero
    common = min(e0 - s0, e1 - s1)
    for k in range(common):
        a0 += data[s0 + k] * x[indices[s0 + k]]
        a1 += data[s1 + k] * x[indices[s1 + k]]
    for jj in range(s0 + common, e0):
        a0 += data[jj] * x[indices[jj]]
    for jj in range(s1 + common, e1):
        a1 += data[jj] * x[indices[jj]]
    return a0, a1


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _row_pair(indptr, indices, data, x, i):
    """Sums of rows ``i`` and ``i + 1``, each in CSR order, as two interleaved chains."""
    return range_pair_sums(indptr[i], indptr[i + 1], indptr[i + 1], indptr[i + 2], indices,
                           data, x, 0.0)


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _row(indptr, indices, data, x, i):
    acc = 0.0
    for jj in range(indptr[i], indptr[i + 1]):
        acc += data[jj] * x[indices[jj]]
    return acc


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _rows(indptr, indices, data, x, out, lo, hi):
    """``out[lo:hi]`` = rows ``lo..hi-1`` of ``A @ x``."""
    i = lo
    while i + 1 < hi:
        out[i], out[i + 1] = _row_pair(indptr, indices, data, x, i)
        i += 2
    if i < hi:
        out[i] = _row(indptr, indices, data, x, i)


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _rows_dot(indptr, indices, data, p, q, lo, hi):
    """``q[lo:hi]`` = rows ``lo..hi-1`` of ``A @ p``; return their part of ``p . q``."""
    partial = 0.0
    i = lo
    while i + 1 < hi:
        a0, a1 = _row_pair(indptr, indices, data, p, i)
        q[i] = a0
        q[i + 1] = a1
        partial += p[i] * a0
        partial += p[i + 1] * a1
        i += 2
    if i < hi:
        acc = _row(indptr, indices, data, p, i)
        q[i] = acc
        partial += p[i] * acc
    return partial


@nb.njit(**_JIT)
def _csr_spmv(indptr, indices, data, x, out):
    n = out.shape[0]
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        _rows(indptr, indices, data, x, out, lo, min(n, lo + _BLOCK))


@nb.njit(**_JIT)
def _csr_spmv_dot(indptr, indices, data, p, q):
    n = q.shape[0]
    total = 0.0
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        total += _rows_dot(indptr, indices, data, p, q, lo, min(n, lo + _BLOCK))
    return total


# Plain loops over all rows for when the thread policy (cext.threads) runs the
# solve on one thread: a parallel kernel held to one thread still pays for its
# task machinery and its row blocks. P1 tetrahedra, one thread: 2.9-3.1 ms
# against 2.7 ms (scipy 2.6-2.7), so a solve on a busy machine keeps scipy's
# single-core speed.
@nb.njit(**_SERIAL)
def _csr_spmv_serial(indptr, indices, data, x, out):
    _rows(indptr, indices, data, x, out, 0, out.shape[0])


@nb.njit(**_SERIAL)
def _csr_spmv_dot_serial(indptr, indices, data, p, q):
    return _rows_dot(indptr, indices, data, p, q, 0, q.shape[0])


def csr_symmetry_probe(indptr, indices, data, x, y):
    """``(x.Ay, y.Ax, |Ax|^2, |Ay|^2, |x|^2, |y|^2)`` in one pass over the CSR rows.

    The symmetry check of :func:`linsolve.pcg`: two products and six inner
    products, which as separate kernel calls cost a small solve as much as
    its iterations. Sums in float64.
    """
    return _csr_symmetry_probe(unsigned_view(indptr), unsigned_view(indices), data, x, y)


@nb.njit(**_JIT)
def _csr_symmetry_probe(indptr, indices, data, x, y):
    xAy = 0.0
    yAx = 0.0
    AxAx = 0.0
    AyAy = 0.0
    xx = 0.0
    yy = 0.0
    for i in prange(x.shape[0]):
        Ax = 0.0
        Ay = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            a = data[jj]
            Ax += a * x[indices[jj]]
            Ay += a * y[indices[jj]]
        xAy += x[i] * Ay
        yAx += y[i] * Ax
        AxAx += Ax * Ax
        AyAy += Ay * Ay
        xx += x[i] * x[i]
        yy += y[i] * y[i]
    return xAy, yAx, AxAx, AyAy, xx, yy
