"""The set-up of a :class:`~linsolve.stationary.sor_matrix.SorMatrix` in compiled passes.

One structure check, then the split into the diagonal and the off-diagonal
part (natural), or the diagonal found in place, the sweep order searched and
the matrix permuted straight from its arrays (coloured orderings); what a
matrix of the same pattern reuses (:class:`Pattern`). Matrices outside the
usual kind (unsorted or duplicated columns, stored zeros, an asymmetric
pattern, a bad diagonal) are left to the general path in ``SorMatrix``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from cext import kernels_for

from ..validation.inputs import check_real_numeric
from ..validation.sparse import checked_csr


def checked_system(A: Any, dtype, *, check: bool = True):
    """``(csr, dtype)``: ``A`` as a CSR matrix of real floats whose structure has been
    checked once (ranges; the split finds unsorted rows), and the working dtype.

    ``check=False`` skips the structure check: for :meth:`SorMatrix.refactor <linsolve.stationary.sor_matrix.SorMatrix.refactor>`,
    whose pattern comparison with a checked one replaces it.
    """
    if not sp.issparse(A):
        if type(A).__module__.startswith("cupy"):
            raise TypeError("SorMatrix is built on the host: pass a scipy.sparse matrix "
                            "(sor() copies a CuPy A there itself)")
        A = np.asarray(A)
        check_real_numeric("A", A.dtype)
        if A.ndim != 2:
            raise ValueError(f"A must be a square matrix, got shape {A.shape}")
        # as pcg: booleans, integers and float16 (which scipy.sparse cannot
        # hold) are solved in float64
        A = sp.csr_matrix(A if A.dtype in (np.float32, np.float64) else A.astype(np.float64))
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square, got shape {A.shape}")
    check_real_numeric("A", A.dtype)
    if dtype is None:
        dtype = np.float32 if A.dtype == np.float32 else np.float64
    if check or A.format != "csr":
        csr = checked_csr(A)  # ranges; never the caller's arrays where it rewrites
    else:
        csr = A
    if csr.dtype not in (np.float32, np.float64):
        # a boolean A is its 0/1 values, as in pcg (and scipy); astype copies
        csr = csr.astype(np.float64)
    return csr, dtype


class Split(NamedTuple):
    """The arrays of a split (off_indptr, off_indices, off_data, diag, mid, finite), the
    colour order (or None) and the pattern a matrix of the same structure reuses (or None)."""

    arrays: tuple
    permutation: Any
    color_ptr: Any
    pattern: Any


class Pattern:
    """What a coloured split keeps of its matrix's structure, to split another of that pattern.

    ``indptr``/``indices``: copies of the structure it was built from
    (compared with a new matrix's: one read of each), and, for every entry
    of the permuted split, where it sits in the original's ``data``
    (``source``, ``diag_source``).
    """

    def __init__(self, csr, source, diag_source):
        nnz = int(csr.indptr[-1])
        self.indptr = csr.indptr.copy()
        self.indices = csr.indices[:nnz].copy()
        self.source, self.diag_source = source, diag_source

    def matches(self, csr) -> bool:
        """Whether ``csr`` stores exactly this structure (its data long enough to gather from)."""
        equal = _setup_kernels().arrays_equal
        nnz = self.indices.shape[0]
        return (csr.indptr.shape == self.indptr.shape and int(csr.indptr[-1]) == nnz
                and csr.data.shape[0] >= nnz and equal(csr.indptr, self.indptr)
                and equal(csr.indices[:nnz], self.indices))

    def split_values(self, data, off_data, diag):
        """The values of a matrix of this structure into ``off_data`` and ``diag``: whether all
        are finite, or None where one of them is zero or a diagonal entry is not finite (the
        general path's cases, as a fresh build would take it)."""
        zeros, infinite = _setup_kernels().sor_gather_values(data, self.source, self.diag_source,
                                                             off_data, diag)
        if zeros or (infinite and not np.isfinite(diag).all()):
            return None
        return infinite == 0


def _setup_kernels():
    """The compiled set-up kernels: a ``SorMatrix`` is always built on the host."""
    return kernels_for(np)


def _index_dtype(count: int):
    return np.int32 if count < 2**31 - 1 else np.int64


def fast_split(csr, dtype) -> Split | None:
    """The natural split in one compiled pass, for rows of the usual kind (else None)."""
    n = csr.shape[0]
    nnz = int(csr.indptr[-1])
    if nnz < n:  # some row has no diagonal entry
        return None
    index_dtype = _index_dtype(nnz - n)
    off_indptr = np.empty(n + 1, dtype=index_dtype)
    off_indices = np.empty(nnz - n, dtype=index_dtype)
    off_data = np.empty(nnz - n, dtype=dtype)
    diag = np.empty(n, dtype=dtype)
    mid = np.empty(n, dtype=index_dtype)
    row, finite = _setup_kernels().sor_split(csr.indptr, csr.indices, csr.data, off_indptr,
                                            off_indices, off_data, diag, mid)
    if row != n:
        return None
    return Split((off_indptr, off_indices, off_data, diag, mid, finite), None, None, None)


def own_arrays(csr, dtype) -> Split | None:
    """The natural sweep's arrays as ``csr``'s own, without a split copy (else None).

    For rows of the usual kind whose values are already in the working
    dtype: ``mid`` is then where each row's diagonal entry is stored, which
    the sweeps read from ``diag`` and skip (``skip=1`` in
    :mod:`cext.numba.sor_lagged`): one pass that writes ``2 n`` entries,
    against a split's copy of the whole matrix (P1 triangles, n = 261k, a
    loaded machine: 3 ms against 8-12 ms, pyamg's sweep 1.3-2 ms). The
    arrays are the caller's, so the result is for one solve only, never a
    :class:`~linsolve.stationary.sor_matrix.SorMatrix` a caller keeps.
    """
    n = csr.shape[0]
    nnz = int(csr.indptr[-1])
    if (nnz < n or csr.data.dtype != np.dtype(dtype) or csr.indptr.dtype != csr.indices.dtype
            # read-only arrays would compile the sweeps anew (Numba types them apart)
            or not (csr.data.flags.writeable and csr.indices.flags.writeable
                    and csr.indptr.flags.writeable)):
        return None
    position = np.empty(n, dtype=csr.indptr.dtype)
    diag = np.empty(n, dtype=dtype)
    row, finite = _setup_kernels().sor_diagonal(csr.indptr, csr.indices, csr.data, position,
                                                diag)
    if row != n:
        return None
    return Split((csr.indptr, csr.indices[:nnz], csr.data[:nnz], diag, position, finite), None,
                 None, None)


def fast_colored(csr, dtype, ordering: str) -> Split | None:
    """The coloured sweep order of a matrix of the usual kind with a symmetric pattern
    (else None), straight from its arrays.

    The same colours and order as the general path's (scipy's symmetrised
    pattern, greedy or two-colouring, reverse Cuthill-McKee, lexsort): on a
    symmetric pattern without stored zeros the symmetrised one is the
    matrix's own, whose diagonal the colourings skip and the search visits
    first; scipy's degrees count the diagonal twice.
    """
    kernels = _setup_kernels()
    n = csr.shape[0]
    nnz = int(csr.indptr[-1])
    if nnz < n:  # some row has no diagonal entry
        return None
    indptr, indices, data = csr.indptr, csr.indices[:nnz], csr.data[:nnz]
    index_dtype = _index_dtype(nnz)
    position = np.empty(n, dtype=np.int64)
    diag = np.empty(n, dtype=dtype)
    if kernels.sor_diagonal(indptr, indices, data, position, diag)[0] != n:
        return None
    # scipy's degrees are in the symmetrised pattern's index dtype, and the
    # order among equal degrees is numpy's argsort of exactly that array
    degree_dtype = np.int64 if indices.dtype == np.int64 else index_dtype
    degree = np.diff(indptr).astype(degree_dtype)
    degree += 1
    permutation = np.empty(n, dtype=index_dtype)
    inverse = np.empty(n, dtype=index_dtype)
    symmetric, bipartite, color_ptr = kernels.sweep_order(
        indptr, indices, degree, np.argsort(degree), ordering == "redblack", permutation,
        inverse)
    if not symmetric:
        return None
    if not bipartite:
        raise ValueError("the graph of A is not two-colourable (not a red-black "
                         "stencil); use ordering='multicolor'")
    off_dtype = _index_dtype(nnz - n)
    new_indptr = np.empty(n + 1, dtype=off_dtype)
    new_indices = np.empty(nnz - n, dtype=off_dtype)
    new_data = np.empty(nnz - n, dtype=dtype)
    new_mid = np.empty(n, dtype=off_dtype)
    source = np.empty(nnz - n, dtype=index_dtype)
    diag_source = np.empty(n, dtype=index_dtype)
    new_diag = np.empty(n, dtype=dtype)
    infinite = kernels.sor_split_full(indptr, indices, data, position, permutation, inverse,
                                      new_indptr, new_indices, new_data, new_diag, new_mid,
                                      source, diag_source)
    pattern = Pattern(csr, source=source, diag_source=diag_source)
    return Split((new_indptr, new_indices, new_data, new_diag, new_mid, infinite == 0),
                 permutation, color_ptr, pattern)
