"""Symmetric SOR as an SPD preconditioner, applied by two triangular sweeps."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._base import check_real, scipy_csr
from ._triangular import DEFAULT_NUM_DOMAINS, TriangularPair, choose_ordering, permuted


class SSOR(TriangularPair):
    """Applies ``P^T M_B^{-1} P``, ``M_B = (D/w + L) D^{-1} (D/w + U) * w / (2 - w)``.

    ``B = A[perm][:, perm] = L + D + U``; built by :func:`ssor`.

    Attributes
    ----------
    omega : float
    perm : ndarray
        The ordering (``arange(n)`` for ``ordering="natural"``).
    ordering : str
        ``"natural"`` or ``"domains"`` (``"auto"`` resolved).
    num_domains : int
    """

    def __init__(self, csr, diagonal, omega, ordering, domains):
        dtype = csr.dtype
        strict_lower = sp.tril(csr, -1, format="csr")
        strict_upper = sp.triu(csr, 1, format="csr")
        factor = np.asarray(omega * (2.0 - omega), dtype=dtype)
        if (diagonal > 0).all() and _equal(strict_upper, strict_lower.T):
            # Symmetric, D > 0: with C = w D^{-1/2} L D^{-1/2},
            # M_B^{-1} = w (2 - w) D^{-1/2} (I + C^T)^{-1} (I + C)^{-1} D^{-1/2},
            # and I + C^T is read from C by columns: one factor stored.
            root = np.sqrt(diagonal.astype(np.float64))
            scale = (1 / root).astype(dtype)
            lower = sp.csr_array(sp.diags_array(omega * scale) @ strict_lower
                                 @ sp.diags_array(scale))
            lower.sort_indices()
            super().__init__(lower, None, scale, factor * scale, ordering, domains)
        else:
            # rows divided by D / w: (D/w + L) = (D/w)(I + w D^{-1} L), likewise for U
            row_scale = sp.diags_array((np.asarray(omega, dtype=dtype) / diagonal).astype(dtype))
            lower = sp.csr_array(row_scale @ strict_lower)
            upper = sp.csr_array(row_scale @ strict_upper)
            for part in (lower, upper):
                part.sort_indices()
            scale_in = np.ascontiguousarray(1 / diagonal, dtype=dtype)
            scale_out = np.full(diagonal.shape[0], factor, dtype=dtype)
            super().__init__(lower, upper, scale_in, scale_out, ordering, domains)
        self.omega = omega


def _equal(a, b) -> bool:
    """Whether sparse ``a`` and ``b`` hold the same values (stored zeros aside)."""
    return (sp.csr_array(a) != sp.csr_array(b)).nnz == 0


def ssor(A: Any, omega: float = 1.0, *, ordering: str = "auto",
         num_domains: int = DEFAULT_NUM_DOMAINS) -> SSOR:
    """Symmetric SOR preconditioner.

    With ``B = A[perm][:, perm] = L + D + U`` (strictly lower, diagonal,
    strictly upper), ``M_B = (D/w + L) D^{-1} (D/w + U) * w/(2-w)`` (Saad,
    eq. 4.16) is SPD for SPD ``A`` and ``0 < w < 2``; the returned operator
    applies ``P^T M_B^{-1} P``, i.e. a forward sweep with ``D/w + L``, a
    scaling by ``D``, a backward sweep with ``D/w + U`` and the factor
    ``(2-w)/w`` (computed as two unit triangular sweeps: for symmetric
    ``B`` with a positive diagonal, ``I + C`` and ``I + C^T`` with ``C = w
    D^{-1/2} L D^{-1/2}``, ``C`` stored once; otherwise the rows divided by
    ``D/w`` beforehand, both stored), so that in the natural ordering one
    application from zero equals one SSOR iteration of :func:`linsolve.sor`
    (to rounding). ``omega = 1`` is symmetric Gauss-Seidel. (SPEC section 3
    writes ``(D/w)^{-1}`` in the middle: ``w`` times this ``M_B``; a scalar
    that leaves PCG's iterates unchanged but not the stationary iteration.)

    Parameters
    ----------
    A : scipy sparse matrix (or NumPy array)
        Square; converted once to CSR with sorted indices (CPU only).
    omega : float
        Relaxation factor, ``0 < omega < 2``.
    ordering : {"auto", "natural", "domains"}
        As for :func:`linsolve.precond.ichol0`: ``"domains"`` sweeps
        ``num_domains`` uncoupled domains in parallel, separators last;
        ``"auto"`` (default) picks it when ``n + nnz >= 100_000``, the
        natural ordering below.
    num_domains : int
        Power of two; 1 gives the reverse Cuthill-McKee ordering.

    Returns
    -------
    SSOR
        Operator with ``matvec``, ``shape``, ``dtype``, ``@``, ``perm`` and
        ``aslinearoperator()``; float32 ``A`` gives float32 sweeps.

    Raises
    ------
    ValueError
        ``omega`` outside ``(0, 2)``; a zero or non-finite diagonal entry
        (named); unknown ``ordering``; ``num_domains`` not a power of two.
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
    ordering, domains = choose_ordering(csr, ordering, num_domains)
    csr = permuted(csr, domains.perm, ordering == "natural")
    return SSOR(csr, csr.diagonal(), omega, ordering, domains)
