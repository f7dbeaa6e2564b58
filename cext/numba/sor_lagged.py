"""SOR over a CSR matrix stored in sweep order, each sweep measuring a residual (Numba).

What :func:`linsolve.sor` runs: ``sor_run_lagged`` and its pieces
(``sor_lagged_sweep``, ``sor_reverse_sweep``,
``sor_residual_norm2_ordered``). The whole system is in sweep order
(coloured orderings permuted colour by colour), and one read of A per
sweep also yields the residual of the previous iterate (see the notes
above ``_lagged_rows`` and ``_colored_rows``), or, between the sweeps that
measure it (``check_every``), a bare sweep: in place for the coloured
orderings and the natural one alike (``_sweep_any``). As in
:mod:`cext.numba.sor`, the CSR arrays hold only the off-diagonal entries of
A and ``diag`` its diagonal -- or, with ``skip=1`` (the natural ordering of
a plain :func:`linsolve.sor` call), they are the matrix's own, the diagonal
entry of row ``i`` stored at ``mid[i]`` and skipped by the sums, so that
the call makes no split copy of A.

Mirrored by :mod:`cext.reference.sor_lagged`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .spmv import unsigned_view

_PAR = dict(nogil=True, cache=True, boundscheck=False, parallel=True)


# --- Sweeps that also measure the residual they leave behind -------------------
#
# sor() reports ||b - A x_k|| after every sweep (every check_every-th with
# that option, the sweeps between running bare). A separate residual pass
# reads A again (about half a sweep's time on two threads). These kernels
# read it once: a sweep from x_k into a second buffer, x_{k+1}[i] =
# (1 - w) x_k[i] + w (b_i - sum_{j<i} a_ij x_{k+1}[j] - sum_{j>i} a_ij x_k[j]) / a_ii,
# reads x_k[j] for j > i anyway, and the lower entries' x_k[j] beside their
# x_{k+1}[j] give b_i - (A x_k)_i in the same pass. So sweep k + 1 returns
# the exact residual of x_k (not a recursion), the iteration count stays
# exact, and the sweep past convergence is thrown away.
#
# The system is stored in sweep order: natural, or permuted so that each
# colour's unknowns are contiguous (then "j < i" means "an earlier colour",
# since a colour has no couplings within itself, and the rows of one colour
# are independent: parallel). ``mid[i]`` is the first stored entry of row i
# with column > i (columns sorted), so the loops test no column.

@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _lagged_rows(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, skip, lo, hi):
    # A sequential sweep is bound by the chain x_new[i-1] -> row i -> x_new[i]
    # (each row's lower part ends at its left neighbour), not by bandwidth:
    # everything that does not need the new values (the upper part, the
    # division, the old-value sums) is done first, off the chain, which
    # then holds one fused multiply-add per lower entry and one more to
    # finish the row.
    # (the sums two entries a step, in order, as _natural_inplace_rows)
    total = 0.0
    start = indptr[lo]
    for i in range(lo, hi):
        end = indptr[i + 1]
        mi = mid[i]
        upper = keep - keep  # zero in the data's dtype (keep = 1 - w is finite)
        jj = mi + skip
        while jj + np.uint64(1) < end:
            upper += data[jj] * x_old[indices[jj]]
            upper += data[jj + np.uint64(1)] * x_old[indices[jj + np.uint64(1)]]
            jj += np.uint64(2)
        if jj < end:
            upper += data[jj] * x_old[indices[jj]]
        xi = x_old[i]
        weight = omega / diag[i]
        partial = keep * xi + weight * (b[i] - upper)
        lower_old = keep - keep
        lower_new = keep - keep
        jj = start
        while jj + np.uint64(1) < mi:
            j = indices[jj]
            k = indices[jj + np.uint64(1)]
            lower_old += data[jj] * x_old[j]
            lower_new += data[jj] * x_new[j]
            lower_old += data[jj + np.uint64(1)] * x_old[k]
            lower_new += data[jj + np.uint64(1)] * x_new[k]
            jj += np.uint64(2)
        if jj < mi:
            j = indices[jj]
            lower_old += data[jj] * x_old[j]
            lower_new += data[jj] * x_new[j]
        start = end
        x_new[i] = partial - weight * lower_new
        residual = b[i] - diag[i] * xi - lower_old - upper
        total += float(residual) * float(residual)
    return total


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _sweep_rows(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, skip, lo, hi):
    # _lagged_rows without the residual: the same arithmetic for x_new
    for i in range(lo, hi):
        upper = keep - keep
        for jj in range(mid[i] + skip, indptr[i + 1]):
            upper += data[jj] * x_old[indices[jj]]
        weight = omega / diag[i]
        partial = keep * x_old[i] + weight * (b[i] - upper)
        lower_new = keep - keep
        for jj in range(indptr[i], mid[i]):
            lower_new += data[jj] * x_new[indices[jj]]
        x_new[i] = partial - weight * lower_new


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _inplace_rows_reverse(indptr, indices, data, diag, b, x, omega, keep, lo, hi):
    for k in range(hi - lo):
        i = hi - 1 - k
        sigma = keep - keep  # zero in the data's dtype
        for jj in range(indptr[i], indptr[i + 1]):
            sigma += data[jj] * x[indices[jj]]
        x[i] = keep * x[i] + omega * ((b[i] - sigma) / diag[i])


# The coloured orderings have no row-to-row chain (a colour's rows are
# independent), so there the cost is the work per entry and the loop exits.
# Each row is summed into one accumulator in CSR order -- the new values left
# of the diagonal (an earlier colour), the old ones right of it -- so a sweep
# in place over one vector (_inplace_rows, one loop per row: the exit the
# branch predictor misses once, not twice) gives the same bits as the sweep
# into a second buffer that also measures the residual of the old iterate
# (_colored_rows, whose two loops read the old value only right of the
# diagonal). P1 tetrahedra, multicolour, two threads: 2.6 -> 2.3 ms per sweep
# with the residual, 1.6 ms in place (the split lower/upper arithmetic of the
# natural sweep: 2.3 ms without the residual).

@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _colored_rows(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, lo, hi):
    total = 0.0
    for i in range(lo, hi):
        sigma = keep - keep  # zero in the data's dtype
        sigma_old = keep - keep
        for jj in range(indptr[i], mid[i]):
            j = indices[jj]
            sigma += data[jj] * x_new[j]
            sigma_old += data[jj] * x_old[j]
        for jj in range(mid[i], indptr[i + 1]):
            term = data[jj] * x_old[indices[jj]]
            sigma += term
            sigma_old += term
        xi = x_old[i]
        x_new[i] = keep * xi + omega * ((b[i] - sigma) / diag[i])
        residual = b[i] - diag[i] * xi - sigma_old
        total += float(residual) * float(residual)
    return total


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _inplace_rows(indptr, indices, data, diag, b, x, omega, keep, lo, hi):
    # _colored_rows in place, without the residual: the same x_new; the sum
    # two entries a step, in order (as _natural_inplace_rows)
    start = indptr[lo]
    for i in range(lo, hi):
        end = indptr[i + 1]
        sigma = keep - keep
        jj = start
        while jj + np.uint64(1) < end:
            sigma += data[jj] * x[indices[jj]]
            sigma += data[jj + np.uint64(1)] * x[indices[jj + np.uint64(1)]]
            jj += np.uint64(2)
        if jj < end:
            sigma += data[jj] * x[indices[jj]]
        x[i] = keep * x[i] + omega * ((b[i] - sigma) / diag[i])
        start = end


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _colored_residual_rows(indptr, indices, data, diag, b, x, zero, lo, hi):
    # the residual arithmetic of _colored_rows
    total = 0.0
    for i in range(lo, hi):
        sigma = zero
        for jj in range(indptr[i], indptr[i + 1]):
            sigma += data[jj] * x[indices[jj]]
        residual = b[i] - diag[i] * x[i] - sigma
        total += float(residual) * float(residual)
    return total


_TASK_ROWS = 512  # rows of one colour per task: 3-D elasticity has 29 colours of ~3000 rows


@nb.njit(nogil=True, cache=True, inline="always")
def _task_count(color_ptr, c):
    return (color_ptr[c + 1] - color_ptr[c] + _TASK_ROWS - 1) // _TASK_ROWS


@nb.njit(nogil=True, cache=True, inline="always")
def _task_rows(color_ptr, c, t):
    """Rows ``start:stop`` of task ``t`` of colour ``c``."""
    start = color_ptr[c] + t * _TASK_ROWS
    return start, min(start + _TASK_ROWS, color_ptr[c + 1])


@nb.njit(**_PAR)
def _lagged_colored(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, color_ptr):
    total = 0.0
    for c in range(color_ptr.shape[0] - 1):
        for t in prange(_task_count(color_ptr, c)):
            start, stop = _task_rows(color_ptr, c, t)
            total += _colored_rows(indptr, mid, indices, data, diag, b, x_old, x_new, omega,
                                   keep, start, stop)
    return total


@nb.njit(**_PAR)
def _inplace_colored(indptr, indices, data, diag, b, x, omega, keep, color_ptr):
    for c in range(color_ptr.shape[0] - 1):
        for t in prange(_task_count(color_ptr, c)):
            start, stop = _task_rows(color_ptr, c, t)
            _inplace_rows(indptr, indices, data, diag, b, x, omega, keep, start, stop)


@nb.njit(**_PAR)
def _reverse_colored(indptr, indices, data, diag, b, x, omega, keep, color_ptr):
    ncolors = color_ptr.shape[0] - 1
    for c in range(ncolors):
        color = ncolors - 1 - c
        for t in prange(_task_count(color_ptr, color)):
            start, stop = _task_rows(color_ptr, color, t)
            _inplace_rows_reverse(indptr, indices, data, diag, b, x, omega, keep, start, stop)


@nb.njit(**_PAR)
def _lagged_split(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, skip):
    # The natural sweep on two threads: its row-to-row chain keeps one core
    # busy at well under the memory bandwidth, so the residual of x_old (the
    # same arithmetic as _lagged_rows) goes to the other core, reading A
    # beside it; x_old is read-only during the sweep. Bit-identical to
    # _lagged_serial. Measured (P1 triangles, n = 261k, quiet): fused on one
    # core 2.10 ms, split over two 1.6 ms, pyamg's sweep 1.8 ms.
    total = 0.0
    for role in prange(2):
        if role == 0:
            _sweep_rows(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, skip,
                        0, b.shape[0])
        else:
            total += _residual_rows(indptr, mid, indices, data, diag, b, x_old, keep - keep,
                                    skip, 0, b.shape[0])
    return total


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _natural_inplace_rows(indptr, mid, indices, data, diag, b, x, omega, keep, skip, own, lo,
                          hi):
    # _sweep_rows in place over one vector: the lower part reads the rows
    # already updated, the upper part the old values, as x_old/x_new would
    # give them, so the same bits. Each sweep then reads and writes one
    # vector, not two, and with the caller's own arrays (``own``) takes the
    # diagonal from ``data[mid[i]]``, in a cache line the row reads anyway,
    # not from ``diag`` (P1 triangles, n = 261k, one core: 1.57 -> 1.45 ms).
    # The sums take two entries a step, in order: on rows of 2-4 entries a
    # side the gathers of a pair then issue together, where LLVM's loop (one
    # at a time, or unrolled with a remainder that short rows always take)
    # let them wait on the exit branch: 1.45 -> 1.21 ms, pyamg's 1.30-1.35.
    # (Written out twice: the same loop in an inlined helper compiled 15x
    # slower.) The indices are unsigned (unsigned_view): np.uint64 steps.
    start = indptr[lo]
    for i in range(lo, hi):
        end = indptr[i + 1]
        mi = mid[i]
        upper = keep - keep
        jj = mi + skip
        while jj + np.uint64(1) < end:
            upper += data[jj] * x[indices[jj]]
            upper += data[jj + np.uint64(1)] * x[indices[jj + np.uint64(1)]]
            jj += np.uint64(2)
        if jj < end:
            upper += data[jj] * x[indices[jj]]
        weight = omega / (data[mi] if own else diag[i])
        partial = keep * x[i] + weight * (b[i] - upper)
        lower_new = keep - keep
        jj = start
        while jj + np.uint64(1) < mi:
            lower_new += data[jj] * x[indices[jj]]
            lower_new += data[jj + np.uint64(1)] * x[indices[jj + np.uint64(1)]]
            jj += np.uint64(2)
        if jj < mi:
            lower_new += data[jj] * x[indices[jj]]
        x[i] = partial - weight * lower_new
        start = end


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _natural_inplace(indptr, mid, indices, data, diag, b, x, omega, keep, skip):
    # the two storages compiled apart (``own`` a constant in each)
    if skip:
        _natural_inplace_rows(indptr, mid, indices, data, diag, b, x, omega, keep, skip, True,
                              0, b.shape[0])
    else:
        _natural_inplace_rows(indptr, mid, indices, data, diag, b, x, omega, keep, skip, False,
                              0, b.shape[0])


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _lagged_serial(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, skip):
    return _lagged_rows(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, skip,
                        0, b.shape[0])


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _colored_serial(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep):
    return _colored_rows(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep,
                         0, b.shape[0])


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _inplace_serial(indptr, indices, data, diag, b, x, omega, keep):
    _inplace_rows(indptr, indices, data, diag, b, x, omega, keep, 0, b.shape[0])


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _colored_residual_serial(indptr, indices, data, diag, b, x, zero):
    return _colored_residual_rows(indptr, indices, data, diag, b, x, zero, 0, b.shape[0])


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _reverse_serial(indptr, indices, data, diag, b, x, omega, keep):
    _inplace_rows_reverse(indptr, indices, data, diag, b, x, omega, keep, 0, b.shape[0])


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _residual_square(indptr, mid, indices, data, diag, b, x, zero, skip, i):
    # the residual arithmetic of _lagged_rows, so a history is the same to the
    # bit whichever kernel measured an entry (and wherever a chunk ended)
    upper = zero
    for jj in range(mid[i] + skip, indptr[i + 1]):
        upper += data[jj] * x[indices[jj]]
    lower = zero
    for jj in range(indptr[i], mid[i]):
        lower += data[jj] * x[indices[jj]]
    residual = b[i] - diag[i] * x[i] - lower - upper
    return float(residual) * float(residual)


@nb.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def _residual_rows(indptr, mid, indices, data, diag, b, x, zero, skip, lo, hi):
    total = 0.0
    for i in range(lo, hi):
        total += _residual_square(indptr, mid, indices, data, diag, b, x, zero, skip, i)
    return total


@nb.njit(**_PAR)
def _residual_colored(indptr, indices, data, diag, b, x, zero, color_ptr):
    total = 0.0
    for c in range(color_ptr.shape[0] - 1):
        for t in prange(_task_count(color_ptr, c)):
            start, stop = _task_rows(color_ptr, c, t)
            total += _colored_residual_rows(indptr, indices, data, diag, b, x, zero, start,
                                            stop)
    return total


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _residual_serial(indptr, mid, indices, data, diag, b, x, zero, skip):
    return _residual_rows(indptr, mid, indices, data, diag, b, x, zero, skip, 0, b.shape[0])


@nb.njit(**_PAR)
def _residual_rows_split(indptr, mid, indices, data, diag, b, x, zero, skip):
    # The natural ordering's residual pass on two threads with _residual_rows'
    # bits: each half's squares into a float64 buffer, then one sum in row
    # order (a parallel reduction would add in an order set by the thread
    # count). P1 triangles: 2.1 -> 1.8 ms; it measures x_maxiter at the end of
    # a run, and the first residual of a nonzero initial guess.
    n = b.shape[0]
    squares = np.empty(n)
    for half in prange(2):
        lo = half * (n // 2)
        hi = n // 2 if half == 0 else n
        for i in range(lo, hi):
            squares[i] = _residual_square(indptr, mid, indices, data, diag, b, x, zero, skip,
                                          i)
    total = 0.0
    for i in range(n):
        total += squares[i]
    return total


def _scalars(data, omega):
    # omega and 1 - omega in the data's precision: float32 systems sweep in float32
    kind = data.dtype.type
    return kind(omega), kind(1.0 - omega)


def sor_lagged_sweep(indptr, mid, indices, data, diag, b, x_old, x_new, omega, color_ptr,
                     skip=0) -> float:
    """One forward sweep ``x_new <- SOR(x_old)``; returns ``||b - A x_old||^2``.

    The off-diagonal CSR ``(indptr, indices, data)`` has sorted columns and
    ``mid[i]`` is the first entry of row ``i`` right of the diagonal. The
    system is in sweep order; ``color_ptr`` (length > 1) marks the colours'
    row ranges, whose rows are swept in parallel; length <= 1 means one
    sequential sweep. ``x_old`` is not modified. ``skip``: as
    :func:`sor_run_lagged`.
    """
    omega, keep = _scalars(data, omega)
    return _lagged_any(unsigned_view(indptr), unsigned_view(mid), unsigned_view(indices), data,
                       diag, b, x_old, x_new, omega, keep, color_ptr, nb.get_num_threads() > 1,
                       np.uint64(skip))


def sor_reverse_sweep(indptr, indices, data, diag, b, x, omega, color_ptr) -> None:
    """One backward sweep in place (SSOR's second half), in reversed sweep order."""
    omega, keep = _scalars(data, omega)
    _reverse_any(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x, omega, keep,
                 color_ptr, nb.get_num_threads() > 1)


# One choice of kernel for a sweep, its reverse and a residual, made the same
# way for a whole run and for the single calls below: the arithmetic by the
# ordering (natural: _lagged_rows; coloured: _colored_rows), parallel or not
# by ``split``. On one thread a coloured sweep runs its rows in sweep order
# without colour tasks (a colour has no couplings within): the same bits,
# without the parallel region per colour, which cost 1.5x on one thread.

@nb.njit(nogil=True, cache=True, boundscheck=False)
def _lagged_any(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, color_ptr,
                split, skip):
    if color_ptr.shape[0] > 1:
        if split:
            return _lagged_colored(indptr, mid, indices, data, diag, b, x_old, x_new, omega,
                                   keep, color_ptr)
        return _colored_serial(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep)
    if split:
        return _lagged_split(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep,
                             skip)
    return _lagged_serial(indptr, mid, indices, data, diag, b, x_old, x_new, omega, keep, skip)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _sweep_any(indptr, mid, indices, data, diag, b, x, omega, keep, color_ptr, split, skip):
    """A sweep whose residual nobody reads, in place over ``x``; the same bits as
    _lagged_any. (The natural one on two threads -- the old-value parts of all
    rows in parallel, then the chain through the lower parts -- measured no
    faster than on one: the chain and the bytes bound it, not the arithmetic.)"""
    if color_ptr.shape[0] > 1:
        if split:
            _inplace_colored(indptr, indices, data, diag, b, x, omega, keep, color_ptr)
        else:
            _inplace_serial(indptr, indices, data, diag, b, x, omega, keep)
    else:
        _natural_inplace(indptr, mid, indices, data, diag, b, x, omega, keep, skip)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _reverse_any(indptr, indices, data, diag, b, x, omega, keep, color_ptr, split):
    if color_ptr.shape[0] > 1 and split:
        _reverse_colored(indptr, indices, data, diag, b, x, omega, keep, color_ptr)
    else:
        _reverse_serial(indptr, indices, data, diag, b, x, omega, keep)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _residual_any(indptr, mid, indices, data, diag, b, x, zero, color_ptr, split, skip):
    if color_ptr.shape[0] > 1:
        if split:
            return _residual_colored(indptr, indices, data, diag, b, x, zero, color_ptr)
        return _colored_residual_serial(indptr, indices, data, diag, b, x, zero)
    if split:
        return _residual_rows_split(indptr, mid, indices, data, diag, b, x, zero, skip)
    return _residual_serial(indptr, mid, indices, data, diag, b, x, zero, skip)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _lagged_run(indptr, mid, indices, data, diag, b, x, work, omega, keep, symmetric,
                color_ptr, tol, grow_limit, maxiter, norms, start, split, period, measure_end,
                skip):
    k = start
    current = x
    spare = work
    swapped = False  # whether x_k sits in work
    stopped = False
    while k < maxiter:
        # the residual of x_k when k is a multiple of the period (known only
        # after this sweep; norms[start] is the caller's unless it is NaN, as
        # a previous call leaves it without measure_end); NaN where unmeasured
        if k % period == 0 and (k > start or np.isnan(norms[k])):
            rnorm = np.sqrt(_lagged_any(indptr, mid, indices, data, diag, b, current, spare,
                                        omega, keep, color_ptr, split, skip))
            norms[k] = rnorm
            if not (rnorm > tol and rnorm <= grow_limit):  # also stops on NaN
                stopped = True
                break
            current, spare = spare, current
            swapped = not swapped
        else:
            _sweep_any(indptr, mid, indices, data, diag, b, current, omega, keep, color_ptr,
                       split, skip)
            if k > start:
                norms[k] = np.nan
        if symmetric:
            _reverse_any(indptr, indices, data, diag, b, current, omega, keep, color_ptr, split)
        k += 1
    if not stopped and k > start:
        if measure_end:
            norms[k] = np.sqrt(_residual_any(indptr, mid, indices, data, diag, b, current,
                                             keep - keep, color_ptr, split, skip))
        else:
            norms[k] = np.nan
    if swapped:
        x[:] = current
    return k


def sor_run_lagged(indptr, mid, indices, data, diag, b, x, work, omega, symmetric, color_ptr,
                   tol, grow_limit, maxiter, norms, start=0, check_every=1,
                   measure_end=True, skip=0) -> int:
    """:func:`sor_run` for a system stored in sweep order, one read of ``A`` per sweep.

    Each forward sweep can also yield the true residual of the iterate it
    starts from (:func:`sor_lagged_sweep`), so ``norms[k]`` is
    ``||b - A x_k||`` exactly for every ``k`` that is a multiple of
    ``check_every`` (the other entries are NaN: those sweeps skip the
    residual arithmetic and run in place, the same bits) and the returned ``k`` is the first such ``k`` with ``norms[k] <=
    tol`` (or above ``grow_limit``, or NaN) -- with ``check_every=1`` the
    same count as checking after every sweep -- at the price of one
    discarded sweep at the end. A call that reaches ``maxiter`` measures
    ``norms[maxiter]`` too, by a residual pass, when ``measure_end``; else
    it leaves NaN there, and a call resuming from it (``start = maxiter``)
    measures it in its first sweep if ``start`` is a multiple of
    ``check_every`` (a resumed solve then reads ``A`` once per sweep).
    ``x`` holds ``x_start`` on entry (``norms[start]`` its residual, or
    NaN) and ``x_k`` on return; ``work`` is a scratch vector of the same
    size and dtype. ``skip=1`` (natural ordering only, not ``symmetric``):
    the CSR arrays are the whole matrix's, each row's diagonal entry stored
    at ``mid[i]``, read from ``diag`` and skipped by the sums (a plain call
    sweeps the caller's matrix without a split copy: see
    :class:`linsolve.SorMatrix`).
    """
    omega, keep = _scalars(data, omega)
    return _lagged_run(unsigned_view(indptr), unsigned_view(mid), unsigned_view(indices), data,
                       diag, b, x, work, omega, keep, bool(symmetric), color_ptr, float(tol),
                       float(grow_limit), int(maxiter), norms, int(start),
                       nb.get_num_threads() > 1, int(check_every), bool(measure_end),
                       np.uint64(skip))


def sor_residual_norm2_ordered(indptr, mid, indices, data, diag, b, x, color_ptr,
                               skip=0) -> float:
    """``||b - (D + O) x||^2`` for a system in sweep order, as the sweeps measure it.

    Same arithmetic and summation order as :func:`sor_lagged_sweep`, so a
    residual history does not depend on which kernel measured each entry.
    ``skip``: as :func:`sor_run_lagged`.
    """
    return _residual_any(unsigned_view(indptr), unsigned_view(mid), unsigned_view(indices), data,
                         diag, b, x, data.dtype.type(0), color_ptr, nb.get_num_threads() > 1,
                         np.uint64(skip))
