"""Storage layouts prepared once per matrix, before the kernels run.

Host-side (NumPy) conversions; the kernels in :mod:`cext.numba` and
:mod:`cext.cupy` consume the arrays they produce.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    nnz = data.shape[0]
    if n == 0 or nnz == 0:
        return None
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    diag_of_entry = indices.astype(np.int64) - rows
    offsets = np.unique(diag_of_entry)
    if offsets.size > max_diagonals or offsets.size * n > max_fill * nnz:
        return None
    slot = np.searchsorted(offsets, diag_of_entry)
    values = np.zeros((offsets.size, n), dtype=data.dtype)
    np.add.at(values, (slot, rows), data)
    return DiaLayout(tuple(int(o) for o in offsets), values)
