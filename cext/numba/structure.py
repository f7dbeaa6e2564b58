"""One O(nnz) pass over a compressed sparse structure before any kernel trusts it (Numba).

scipy does not check that column indices are in range or that ``indptr``
is monotone, and the kernels read indices as unsigned without bounds
checks (:mod:`cext.numba.spmv`), so a malformed matrix would read or write
out of bounds. This pass reads ``indptr`` once and ``indices`` once (no
values, no gathers): about a third of the bytes of one SpMV, paid once per
solve. It also reports whether every row is strictly increasing (sorted,
no duplicates), so callers canonicalise -- on a copy -- only when needed.
Mirrors :func:`cext.reference.csr_check`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)

_BLOCK = 4096  # rows per task

# Codes returned by csr_check (shared with the reference and the wrapper).
OK, BAD_START, NOT_MONOTONE, BAD_END, INDEX_OUT_OF_RANGE = 0, 1, 2, 3, 4


@nb.njit(**_JIT)
def _first_decrease(indptr, n):
    nblocks = (n + _BLOCK - 1) // _BLOCK
    decreases = np.zeros(nblocks, dtype=np.int64)
    for block in prange(nblocks):
        lo = block * _BLOCK
        decreases[block] = _count_decreases(indptr[lo:min(n, lo + _BLOCK) + 1])
    for block in range(nblocks):
        if decreases[block] > 0:
            lo = block * _BLOCK
            for i in range(lo, min(n, lo + _BLOCK)):
                if indptr[i + 1] < indptr[i]:
                    return i
    return -1


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
def _count_block(indptr, indices, lo, hi, limit):
    first = indptr[lo]
    run = indices[first:indptr[hi]]
    if run.shape[0] == 0:  # the branch-free probe below needs one entry
        return 0, 0
    out_of_range = 0
    for k in range(run.shape[0]):
        out_of_range += np.uint64(run[k]) >= limit  # negatives wrap: one compare
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
def _scan_indices(indptr, indices, n, n_cols):
    # indptr is known monotone from 0 to <= len(indices): every row range is in
    # bounds, and a block's rows are one contiguous run of entries. Flat counting
    # loops over that run vectorise (a per-row loop with flags ran at 1.6 ns an
    # entry, slower than the SpMV it guards); the offending row is located only
    # when a count says there is one.
    nblocks = (n + _BLOCK - 1) // _BLOCK
    bad = np.zeros(nblocks, dtype=np.int64)
    unsorted = np.zeros(nblocks, dtype=np.int64)
    limit = np.uint64(n_cols)
    for block in prange(nblocks):
        lo = block * _BLOCK
        hi = min(n, lo + _BLOCK)
        bad[block], unsorted[block] = _count_block(indptr, indices, lo, hi, limit)
    for block in range(nblocks):
        if bad[block] > 0:
            lo = block * _BLOCK
            for i in range(lo, min(n, lo + _BLOCK)):
                for jj in range(indptr[i], indptr[i + 1]):
                    if np.uint64(indices[jj]) >= limit:
                        return i, False
    for block in range(nblocks):
        if unsorted[block] > 0:
            return -1, False
    return -1, True


@nb.njit(cache=True, nogil=True)
def _bad_value(indptr, indices, row, n_cols):
    for jj in range(indptr[row], indptr[row + 1]):
        column = np.int64(indices[jj])
        if column < 0 or column >= n_cols:
            return column
    return -1


def csr_check(indptr, indices, n_cols: int):
    """Check a compressed structure: ``(code, row, value, canonical)``.

    ``code`` is 0 when ``indptr`` starts at 0, never decreases, ends at most
    at ``len(indices)``, and every index is in ``[0, n_cols)``; otherwise
    the first offence: 1 (``value = indptr[0]``), 2 (``indptr[row + 1] =
    value < indptr[row]``), 3 (``value = indptr[-1] > len(indices)``), 4
    (index ``value`` in ``row``). ``canonical``: every row strictly
    increasing (meaningful only when ``code == 0``).
    """
    n = indptr.shape[0] - 1
    if n < 0:
        raise ValueError("indptr must have at least one entry")
    if indptr[0] != 0:
        return BAD_START, 0, int(indptr[0]), False
    row = int(_first_decrease(indptr, n)) if n else -1
    if row >= 0:
        return NOT_MONOTONE, row, int(indptr[row + 1]), False
    if int(indptr[n]) > indices.shape[0]:
        return BAD_END, n, int(indptr[n]), False
    if n == 0:
        return OK, -1, 0, True
    row, canonical = _scan_indices(indptr, indices, n, int(n_cols))
    if row >= 0:
        return INDEX_OUT_OF_RANGE, int(row), int(_bad_value(indptr, indices, row, int(n_cols))), False
    return OK, -1, 0, bool(canonical)
