"""Symmetric SOR as an SPD preconditioner, applied by two triangular sweeps."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from cext import kernels_for

from ._base import Preconditioner, check_real, scipy_csr


class SSOR(Preconditioner):
    """Applies ``M^{-1}`` for ``M = (D/w + L) D^{-1} (D/w + U) * w / (2 - w)``; built by :func:`ssor`.

    Attributes
    ----------
    omega : float
    """

    def __init__(self, csr, scaled_diagonal, omega):
        xp = array_namespace(scaled_diagonal)
        super().__init__(csr.shape, csr.dtype, xp)
        self.omega = omega
        self._csr = csr
        self._scaled_diagonal = scaled_diagonal  # D / w
        self._diagonal = scaled_diagonal * scaled_diagonal.dtype.type(omega)  # D
        self._factor = (2.0 - omega) / omega
        self._kernels = kernels_for(xp)

    def _apply(self, r):
        # M^{-1} r = (2-w)/w (D/w + U)^{-1} D (D/w + L)^{-1} r, Saad (4.16)
        # written with D/w: w(2-w) (D + wU)^{-1} D (D + wL)^{-1}. The
        # kernel reads only the strict triangle it is asked for, so the one
        # CSR copy of A serves both sweeps.
        csr, d, solve = self._csr, self._scaled_diagonal, self._kernels.csr_triangular_solve
        y = np.empty_like(r)
        solve(csr.indptr, csr.indices, csr.data, d, r, y, True)
        y *= self._diagonal
        z = np.empty_like(r)
        solve(csr.indptr, csr.indices, csr.data, d, y, z, False)
        z *= self._factor
        return z


def ssor(A: Any, omega: float = 1.0) -> SSOR:
    """Symmetric SOR preconditioner.

    With ``A = L + D + U`` (strictly lower, diagonal, strictly upper),
    ``M_A = (D/w + L) D^{-1} (D/w + U) * w/(2-w)`` (Saad, eq. 4.16) is SPD
    for SPD ``A`` and ``0 < w < 2``; the returned operator applies
    ``M_A^{-1}`` by a forward sweep with ``D/w + L``, a scaling by ``D``, a
    backward sweep with ``D/w + U`` and the factor ``(2-w)/w``, so that one
    application from zero equals one SSOR iteration of :func:`linsolve.sor`.
    ``omega = 1`` is symmetric Gauss-Seidel. (SPEC section 3 writes
    ``(D/w)^{-1}`` in the middle: ``w`` times this ``M_A``; a scalar that
    leaves PCG's iterates unchanged but not the stationary iteration.)

    Parameters
    ----------
    A : scipy sparse matrix (or NumPy array)
        Square; converted once to CSR with sorted indices (CPU only).
    omega : float
        Relaxation factor, ``0 < omega < 2``.

    Returns
    -------
    SSOR
        Operator with ``matvec``, ``shape``, ``dtype``, ``@`` and ``aslinearoperator()``.

    Raises
    ------
    ValueError
        ``omega`` outside ``(0, 2)``; a zero or non-finite diagonal entry (named).
    TypeError
        GPU (cupyx) or other non-scipy input.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import pcg
    >>> from linsolve.precond import ssor
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> b = np.ones(50)
    >>> pcg(A, b, M=ssor(A, omega=1.5), rtol=1e-8).iterations < pcg(A, b, rtol=1e-8).iterations
    True
    """
    omega = check_real("omega", omega)
    if not 0.0 < omega < 2.0:
        raise ValueError(f"omega must satisfy 0 < omega < 2 (SSOR is SPD only there), got {omega}")
    csr = scipy_csr(A)
    diagonal = csr.diagonal()
    bad = ~np.isfinite(diagonal) | (diagonal == 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"A[{row}, {row}] = {diagonal[row]}: SSOR needs every diagonal entry "
                         "finite and nonzero")
    scaled = np.ascontiguousarray(diagonal / np.asarray(omega, dtype=csr.dtype), dtype=csr.dtype)
    return SSOR(csr, scaled, omega)
