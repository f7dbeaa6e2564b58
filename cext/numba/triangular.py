"""CSR triangular solves and the IC(0) factorisation (Numba).

``csr_triangular_pair_solve`` applies the IC(0) and SSOR preconditioners
(:mod:`linsolve.precond`): ``out = P^T S_out (I + U)^{-1} (I + L)^{-1} S_in P b``
with the strictly lower ``L`` and strictly upper ``U`` stored as CSR arrays
already scaled to a unit diagonal. The loops then have no column test and
no division, a row's only dependence on the row before it is one
multiply-subtract (the last entry of a sorted row), and float32 data is
summed in float32. Where ``U = L^T`` (IC(0); SSOR of a symmetric matrix)
only ``L`` is stored, and the backward sweep reads it by columns: an
iteration of pcg then streams the factor once less from memory, which is
what its time on matrices larger than the cache follows. The
permutation ``P`` is gathered in the first sweep and scattered in the last,
not in separate passes. Unpadded rows keep the row just solved in a register
for the next (no store and reload on the row-to-row chain). A row needs
the rows before it, so each sweep is sequential -- except across the
uncoupled *domains* of a domain ordering
(:func:`linsolve.precond._ordering.domain_ordering`): the segments of one
stage run in parallel (``prange``), the separators after them.

``csr_triangular_pair_solve_block`` is the same solve on an ``(n, k)``
block (batched pcg's residuals): the factor read once for all ``k``
columns, each column bit-identical to the vector kernel's.

``csr_triangular_solve`` is the older general form (any CSR matrix, only
its strictly lower or upper entries read through a column test, a separate
diagonal); kept for callers that hold ``A`` itself.

No ``fastmath`` (a NaN in the data must reach the caller). The parallel
kernel is handed out wrapped by :func:`cext.threads.managed`; on one
thread it runs plain loops.

Mirrors :mod:`cext.reference.triangular`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import prange

from .spmv import unsigned_view

_SEQ = dict(nogil=True, cache=True, boundscheck=False)


@nb.njit(**_SEQ)
def _lower_solve(indptr, indices, data, diag, b, out):
    for i in range(out.shape[0]):
        row = np.uint64(i)
        acc = b[i]
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            if j < row:
                acc -= data[jj] * out[j]
        out[i] = acc / diag[i]


@nb.njit(**_SEQ)
def _upper_solve(indptr, indices, data, diag, b, out):
    n = out.shape[0]
    for k in range(n):
        i = n - 1 - k
        row = np.uint64(i)
        acc = b[i]
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            if j > row:
                acc -= data[jj] * out[j]
        out[i] = acc / diag[i]


def csr_triangular_solve(indptr, indices, data, diag, b, out, lower) -> None:
    """Solve ``(D + L) out = b`` (``lower``) or ``(D + U) out = b``, sequentially.

    ``L``/``U`` are the strictly lower/upper entries of the CSR matrix
    ``(indptr, indices, data)`` (any others are ignored); ``D = diag(diag)``,
    checked nonzero by the caller. ``out`` may be ``b`` itself (row ``i``
    reads ``b[i]`` before writing ``out[i]``). Column indices need not be
    sorted.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[2.0, 1.0], [1.0, 4.0]]))
    >>> out = np.empty(2)
    >>> csr_triangular_solve(A.indptr, A.indices, A.data, A.diagonal(),
    ...                      np.array([2.0, 9.0]), out, True)
    >>> out.tolist()
    [1.0, 2.0]
    """
    args = (unsigned_view(indptr), unsigned_view(indices), data, diag, b, out)
    if lower:
        _lower_solve(*args)
    else:
        _upper_solve(*args)


# --- the staged pair of unit triangular solves (IC(0) and SSOR applications) ---

_PAR = dict(_SEQ, parallel=True)
_ROW = dict(nogil=True, cache=True, boundscheck=False, inline="always")


@nb.njit(**_ROW)
def _row_minus(indptr, indices, data, work, i, acc, quad):
    """``acc - sum_j M[i, j] work[j]`` over row ``i``'s stored entries, in CSR order.

    ``quad``: every row's length is a multiple of four (padded with leading
    zeros), and the loop takes four entries a step. Its trip count then
    varies far less from row to row than the row lengths do: on meshes whose
    rows differ in length the mispredicted loop exit of the plain loop costs
    more than the sums (P1 tetrahedra: pcg + IC(0) 5.1 -> 4.3 ms per iteration).
    """
    if quad:
        for jj in range(indptr[i], indptr[i + 1], 4):
            acc -= data[jj] * work[indices[jj]]
            acc -= data[jj + 1] * work[indices[jj + 1]]
            acc -= data[jj + 2] * work[indices[jj + 2]]
            acc -= data[jj + 3] * work[indices[jj + 3]]
    else:
        for jj in range(indptr[i], indptr[i + 1]):
            acc -= data[jj] * work[indices[jj]]
    return acc


@nb.njit(**_ROW)
def _forward_rows(indptr, indices, data, scale, perm, b, work, lo, hi, quad):
    """``work[i] = scale[i] b[perm[i]] - sum_j L[i, j] work[j]`` for rows ``lo..hi-1``."""
    for i in range(lo, hi):
        work[i] = _row_minus(indptr, indices, data, work, i, scale[i] * b[perm[i]], quad)


@nb.njit(**_ROW)
def _backward_rows(indptr, indices, data, scale, perm, work, out, lo, hi, quad):
    """``work[i] -= sum_j U[i, j] work[j]``; ``out[perm[i]] = scale[i] work[i]``; rows hi-1..lo."""
    for k in range(hi - lo):
        i = hi - 1 - k
        acc = _row_minus(indptr, indices, data, work, i, work[i], quad)
        work[i] = acc
        out[perm[i]] = scale[i] * acc


@nb.njit(**_ROW)
def _backward_columns(indptr, indices, data, scale, perm, work, out, lo, hi, quad):
    """The backward sweep with ``U = L^T``, read from ``L``'s rows: rows hi-1..lo.

    Row ``i`` of ``L`` is column ``i`` of ``U``: once ``work[i]`` is final
    (every row after it has been subtracted) it is subtracted, times
    ``L[i, j]``, from each ``work[j]``, ``j < i``.
    """
    for k in range(hi - lo):
        i = hi - 1 - k
        x = work[i]
        out[perm[i]] = scale[i] * x
        if quad:
            for jj in range(indptr[i], indptr[i + 1], 4):
                work[indices[jj]] -= data[jj] * x
                work[indices[jj + 1]] -= data[jj + 1] * x
                work[indices[jj + 2]] -= data[jj + 2] * x
                work[indices[jj + 3]] -= data[jj + 3] * x
        else:
            for jj in range(indptr[i], indptr[i + 1]):
                work[indices[jj]] -= data[jj] * x


# One compiled solve per backward sweep, rows (``U`` stored) or columns (``U = L^T``
# read from ``L``), chosen in Python. With both sweeps inlined into one function
# behind a run-time flag, the compiled row sweep (one thread) called NRT_incref and
# NRT_decref on three arrays every row (in its assembly; the references were not
# pruned): 2-D convection-diffusion, n = 250 000, ILU(0)'s pair solve 10.9 ms, now
# 1.9 ms like the column sweep's; SSOR of a non-symmetric matrix likewise.
@nb.njit(**_ROW)
def _forward_stages(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr, b,
                    work, quad):
    stages = stage_ptr.shape[0] - 1
    for stage in range(stages):
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:  # a separator: no parallel region for one task
            _forward_rows(l_indptr, l_indices, l_data, scale_in, perm, b, work,
                          segment_ptr[first], segment_ptr[first + 1], quad)
        else:
            for t in prange(count):
                g = first + t
                _forward_rows(l_indptr, l_indices, l_data, scale_in, perm, b, work,
                              segment_ptr[g], segment_ptr[g + 1], quad)


@nb.njit(**_PAR)
def _pair_solve_rows(l_indptr, l_indices, l_data, u_indptr, u_indices, u_data, scale_in,
                     scale_out, perm, segment_ptr, stage_ptr, b, work, out, quad):
    _forward_stages(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr, b,
                    work, quad)
    stages = stage_ptr.shape[0] - 1
    for back in range(stages):
        stage = stages - 1 - back
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _backward_rows(u_indptr, u_indices, u_data, scale_out, perm, work, out,
                           segment_ptr[first], segment_ptr[first + 1], quad)
        else:
            for t in prange(count):
                g = first + t
                _backward_rows(u_indptr, u_indices, u_data, scale_out, perm, work, out,
                               segment_ptr[g], segment_ptr[g + 1], quad)


@nb.njit(**_PAR)
def _pair_solve_columns(l_indptr, l_indices, l_data, scale_in, scale_out, perm, segment_ptr,
                        stage_ptr, b, work, out, quad):
    _forward_stages(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr, b,
                    work, quad)
    stages = stage_ptr.shape[0] - 1
    for back in range(stages):
        stage = stages - 1 - back
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _backward_columns(l_indptr, l_indices, l_data, scale_out, perm, work, out,
                              segment_ptr[first], segment_ptr[first + 1], quad)
        else:
            for t in prange(count):
                g = first + t
                _backward_columns(l_indptr, l_indices, l_data, scale_out, perm, work, out,
                                  segment_ptr[g], segment_ptr[g + 1], quad)


# One thread: the stages are laid out in row order, so the plain sweeps over
# all rows do the same operations in the same order (bit-identical results)
# without a parallel region. For the column sweep too: a row's updates reach
# only its own segment and the stages before it, which are swept after it.
@nb.njit(**_SEQ)
def _pair_solve_serial_rows(l_indptr, l_indices, l_data, u_indptr, u_indices, u_data,
                            scale_in, scale_out, perm, b, work, out, quad):
    n = work.shape[0]
    _forward_rows(l_indptr, l_indices, l_data, scale_in, perm, b, work, 0, n, quad)
    _backward_rows(u_indptr, u_indices, u_data, scale_out, perm, work, out, 0, n, quad)


@nb.njit(**_SEQ)
def _pair_solve_serial_columns(l_indptr, l_indices, l_data, scale_in, scale_out, perm, b, work,
                               out, quad):
    n = work.shape[0]
    _forward_rows(l_indptr, l_indices, l_data, scale_in, perm, b, work, 0, n, quad)
    _backward_columns(l_indptr, l_indices, l_data, scale_out, perm, work, out, 0, n, quad)


# --- the unpadded sweeps: the row just solved kept in a register ---
#
# On a mesh a row's sum mostly needs the row solved just before it: the last
# entry of a sorted row of L is then column i - 1, the first of a row of U
# column i + 1 (P1 triangles: 99.6 % of rows). Read back from memory, that value
# waits on the store of the row before (store-to-load forwarding, some cycles on
# top of the multiply-subtract on the row-to-row chain); taken from a register it
# does not. Same operations in the same order: same bits. P1 triangles, n = 261k,
# one thread: ILU(0)'s pair solve 2.15 -> 1.65 ms, IC(0)'s 1.97 -> 1.66 ms. Where the
# row before is never named (a grid in level order: convection-diffusion, n = 250k)
# the check costs 6 % on one thread; rows of two and three are unrolled.
#
# Padded rows (``quad``) keep the plain loops of the kernels above. There the row
# before is read by the last group of four (forward) or by the padding and first
# entry, all of the first group (backward), only in half the rows (P1 tetrahedra),
# and checking every entry of the group cost more than it saved: the pair solve
# 1.2-1.7 times slower on P1 tetrahedra, one thread. (In U's rows the row before
# comes first, so the whole row's sum is on the chain whatever is done with it.)

@nb.njit(**_ROW)
def _chained(work, j, chain, last, idle):
    """``work[j]``, taken from ``last`` (the value just stored at ``chain``) where ``j`` is
    ``chain``. Without a branch (rows with and without the row before may alternate): the
    load then reads ``work[idle]`` instead, where no store is pending, so the select waits
    on ``last`` only, not on the store to ``chain``."""
    hit = j == chain
    loaded = work[np.uint64(idle) if hit else np.uint64(j)]  # unsigned: no wraparound code
    return last if hit else loaded


@nb.njit(**_ROW)
def _forward_chained(indptr, indices, data, scale, perm, b, work, lo, hi):
    last = work.dtype.type(0)
    chain = -1  # no row: the first row here has no predecessor in a register
    for i in range(lo, hi):
        acc = scale[i] * b[perm[i]]
        start = indptr[i]
        stop = indptr[i + 1]
        if stop - start == 3:  # triangle meshes: three neighbours below the diagonal
            acc -= data[start] * work[indices[start]]
            acc -= data[start + 1] * work[indices[start + 1]]
            acc -= data[start + 2] * _chained(work, indices[start + 2], chain, last, i)
        elif stop - start == 2:  # grids: two neighbours below the diagonal
            acc -= data[start] * work[indices[start]]
            acc -= data[start + 1] * _chained(work, indices[start + 1], chain, last, i)
        elif start < stop:
            for jj in range(start, stop - 1):
                acc -= data[jj] * work[indices[jj]]
            acc -= data[stop - 1] * _chained(work, indices[stop - 1], chain, last, i)
        work[i] = acc
        last = acc
        chain = i


@nb.njit(**_ROW)
def _backward_chained(indptr, indices, data, scale, perm, work, out, lo, hi):
    last = work.dtype.type(0)
    chain = -1
    for k in range(hi - lo):
        i = hi - 1 - k
        acc = work[i]
        start = indptr[i]
        stop = indptr[i + 1]
        if stop - start == 3:
            acc -= data[start] * _chained(work, indices[start], chain, last, i)
            acc -= data[start + 1] * work[indices[start + 1]]
            acc -= data[start + 2] * work[indices[start + 2]]
        elif stop - start == 2:
            acc -= data[start] * _chained(work, indices[start], chain, last, i)
            acc -= data[start + 1] * work[indices[start + 1]]
        elif start < stop:
            acc -= data[start] * _chained(work, indices[start], chain, last, i)
            for jj in range(start + 1, stop):
                acc -= data[jj] * work[indices[jj]]
        work[i] = acc
        out[perm[i]] = scale[i] * acc
        last = acc
        chain = i


@nb.njit(**_ROW)
def _scatter(work, j, a, x, nxt, carry, carry_row):
    """``work[j] -= a x``; the new value and ``nxt`` in (``carry``, ``carry_row``) where
    ``j`` is ``nxt``, the row the column sweep takes next (without a branch)."""
    value = work[j] - a * x
    work[j] = value
    hit = j == nxt
    return (value if hit else carry), (nxt if hit else carry_row)


@nb.njit(**_ROW)
def _backward_columns_chained(indptr, indices, data, scale, perm, work, out, lo, hi):
    carry = work.dtype.type(0)
    carry_row = -1
    for k in range(hi - lo):
        i = hi - 1 - k
        hit = carry_row == i
        loaded = work[hi - 1 if hit else i]  # rows of this segment never write work[hi - 1]
        x = carry if hit else loaded
        out[perm[i]] = scale[i] * x
        start = indptr[i]
        stop = indptr[i + 1]
        if start < stop:
            for jj in range(start, stop - 1):
                work[indices[jj]] -= data[jj] * x
            carry, carry_row = _scatter(work, indices[stop - 1], data[stop - 1], x, i - 1, carry,
                                        carry_row)


@nb.njit(**_ROW)
def _forward_stages_chained(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr,
                            b, work):
    for stage in range(stage_ptr.shape[0] - 1):
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _forward_chained(l_indptr, l_indices, l_data, scale_in, perm, b, work,
                             segment_ptr[first], segment_ptr[first + 1])
        else:
            for t in prange(count):
                g = first + t
                _forward_chained(l_indptr, l_indices, l_data, scale_in, perm, b, work,
                                 segment_ptr[g], segment_ptr[g + 1])


@nb.njit(**_PAR)
def _pair_solve_rows_chained(l_indptr, l_indices, l_data, u_indptr, u_indices, u_data,
                             scale_in, scale_out, perm, segment_ptr, stage_ptr, b, work, out):
    _forward_stages_chained(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr,
                            b, work)
    stages = stage_ptr.shape[0] - 1
    for back in range(stages):
        stage = stages - 1 - back
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _backward_chained(u_indptr, u_indices, u_data, scale_out, perm, work, out,
                              segment_ptr[first], segment_ptr[first + 1])
        else:
            for t in prange(count):
                g = first + t
                _backward_chained(u_indptr, u_indices, u_data, scale_out, perm, work, out,
                                  segment_ptr[g], segment_ptr[g + 1])


@nb.njit(**_PAR)
def _pair_solve_columns_chained(l_indptr, l_indices, l_data, scale_in, scale_out, perm,
                                segment_ptr, stage_ptr, b, work, out):
    _forward_stages_chained(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr,
                            b, work)
    stages = stage_ptr.shape[0] - 1
    for back in range(stages):
        stage = stages - 1 - back
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _backward_columns_chained(l_indptr, l_indices, l_data, scale_out, perm, work, out,
                                      segment_ptr[first], segment_ptr[first + 1])
        else:
            for t in prange(count):
                g = first + t
                _backward_columns_chained(l_indptr, l_indices, l_data, scale_out, perm, work,
                                          out, segment_ptr[g], segment_ptr[g + 1])


@nb.njit(**_SEQ)
def _pair_solve_serial_rows_chained(l_indptr, l_indices, l_data, u_indptr, u_indices, u_data,
                                    scale_in, scale_out, perm, b, work, out):
    n = work.shape[0]
    _forward_chained(l_indptr, l_indices, l_data, scale_in, perm, b, work, 0, n)
    _backward_chained(u_indptr, u_indices, u_data, scale_out, perm, work, out, 0, n)


@nb.njit(**_SEQ)
def _pair_solve_serial_columns_chained(l_indptr, l_indices, l_data, scale_in, scale_out, perm, b,
                                       work, out):
    n = work.shape[0]
    _forward_chained(l_indptr, l_indices, l_data, scale_in, perm, b, work, 0, n)
    _backward_columns_chained(l_indptr, l_indices, l_data, scale_out, perm, work, out, 0, n)


def csr_triangular_pair_solve(lower_indptr, lower_indices, lower_data, upper_indptr,
                              upper_indices, upper_data, scale_in, scale_out, perm, segment_ptr,
                              stage_ptr, b, work, out, quad=False) -> None:
    """``out = P^T S_out (I + U)^{-1} (I + L)^{-1} S_in P b``, domains in parallel.

    ``L`` (``U``) is a CSR matrix holding only strictly lower (upper) entries
    of the permuted numbering; ``S_in = diag(scale_in)``, ``S_out =
    diag(scale_out)``; ``(P b)[i] = b[perm[i]]``. The gather of ``b`` is fused
    into the forward sweep, the scatter into ``out`` into the backward one;
    ``work`` (length ``n``, the permuted intermediate) is overwritten, and
    ``out`` must not be ``b``.

    ``upper_indptr``, ``upper_indices`` and ``upper_data`` all None mean
    ``U = L^T`` (IC(0), and SSOR of a symmetric matrix scaled symmetrically):
    the backward sweep then reads ``L`` by columns, so the factor is stored
    and read once, not twice. ``quad``: every row of ``L`` (and ``U``) has a
    multiple of four stored entries, zeros first
    (:func:`linsolve.precond._triangular.pad_rows`; not checked here: the
    caller pads); the sums are the same for finite values (a zero times
    an infinite value is NaN).

    Rows ``segment_ptr[g]:segment_ptr[g + 1]`` form segment ``g``; stage ``s``
    is segments ``stage_ptr[s]:stage_ptr[s + 1]``, laid out in row order. The
    caller guarantees that segments of one stage are not coupled and, for
    the column sweep (which writes into earlier stages' rows), that no row
    is coupled to two segments of one later stage (nested dissection,
    :func:`linsolve.precond._ordering.domain_ordering`, gives both; see
    :func:`linsolve.precond._ordering.check_independent`): the forward sweep
    solves the stages in order, each stage's segments in parallel, the
    backward sweep the stages in reverse. Every sum runs in CSR order (by
    rows; by decreasing row for the column sweep) in the data's dtype, so
    the result does not depend on the thread count.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> L = sp.csr_array(np.array([[0.0, 0.0], [0.5, 0.0]]))
    >>> U = sp.csr_array(L.T)
    >>> one, perm, stages = np.ones(2), np.arange(2), (np.array([0, 2]), np.array([0, 1]))
    >>> out, work = np.empty(2), np.empty(2)
    >>> csr_triangular_pair_solve(L.indptr, L.indices, L.data, U.indptr, U.indices, U.data,
    ...                           one, one, perm, *stages, np.array([1.0, 1.5]), work, out)
    >>> out.tolist()  # (I + U)^{-1} (I + L)^{-1} b: [1, 1], then [0.5, 1]
    [0.5, 1.0]
    >>> csr_triangular_pair_solve(L.indptr, L.indices, L.data, None, None, None,
    ...                           one, one, perm, *stages, np.array([1.0, 1.5]), work, out)
    >>> out.tolist()  # U = L^T, read from L
    [0.5, 1.0]
    """
    u = unsigned_view
    transposed = upper_indptr is None
    if transposed != (upper_indices is None) or transposed != (upper_data is None):
        raise ValueError("upper_indptr, upper_indices and upper_data: all arrays or all None")
    lower = (u(lower_indptr), u(lower_indices), lower_data)
    upper = () if transposed else (u(upper_indptr), u(upper_indices), upper_data)
    args = (*lower, *upper, scale_in, scale_out, u(perm))
    parallel = nb.get_num_threads() > 1 and stage_ptr.shape[0] > 2
    staged = (u(segment_ptr), u(stage_ptr)) if parallel else ()
    if quad:
        if parallel:
            solve = _pair_solve_columns if transposed else _pair_solve_rows
        else:
            solve = _pair_solve_serial_columns if transposed else _pair_solve_serial_rows
        solve(*args, *staged, b, work, out, True)
    else:
        # a kernel of its own: compiled beside the padded sweeps, the row-to-row
        # register made those 7-10 % slower (P1 tetrahedra, one thread)
        if parallel:
            solve = _pair_solve_columns_chained if transposed else _pair_solve_rows_chained
        else:
            solve = _pair_solve_serial_columns_chained if transposed \
                else _pair_solve_serial_rows_chained
        solve(*args, *staged, b, work, out)


# --- the same pair solve on an (n, k) block: batched pcg's k residuals at once ---
#
# Row i's work on all k columns is done before row i + 1's, so the factor is
# streamed once per application, not k times. Column c sees exactly the
# operations of the vector kernel on column c, in the same order and dtype
# (every stored entry, padding included; no fused multiply-add, since there
# is no fastmath): each column of the result is bit-identical to the vector
# kernel's. ``quad`` is not needed here: the loop over the k columns, not the
# row's length, is the inner trip count.

@nb.njit(**_ROW)
def _forward_rows_block(indptr, indices, data, scale, perm, B, work, lo, hi):
    k = work.shape[1]
    for i in range(lo, hi):
        s = scale[i]
        source = perm[i]
        for c in range(k):
            work[i, c] = s * B[source, c]
        for jj in range(indptr[i], indptr[i + 1]):
            a = data[jj]
            j = indices[jj]
            for c in range(k):
                work[i, c] -= a * work[j, c]


@nb.njit(**_ROW)
def _backward_rows_block(indptr, indices, data, scale, perm, work, out, lo, hi):
    k = work.shape[1]
    for t in range(hi - lo):
        i = hi - 1 - t
        for jj in range(indptr[i], indptr[i + 1]):
            a = data[jj]
            j = indices[jj]
            for c in range(k):
                work[i, c] -= a * work[j, c]
        s = scale[i]
        target = perm[i]
        for c in range(k):
            out[target, c] = s * work[i, c]


@nb.njit(**_ROW)
def _backward_columns_block(indptr, indices, data, scale, perm, work, out, lo, hi):
    k = work.shape[1]
    for t in range(hi - lo):
        i = hi - 1 - t
        s = scale[i]
        target = perm[i]
        for c in range(k):
            out[target, c] = s * work[i, c]
        for jj in range(indptr[i], indptr[i + 1]):
            a = data[jj]
            j = indices[jj]
            for c in range(k):
                work[j, c] -= a * work[i, c]


@nb.njit(**_ROW)
def _forward_stages_block(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr,
                          B, work):
    for stage in range(stage_ptr.shape[0] - 1):
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _forward_rows_block(l_indptr, l_indices, l_data, scale_in, perm, B, work,
                                segment_ptr[first], segment_ptr[first + 1])
        else:
            for t in prange(count):
                g = first + t
                _forward_rows_block(l_indptr, l_indices, l_data, scale_in, perm, B, work,
                                    segment_ptr[g], segment_ptr[g + 1])


@nb.njit(**_PAR)
def _pair_solve_rows_block(l_indptr, l_indices, l_data, u_indptr, u_indices, u_data, scale_in,
                           scale_out, perm, segment_ptr, stage_ptr, B, work, out):
    _forward_stages_block(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr,
                          B, work)
    stages = stage_ptr.shape[0] - 1
    for back in range(stages):
        stage = stages - 1 - back
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _backward_rows_block(u_indptr, u_indices, u_data, scale_out, perm, work, out,
                                 segment_ptr[first], segment_ptr[first + 1])
        else:
            for t in prange(count):
                g = first + t
                _backward_rows_block(u_indptr, u_indices, u_data, scale_out, perm, work, out,
                                     segment_ptr[g], segment_ptr[g + 1])


@nb.njit(**_PAR)
def _pair_solve_columns_block(l_indptr, l_indices, l_data, scale_in, scale_out, perm,
                              segment_ptr, stage_ptr, B, work, out):
    _forward_stages_block(l_indptr, l_indices, l_data, scale_in, perm, segment_ptr, stage_ptr,
                          B, work)
    stages = stage_ptr.shape[0] - 1
    for back in range(stages):
        stage = stages - 1 - back
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            _backward_columns_block(l_indptr, l_indices, l_data, scale_out, perm, work, out,
                                    segment_ptr[first], segment_ptr[first + 1])
        else:
            for t in prange(count):
                g = first + t
                _backward_columns_block(l_indptr, l_indices, l_data, scale_out, perm, work,
                                        out, segment_ptr[g], segment_ptr[g + 1])


@nb.njit(**_SEQ)
def _pair_solve_serial_rows_block(l_indptr, l_indices, l_data, u_indptr, u_indices, u_data,
                                  scale_in, scale_out, perm, B, work, out):
    n = work.shape[0]
    _forward_rows_block(l_indptr, l_indices, l_data, scale_in, perm, B, work, 0, n)
    _backward_rows_block(u_indptr, u_indices, u_data, scale_out, perm, work, out, 0, n)


@nb.njit(**_SEQ)
def _pair_solve_serial_columns_block(l_indptr, l_indices, l_data, scale_in, scale_out, perm, B,
                                     work, out):
    n = work.shape[0]
    _forward_rows_block(l_indptr, l_indices, l_data, scale_in, perm, B, work, 0, n)
    _backward_columns_block(l_indptr, l_indices, l_data, scale_out, perm, work, out, 0, n)


def csr_triangular_pair_solve_block(lower_indptr, lower_indices, lower_data, upper_indptr,
                                    upper_indices, upper_data, scale_in, scale_out, perm,
                                    segment_ptr, stage_ptr, B, work, out, quad=False) -> None:
    """:func:`csr_triangular_pair_solve` on each column of an ``(n, k)`` block, in one pass.

    ``B``, ``work`` and ``out`` are C-contiguous ``(n, k)`` arrays of the
    data's dtype (``out`` not ``B``; ``work`` overwritten). Each row of the
    factor is read once and applied to all ``k`` columns, and column ``c``
    of ``out`` is bit for bit what the vector kernel gives for ``B[:, c]``,
    for any thread count. ``quad`` is accepted for the shared signature
    (padded rows are summed like any other).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> L = sp.csr_array(np.array([[0.0, 0.0], [0.5, 0.0]]))
    >>> one, perm, stages = np.ones(2), np.arange(2), (np.array([0, 2]), np.array([0, 1]))
    >>> B = np.array([[1.0, 2.0], [1.5, 3.0]])
    >>> out, work = np.empty_like(B), np.empty_like(B)
    >>> csr_triangular_pair_solve_block(L.indptr, L.indices, L.data, None, None, None,
    ...                                 one, one, perm, *stages, B, work, out)
    >>> out.tolist()  # (I + L^T)^{-1} (I + L)^{-1} on each column
    [[0.5, 1.0], [1.0, 2.0]]
    """
    del quad
    u = unsigned_view
    transposed = upper_indptr is None
    if transposed != (upper_indices is None) or transposed != (upper_data is None):
        raise ValueError("upper_indptr, upper_indices and upper_data: all arrays or all None")
    n = scale_in.shape[0]
    for name, block in (("B", B), ("work", work), ("out", out)):
        if block.ndim != 2 or block.shape[0] != n or block.shape != B.shape \
                or not block.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous ({n}, k) block like B, got shape "
                             f"{block.shape}: pass numpy.ascontiguousarray of it")
    lower = (u(lower_indptr), u(lower_indices), lower_data)
    upper = () if transposed else (u(upper_indptr), u(upper_indices), upper_data)
    args = (*lower, *upper, scale_in, scale_out, u(perm))
    if nb.get_num_threads() > 1 and stage_ptr.shape[0] > 2:
        solve = _pair_solve_columns_block if transposed else _pair_solve_rows_block
        solve(*args, u(segment_ptr), u(stage_ptr), B, work, out)
    else:
        solve = _pair_solve_serial_columns_block if transposed else _pair_solve_serial_rows_block
        solve(*args, B, work, out)


@nb.njit(**_ROW)
def _ichol0_rows(indptr, indices, data, row_values, lo, hi):
    """IC(0) of rows lo..hi-1 (the rows they reference done); -1 or the first failed row."""
    for i in range(lo, hi):
        start = indptr[i]
        diag_pos = indptr[i + 1] - 1
        if diag_pos < start or indices[diag_pos] != i:
            return i  # no stored diagonal: zero pivot
        # Row-oriented (Crout by rows) IC(0): for each stored (i, k), k < i,
        # L[i, k] = (A[i, k] - sum_{j < k} L[i, j] L[k, j]) / L[k, k], the
        # sum over the columns both rows store, in increasing j; fill outside
        # the pattern of tril(A) is never created, which is the "0" of IC(0).
        # row_values holds row i's finished entries by column (zero elsewhere):
        # the sums gather from it instead of merging two sorted rows, whose
        # branches the predictor misses about once an entry. Row k's other
        # columns meet a zero there: subtracting L[k, j] * 0 leaves every sum
        # as the merge over common columns made it (L[k, j] is finite: row k
        # passed its pivot test).
        for kk in range(start, diag_pos):
            k = indices[kk]
            acc = data[kk]
            k_diag = indptr[k + 1] - 1
            for q in range(indptr[k], k_diag):
                acc -= data[q] * row_values[indices[q]]
            value = acc / data[k_diag]
            data[kk] = value
            row_values[k] = value
        pivot = data[diag_pos]
        for p in range(start, diag_pos):
            pivot -= data[p] * data[p]
            row_values[indices[p]] = 0.0
        if not (pivot > 0.0 and math.isfinite(pivot)):
            return i
        data[diag_pos] = math.sqrt(pivot)
    return -1


@nb.njit(**_SEQ)
def _ichol0(indptr, indices, data):
    row_values = np.zeros(indptr.shape[0] - 1, dtype=data.dtype)
    return _ichol0_rows(indptr, indices, data, row_values, 0, indptr.shape[0] - 1)


# The domains of one stage in parallel: a row of a domain references only rows
# of its own segment and of earlier stages, and two segments of one stage share
# no column (no row is coupled to two segments of one later stage), so the
# shared row_values is written at disjoint places. Every row's arithmetic is
# the sequential kernel's: the factor does not depend on the thread count.
@nb.njit(**_PAR)
def _ichol0_staged(indptr, indices, data, segment_ptr, stage_ptr):
    row_values = np.zeros(indptr.shape[0] - 1, dtype=data.dtype)
    failed = np.full(segment_ptr.shape[0] - 1, -1, dtype=np.int64)
    for stage in range(stage_ptr.shape[0] - 1):
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        for t in prange(count):
            g = first + t
            failed[g] = _ichol0_rows(indptr, indices, data, row_values, segment_ptr[g],
                                     segment_ptr[g + 1])
        # the first failed row in the numbering: the sequential kernel's answer
        for t in range(count):
            if failed[first + t] >= 0:
                return failed[first + t]
    return -1


def csr_ichol0(indptr, indices, data) -> int:
    """Zero-fill incomplete Cholesky of a lower-triangular CSR matrix, in place.

    On entry ``(indptr, indices, data)`` is ``tril(A)`` with sorted column
    indices and the diagonal stored last in every row; on exit ``data``
    holds ``L`` (same pattern) with ``L L^T = A`` on that pattern. Returns
    ``-1``, or the first row whose pivot is missing, ``<= 0`` or not finite
    (``data`` is then partly overwritten).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> T = sp.csr_array(np.array([[4.0, 0.0], [2.0, 5.0]]))
    >>> data = T.data.copy()
    >>> csr_ichol0(T.indptr, T.indices, data), data.tolist()
    (-1, [2.0, 1.0, 2.0])
    """
    # Signed indices here: the loops mix positions from ``range`` with
    # ``indptr`` values, and one factorisation is not worth the unsigned trick.
    return int(_ichol0(indptr, indices, data))


def csr_ichol0_domains(indptr, indices, data, segment_ptr, stage_ptr) -> int:
    """:func:`csr_ichol0` with the segments of one stage of a domain ordering in parallel.

    ``segment_ptr`` and ``stage_ptr`` as for :func:`csr_triangular_pair_solve`
    (nested dissection guarantees what the parallel rows need). The factor
    and the failed row returned are the sequential kernel's, for any thread count.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> T = sp.csr_array(np.array([[4.0, 0.0], [2.0, 5.0]]))
    >>> data = T.data.copy()
    >>> csr_ichol0_domains(T.indptr, T.indices, data, np.array([0, 2]), np.array([0, 1]))
    -1
    >>> data.tolist()
    [2.0, 1.0, 2.0]
    """
    if stage_ptr.shape[0] > 2 and nb.get_num_threads() > 1:
        return int(_ichol0_staged(indptr, indices, data, segment_ptr, stage_ptr))
    return int(_ichol0(indptr, indices, data))


# --- the pattern-only (symbolic) layout of IC(0) and SSOR, built once per pattern ---

@nb.njit(**_SEQ)
def _csr_permuted_lower(indptr, indices, perm, inverse, lower_indptr, lower_indices,
                        lower_source, lower_mirror):
    n = perm.shape[0]
    lower_indptr[0] = 0
    at = 0
    for i in range(n):
        row = perm[i]
        start = at
        for p in range(indptr[row], indptr[row + 1]):
            j = inverse[indices[p]]
            if j <= i:
                # insertion into the (short) sorted row being built
                q = at
                while q > start and lower_indices[q - 1] > j:
                    lower_indices[q] = lower_indices[q - 1]
                    lower_source[q] = lower_source[q - 1]
                    q -= 1
                lower_indices[q] = j
                lower_source[q] = p
                at += 1
        lower_indptr[i + 1] = at
        # the transpose of each strict entry (i, j): column perm[i] in A's row perm[j],
        # found in B's order, where the rows searched are the ones just read
        for q in range(start, at):
            j = lower_indices[q]
            if j == i:
                lower_mirror[q] = -1
                continue
            other = perm[j]
            lo = indptr[other]
            hi = indptr[other + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if indices[mid] < row:
                    lo = mid + 1
                else:
                    hi = mid
            lower_mirror[q] = lo if lo < indptr[other + 1] and indices[lo] == row else -1


def csr_permuted_lower(indptr, indices, perm, inverse, lower_indptr, lower_indices,
                       lower_source, lower_mirror) -> None:
    """The pattern of ``tril(A[perm][:, perm])``, where each entry and its transpose sit in ``A``.

    ``A`` is canonical CSR (sorted rows, no duplicates); ``inverse[perm[i]] = i``.
    Writes ``lower_indptr`` (length ``n + 1``) and the first ``lower_indptr[n]``
    entries of ``lower_indices`` (sorted in each row; the diagonal, where
    stored, last), ``lower_source`` (the position in ``A``'s ``indices`` and
    ``data`` of each entry) and ``lower_mirror`` (the position of its
    transpose, -1 where not stored and on the diagonal); each must hold
    ``A``'s ``nnz`` entries. One pass over ``A``: the lower pattern's values
    are then ``data[lower_source]`` for any ``data`` on this pattern.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[4.0, 1.0, 0.0], [1.0, 4.0, 2.0], [0.0, 2.0, 4.0]]))
    >>> perm = np.array([2, 0, 1]); inverse = np.argsort(perm)
    >>> ptr, ind, src, mir = (np.empty(k, np.int64) for k in (4, 7, 7, 7))
    >>> csr_permuted_lower(A.indptr, A.indices, perm, inverse, ptr, ind, src, mir)
    >>> ptr.tolist(), ind[:5].tolist(), A.data[src[:5]].tolist(), mir[:5].tolist()
    ([0, 1, 2, 5], [0, 1, 0, 1, 2], [4.0, 4.0, 2.0, 1.0, 4.0], [-1, -1, 5, 1, -1])
    """
    _csr_permuted_lower(indptr, indices, perm, inverse, lower_indptr, lower_indices,
                        lower_source, lower_mirror)


@nb.njit(**_SEQ)
def _csr_strict_padded(lower_indptr, lower_indices, strict_indptr, strict_indices,
                       strict_from_lower, strict_rows):
    n = lower_indptr.shape[0] - 1
    for i in range(n):
        start = lower_indptr[i]
        end = lower_indptr[i + 1]
        if end > start and lower_indices[end - 1] == i:
            end -= 1
        at = strict_indptr[i]
        lead = strict_indptr[i + 1] - at - (end - start)
        for k in range(lead):
            strict_indices[at + k] = lower_indices[start]
            strict_from_lower[at + k] = -1
            strict_rows[at + k] = i
        at += lead
        for q in range(start, end):
            strict_indices[at] = lower_indices[q]
            strict_from_lower[at] = q
            strict_rows[at] = i
            at += 1


def csr_strict_padded(lower_indptr, lower_indices, strict_indptr, strict_indices,
                      strict_from_lower, strict_rows) -> None:
    """The strictly lower part of sorted lower-triangular CSR, rows padded at their start.

    ``strict_indptr`` is given (each row's strict length, rounded up as the
    caller pads); the padding repeats the row's first stored column and has
    ``strict_from_lower = -1``. Writes ``strict_indices``, ``strict_from_lower``
    (the position in the lower arrays) and ``strict_rows`` (each entry's row).

    Examples
    --------
    >>> import numpy as np
    >>> out = [np.empty(4, np.int64) for _ in range(3)]
    >>> csr_strict_padded(np.array([0, 1, 3]), np.array([0, 0, 1]), np.array([0, 0, 4]), *out)
    >>> [a.tolist() for a in out]
    [[0, 0, 0, 0], [-1, -1, -1, 1], [1, 1, 1, 1]]
    """
    _csr_strict_padded(lower_indptr, lower_indices, strict_indptr, strict_indices,
                       strict_from_lower, strict_rows)


@nb.njit(**_PAR)
def _csr_scaled_gather(indptr, indices, source, values, left, right, out):
    # rows in parallel: the gather from A's rows in another order waits on memory
    n = indptr.shape[0] - 1
    for i in prange(n):
        scale = left[i]
        for p in range(indptr[i], indptr[i + 1]):
            s = source[p]
            if s < 0:
                out[p] = 0.0
            else:
                out[p] = (scale * values[s]) * right[indices[p]]


def csr_scaled_gather(indptr, indices, source, values, left, right, out) -> None:
    """``out[p] = (left[i] * values[source[p]]) * right[indices[p]]`` over the rows ``i``;
    0 where ``source[p] < 0`` (padding).

    The products in this order, in the arrays' dtype: the values scaled
    three sparse factors ``diag(left) @ V @ diag(right)`` gave (``right``
    of ones leaves ``left[i] * values`` exact).

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty(2)
    >>> csr_scaled_gather(np.array([0, 0, 2]), np.array([0, 0]), np.array([-1, 0]),
    ...                   np.array([3.0]), np.array([1.0, 2.0]), np.array([5.0, 1.0]), out)
    >>> out.tolist()
    [0.0, 30.0]
    """
    _csr_scaled_gather(indptr, indices, source, values, left, right, out)


@nb.njit(**_PAR)
def _csr_symmetric_scaled_gather(indptr, indices, source, mirror, orphans, values, left,
                                 right, out):
    n = indptr.shape[0] - 1
    asymmetric = 0
    for i in prange(n):
        scale = left[i]
        for p in range(indptr[i], indptr[i + 1]):
            s = source[p]
            if s < 0:
                out[p] = 0.0
                continue
            value = values[s]
            m = mirror[p]
            if m >= 0:
                if value != values[m]:  # NaN too: not symmetric
                    asymmetric += 1
            elif value != 0.0:
                asymmetric += 1
            out[p] = (scale * value) * right[indices[p]]
    for p in orphans:
        if values[p] != 0.0:
            asymmetric += 1
    return asymmetric == 0


def csr_symmetric_scaled_gather(indptr, indices, source, mirror, orphans, values, left, right,
                                out) -> bool:
    """:func:`csr_scaled_gather`, and whether the values are symmetric, in the same pass.

    Symmetric: ``values[source[p]] == values[mirror[p]]`` (0 where
    ``mirror[p] < 0``) for every ``p`` with ``source[p] >= 0``, and
    ``values[orphans]`` all zero (the entries with no transpose among the
    sourced ones).

    Examples
    --------
    >>> import numpy as np
    >>> values, out = np.array([1.0, 2.0, 2.0, 0.0]), np.empty(2)
    >>> csr_symmetric_scaled_gather(np.array([0, 0, 2]), np.array([0, 0]), np.array([-1, 1]),
    ...                             np.array([-1, 2]), np.array([3]), values,
    ...                             np.ones(2), np.ones(2), out), out.tolist()
    (True, [0.0, 2.0])
    """
    return bool(_csr_symmetric_scaled_gather(indptr, indices, source, mirror, orphans, values,
                                             left, right, out))


@nb.njit(**_SEQ)
def _csr_mirror(indptr, indices, mirror):
    n = indptr.shape[0] - 1
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            # binary search for column i in the sorted row j
            lo = indptr[j]
            hi = indptr[j + 1]
            while lo < hi:
                mid = (lo + hi) // 2
                if indices[mid] < i:
                    lo = mid + 1
                else:
                    hi = mid
            mirror[p] = lo if lo < indptr[j + 1] and indices[lo] == i else -1


def csr_mirror(indptr, indices, mirror) -> None:
    """``mirror[p]``: the position of ``A[j, i]`` for the entry ``p = (i, j)``, or -1.

    ``A`` is canonical CSR (sorted rows, no duplicates); ``mirror`` is a signed
    integer array of length ``nnz``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[1.0, 2.0], [0.0, 3.0]]))
    >>> mirror = np.empty(3, np.int64)
    >>> csr_mirror(A.indptr, A.indices, mirror)
    >>> mirror.tolist()
    [0, -1, 2]
    """
    _csr_mirror(indptr, indices, mirror)


# --- the numeric set-up of SSOR and IC(0) on a pattern built once, one pass each ---

@nb.njit(**_PAR)
def _ssor_symmetric_numeric(strict_indptr, strict_first, strict_indices, strict_source, mirror,
                            orphans, diagonal_source, inverse, data, omega, scale, lower):
    n = scale.shape[0]
    bad = 0
    # in A's order: the diagonal entries are read in increasing position (a stream,
    # not a random read per row), and scale (in L2) is written out of order
    for r in prange(n):
        s = diagonal_source[r]
        d = np.float64(data[s]) if s >= 0 else 0.0
        if d > 0.0 and math.isfinite(d):
            scale[inverse[r]] = 1.0 / math.sqrt(d)  # rounded once to scale's dtype
        else:
            bad += 1
    if bad:
        return 1
    # Each row of B is a row of A elsewhere in memory: the reads wait on memory, and a
    # mispredicted branch throws away the loads issued for the rows after it. So the
    # padding is written by its own loop (strict_first: where a row's stored entries
    # start) and the symmetry test counts without branching.
    asymmetric = 0
    for i in prange(n):
        left = omega * scale[i]  # omega arrives in the data's dtype
        first = strict_first[i]
        for p in range(strict_indptr[i], first):
            lower[p] = 0.0
        for p in range(first, strict_indptr[i + 1]):
            value = data[strict_source[p]]
            m = mirror[p]
            other = data[m] if m >= 0 else 0.0
            asymmetric += value != other  # NaN too: not symmetric
            lower[p] = (left * value) * scale[strict_indices[p]]
    for p in orphans:
        if data[p] != 0.0:
            asymmetric += 1
    return 2 if asymmetric else 0


def ssor_symmetric_numeric(strict_indptr, strict_first, strict_indices, strict_source, mirror,
                           orphans, diagonal_source, inverse, data, omega, scale, lower) -> int:
    """SSOR's symmetric split of ``B = A[perm][:, perm]`` from ``A``'s values, one pass.

    ``scale[inverse[r]] = 1 / sqrt(A_rr)``, ``A_rr = data[diagonal_source[r]]``
    (-1 for not stored: 0; ``inverse`` the permutation's inverse, so
    ``scale`` is in the permuted numbering), the root in float64 rounded
    once to the data's dtype; and on the padded strictly lower layout of a
    :class:`~linsolve.precond._pattern.TriangularPattern` ``lower[p] =
    ((omega scale[i]) B_ij) scale[j]``, ``B_ij = data[strict_source[p]]``,
    the products in the order the three sparse factors
    ``diag(omega s) @ L @ diag(s)`` took (``omega`` a scalar of the data's
    dtype); each row's padding, ``strict_indptr[i]:strict_first[i]``, is 0.
    Returns 0; 1 where a diagonal entry is not positive and finite
    (``lower`` unset); 2 where ``B`` is not symmetric: an entry differs from
    its transpose ``data[mirror[p]]`` (0 where ``mirror[p] < 0``) or
    ``data[orphans]`` is not all zero.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.array([4.0, 2.0, 2.0, 1.0])          # [[4, 2], [2, 1]]
    >>> scale, lower = np.empty(2), np.empty(1)
    >>> ssor_symmetric_numeric(np.array([0, 0, 1]), np.array([0, 0]), np.array([0]),
    ...                        np.array([2]), np.array([1]), np.array([], dtype=np.int64),
    ...                        np.array([0, 3]), np.array([0, 1]), data, 1.0, scale, lower)
    0
    >>> scale.tolist(), lower.tolist()
    ([0.5, 1.0], [1.0])
    """
    return int(_ssor_symmetric_numeric(strict_indptr, strict_first, strict_indices,
                                       strict_source, mirror, orphans, diagonal_source, inverse,
                                       data, omega, scale, lower))


@nb.njit(**_PAR)
def _ssor_symmetric_equal(strict_indptr, strict_first, strict_indices, strict_source, mirror,
                          orphans, diagonal_source, inverse, data, omega, scale, lower):
    # _ssor_symmetric_numeric's arithmetic, each result compared where that one stores it
    n = scale.shape[0]
    differ = 0
    for r in prange(n):
        s = diagonal_source[r]
        d = np.float64(data[s]) if s >= 0 else 0.0
        if d > 0.0 and math.isfinite(d):
            root = scale.dtype.type(1.0 / math.sqrt(d))
            differ += root != scale[inverse[r]]
        else:
            differ += 1
    if differ:
        return False
    for i in prange(n):
        left = omega * scale[i]
        first = strict_first[i]
        for p in range(strict_indptr[i], first):
            differ += lower[p] != 0.0
        for p in range(first, strict_indptr[i + 1]):
            value = data[strict_source[p]]
            m = mirror[p]
            other = data[m] if m >= 0 else 0.0
            differ += value != other
            differ += (left * value) * scale[strict_indices[p]] != lower[p]
    for p in orphans:
        if data[p] != 0.0:
            differ += 1
    return differ == 0


def ssor_symmetric_equal(strict_indptr, strict_first, strict_indices, strict_source, mirror,
                         orphans, diagonal_source, inverse, data, omega, scale, lower) -> bool:
    """Whether :func:`ssor_symmetric_numeric` of ``data`` would return 0 and write exactly
    ``scale`` and ``lower``: the same pass, comparing instead of writing.

    Examples
    --------
    >>> import numpy as np
    >>> layout = (np.array([0, 0, 1]), np.array([0, 0]), np.array([0]), np.array([2]),
    ...           np.array([1]), np.array([], dtype=np.int64), np.array([0, 3]), np.array([0, 1]))
    >>> data = np.array([4.0, 2.0, 2.0, 1.0])
    >>> ssor_symmetric_equal(*layout, data, 1.0, np.array([0.5, 1.0]), np.array([1.0]))
    True
    >>> ssor_symmetric_equal(*layout, 2 * data, 1.0, np.array([0.5, 1.0]), np.array([1.0]))
    False
    """
    return bool(_ssor_symmetric_equal(strict_indptr, strict_first, strict_indices,
                                      strict_source, mirror, orphans, diagonal_source, inverse,
                                      data, omega, scale, lower))


@nb.njit(**_ROW)
def _ichol0_numeric_rows(indptr, indices, shift, values, row_values,
                         strict_indptr, inverse_diagonal, strict, lo, hi):
    """Rows lo..hi-1 of the gathered ``tril(B)``: factor row ``i`` as :func:`_ichol0_rows`
    does, then write its unit-scaled strict row; -1 or the failed row."""
    zero = values.dtype.type(0)
    one = values.dtype.type(1)
    for i in range(lo, hi):
        start = indptr[i]
        diag_pos = indptr[i + 1] - 1
        if diag_pos < start or indices[diag_pos] != i:
            return i  # no stored diagonal: zero pivot
        if shift != zero:
            values[diag_pos] += shift * values[diag_pos]
        # _ichol0_rows's arithmetic, in its order (see there)
        for kk in range(start, diag_pos):
            k = indices[kk]
            acc = values[kk]
            k_diag = indptr[k + 1] - 1
            for q in range(indptr[k], k_diag):
                acc -= values[q] * row_values[indices[q]]
            value = acc / values[k_diag]
            values[kk] = value
            row_values[k] = value
        pivot = values[diag_pos]
        for p in range(start, diag_pos):
            pivot -= values[p] * values[p]
            row_values[indices[p]] = 0.0
        if not (pivot > 0.0 and math.isfinite(pivot)):
            return i
        root = math.sqrt(pivot)
        values[diag_pos] = root
        # the strict row scaled to a unit diagonal, padding (zeros) first
        inverse = one / values[diag_pos]
        inverse_diagonal[i] = inverse
        at = strict_indptr[i]
        lead = strict_indptr[i + 1] - at - (diag_pos - start)
        for t in range(lead):
            strict[at + t] = zero
        at += lead
        for p in range(start, diag_pos):
            strict[at + p - start] = inverse * values[p]
    return -1


@nb.njit(**_ROW)
def _gather(source, data, values):
    # a pass of its own, not row by row inside the factorisation: there each row's
    # first read of A (a row elsewhere in memory) sat on the sums' critical path, and
    # the factorisation took 15-20 % longer (P1 tetrahedra, one and two threads)
    for p in prange(values.shape[0]):
        values[p] = data[source[p]]


@nb.njit(**_PAR)
def _ichol0_numeric(indptr, indices, source, data, shift, segment_ptr, stage_ptr, values,
                    strict_indptr, inverse_diagonal, strict):
    # as _ichol0_staged: the segments of one stage in parallel, each row's arithmetic
    # the sequential kernel's; one segment per stage runs without a parallel region
    _gather(source, data, values)
    row_values = np.zeros(indptr.shape[0] - 1, dtype=values.dtype)
    failed = np.full(segment_ptr.shape[0] - 1, -1, dtype=np.int64)
    for stage in range(stage_ptr.shape[0] - 1):
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        if count == 1:
            failed[first] = _ichol0_numeric_rows(indptr, indices, shift, values,
                                                 row_values, strict_indptr, inverse_diagonal,
                                                 strict, segment_ptr[first],
                                                 segment_ptr[first + 1])
        else:
            for t in prange(count):
                g = first + t
                failed[g] = _ichol0_numeric_rows(indptr, indices, shift, values,
                                                 row_values, strict_indptr, inverse_diagonal,
                                                 strict, segment_ptr[g], segment_ptr[g + 1])
        for t in range(count):
            if failed[first + t] >= 0:
                return failed[first + t]
    return -1


@nb.njit(**_SEQ)
def _ichol0_numeric_serial(indptr, indices, source, data, shift, values, strict_indptr,
                           inverse_diagonal, strict):
    _gather(source, data, values)
    row_values = np.zeros(indptr.shape[0] - 1, dtype=values.dtype)
    return _ichol0_numeric_rows(indptr, indices, shift, values, row_values,
                                strict_indptr, inverse_diagonal, strict, 0,
                                indptr.shape[0] - 1)


def csr_ichol0_numeric(indptr, indices, source, data, shift, segment_ptr, stage_ptr, values,
                       strict_indptr, inverse_diagonal, strict) -> int:
    """IC(0) of ``tril(B)`` gathered from ``A``'s ``data``, and its unit-scaled strict part.

    ``(indptr, indices)`` is ``tril(B)``'s pattern (sorted rows, the diagonal
    last), ``source`` the position in ``data`` of each entry. A gather,
    ``values[p] = data[source[p]]``; then row by row the diagonal times ``1
    + shift`` (``shift`` a scalar of the data's dtype, where nonzero), the
    factorisation of :func:`csr_ichol0_domains` (the same arithmetic, so the
    same ``L`` bit for bit), ``inverse_diagonal[i] = 1 / L_ii`` and row ``i``
    of ``strict`` on the padded layout ``strict_indptr`` (the row's strictly
    lower entries times ``1 / L_ii``, after leading zeros that make up its
    length), while the row is in cache. Segments and stages as for
    :func:`csr_ichol0_domains`. Returns ``-1`` or the first failed row.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.array([4.0, 2.0, 2.0, 5.0])          # [[4, 2], [2, 5]]
    >>> values, inverse, strict = np.empty(3), np.empty(2), np.empty(1)
    >>> csr_ichol0_numeric(np.array([0, 1, 3]), np.array([0, 0, 1]), np.array([0, 2, 3]),
    ...                    data, 0.0, np.array([0, 2]), np.array([0, 1]), values,
    ...                    np.array([0, 0, 1]), inverse, strict)
    -1
    >>> values.tolist(), inverse.tolist(), strict.tolist()
    ([2.0, 1.0, 2.0], [0.5, 0.5], [0.5])
    """
    if stage_ptr.shape[0] > 2 and nb.get_num_threads() > 1:
        return int(_ichol0_numeric(indptr, indices, source, data, shift, segment_ptr,
                                   stage_ptr, values, strict_indptr, inverse_diagonal, strict))
    return int(_ichol0_numeric_serial(indptr, indices, source, data, shift, values,
                                      strict_indptr, inverse_diagonal, strict))
