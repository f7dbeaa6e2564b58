"""One O(nnz) pass over a compressed sparse structure before any kernel trusts it (Numba).

scipy does not check that column indices are in range or that ``indptr``
is monotone, and the kernels read indices as unsigned without bounds
checks (:mod:`cext.numba.spmv`), so a malformed matrix would read or write
out of bounds. This pass reads ``indptr`` once and ``indices`` once (no
values, no gathers): about a third of the bytes of one SpMV, paid once per
solve. It also reports whether every row is strictly increasing (sorted,
no duplicates), so callers canonicalise -- on a copy -- only when needed.
Mirrors :mod:`cext.reference.structure`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)

_BLOCK = 4096  # rows per task

# Codes returned by csr_check (shared with the reference and the wrapper).
OK, BAD_START, NOT_MONOTONE, BAD_END, INDEX_OUT_OF_RANGE = 0, 1, 2, 3, 4


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _count_decreases(pointers):
    count = 0
    for k in range(1, pointers.shape[0]):
        count += pointers[k] < pointers[k - 1]
    return count


# The counting loops run over a slice: over ``range(first, last)`` of the
# whole array LLVM did not vectorise them (12 ms against 1.8 ms on one core
# for 2-D Poisson, n = 1e6, where one SpMV takes 4-5 ms).
@nb.njit(cache=True, nogil=True, boundscheck=False)
def _count_block(indptr, indices, lo, hi, limit, order):
    first = indptr[lo]
    run = indices[first:indptr[hi]]
    if run.shape[0] == 0:  # the branch-free probe below needs one entry
        return 0, 0
    out_of_range = 0
    for k in range(run.shape[0]):
        out_of_range += np.uint64(run[k]) >= limit  # negatives wrap: one compare
    if not order:
        return out_of_range, 0
    descents = 0
    for k in range(1, run.shape[0]):
        descents += run[k] <= run[k - 1]
    for i in range(lo + 1, hi):  # a descent across a row boundary is allowed
        start = indptr[i] - first
        # nonempty rows after the first entry only; branch-free, so a probe
        # out of the row (masked off) reads inside the run
        probe = min(max(start, 1), run.shape[0] - 1)
        descents -= ((start > 0) & (indptr[i + 1] - first > start)
                     & (run[probe] <= run[probe - 1]))
    return out_of_range, descents


@nb.njit(**_JIT)
def _scan(indptr, indices, n, n_cols, order):
    # One parallel pass over indptr and indices. A block reads its run of
    # indices only once its own slice of indptr is monotone and within
    # [0, len(indices)]: then the run is in bounds whatever other blocks hold.
    # (Two passes, indptr first, cost 0.65 of a 2-thread SpMV on 5-7-entry
    # rows; the budget is half.) The first offence is then found in order.
    nblocks = (n + _BLOCK - 1) // _BLOCK
    decreases = np.zeros(nblocks, dtype=np.int64)
    bad = np.zeros(nblocks, dtype=np.int64)
    unsorted = np.zeros(nblocks, dtype=np.int64)
    limit = np.uint64(n_cols)
    stored = indices.shape[0]
    for block in prange(nblocks):
        lo = block * _BLOCK
        hi = min(n, lo + _BLOCK)
        decreases[block] = _count_decreases(indptr[lo:hi + 1])
        if decreases[block] == 0 and indptr[lo] >= 0 and indptr[hi] <= stored:
            bad[block], unsorted[block] = _count_block(indptr, indices, lo, hi, limit, order)
    for block in range(nblocks):
        if decreases[block] > 0:
            lo = block * _BLOCK
            for i in range(lo, min(n, lo + _BLOCK)):
                if indptr[i + 1] < indptr[i]:
                    return NOT_MONOTONE, i, False
    if indptr[n] > stored:
        return BAD_END, n, False
    for block in range(nblocks):
        if bad[block] > 0:
            lo = block * _BLOCK
            for i in range(lo, min(n, lo + _BLOCK)):
                for jj in range(indptr[i], indptr[i + 1]):
                    if np.uint64(indices[jj]) >= limit:
                        return INDEX_OUT_OF_RANGE, i, False
    for block in range(nblocks):
        if unsorted[block] > 0:
            return OK, -1, False
    return OK, -1, order


@nb.njit(cache=True, nogil=True)
def _bad_value(indptr, indices, row, n_cols):
    for jj in range(indptr[row], indptr[row + 1]):
        column = np.int64(indices[jj])
        if column < 0 or column >= n_cols:
            return column
    return -1


def csr_check(indptr, indices, n_cols: int, check_order: bool = True):
    """Check a compressed structure: ``(code, row, value, canonical)``.

    ``code`` is 0 when ``indptr`` starts at 0, never decreases, ends at most
    at ``len(indices)``, and every index is in ``[0, n_cols)``; otherwise
    the first offence: 1 (``value = indptr[0]``), 2 (``indptr[row + 1] =
    value < indptr[row]``), 3 (``value = indptr[-1] > len(indices)``), 4
    (index ``value`` in ``row``). ``canonical``: every row strictly
    increasing (meaningful only when ``code == 0``; always False with
    ``check_order=False``, which skips that part: the per-row boundary
    work costs as much as the range check on rows of 5-7 entries, and
    callers that never canonicalise, like pcg, need only the ranges).
    """
    n = indptr.shape[0] - 1
    if n < 0:
        raise ValueError("indptr must have at least one entry")
    if indptr[0] != 0:
        return BAD_START, 0, int(indptr[0]), False
    if n == 0:
        return OK, -1, 0, True
    code, row, canonical = _scan(indptr, indices, n, int(n_cols), bool(check_order))
    if code == NOT_MONOTONE:
        return code, int(row), int(indptr[row + 1]), False
    if code == BAD_END:
        return code, n, int(indptr[n]), False
    if code == INDEX_OUT_OF_RANGE:
        return code, int(row), int(_bad_value(indptr, indices, row, int(n_cols))), False
    return OK, -1, 0, bool(canonical)


def arrays_equal(a, b) -> bool:
    """Whether two 1-D integer arrays hold the same values: a sparse pattern compared at
    the speed of reading it. NumPy's SIMD comparison is the kernel here: compiled loops
    (an early-exit scan, xor-or reductions, two threads) measured 1.1-2.2x its time on a
    2.9M-entry ``indices``."""
    return a.shape == b.shape and bool(np.array_equal(a, b))
