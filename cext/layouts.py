"""Storage layouts prepared once per matrix, before the kernels run.

Host-side (NumPy) conversions; the kernels in :mod:`cext.numba` and
:mod:`cext.cupy` consume the arrays they produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np
from array_api_compat import array_namespace

from .registry import kernels_for


_INDEX_DTYPES = ("int32", "int64")


def check_csr_structure(indptr, indices, data, shape: tuple[int, int], *, name: str = "A",
                        compressed: str = "row", check_order: bool = True) -> bool:
    """Validate a compressed sparse structure once; return whether it is canonical.

    The gate every sparse matrix passes before a compiled kernel reads it:
    ``indptr`` of length ``shape[0] + 1`` starting at 0, never decreasing,
    ending at most at the number of stored entries; every index in
    ``[0, shape[1])``; integer index arrays of 32 or 64 bits. One compiled
    O(nnz) pass (:func:`cext.numba.structure.csr_check`; the array-API
    reference on other backends).

    Parameters
    ----------
    indptr, indices, data : arrays of one namespace
        ``data`` is only checked for length (its first axis).
    shape : (int, int)
        ``(rows, columns)`` for CSR; ``(columns, rows)`` for CSC.
    name : str
        The matrix's name in messages.
    compressed : {"row", "column", "block row"}
        What ``indptr`` runs over, for messages.
    check_order : bool
        Also find out whether the structure is canonical. Without it the
        pass checks ranges only (about half the work on short rows) and
        returns False.

    Returns
    -------
    bool
        True when every row (column) is strictly increasing: sorted, no
        duplicates.

    Raises
    ------
    ValueError
        The first offence, with its row and value.

    Examples
    --------
    >>> import numpy as np
    >>> check_csr_structure(np.array([0, 1, 2]), np.array([1, 0]), np.ones(2), (2, 2))
    True
    >>> check_csr_structure(np.array([0, 1, 2]), np.array([1, 2]), np.ones(2), (2, 2))
    Traceback (most recent call last):
    ...
    ValueError: A is not a valid sparse matrix: column index 2 in row 1 is outside [0, 2)
    """
    other = {"row": "column", "column": "row", "block row": "block column"}[compressed]
    for array_name, array in (("indptr", indptr), ("indices", indices)):
        dtype_name = str(getattr(array.dtype, "name", array.dtype))
        if dtype_name not in _INDEX_DTYPES or getattr(array, "ndim", 1) != 1:
            raise ValueError(f"{name}.{array_name} must be a 1-D int32 or int64 array, got "
                             f"dtype {dtype_name} with shape {tuple(array.shape)}")
    n_major, n_minor = int(shape[0]), int(shape[1])
    prefix = f"{name} is not a valid sparse matrix: "
    if indptr.shape[0] != n_major + 1:
        raise ValueError(f"{prefix}indptr has length {indptr.shape[0]}, expected "
                         f"{n_major + 1} (one more than the number of {compressed}s)")
    if data.shape[0] != indices.shape[0]:
        raise ValueError(f"{prefix}data has {data.shape[0]} entries but indices has "
                         f"{indices.shape[0]}")
    # the registry's csr_check applies the thread policy itself (cext.threads.managed)
    kernels = kernels_for(array_namespace(indptr, indices))
    code, row, value, canonical = kernels.csr_check(indptr, indices, n_minor, check_order)
    if code == 1:
        raise ValueError(f"{prefix}indptr must start at 0, got indptr[0] = {value}")
    if code == 2:
        raise ValueError(f"{prefix}indptr decreases at {compressed} {row}: indptr[{row + 1}] = "
                         f"{value} < indptr[{row}] = {int(indptr[row])}")
    if code == 3:
        raise ValueError(f"{prefix}indptr ends at {value} but only {indices.shape[0]} "
                         "entries are stored")
    if code == 4:
        raise ValueError(f"{prefix}{other} index {value} in {compressed} {row} is outside "
                         f"[0, {n_minor})")
    return bool(canonical)


@dataclass(frozen=True)
class DiaLayout:
    """Row-aligned diagonal storage: ``values[d, i] = A[i, i + offsets[d]]``.

    ``offsets`` is a tuple so the Numba kernels specialise on its length.
    """

    offsets: tuple[int, ...]
    values: np.ndarray


def csr_to_dia(indptr, indices, data, n: int, *, max_diagonals: int = 32,
               max_fill: float = 1.25, checked: bool = False) -> DiaLayout | None:
    """Row-aligned DIA form of a square CSR matrix, or None when it does not pay.

    DIA pays when the nonzeros sit on few diagonals: it stores
    ``len(offsets) * n`` values against CSR's ``nnz`` values plus ``nnz``
    indices. Returns None when there are more than ``max_diagonals``
    diagonals or the stored values would exceed ``max_fill * nnz``.
    Duplicate entries (allowed in CSR) are summed, as SpMV would.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.diags([[-1.0] * 3, [2.0] * 4, [-1.0] * 3], [-1, 0, 1]).tocsr()
    >>> layout = csr_to_dia(A.indptr, A.indices, A.data, 4)
    >>> layout.offsets
    (-1, 0, 1)
    >>> layout.values[0].tolist()  # A[i, i-1]; row 0 has none
    [0.0, -1.0, -1.0, -1.0]
    """
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    data = np.asarray(data)
    if not checked:
        check_csr_structure(indptr, indices, data, (n, n), check_order=False)
    if n == 0 or data.shape[0] == 0:
        return None
    limit = min(max_diagonals, int(max_fill * data.shape[0] // n))
    present, few = _diagonals_present(indptr, indices, n, limit)
    if not few:
        return None
    offsets = np.flatnonzero(present) - (n - 1)
    slot_of_offset = np.full(2 * n - 1, -1, dtype=np.int64)
    slot_of_offset[offsets + (n - 1)] = np.arange(offsets.size)
    values = np.zeros((offsets.size, n), dtype=data.dtype)
    _fill_dia(indptr, indices, data, slot_of_offset, values)
    return DiaLayout(tuple(int(o) for o in offsets), values)


# Conversion runs inside every pcg call on a stencil matrix, so it must cost a
# few SpMVs, not a sort: one O(nnz) pass to find the diagonals, one to fill.
# The search stops at the first diagonal over ``limit``: an unstructured
# matrix is refused after a few rows, not after a whole pass (3% of a
# 50-iteration solve on P1 tetrahedra).
@nb.njit(cache=True, nogil=True, boundscheck=False)
def _diagonals_present(indptr, indices, n, limit):
    present = np.zeros(2 * n - 1, dtype=np.bool_)
    count = 0
    # slots in uint64 (n - 1 - i + column >= 0): no wrap-around test on each read
    shift = np.uint64(n - 1)
    for i in range(n):
        base = shift - np.uint64(i)
        for jj in range(indptr[i], indptr[i + 1]):
            slot = base + np.uint64(indices[jj])
            if not present[slot]:
                present[slot] = True
                count += 1
                if count > limit:
                    return present, False
    return present, True


@nb.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _fill_dia_rows(indptr, indices, data, slot_of_offset, values, lo, hi):
    n = values.shape[1]
    shift = np.uint64(n - 1)
    for i in range(lo, hi):
        base = shift - np.uint64(i)
        row = np.uint64(i)
        for jj in range(indptr[i], indptr[i + 1]):
            # += sums duplicate entries of non-canonical CSR, as SpMV would
            values[np.uint64(slot_of_offset[base + np.uint64(indices[jj])]), row] += data[jj]


_FILL_BLOCK = 4096


@nb.njit(cache=True, nogil=True, boundscheck=False, parallel=True)
def _fill_dia_parallel(indptr, indices, data, slot_of_offset, values):
    n = values.shape[1]
    for block in nb.prange((n + _FILL_BLOCK - 1) // _FILL_BLOCK):
        lo = block * _FILL_BLOCK
        _fill_dia_rows(indptr, indices, data, slot_of_offset, values, lo,
                       min(n, lo + _FILL_BLOCK))


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _fill_dia_serial(indptr, indices, data, slot_of_offset, values):
    _fill_dia_rows(indptr, indices, data, slot_of_offset, values, 0, values.shape[1])


def _fill_dia(indptr, indices, data, slot_of_offset, values):
    # one thread (every small solve): a plain loop, without a parallel region's start
    kernel = _fill_dia_parallel if nb.get_num_threads() > 1 else _fill_dia_serial
    kernel(indptr, indices, data, slot_of_offset, values)
