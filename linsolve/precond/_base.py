"""The small base class every preconditioner shares, and input helpers.

A preconditioner here is an operator ``M ~ A^{-1}``: ``matvec``, ``shape``,
``dtype``, ``M @ r`` and :meth:`Preconditioner.aslinearoperator` for
scipy's solvers. It deliberately has no ``solve`` attribute: :func:`pcg`
applies objects with ``solve`` (curvature approximations of ``A``) through
``solve``, and these already approximate ``A^{-1}``.
"""

from __future__ import annotations

import math
import numbers

from array_api_compat import array_namespace, is_array_api_obj

from ..core.operators import Operator, is_cupyx_sparse, is_scipy_sparse
from ..validation.inputs import check_real_numeric
from ..validation.sparse import checked_csr


class Preconditioner(Operator):
    """Base class: an SPD operator approximating ``A^{-1}``, the solvers' :class:`Operator`
    with its input checked (preconditioners are handed to users and to scipy).

    Subclasses implement ``_apply(r)`` for a 1-D array ``r`` already of
    ``self.dtype``; it must return a new array and leave ``r`` untouched.

    Attributes
    ----------
    shape : tuple of int
    dtype : dtype of the namespace ``xp``
    xp : namespace
        The array namespace the preconditioner is applied in.
    """

    # Real preconditioners that are also correct on complex vectors (a real
    # diagonal scaling) set this; the others refuse complex r in matvec.
    complex_ok = False

    def __init__(self, shape, dtype, xp):
        super().__init__((int(shape[0]), int(shape[1])), dtype, xp)

    def _apply(self, r):  # pragma: no cover - abstract
        raise NotImplementedError

    def matvec(self, r):
        """Return ``M @ r`` as a new 1-D array of ``r``'s namespace and dtype.

        Examples
        --------
        >>> import numpy as np
        >>> from linsolve.precond import jacobi
        >>> jacobi(np.diag([2.0, 4.0])).matvec(np.ones(2)).tolist()
        [0.5, 0.25]
        """
        xp = self.xp
        if not is_array_api_obj(r):
            raise TypeError(f"expected an array, got {type(r).__name__}")
        r_xp = array_namespace(r)
        if r_xp.__name__ != xp.__name__:
            raise TypeError(f"this preconditioner works on {xp.__name__} arrays, got a "
                            f"{r_xp.__name__} array: build it from a matrix of the same library")
        n = self.shape[1]
        if tuple(r.shape) != (n,):
            raise ValueError(f"expected a vector of shape ({n},), got shape {tuple(r.shape)}")
        out_dtype = r.dtype if xp.isdtype(r.dtype, ("real floating", "complex floating")) \
            else self.dtype
        if xp.isdtype(r.dtype, "complex floating") and not xp.isdtype(self.dtype, "complex floating"):
            if not self.complex_ok:
                raise TypeError(f"{type(self).__name__} is a real preconditioner and cannot be "
                                "applied to complex vectors; for a complex Hermitian system use "
                                "jacobi(A) built from the complex A")
            return xp.astype(self._apply(r), out_dtype)  # r stays complex
        if r.dtype != self.dtype:
            r = xp.astype(r, self.dtype)
        z = self._apply(r)
        if z.dtype != out_dtype:
            z = xp.astype(z, out_dtype)
        return z

    def _apply_block(self, R):
        """``M @ R`` for a real ``(n, k)`` block ``R`` of ``self.dtype`` in one pass, or
        None where this preconditioner has no block form for it (the columns are
        then applied one at a time)."""
        return None

    def matmat(self, R):
        """``M @ R`` for an ``(n, k)`` block: in one pass where the preconditioner has a
        block form (:class:`~linsolve.precond.Jacobi`; IC(0), SSOR, ILU(0) and Chebyshev on NumPy),
        else the columns one at a time; each column is what :meth:`matvec` gives it."""
        xp = self.xp
        if is_array_api_obj(R) and array_namespace(R).__name__ == xp.__name__ \
                and R.ndim == 2 and R.shape[0] == self.shape[1] and R.shape[1] > 0 \
                and xp.isdtype(R.dtype, ("real floating", "integral")):
            # matvec's dtype rule: applied in self.dtype, returned in R's float dtype
            Z = self._apply_block(R if R.dtype == self.dtype else xp.astype(R, self.dtype))
            if Z is not None:
                out_dtype = R.dtype if xp.isdtype(R.dtype, "real floating") else self.dtype
                return Z if Z.dtype == out_dtype else xp.astype(Z, out_dtype)
        # anything else (complex, wrong shape or namespace) meets matvec's checks
        return Operator.matmat(self, R)

    def __matmul__(self, r):
        return self.matvec(r)

    def aslinearoperator(self):
        """This preconditioner as a (symmetric) :class:`scipy.sparse.linalg.LinearOperator`.

        For scipy's solvers, e.g. ``scipy.sparse.linalg.cg(A, b, M=M.aslinearoperator())``;
        NumPy preconditioners only.

        Examples
        --------
        >>> import numpy as np
        >>> from linsolve.precond import jacobi
        >>> op = jacobi(np.diag([2.0, 4.0])).aslinearoperator()
        >>> op.shape, (op @ np.ones(2)).tolist()
        ((2, 2), [0.5, 0.25])
        """
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        if "numpy" not in self.xp.__name__:
            raise TypeError(f"aslinearoperator() needs a NumPy preconditioner; this one works "
                            f"on {self.xp.__name__} arrays")

        def apply(x):
            return self.matvec(np.reshape(np.asarray(x), (-1,)))

        return LinearOperator(self.shape, matvec=apply, rmatvec=apply, dtype=np.dtype(self.dtype))

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} preconditioner, {self.shape[0]}x{self.shape[1]}, "
                f"dtype={self.dtype}>")


def float_dtype(xp, dtype, *, allow_complex: bool = False):
    """float32 of ``xp`` for float32 ``dtype``, float64 otherwise (ints, bools, float64).

    Compared by name, so dtypes of another library (scipy sparse data while
    ``xp`` is the array-API NumPy) work too. Complex is refused (the
    preconditioners here are real) unless ``allow_complex``: then complex64
    and complex128 are kept.
    """
    name = str(dtype)
    if "complex" in name and allow_complex:
        return xp.complex64 if name.endswith("complex64") else xp.complex128
    if "complex" in name:
        raise TypeError(f"complex dtype {dtype} is not supported; the preconditioners are real")
    check_real_numeric("A", dtype)  # object and string arrays
    return xp.float32 if name.endswith("float32") else xp.float64


def check_square(A, name: str = "A") -> int:
    """``n`` for an ``n x n`` ``A``; ValueError otherwise."""
    shape = tuple(getattr(A, "shape", ()))
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {shape}")
    return int(shape[0])


def check_real(name: str, value) -> float:
    """``value`` as a finite float, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def scipy_csr(A, name: str = "A", *, copy: bool = True):
    """``A`` (scipy sparse or a NumPy 2-D array) as a canonical float scipy CSR array.

    Canonical: duplicates summed, column indices sorted; a fresh copy, or
    with ``copy=False`` possibly ``A``'s own arrays (already canonical CSR of
    a float dtype): treat the result as read-only.
    """
    import numpy as np
    import scipy.sparse as sp

    if is_cupyx_sparse(A):
        raise TypeError(f"{name} is a cupyx sparse matrix; this preconditioner runs on the CPU "
                        "only: pass A.get() (scipy), or use jacobi() or chebyshev() on the GPU")
    if not is_scipy_sparse(A):
        if not isinstance(A, np.ndarray):
            raise TypeError(f"{name} must be a scipy sparse matrix (or a NumPy array), "
                            f"got {type(A).__name__}")
    check_square(A, name)
    check_real_numeric(name, A.dtype)
    if is_scipy_sparse(A):
        A = checked_csr(A, name, canonical=not copy)
    elif A.dtype not in (np.float32, np.float64):
        # as pcg: booleans, integers and float16 (which scipy.sparse cannot
        # hold) become float64
        A = A.astype(np.float64)
    csr = sp.csr_array(A, copy=copy)
    if csr.dtype.kind == "c":
        raise TypeError(f"complex dtype {csr.dtype} is not supported; the preconditioners are real")
    if csr.dtype not in (np.float32, np.float64):
        csr = csr.astype(np.float64)
    if copy or not is_scipy_sparse(A):
        csr.sum_duplicates()
        csr.sort_indices()
    return csr
