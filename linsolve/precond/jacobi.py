"""Jacobi (diagonal) preconditioning: ``M = D^{-1}``."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, is_array_api_obj

from ..validation.sparse import checked_csr
from ..core.operators import is_cupyx_sparse, is_scipy_sparse
from ._base import Preconditioner, check_square, float_dtype


class Jacobi(Preconditioner):
    """``M r = r / diag(A)``; built by :func:`jacobi`.

    Attributes
    ----------
    inverse_diagonal : array
        ``1 / diag(A)`` in the preconditioner's namespace and dtype.
    """

    complex_ok = True  # a real diagonal scaling is the same map on complex vectors

    def __init__(self, inverse_diagonal, xp):
        n = inverse_diagonal.shape[0]
        super().__init__((n, n), inverse_diagonal.dtype, xp)
        self.inverse_diagonal = inverse_diagonal

    def _apply(self, r):
        return r * self.inverse_diagonal

    def matmat(self, R):
        """``M @ R`` for an ``(n, k)`` block in one pass: each row scaled by its diagonal entry."""
        xp = self.xp
        if R.ndim != 2 or R.shape[0] != self.shape[0]:
            raise ValueError(f"expected a block of shape ({self.shape[0]}, k), got {tuple(R.shape)}")
        scale = xp.reshape(self.inverse_diagonal, (-1, 1))
        return R * (scale if R.dtype == scale.dtype else xp.astype(scale, R.dtype))


def _diagonal(A):
    """``(xp, diag(A))`` for dense arrays of any namespace and scipy/cupyx sparse."""
    if is_scipy_sparse(A):
        import numpy as np

        check_square(A)
        return array_namespace(np.empty(0)), checked_csr(A).diagonal()
    if is_cupyx_sparse(A):
        check_square(A)
        diagonal = checked_csr(A).diagonal()
        return array_namespace(diagonal), diagonal
    if is_array_api_obj(A):
        xp = array_namespace(A)
        n = check_square(A)
        # Every n+1-th entry of the flattened matrix: standard slicing only,
        # so it works without the optional linalg extension.
        return xp, xp.reshape(A, (n * n,))[::n + 1]
    raise TypeError(f"jacobi() needs a dense array or a sparse matrix, got {type(A).__name__}; "
                    "for a matrix-free operator use chebyshev()")


def jacobi(A: Any) -> Jacobi:
    """Jacobi preconditioner ``M = diag(A)^{-1}``.

    Parameters
    ----------
    A : array or sparse matrix
        Square; a dense array of any array-API namespace (NumPy, CuPy,
        ``array_api_strict``, ...), a scipy sparse or a cupyx sparse matrix.
        The preconditioner lives in that namespace (NumPy for scipy);
        float32 stays float32, integers become float64; complex (Hermitian)
        ``A`` gives a complex preconditioner of the same precision.

    Returns
    -------
    Jacobi
        Operator with ``matvec``, ``shape``, ``dtype``, ``@`` and
        ``aslinearoperator()``.

    Raises
    ------
    ValueError
        A diagonal entry is zero (or not stored) or not finite; the message
        names the first such row.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve import pcg
    >>> from linsolve.precond import jacobi
    >>> A = np.array([[4.0, 1.0], [1.0, 100.0]])
    >>> M = jacobi(A)
    >>> (M @ np.array([4.0, 100.0])).tolist()
    [1.0, 1.0]
    >>> bool(pcg(A, np.ones(2), M=M, rtol=1e-10).converged)
    True
    """
    xp, diagonal = _diagonal(A)
    dtype = float_dtype(xp, diagonal.dtype, allow_complex=True)
    diagonal = xp.astype(diagonal, dtype)  # a copy: never aliases A
    bad = xp.logical_not(xp.isfinite(diagonal)) | (diagonal == 0)
    if diagonal.shape[0] and bool(xp.any(bad)):
        row = int(xp.argmax(xp.astype(bad, xp.int8)))
        raise ValueError(f"A[{row}, {row}] = {complex(diagonal[row]) if xp.isdtype(dtype, 'complex floating') else float(diagonal[row])}: the Jacobi preconditioner "
                         "needs every diagonal entry finite and nonzero")
    return Jacobi(1 / diagonal, xp)
