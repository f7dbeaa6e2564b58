"""The one gate a sparse matrix passes before any compiled kernel reads it.

scipy (and cupyx) accept structures they never check: column indices out
of range, a non-monotone or short ``indptr``. Our kernels, and scipy's own
C++ conversions, would read such a matrix out of bounds. Every solver and
preconditioner that takes a sparse matrix calls :func:`checked_csr` once,
at construction or at the start of the solve; it checks the stored
structure in one compiled O(nnz) pass (:func:`cext.check_csr_structure`)
and converts to CSR only afterwards.

It never modifies the caller's matrix: ``A.tocsr()`` is ``A`` itself for
CSR input, so canonicalisation (summing duplicates, sorting indices)
happens on a fresh copy, and only when the structure is not canonical
already.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from cext import check_csr_structure, kernels_for


def _check_stored(A, name: str) -> None:
    """Check the arrays of a non-CSR format before scipy's conversion reads them."""
    fmt = A.format
    if fmt == "csc":
        check_csr_structure(A.indptr, A.indices, A.data, (A.shape[1], A.shape[0]), name=name,
                            compressed="column")
    elif fmt == "bsr":
        rows, cols = A.blocksize
        check_csr_structure(A.indptr, A.indices, A.data,
                            (A.shape[0] // rows, A.shape[1] // cols), name=name,
                            compressed="block row")
    elif fmt == "coo":
        row, col = A.row, A.col
        if not (row.shape[0] == col.shape[0] == A.data.shape[0]):
            raise ValueError(f"{name} is not a valid sparse matrix: row, col and data have "
                             f"{row.shape[0]}, {col.shape[0]} and {A.data.shape[0]} entries")
        for axis, indices, bound in (("row", row, A.shape[0]), ("column", col, A.shape[1])):
            # a COO index array is one "row" of a compressed structure
            xp = array_namespace(indices)
            indptr = xp.asarray([0, indices.shape[0]], dtype=indices.dtype)
            code, _, value, _ = kernels_for(xp).csr_check(indptr, indices, bound)
            if code:
                raise ValueError(f"{name} is not a valid sparse matrix: {axis} index {value} "
                                 f"is outside [0, {bound})")


def checked_csr(A: Any, name: str = "A", *, canonical: bool = False):
    """``A`` as a CSR matrix whose structure has been checked, never modifying ``A``.

    Parameters
    ----------
    A : scipy sparse matrix or array (any format), or cupyx sparse matrix
    name : str
        The matrix's name in error messages.
    canonical : bool
        Also make the result canonical (duplicates summed, indices sorted).
        Done on a copy, and only when the stored structure is not canonical.

    Returns
    -------
    CSR matrix of ``A``'s library and class family
        ``A`` itself when it is CSR already (and canonical, if asked):
        treat the result as read-only.

    Raises
    ------
    ValueError
        A malformed structure, naming the first offence (its row and value).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array((np.ones(2), np.array([1, 1]), np.array([0, 2, 2])), shape=(2, 2))
    >>> C = checked_csr(A, canonical=True)   # the duplicate is summed on a copy
    >>> C.toarray().tolist(), A.indices.tolist()
    ([[0.0, 2.0], [0.0, 0.0]], [1, 1])
    >>> A.indices[0] = 5
    >>> checked_csr(A)
    Traceback (most recent call last):
    ...
    ValueError: A is not a valid sparse matrix: column index 5 in row 0 is outside [0, 2)
    """
    if A.format != "csr":
        _check_stored(A, name)
    csr = A.tocsr()
    # the order is examined only when it matters: pcg's kernels take any order
    is_canonical = check_csr_structure(csr.indptr, csr.indices, csr.data, csr.shape, name=name,
                                       check_order=canonical)
    nnz = int(csr.indptr[-1])
    trailing = csr.indices.shape[0] != nnz  # arrays longer than the structure uses
    if (canonical and not is_canonical) or trailing:
        csr = type(csr)((csr.data[:nnz].copy(), csr.indices[:nnz].copy(), csr.indptr.copy()),
                        shape=csr.shape)
        if canonical and not is_canonical:
            csr.sum_duplicates()  # a fresh matrix computes its canonical flag anew
    return csr
