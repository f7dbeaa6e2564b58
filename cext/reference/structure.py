"""Array-API twin of :mod:`cext.numba.structure`: the check of a compressed structure."""

from __future__ import annotations

from array_api_compat import array_namespace


def csr_check(indptr, indices, n_cols: int, check_order: bool = True):
    """Check a compressed structure: ``(code, row, value, canonical)``.

    Codes as :func:`cext.numba.structure.csr_check`: 0 valid, 1 ``indptr``
    does not start at 0, 2 ``indptr`` decreases after ``row``, 3 it ends
    beyond ``len(indices)``, 4 index ``value`` in ``row`` is outside
    ``[0, n_cols)``. ``canonical``: every row strictly increasing (False,
    unexamined, with ``check_order=False``).
    """
    xp = array_namespace(indptr, indices)
    n = indptr.shape[0] - 1
    if n < 0:
        raise ValueError("indptr must have at least one entry")
    if int(indptr[0]) != 0:
        return 1, 0, int(indptr[0]), False
    if n == 0:
        return 0, -1, 0, True
    decreasing = (indptr[1:] - indptr[:-1]) < 0
    if bool(xp.any(decreasing)):
        row = int(xp.argmax(xp.astype(decreasing, xp.int8)))
        return 2, row, int(indptr[row + 1]), False
    nnz = int(indptr[n])
    if nnz > indices.shape[0]:
        return 3, n, nnz, False
    columns = indices[:nnz]
    positions = xp.arange(nnz, dtype=indptr.dtype)
    row_of = xp.searchsorted(indptr, positions, side="right") - 1
    bad = (columns < 0) | (columns >= n_cols)
    if bool(xp.any(bad)):
        first = int(xp.argmax(xp.astype(bad, xp.int8)))
        return 4, int(row_of[first]), int(columns[first]), False
    if not check_order:
        return 0, -1, 0, False
    same_row = row_of[1:] == row_of[:-1]
    increasing = columns[1:] > columns[:-1]
    return 0, -1, 0, bool(xp.all(increasing | ~same_row))


def arrays_equal(a, b) -> bool:
    """Whether two 1-D integer arrays hold the same values."""
    return a.shape == b.shape and all(int(x) == int(y) for x, y in zip(a, b))
