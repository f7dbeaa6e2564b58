"""Algebraic multigrid preconditioning: one pyamg smoothed-aggregation V-cycle."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ._base import Preconditioner, check_square, float_dtype, scipy_csr


class AMG(Preconditioner):
    """One V-cycle of a pyamg multilevel solver from a zero guess; built by :func:`amg`.

    Attributes
    ----------
    hierarchy : pyamg.multilevel.MultilevelSolver
        The hierarchy (``print(M.hierarchy)`` shows levels and complexities).
    """

    def __init__(self, hierarchy, dtype):
        xp = array_namespace(np.empty(0))
        super().__init__(hierarchy.levels[0].A.shape, dtype, xp)
        self.hierarchy = hierarchy
        self._cycle = hierarchy.aspreconditioner(cycle="V")

    def _apply(self, r):
        return np.asarray(self._cycle.matvec(r), dtype=self.dtype).reshape(-1)


def amg(A: Any, **opts) -> AMG:
    """Smoothed-aggregation AMG preconditioner (one V-cycle per application).

    Wraps ``pyamg.smoothed_aggregation_solver(A, **opts).aspreconditioner(cycle="V")``.
    pyamg's default smoothers are symmetric, so the V-cycle is SPD for SPD ``A``.

    Parameters
    ----------
    A : scipy sparse matrix (or NumPy array)
        Symmetric positive definite, CPU.
    **opts
        Passed to :func:`pyamg.smoothed_aggregation_solver` (``strength``,
        ``smooth``, ``max_coarse``, ``presmoother``, ...).

    Returns
    -------
    AMG
        Operator with ``matvec``, ``shape``, ``dtype``, ``@``,
        ``aslinearoperator()`` and the pyamg ``hierarchy``.

    Raises
    ------
    ImportError
        pyamg is not installed (``pip install 'curvature-linsolve[amg]'``).
    ValueError
        ``A`` has a NaN or Inf entry, or a diagonal entry ``<= 0`` (named).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import pcg
    >>> from linsolve.precond import amg
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(30, 30))
    >>> A = (sp.kron(sp.eye(30), T) + sp.kron(T, sp.eye(30))).tocsr()
    >>> result = pcg(A, np.ones(900), M=amg(A), rtol=1e-8)
    >>> bool(result.converged), result.iterations < 20
    (True, True)
    """
    try:
        import pyamg
    except ImportError as err:
        raise ImportError("amg() needs pyamg: pip install 'curvature-linsolve[amg]'") from err
    check_square(A)
    csr = scipy_csr(A)
    # pyamg builds a hierarchy of NaNs from these without a word
    finite = np.isfinite(csr.data)
    if not finite.all():
        row = int(np.searchsorted(csr.indptr, np.argmin(finite), side="right") - 1)
        raise ValueError(f"A has a NaN or Inf entry in row {row}: amg() needs a finite "
                         "symmetric positive definite matrix")
    diagonal = csr.diagonal()
    if np.any(diagonal <= 0):
        row = int(np.argmax(diagonal <= 0))
        raise ValueError(f"A[{row}, {row}] = {diagonal[row]}: amg() needs every diagonal entry "
                         "> 0 (A symmetric positive definite; store the diagonal explicitly)")
    dtype = float_dtype(array_namespace(np.empty(0)), csr.dtype)
    hierarchy = pyamg.smoothed_aggregation_solver(csr, **opts)
    return AMG(hierarchy, dtype)
