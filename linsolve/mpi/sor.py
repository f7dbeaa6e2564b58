"""Block-Jacobi SOR/SSOR over ranks (PETSc's parallel SOR), as solver and as CG preconditioner.

Each outer iteration exchanges the ghosts of ``x`` once, moves the
off-process coupling to the right-hand side, ``c = b_local - A_off x_ghost``,
and sweeps the rank's diagonal block with ``c`` (PETSc's ``MatSOR_MPIAIJ``
with ``SOR_LOCAL_FORWARD_SWEEP`` / ``SOR_LOCAL_SYMMETRIC_SWEEP``: the
ghosts are not refreshed between the forward and backward halves). With
one rank it is :func:`linsolve.sor` exactly; with P ranks it is SOR inside
the blocks and Jacobi between them, so the iteration depends on P
(:func:`block_sor_reference` is the single-process oracle for any P).

As a preconditioner, one symmetric sweep from zero on each diagonal block
(the ghosts of a zero vector are zero) is block-Jacobi with SSOR blocks:
``M^{-1} = diag(SSOR(A_11)^{-1}, ..., SSOR(A_PP)^{-1})``, SPD for SPD ``A``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from ..core.record import SolveRecord
from ..core.setup import settings
from ..core.stopping import Tolerance, b_verdict
from ..precond import ssor as _ssor
from ..result import SolveResult
from ..stationary.sor import SorMatrix, sor_verdict
from ..validation.inputs import check_maxiter, check_nonnegative, check_omega
from ..validation.sparse import checked_csr
from .comm import check_same_settings, raise_if_any_rank
from .matrix import DistCSR
from .pcg import local_start

__all__ = ["BlockSOR", "block_sor_reference", "sor"]

class BlockSOR:
    """Block-Jacobi (S)SOR on a :class:`DistCSR`: local sweeps per rank.

    Parameters
    ----------
    A : DistCSR
        Nonzero diagonal (checked on every rank; a zero on one rank raises
        ``ValueError`` on all of them, collectively: construct it on every rank).
    omega : float
        Relaxation factor in (0, 2) used by :meth:`matvec` (the
        preconditioner) and as the default of :meth:`sweep`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import BlockSOR, DistCSR, SerialComm, pcg
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(40, 40), format="csr")
    >>> D = DistCSR.from_global(A, comm=SerialComm())
    >>> M = BlockSOR(D, omega=1.5)
    >>> pcg(D, np.ones(40), M=M, rtol=1e-8).iterations < pcg(D, np.ones(40), rtol=1e-8).iterations
    True
    """

    def __init__(self, A: DistCSR, omega: float = 1.0):
        if not isinstance(A, DistCSR):
            raise TypeError(f"A must be a linsolve.mpi.DistCSR, got {type(A).__name__}")
        self.A = A
        self.omega = check_omega(omega)
        self.shape = A.shape
        self.dtype = A.dtype
        # SorMatrix raises ValueError naming a zero diagonal entry of this
        # rank's block; raised on every rank (one Allreduce) so that no rank
        # goes on into a collective the failing one never reaches
        error = None
        self.local = None
        try:
            self.local = SorMatrix(A.diag_csr, dtype=A.dtype) if A.n_local else None
        except ValueError as caught:
            error = ValueError(f"rank {A.comm.rank} (rows {A.rstart}:{A.rend}): {caught}")
        raise_if_any_rank(A.comm, error)
        self._preconditioner = None

    def _local_preconditioner(self):
        if self._preconditioner is None and self.A.n_local:
            # natural: one sweep of the block as documented; a rank runs one
            # thread, so the parallel domain ordering would only add its gathers
            self._preconditioner = _ssor(self.A.diag_csr, self.omega, ordering="natural")
        return self._preconditioner

    def matvec(self, r: np.ndarray) -> np.ndarray:
        """Block-Jacobi SSOR preconditioner: one symmetric sweep from zero on each block."""
        if not self.A.n_local:
            return np.zeros_like(r)
        return self._local_preconditioner().matvec(r)

    def sweep(self, b: np.ndarray, x: np.ndarray, omega: float | None = None, *,
              symmetric: bool = False, ghosts_current: bool = False) -> None:
        """One outer iteration on the local ``x`` in place (halo exchange, then local sweeps).

        ``ghosts_current=True`` skips the exchange when ``A.ghosts`` already
        holds the ghosts of ``x`` (after :meth:`residual_norm`).
        """
        omega = self.omega if omega is None else check_omega(omega)
        A = self.A
        if not ghosts_current:
            A.update_ghosts(x)
        if not A.n_local:
            return
        c = np.array(b, dtype=A.dtype, copy=True)
        if A.garray.size:
            c -= A.off_csr @ A.ghosts
        self.local.sweep(c, x, omega)
        if symmetric:
            self.local.sweep(c, x, omega, backward=True)

    def residual_norm(self, b: np.ndarray, x: np.ndarray) -> float:
        """Global ``||b - A x||``; leaves the ghosts of ``x`` in ``A.ghosts`` for the next sweep."""
        r = b - self.A.matvec(x)
        return self.A.norm(r)


def sor(A: DistCSR, b: Any, omega: float = 1.0, x0: Any = None, *, rtol: float = 1e-8,
        atol: float = 0.0, maxiter: int | None = None, symmetric: bool = False,
        dtol: float = 1e5, callback: Callable[[np.ndarray], None] | None = None,
        monitor: Any = False, **kwargs) -> SolveResult:
    """Block-Jacobi SOR (SSOR with ``symmetric=True``) as a solver: :func:`linsolve.sor`'s rules.

    One iteration is one ghost exchange and one local sweep per rank (two
    for SSOR). Stops at the first ``k`` with ``||b - A x_k|| <= max(rtol ||b||,
    atol)`` (the true residual, one extra reduction per iteration).

    Parameters
    ----------
    A : DistCSR or BlockSOR
    b, x0 : local or global numpy vectors (see :func:`linsolve.mpi.pcg`)
    omega, rtol, atol, maxiter, symmetric, dtol, callback, monitor
        As :func:`linsolve.sor`; ``monitor`` prints on rank 0.

    Returns
    -------
    SolveResult
        ``x`` holds this rank's rows.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm, sor
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(20, 20), format="csr")
    >>> result = sor(DistCSR.from_global(A, comm=SerialComm()), np.ones(20), omega=1.7)
    >>> result.converged, result.reason
    (True, 'CONVERGED_RTOL')
    """
    start = time.perf_counter()
    if not isinstance(A, (BlockSOR, DistCSR)):
        raise TypeError(f"A must be a linsolve.mpi.DistCSR or BlockSOR, got {type(A).__name__}; "
                        "build one with DistCSR.from_global or DistCSR.from_rows")
    dist = A.A if isinstance(A, BlockSOR) else A
    shared = None
    try:  # a bad argument (or b of the wrong length) on one rank raises on all of them
        common = settings("sor", kwargs, rtol=rtol, atol=atol, monitor=monitor, label="SOR",
                          callback=callback, active=dist.comm.rank == 0, flush=True)
        dtol = check_nonnegative("dtol", dtol)
        omega = check_omega(omega)
        maxiter = check_maxiter(maxiter, 10 * dist.shape[0])
        b, x, error = local_start(dist, b, x0)
        shared = {"solver": "linsolve.mpi.sor", "rtol": common.rtol, "atol": common.atol,
                  "dtol": dtol, "omega": omega, "maxiter": maxiter, "symmetric": bool(symmetric)}
    except (ValueError, TypeError) as caught:
        error = caught
    # the one collective before the sweeps: same settings everywhere, or an error on all
    check_same_settings(dist.comm, shared, error)
    record = SolveRecord(common.monitor, start=start)
    blocks = A if isinstance(A, BlockSOR) else BlockSOR(A, omega)
    A = blocks.A
    bnorm = A.norm(b)
    stop = b_verdict(bnorm)
    if stop is not None:
        if stop.converged:  # b = 0: x = 0 is exact, whatever x0 is (as pcg, scipy)
            x = np.zeros_like(x)
        record.append(0, bnorm)
        return record.result(x, stop, 0, matvecs=0, extra={"ranks": A.comm.size, "omega": omega})
    tolerance = Tolerance.of(common.rtol, common.atol, bnorm)
    rnorm = blocks.residual_norm(b, x) if math.isfinite(bnorm) else float("nan")
    grow_limit = dtol * rnorm
    k = 0
    record.append(0, rnorm)
    while math.isfinite(rnorm) and tolerance.tol < rnorm <= grow_limit and k < maxiter:
        # the residual's halo exchange left the ghosts of x in place
        blocks.sweep(b, x, omega, symmetric=symmetric, ghosts_current=True)
        k += 1
        rnorm = blocks.residual_norm(b, x)
        record.append(k, rnorm)
        if common.callback is not None:
            common.callback(x)
    stop = sor_verdict(rnorm, k, tolerance, maxiter, grow_limit, omega)
    return record.result(x, stop, k, matvecs=len(record.norms),
                         extra={"ranks": A.comm.size, "omega": omega})


def block_sor_reference(A: Any, b: np.ndarray, ranges, omega: float, x0=None, *,
                        iterations: int, symmetric: bool = False) -> np.ndarray:
    """Single-process block-Jacobi SOR in plain NumPy loops: the oracle for :func:`sor`.

    ``ranges`` are the row blocks (as :attr:`DistCSR.ranges`); each outer
    iteration freezes the other blocks' values at the start of the
    iteration and sweeps each block row by row in natural order.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4), format="csr")
    >>> block_sor_reference(A, np.ones(4), [0, 2, 4], 1.0, iterations=1).tolist()
    [0.5, 0.75, 0.5, 0.75]
    """
    A = sp.csr_matrix(checked_csr(A) if sp.issparse(A) else A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    x = np.zeros(A.shape[0]) if x0 is None else np.array(x0, dtype=np.float64)
    ranges = [int(v) for v in ranges]
    for _ in range(iterations):
        frozen = x.copy()
        for lo, hi in zip(ranges[:-1], ranges[1:]):
            orders = [range(lo, hi)] + ([range(hi - 1, lo - 1, -1)] if symmetric else [])
            for order in orders:
                for i in order:
                    sigma = 0.0
                    diagonal = 0.0
                    for jj in range(A.indptr[i], A.indptr[i + 1]):
                        j = A.indices[jj]
                        if j == i:
                            diagonal += A.data[jj]
                        else:
                            sigma += A.data[jj] * (x[j] if lo <= j < hi else frozen[j])
                    x[i] = (1.0 - omega) * x[i] + omega * (b[i] - sigma) / diagonal
    return x
