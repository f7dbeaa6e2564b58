"""Storage layouts prepared once per matrix, before the kernels run.

Host-side (NumPy) conversions; the kernels in :mod:`cext.numba` and
:mod:`cext.cupy` consume the arrays they produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np


@dataclass(frozen=True)
class DiaLayout:
    """Row-aligned diagonal storage: ``values[d, i] = A[i, i + offsets[d]]``.

    ``offsets`` is a tuple so the Numba kernels specialise on its length.
    """

    offsets: tuple[int, ...]
    values: np.ndarray


def csr_to_dia(indptr, indices, data, n: int, *, max_diagonals: int = 32,
               max_fill: float = 1.25) -> DiaLayout | None:
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
    if n == 0 or data.shape[0] == 0:
        return None
    present = _diagonals_present(indptr, indices, n)
    offsets = np.flatnonzero(present) - (n - 1)
    if offsets.size > max_diagonals or offsets.size * n > max_fill * data.shape[0]:
        return None
    slot_of_offset = np.full(2 * n - 1, -1, dtype=np.int64)
    slot_of_offset[offsets + (n - 1)] = np.arange(offsets.size)
    values = np.zeros((offsets.size, n), dtype=data.dtype)
    _fill_dia(indptr, indices, data, slot_of_offset, values)
    return DiaLayout(tuple(int(o) for o in offsets), values)


# Conversion runs inside every pcg call on a stencil matrix, so it must cost a
# few SpMVs, not a sort: one O(nnz) pass to find the diagonals, one to fill.
@nb.njit(cache=True, nogil=True)
def _diagonals_present(indptr, indices, n):
    present = np.zeros(2 * n - 1, dtype=np.bool_)
    for i in range(n):
        for jj in range(indptr[i], indptr[i + 1]):
            present[indices[jj] - i + n - 1] = True
    return present


@nb.njit(cache=True, nogil=True, parallel=True)
def _fill_dia(indptr, indices, data, slot_of_offset, values):
    n = values.shape[1]
    for i in nb.prange(n):
        for jj in range(indptr[i], indptr[i + 1]):
            # += sums duplicate entries of non-canonical CSR, as SpMV would
            values[slot_of_offset[indices[jj] - i + n - 1], i] += data[jj]
