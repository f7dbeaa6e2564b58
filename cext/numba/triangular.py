"""Sequential CSR triangular solves and the IC(0) factorisation (Numba).

Both are sequential by nature (row ``i`` needs the rows before it), so the
kernels are plain loops: ``nogil`` so that several solves can run in threads,
no ``parallel``, no ``fastmath`` (a NaN in the data must reach the caller).

``csr_triangular_solve`` reads only the strictly lower (or strictly upper)
entries of the CSR matrix it is given -- entries on or across the diagonal
are skipped by a column test -- and divides by a separately given diagonal.
That lets one CSR copy of ``A`` serve both SSOR sweeps (with the diagonal
``D / omega``), and the IC(0) factor ``L`` (diagonal stored in it) serve the
forward solve with ``diag = diag(L)``.

Mirrors :func:`cext.reference.csr_triangular_solve` and
:func:`cext.reference.csr_ichol0`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

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


@nb.njit(**_SEQ)
def _ichol0(indptr, indices, data):
    n = indptr.shape[0] - 1
    for i in range(n):
        start = indptr[i]
        diag_pos = indptr[i + 1] - 1
        if diag_pos < start or indices[diag_pos] != i:
            return i  # no stored diagonal: zero pivot
        # Row-oriented (Crout by rows) IC(0): for each stored (i, k), k < i,
        # L[i, k] = (A[i, k] - sum_{j < k} L[i, j] L[k, j]) / L[k, k], the
        # sum over the columns both rows store (sorted merge); fill outside
        # the pattern of tril(A) is never created, which is the "0" of IC(0).
        for kk in range(start, diag_pos):
            k = indices[kk]
            acc = data[kk]
            p = start
            q = indptr[k]
            k_diag = indptr[k + 1] - 1
            while p < kk and q < k_diag:
                cp = indices[p]
                cq = indices[q]
                if cp == cq:
                    acc -= data[p] * data[q]
                    p += 1
                    q += 1
                elif cp < cq:
                    p += 1
                else:
                    q += 1
            data[kk] = acc / data[k_diag]
        pivot = data[diag_pos]
        for p in range(start, diag_pos):
            pivot -= data[p] * data[p]
        if not (pivot > 0.0 and math.isfinite(pivot)):
            return i
        data[diag_pos] = math.sqrt(pivot)
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
    # Signed indices here: the merge mixes positions from ``range`` with
    # ``indptr`` values, and one factorisation is not worth the unsigned trick.
    return int(_ichol0(indptr, indices, data))
