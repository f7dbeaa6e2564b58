"""Zero-fill incomplete Cholesky, IC(0): ``M = (L L^T)^{-1}`` with ``L`` on the pattern of tril(A)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace

from cext import kernels_for

from ._base import Preconditioner, check_real, scipy_csr


class IChol0(Preconditioner):
    """``M r = L^{-T} L^{-1} r``; built by :func:`ichol0`.

    Attributes
    ----------
    L : scipy.sparse.csr_array
        The lower-triangular factor (pattern of ``tril(A)``).
    shift : float
    """

    def __init__(self, L, shift):
        xp = array_namespace(L.data)
        super().__init__(L.shape, L.dtype, xp)
        self.L = L
        self.shift = shift
        # L^T stored as CSR too, so both solves walk rows.
        self._Lt = L.T.tocsr()
        self._Lt.sort_indices()
        self._diagonal = np.ascontiguousarray(L.diagonal())
        self._kernels = kernels_for(xp)

    def _apply(self, r):
        L, Lt, d, solve = self.L, self._Lt, self._diagonal, self._kernels.csr_triangular_solve
        y = np.empty_like(r)
        solve(L.indptr, L.indices, L.data, d, r, y, True)
        z = np.empty_like(r)
        solve(Lt.indptr, Lt.indices, Lt.data, d, y, z, False)
        return z


def ichol0(A: Any, shift: float = 0.0) -> IChol0:
    """Zero-fill incomplete Cholesky preconditioner.

    Computes lower-triangular ``L`` with the sparsity pattern of
    ``tril(A)`` such that ``(L L^T)_ij = A_ij`` wherever ``tril(A)`` stores
    an entry (no fill-in), and applies ``M = (L L^T)^{-1}`` by a forward
    solve with ``L`` and a backward solve with ``L^T``. On a tridiagonal
    matrix IC(0) is the exact Cholesky factor.

    Parameters
    ----------
    A : scipy sparse matrix (or NumPy array)
        Symmetric positive definite; only its lower triangle is read.
    shift : float
        Factor ``A + shift * diag(A)`` instead (Manteuffel's shifted IC), the
        usual cure when IC(0) of ``A`` meets a non-positive pivot.

    Returns
    -------
    IChol0
        Operator with ``matvec``, ``shape``, ``dtype``, ``@``,
        ``aslinearoperator()`` and the factor ``L``.

    Raises
    ------
    ValueError
        A pivot is missing, ``<= 0`` or not finite (``A`` not SPD, or IC(0)
        unstable for it: retry with e.g. ``shift=0.1``); negative ``shift``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.precond import ichol0
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4), format="csr")
    >>> M = ichol0(A)
    >>> bool(np.allclose(M @ (A @ np.arange(4.0)), np.arange(4.0)))  # exact on tridiagonals
    True
    """
    shift = check_real("shift", shift)
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    csr = scipy_csr(A)
    n = csr.shape[0]
    lower = sp.tril(csr, format="csr")
    lower = sp.csr_array(lower)
    lower.sort_indices()
    indptr = np.ascontiguousarray(lower.indptr)
    indices = np.ascontiguousarray(lower.indices)
    data = np.array(lower.data, dtype=csr.dtype, copy=True)
    if shift:
        # the diagonal is the last entry of each sorted lower row, when stored
        last = indptr[1:] - 1
        stored = (indptr[1:] > indptr[:-1])
        stored[stored] = indices[last[stored]] == np.arange(n)[stored]
        data[last[stored]] += np.asarray(shift, dtype=data.dtype) * data[last[stored]]
    failed = kernels_for(array_namespace(data)).csr_ichol0(indptr, indices, data)
    if failed >= 0:
        raise ValueError(
            f"incomplete Cholesky IC(0) broke down at row {failed}: pivot missing, <= 0 or not "
            f"finite (A is not positive definite, or IC(0) is unstable for it); retry with "
            f"shift=0.1 or larger, which factors A + shift*diag(A)")
    L = sp.csr_array((data, indices, indptr), shape=(n, n))
    return IChol0(L, shift)
