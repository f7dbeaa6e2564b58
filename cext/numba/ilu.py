"""The zero-fill incomplete LU factorisation, ILU(0) (Numba).

The factor is applied by the triangular sweeps of
:mod:`cext.numba.triangular` (:func:`csr_triangular_pair_solve`); only the
factorisation lives here. No ``fastmath`` (a NaN or an overflow must reach
the pivot test). Mirrors :mod:`cext.reference.ilu`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _ilu0(indptr, indices, data):
    n = indptr.shape[0] - 1
    # position of column j in the current row i, -1 where row i stores no (i, j)
    position = np.full(n, -1, dtype=np.int64)
    diagonal = np.empty(n, dtype=np.int64)  # position of (k, k), for the rows k done
    for i in range(n):
        start = indptr[i]
        end = indptr[i + 1]
        for p in range(start, end):
            position[indices[p]] = p
        # Saad, Iterative Methods for Sparse Linear Systems (2nd ed.), Alg. 10.4
        # (IKJ): for each stored (i, k), k < i, in increasing k,
        #   a_ik := a_ik / a_kk;  a_ij -= a_ik a_kj for j > k where (i, j) is stored.
        # Updates outside the pattern of row i are dropped: the "0" of ILU(0).
        # Sorted rows make "increasing k" the CSR order, and an a_ij with
        # k < j < i is updated before it becomes a multiplier itself.
        p = start
        while p < end and indices[p] < i:
            k = indices[p]
            multiplier = data[p] / data[diagonal[k]]
            data[p] = multiplier
            for q in range(diagonal[k] + 1, indptr[k + 1]):
                target = position[indices[q]]
                if target >= 0:
                    data[target] -= multiplier * data[q]
            p += 1
        for q in range(start, end):
            position[indices[q]] = -1
        if p == end or indices[p] != i:
            return i  # no stored diagonal: nowhere to keep u_ii
        pivot = data[p]
        if pivot == 0.0 or not math.isfinite(pivot):
            return i
        diagonal[i] = p
    return -1


def csr_ilu0(indptr, indices, data) -> int:
    """Zero-fill incomplete LU of a square CSR matrix, in place.

    On entry ``(indptr, indices, data)`` is ``A`` with sorted column indices
    and no duplicates; on exit ``data`` holds ``L`` (unit lower, its unit
    diagonal not stored) below the diagonal and ``U`` on and above it, with
    ``(L U)_ij = A_ij`` wherever ``A`` stores ``(i, j)``. Returns ``-1``, or
    the first row whose diagonal is not stored or whose pivot ``u_ii`` is
    zero or not finite (``data`` is then partly overwritten).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[2.0, 1.0], [4.0, 5.0]]))
    >>> data = A.data.copy()  # L = [[1, 0], [2, 1]], U = [[2, 1], [0, 3]] below
    >>> csr_ilu0(A.indptr, A.indices, data), data.tolist()
    (-1, [2.0, 1.0, 2.0, 3.0])
    """
    # Signed indices (unlike the sweeps): the row scans mix positions from
    # ``range`` with ``indptr`` values, and one factorisation is not worth
    # the unsigned trick.
    return int(_ilu0(indptr, indices, data))
