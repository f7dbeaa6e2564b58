"""SOR sweeps over a CSR matrix whose rows are stored by colour (Numba).

One sweep updates every unknown once,
``x_i <- (1 - w) x_i + w (b_i - sum_{j != i} a_ij x_j) / a_ii``,
using the newest values of the other unknowns. The lexicographic sweeps are
sequential by nature; the coloured sweep updates the rows of one colour
(no two of which are coupled) in parallel, one colour after another.
The CSR arrays hold only the *off-diagonal* entries of A and ``diag`` its
diagonal (checked nonzero by the caller): splitting once saves a column
test per entry in every sweep.

Here the rows are stored by colour (``color_rows``) with ``x``, ``b`` and
the diagonal in natural order, and ``sor_run`` makes a separate residual
pass per sweep. ``sor_run``, ``sor_sweep_colored`` and
``csr_residual_norm2_split`` mirror :mod:`cext.cupy.sor` (one launch per
colour), where a gather costs less; on the CPU they gather at random, so
:func:`linsolve.sor` runs the sweep-order kernels of
:mod:`cext.numba.sor_lagged` instead. ``sor_sweep_forward``/``backward``:
in-place lexicographic sweeps (:meth:`linsolve.SorMatrix.sweep`, the MPI
block sweeps), summing in float64. The colourings are in
:mod:`cext.numba.coloring`.

The set-up of :class:`linsolve.SorMatrix` (``sor_split``, ``sor_diagonal``,
``sor_split_full``, ``sor_gather_values``) is at the end. Mirrored by
:mod:`cext.reference.sor`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .spmv import unsigned_view
from .structure import _count_block

_SEQ = dict(nogil=True, cache=True, boundscheck=False)
_PAR = dict(nogil=True, cache=True, boundscheck=False, parallel=True)


@nb.njit(**_SEQ)
def _relax_row(k, i, indptr, indices, data, diag, b, x, omega):
    # stored row k holds the couplings of unknown i
    sigma = 0.0
    for jj in range(indptr[k], indptr[k + 1]):
        sigma += data[jj] * x[indices[jj]]
    x[i] = (1.0 - omega) * x[i] + omega * (b[i] - sigma) / diag[i]


@nb.njit(**_SEQ)
def _forward(indptr, indices, data, diag, b, x, omega):
    for i in range(x.shape[0]):
        _relax_row(np.uint64(i), np.uint64(i), indptr, indices, data, diag, b, x, omega)


@nb.njit(**_SEQ)
def _backward(indptr, indices, data, diag, b, x, omega):
    for k in range(x.shape[0]):
        i = np.uint64(x.shape[0] - 1 - k)
        _relax_row(i, i, indptr, indices, data, diag, b, x, omega)


@nb.njit(**_PAR)
def _colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows, reverse):
    ncolors = color_ptr.shape[0] - 1
    for c in range(ncolors):
        color = ncolors - 1 - c if reverse else c
        for k in prange(color_ptr[color], color_ptr[color + 1]):
            _relax_row(np.uint64(k), color_rows[k], indptr, indices, data, diag, b, x, omega)


def sor_sweep_forward(indptr, indices, data, diag, b, x, omega) -> None:
    """One lexicographic sweep, rows 0..n-1, updating ``x`` in place."""
    _forward(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x, float(omega))


def sor_sweep_backward(indptr, indices, data, diag, b, x, omega) -> None:
    """One lexicographic sweep, rows n-1..0, updating ``x`` in place."""
    _backward(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x, float(omega))


def sor_sweep_colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows,
                      reverse=False) -> None:
    """One coloured sweep: colours in order (reversed if ``reverse``), rows of a colour in parallel.

    The CSR rows are stored by colour: ``color_rows[color_ptr[c]:color_ptr[c + 1]]``
    are the unknowns of colour ``c`` and stored row ``k`` belongs to unknown
    ``color_rows[k]``.
    """
    _colored(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x, float(omega),
             color_ptr, unsigned_view(color_rows), bool(reverse))


@nb.njit(**_PAR)
def _residual_norm2_split(indptr, indices, data, diag, b, x, rows):
    permuted = rows.shape[0] > 0
    total = 0.0
    for k in prange(b.shape[0]):
        i = np.uint64(rows[k]) if permuted else np.uint64(k)  # one integer type for both branches
        acc = diag[i] * x[i]
        for jj in range(indptr[k], indptr[k + 1]):
            acc += data[jj] * x[indices[jj]]
        ri = b[i] - acc
        total += ri * ri
    return total


@nb.njit(**_SEQ)
def _sor_run(indptr, indices, data, diag, b, x, omega, symmetric, color_ptr, color_rows,
             tol, grow_limit, maxiter, norms, start):
    k = start
    while k < maxiter:
        if color_ptr.shape[0] > 1:
            _colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows, False)
            if symmetric:
                _colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows, True)
        else:
            _forward(indptr, indices, data, diag, b, x, omega)
            if symmetric:
                _backward(indptr, indices, data, diag, b, x, omega)
        k += 1
        rnorm = np.sqrt(_residual_norm2_split(indptr, indices, data, diag, b, x, color_rows))
        norms[k] = rnorm
        if not (rnorm > tol and rnorm <= grow_limit):  # also stops on NaN
            break
    return k


def sor_run(indptr, indices, data, diag, b, x, omega, symmetric, color_ptr, color_rows,
            tol, grow_limit, maxiter, norms, start=0) -> int:
    """Sweep until ``||b - A x|| <= tol``, it exceeds ``grow_limit`` or is NaN, or ``maxiter``.

    Sweeps ``start + 1 .. maxiter`` run in one compiled call (small systems
    in long sequences are dominated by per-call overhead otherwise).
    Python's SIGINT handler runs only once the call returns, so a caller
    with a large budget resumes it in chunks (``start`` = the last call's
    return), as :func:`linsolve.sor` does; the iterates and norms do not
    depend on where the chunks end. ``norms[k]`` receives the residual norm
    after sweep ``k`` (``norms[start]`` is the caller's), so ``norms`` needs
    ``maxiter + 1`` entries; returns the last ``k``. ``color_ptr`` of length
    < 2 (and an empty ``color_rows``) means the lexicographic ordering and
    natural row storage; ``symmetric`` adds the reverse sweep.
    """
    return _sor_run(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x,
                    float(omega), bool(symmetric), color_ptr, unsigned_view(color_rows),
                    float(tol), float(grow_limit), int(maxiter), norms, int(start))


def csr_residual_norm2_split(indptr, indices, data, diag, b, x, rows) -> float:
    """``||b - (D + O) x||^2`` for off-diagonal CSR ``O`` and diagonal ``D``.

    ``rows``: stored row ``k`` belongs to unknown ``rows[k]``; empty for natural storage.
    """
    return _residual_norm2_split(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x,
                                 unsigned_view(rows))


# --- Splitting a CSR matrix for the sweeps --------------------------------------
#
# linsolve.SorMatrix holds the off-diagonal entries (columns sorted) and the
# diagonal apart, in sweep order. Built with scipy (A - diag(A),
# eliminate_zeros, sort_indices, and for the coloured orderings A[p][:, p])
# that cost 10-12 of pyamg's sweeps in the natural ordering and 60-70 in the
# multicolour one on P1 triangles (n = 261k). Here: sor_split (natural, one
# pass), sor_diagonal then sor_split_full (coloured: the diagonal found in
# place, then the permuted copy straight from the matrix), and
# sor_gather_values (a matrix of a pattern already split: one gather). They
# take rows that are canonical (sorted, no duplicates), each with one stored,
# nonzero, finite diagonal entry and no stored zero -- the usual assembled
# matrix -- and report a row that is not, for which the caller takes the
# general (scipy) path: then every row keeps all but one of its entries,
# known before the pass, and the rows are split in parallel.

_SPLIT_BLOCK = 4096  # rows per task


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _split_block(indptr, indices, data, off_indptr, off_indices, off_data, diag, mid, lo, hi):
    """Rows ``lo:hi``; returns ``(bad, infinite)``: ``bad`` a row not of the usual kind
    (``hi`` when there is none), ``infinite`` the kept values not finite."""
    first = indptr[lo]
    last = indptr[hi]
    # Sorted rows without duplicates, no stored zero: branch-free counts over
    # the block's entries (tests per entry in the copy loops cost 2-3x more).
    _, descents = _count_block(indptr, indices, lo, hi, np.uint64(indptr.shape[0] - 1), True)
    zeros = 0
    for k in range(first, last):
        zeros += data[k] == 0
    if descents or zeros:
        return lo, 0
    infinite = 0
    for i in range(lo, hi):
        start = indptr[i]
        end = indptr[i + 1]
        position = start
        while position < end and indices[position] < i:
            position += 1
        if position == end or indices[position] != i:  # no diagonal entry
            return i, 0
        out = start - i  # the earlier rows each dropped their diagonal entry
        for jj in range(start, position):
            off_indices[out + (jj - start)] = indices[jj]
            off_data[out + (jj - start)] = data[jj]
        for jj in range(position + 1, end):
            off_indices[out + (jj - start) - 1] = indices[jj]
            off_data[out + (jj - start) - 1] = data[jj]
        diag[i] = data[position]
        infinite += not np.isfinite(diag[i])
        mid[i] = out + (position - start)
        off_indptr[i + 1] = end - i - 1
    if infinite:  # a non-finite diagonal entry takes the general path
        return lo, 0
    # the kept values in the working dtype (a float64 entry may overflow
    # float32): finite, or residual_norm's shortcut for x = 0 is off
    for k in range(first - lo, last - hi):
        infinite += not np.isfinite(off_data[k])
    return hi, infinite


@nb.njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def _split(indptr, indices, data, off_indptr, off_indices, off_data, diag, mid):
    n = indptr.shape[0] - 1
    nblocks = (n + _SPLIT_BLOCK - 1) // _SPLIT_BLOCK
    bad = np.full(nblocks, n, dtype=np.int64)
    infinite = np.zeros(nblocks, dtype=np.int64)
    for block in nb.prange(nblocks):
        lo = block * _SPLIT_BLOCK
        hi = min(n, lo + _SPLIT_BLOCK)
        row, count = _split_block(indptr, indices, data, off_indptr, off_indices, off_data,
                                  diag, mid, lo, hi)
        if row < hi:
            bad[block] = row
        infinite[block] = count
    return bad.min(), infinite.sum() == 0


def sor_split(indptr, indices, data, off_indptr, off_indices, off_data, diag, mid):
    """Split a CSR matrix into its off-diagonal part and its diagonal, in one pass.

    For rows that are sorted, without duplicates, with one nonzero finite
    diagonal entry and no stored zero: the outputs are then sized ``n + 1``
    (``off_indptr``), ``nnz - n`` (``off_indices``, ``off_data``) and ``n``
    (``diag``, ``mid``: the first entry of each row right of the diagonal),
    in the dtypes the caller chose (values are cast on the copy). Returns
    ``(row, finite)``: ``row`` is ``n`` on success, else a row not of that
    kind (the outputs are then incomplete); ``finite``: every kept value
    is finite in the working dtype. ``indptr`` and ``indices`` must have
    passed :func:`cext.numba.structure.csr_check` (ranges).
    """
    off_indptr[0] = 0
    if indptr.shape[0] == 1:
        return 0, True
    row, finite = _split(indptr, indices, data, off_indptr, off_indices, off_data, diag, mid)
    return int(row), bool(finite)


@nb.njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def _gather(data, source, diag_source, off_data, diag):
    tasks = 64
    zeros = np.zeros(tasks, dtype=np.int64)
    infinite = np.zeros(tasks, dtype=np.int64)
    for task in nb.prange(tasks):
        n = diag.shape[0]
        for i in range(task * n // tasks, (task + 1) * n // tasks):
            value = data[diag_source[i]]
            diag[i] = value
            zeros[task] += value == 0
            infinite[task] += not np.isfinite(diag[i])
        nnz = source.shape[0]
        for k in range(task * nnz // tasks, (task + 1) * nnz // tasks):
            value = data[source[k]]
            off_data[k] = value
            zeros[task] += value == 0
            infinite[task] += not np.isfinite(off_data[k])
    return zeros.sum(), infinite.sum()


def sor_gather_values(data, source, diag_source, off_data, diag):
    """``off_data = data[source]``, ``diag = data[diag_source]`` (cast to their dtypes).

    Returns ``(zeros, infinite)``: how many gathered values are zero, and
    how many are not finite in the working dtype.
    """
    zeros, infinite = _gather(data, source, diag_source, off_data, diag)
    return int(zeros), int(infinite)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _diagonal_block(indptr, indices, data, position, diag, lo, hi):
    """Rows ``lo:hi``: ``(hi, infinite)``, or a row not of the usual kind (see
    :func:`sor_diagonal`); ``infinite`` counts the stored values not finite."""
    first = indptr[lo]
    last = indptr[hi]
    _, descents = _count_block(indptr, indices, lo, hi, np.uint64(indptr.shape[0] - 1), True)
    zeros = 0
    infinite = 0
    for k in range(first, last):
        zeros += data[k] == 0
        infinite += not np.isfinite(data[k])
    if descents or zeros:
        return lo, infinite
    for i in range(lo, hi):
        p = indptr[i]
        end = indptr[i + 1]
        while p < end and indices[p] < i:
            p += 1
        if p == end or indices[p] != i:
            return i, infinite
        position[i] = p
        diag[i] = data[p]
        if not np.isfinite(diag[i]):
            return i, infinite
    return hi, infinite


@nb.njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def _diagonal(indptr, indices, data, position, diag):
    n = indptr.shape[0] - 1
    nblocks = (n + _SPLIT_BLOCK - 1) // _SPLIT_BLOCK
    bad = np.full(nblocks, n, dtype=np.int64)
    infinite = np.zeros(nblocks, dtype=np.int64)
    for block in nb.prange(nblocks):
        lo = block * _SPLIT_BLOCK
        hi = min(n, lo + _SPLIT_BLOCK)
        row, count = _diagonal_block(indptr, indices, data, position, diag, lo, hi)
        if row < hi:
            bad[block] = row
        infinite[block] = count
    return bad.min(), infinite.sum()


def sor_diagonal(indptr, indices, data, position, diag) -> tuple[int, bool]:
    """Where each row's diagonal entry is stored, and its value (cast to ``diag``'s dtype).

    For the rows :func:`sor_split` takes (sorted, no duplicates, no stored
    zero, one nonzero finite diagonal entry each): returns ``(n, finite)``,
    else ``(row, finite)`` with a row not of that kind (the outputs are then
    incomplete); ``finite``: every stored value is finite. No copy of the
    matrix: what the coloured orderings need before they permute it, and
    all the natural ordering's plain call needs to sweep the matrix's own
    arrays (:func:`cext.numba.sor_lagged.sor_run_lagged` with ``skip=1``).
    """
    if indptr.shape[0] == 1:
        return 0, True
    row, infinite = _diagonal(indptr, indices, data, position, diag)
    return int(row), int(infinite) == 0


@nb.njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def _permute_full(indptr, indices, data, position, permutation, inverse, new_indptr, new_indices,
                  new_data, new_diag, new_mid, source, diag_source):
    # Each row is read in its own order and written to its place in the sweep
    # order, its renumbered columns sorted by insertion (rows are short). The
    # comparisons, not the memory, cost most here; sorting by rank over rows
    # padded to 8 (branch-free) measured slower still.
    n = permutation.shape[0]
    new_indptr[0] = 0
    for i in range(n):
        new_indptr[inverse[i] + 1] = indptr[i + 1] - indptr[i] - 1
    for k in range(n):
        new_indptr[k + 1] += new_indptr[k]
    nblocks = (n + _SPLIT_BLOCK - 1) // _SPLIT_BLOCK
    infinite = np.zeros(nblocks, dtype=np.int64)
    for block in nb.prange(nblocks):
        for i in range(block * _SPLIT_BLOCK, min(n, block * _SPLIT_BLOCK + _SPLIT_BLOCK)):
            k = inverse[i]
            first = new_indptr[k]
            diagonal = position[i]
            out = first
            lower = 0
            for jj in range(indptr[i], indptr[i + 1]):
                if jj == diagonal:
                    continue
                column = inverse[indices[jj]]
                slot = out
                while slot > first and new_indices[slot - 1] > column:
                    new_indices[slot] = new_indices[slot - 1]
                    new_data[slot] = new_data[slot - 1]
                    source[slot] = source[slot - 1]
                    slot -= 1
                new_indices[slot] = column
                new_data[slot] = data[jj]
                source[slot] = jj
                out += 1
                lower += column < k
            for q in range(first, out):
                infinite[block] += not np.isfinite(new_data[q])
            new_mid[k] = first + lower
            new_diag[k] = data[diagonal]
            diag_source[k] = diagonal
    return infinite.sum()


def sor_split_full(indptr, indices, data, position, permutation, inverse, new_indptr, new_indices,
                   new_data, new_diag, new_mid, source, diag_source) -> int:
    """The split matrix in sweep order, ``P O P^T`` and ``P d``, from the matrix itself.

    ``position``: where each row's diagonal entry is stored (:func:`sor_diagonal`).
    Row ``k`` is row ``permutation[k]`` less its diagonal, columns renumbered by
    ``inverse`` and sorted; ``new_mid[k]`` its first entry right of the diagonal.
    ``source`` and ``diag_source`` record where each value sits in ``data``, so
    that a matrix of the same pattern is split by :func:`sor_gather_values`
    alone. Returns how many kept off-diagonal values are not finite in the
    working dtype.
    """
    return int(_permute_full(indptr, indices, data, position, permutation, inverse, new_indptr,
                             new_indices, new_data, new_diag, new_mid, source, diag_source))
