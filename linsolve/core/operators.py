"""Coerce whatever a user passes as ``A`` or ``M`` into one small operator type.

Accepted: dense arrays of any array-API namespace, scipy sparse matrices
and arrays (CPU), cupyx sparse matrices (GPU), scipy ``LinearOperator``,
pyamg preconditioners, any object with ``matvec`` (or ``solve`` for a
preconditioner: curvature objects), and plain callables ``v -> A v``.
Sparse matrices go to the fastest layout the kernels offer: DIA for stencil
matrices with few diagonals, CSR otherwise.
"""

from __future__ import annotations

from typing import Any, Callable

from array_api_compat import array_namespace, is_array_api_obj

from cext import csr_to_dia, kernels_for

from ..validation.sparse import checked_csr


class Operator:
    """A square linear map in one namespace and dtype, with a fused product.

    Attributes
    ----------
    shape : tuple of int
    dtype : dtype of the namespace
    layout : str
        ``"dense"``, ``"csr"``, ``"dia"`` or ``"function"``.
    """

    layout = "function"

    def __init__(self, shape, dtype, xp):
        self.shape = shape
        self.dtype = dtype
        self.xp = xp
        self.kernels = kernels_for(xp, dtype)

    def matvec(self, v):
        """Return ``A @ v`` as a new 1-D array."""
        return self.matvec_dot(v, self.xp.empty_like(v))[0]

    def matvec_dot(self, p, q):
        """Return ``(A @ p, p . (A @ p))``; use the returned product.

        ``q`` is a buffer the fused sparse kernels write the product into
        (NumPy and CuPy: CSR and DIA operators return ``q`` itself). Dense and
        matrix-free operators return their product as it comes, ``q`` unused:
        no copy, and nothing written into an array that may be immutable (JAX).
        """
        q = self.matvec(p)
        return q, self.kernels.dot(p, q)

    def matmat(self, P):
        """``A @ P`` for an ``(n, k)`` block: :meth:`matvec` on each column (a preconditioner
        without a block form; the compiled products have :meth:`matmat_dot`)."""
        xp = self.xp
        if P.shape[1] == 0:
            return xp.zeros_like(P)
        return xp.stack([self.matvec(xp.asarray(P[:, j], copy=True)) for j in range(P.shape[1])],
                        axis=1)

    def matmat_dot(self, P, Q, dots):
        """``(A @ P, dots)`` for an ``(n, k)`` block ``P``, ``dots[j] = P[:, j] . (A P)[:, j]``.

        ``Q`` and ``dots`` are buffers the compiled kernels write into (the
        product and the ``k`` inner products in one pass over ``A`` for CSR and DIA);
        use the returned arrays. Other operators apply :meth:`matvec` to
        each column.
        """
        product = self.matmat(P)
        return product, self.kernels.block_dots(P, product, dots)

    def __repr__(self) -> str:
        return f"<{self.shape[0]}x{self.shape[1]} {self.layout} operator, dtype={self.dtype}>"


class _FunctionOperator(Operator):
    def __init__(self, func: Callable, shape, dtype, xp, name: str, block: Callable | None = None):
        super().__init__(shape, dtype, xp)
        self._func = func
        self._name = name
        self._block = block  # the object's own product with an (n, k) block, if it has one

    def matmat(self, P):
        if self._block is None:
            return super().matmat(P)
        Y = self._block(P)
        if not is_array_api_obj(Y) or tuple(Y.shape) != tuple(P.shape):
            raise ValueError(f"{self._name.rsplit('.', 1)[0]}.matmat returned "
                             f"{getattr(Y, 'shape', type(Y).__name__)}, expected {tuple(P.shape)}")
        return Y if Y.dtype == P.dtype else self.xp.astype(Y, P.dtype)

    def matvec(self, v):
        xp = self.xp
        y = self._func(v)
        if not is_array_api_obj(y):
            raise TypeError(f"{self._name} returned {type(y).__name__}, expected an array")
        if array_namespace(y) is not xp and array_namespace(y).__name__ != xp.__name__:
            raise TypeError(f"{self._name} returned an array of namespace "
                            f"{array_namespace(y).__name__}, expected {xp.__name__}")
        n = self.shape[0]
        if y.shape not in ((n,), (n, 1)):
            raise ValueError(f"{self._name} returned shape {y.shape}, expected ({n},)")
        y = xp.reshape(y, (n,))
        if y.dtype != v.dtype:
            y = xp.astype(y, v.dtype)
        return y


class _DenseOperator(Operator):
    layout = "dense"

    def __init__(self, A, xp):
        super().__init__(tuple(A.shape), A.dtype, xp)
        self.array = A

    def matvec(self, v):
        return self.array @ v

    def matmat_dot(self, P, Q, dots):
        product = self.array @ P
        return product, self.kernels.block_dots(P, product, dots)


class _CsrOperator(Operator):
    layout = "csr"

    def __init__(self, indptr, indices, data, shape, xp):
        super().__init__(shape, data.dtype, xp)
        self.indptr, self.indices, self.data = indptr, indices, data

    def matvec(self, v):
        # the product alone: the fused kernel's dot would be read back to the host
        # on every call (a device sync on the GPU: Chebyshev would sync ``degree`` times
        # an iteration)
        return self.kernels.csr_spmv(self.indptr, self.indices, self.data, v,
                                     self.xp.empty_like(v))

    def matvec_dot(self, p, q):
        return q, self.kernels.csr_spmv_dot(self.indptr, self.indices, self.data, p, q)

    def matmat(self, P):
        # the fused kernel, its dots unused: one pass over A for all k columns
        xp = self.xp
        return self.matmat_dot(P, xp.empty_like(P), xp.empty((P.shape[1],), dtype=xp.float64))[0]

    def matmat_dot(self, P, Q, dots):
        return self.kernels.csr_spmm_dot(self.indptr, self.indices, self.data, P, Q, dots)


class _DiaOperator(Operator):
    layout = "dia"

    def __init__(self, offsets, values, shape, xp):
        super().__init__(shape, values.dtype, xp)
        self.offsets, self.values = offsets, values

    def matvec(self, v):
        return self.kernels.dia_spmv(self.offsets, self.values, v, self.xp.empty_like(v))

    def matvec_dot(self, p, q):
        return q, self.kernels.dia_spmv_dot(self.offsets, self.values, p, q)

    matmat = _CsrOperator.matmat  # one pass over A for all k columns, against k passes

    def matmat_dot(self, P, Q, dots):
        return self.kernels.dia_spmm_dot(self.offsets, self.values, P, Q, dots)


def is_scipy_sparse(A) -> bool:
    """True for scipy sparse matrices and arrays."""
    import scipy.sparse as sp

    return sp.issparse(A)


def is_cupyx_sparse(A) -> bool:
    """True for cupyx sparse matrices; checked by module name, never importing cupy."""
    return type(A).__module__.startswith("cupyx.scipy.sparse")


def _sparse_operator(A, xp, dtype, *, allow_dia: bool, name: str = "A") -> Operator:
    """CSR (or DIA) operator from a scipy or cupyx sparse matrix (structure checked first)."""
    csr = checked_csr(A, name)
    n = csr.shape[0]
    host = is_scipy_sparse(A)
    index_dtype = "int32" if csr.nnz < 2**31 - 1 and n < 2**31 - 1 else "int64"
    if host:
        import numpy as np

        data = np.ascontiguousarray(csr.data, dtype=dtype)
        indptr = np.ascontiguousarray(csr.indptr, dtype=index_dtype)
        indices = np.ascontiguousarray(csr.indices, dtype=index_dtype)
        if allow_dia:
            layout = csr_to_dia(indptr, indices, data, n, checked=True)
            if layout is not None:
                return _DiaOperator(layout.offsets, layout.values, csr.shape, xp)
        return _CsrOperator(indptr, indices, data, csr.shape, xp)
    data = csr.data.astype(dtype, copy=False)
    indptr = csr.indptr.astype(index_dtype, copy=False)
    indices = csr.indices.astype(index_dtype, copy=False)
    return _CsrOperator(indptr, indices, data, csr.shape, xp)


def operator_dtype(A):
    """The dtype ``A`` declares, or None (callables, objects without one)."""
    return getattr(A, "dtype", None)


def as_operator(A: Any, xp, dtype, n: int, *, name: str = "A",
                prefer_solve: bool = False, allow_dia: bool = True) -> Operator:
    """Wrap ``A`` as an :class:`Operator` acting on 1-D arrays of namespace ``xp``.

    Parameters
    ----------
    A : array, sparse matrix, LinearOperator, object with ``matvec``/``solve``, or callable
    xp : namespace
        The namespace of the vectors the operator will be applied to.
    dtype : dtype of ``xp``
        Working dtype; array and sparse inputs are converted to it once.
    n : int
        Expected size: the operator must be ``n x n``.
    name : str
        Used in error messages ("A", "M").
    prefer_solve : bool
        For preconditioners: an object with ``solve`` (a curvature
        approximation of A) is applied through ``solve``.
    allow_dia : bool
        Let sparse matrices with few diagonals use the DIA kernels.

    Raises
    ------
    TypeError
        Unsupported type, or an array/sparse matrix of another backend.
    ValueError
        Not square, or not ``n x n``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from array_api_compat import array_namespace
    >>> xp = array_namespace(np.ones(3))
    >>> op = as_operator(sp.eye(3, format="csr"), xp, np.float64, 3)
    >>> op.layout, op.matvec(np.arange(3.0)).tolist()
    ('dia', [0.0, 1.0, 2.0])
    """
    op = _coerce(A, xp, dtype, n, name, prefer_solve, allow_dia)
    if tuple(op.shape) != (n, n):
        raise ValueError(f"{name} has shape {tuple(op.shape)}, expected ({n}, {n}) to match b")
    return op


def _coerce(A, xp, dtype, n, name, prefer_solve, allow_dia) -> Operator:
    xp_name = xp.__name__
    if is_scipy_sparse(A) or is_cupyx_sparse(A):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"{name} must be square, got shape {A.shape}")
        on_gpu = is_cupyx_sparse(A)
        if on_gpu != ("cupy" in xp_name):
            kind = "cupyx.scipy.sparse" if on_gpu else "scipy.sparse"
            raise TypeError(f"{name} is a {kind} matrix but b is a {xp_name} array: "
                            "move both to the same device (cupy for cupyx, numpy for scipy)")
        if not on_gpu and "numpy" not in xp_name:
            raise TypeError(f"{name} is a scipy.sparse matrix but b is a {xp_name} array; "
                            "pass numpy arrays, or a dense array of the same namespace")
        return _sparse_operator(A, xp, dtype, allow_dia=allow_dia and not on_gpu, name=name)
    if type(A).__name__ == "matrix" and type(A).__module__.startswith("numpy"):
        import numpy as np

        A = np.asarray(A)  # numpy.matrix @ v would return a 2-D matrix
    if is_array_api_obj(A):
        A_xp = array_namespace(A)
        if A_xp.__name__ != xp_name:
            raise TypeError(f"{name} is a {A_xp.__name__} array but b is a {xp_name} array: "
                            "use one array library for both")
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"{name} must be a square 2-D array, got shape {A.shape}")
        if A.dtype != dtype:
            A = xp.astype(A, dtype)
        return _DenseOperator(A, xp)
    shape = tuple(getattr(A, "shape", (n, n)))
    if prefer_solve and callable(getattr(A, "solve", None)) and not hasattr(A, "rmatvec"):
        return _FunctionOperator(A.solve, shape, dtype, xp, f"{name}.solve")
    if callable(getattr(A, "matvec", None)):
        # scipy's LinearOperator (and our preconditioners) take a whole (n, k) block
        block = getattr(A, "matmat", None)
        return _FunctionOperator(A.matvec, shape, dtype, xp, f"{name}.matvec",
                                 block if callable(block) else None)
    if callable(A):
        return _FunctionOperator(A, shape, dtype, xp, name)
    raise TypeError(f"{name} must be an array, a sparse matrix, a LinearOperator, an object "
                    f"with matvec, or a callable; got {type(A).__name__}")
