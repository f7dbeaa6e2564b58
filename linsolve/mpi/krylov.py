"""MINRES and BiCGStab over ranks: the serial recurrences on a :class:`DistCSR`, sums reduced.

Each method's recurrence is the serial one of :mod:`linsolve.krylov`, run on
a :class:`~linsolve.core.setup.KrylovSystem` whose operator is this rank's
rows (the product exchanges the halo first) and whose inner product sums
over the ranks: every rank computes the same scalars and takes the same
branch. The fused single-node kernels are not used here (their dots are
local); each inner product is one ``Allreduce``. GMRES's Arnoldi
projections are fused into one kernel and stay serial for now.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from cext import kernels_for
from cext.threads import kernel_threads

from ..core.operators import as_operator
from ..core.record import SolveRecord
from ..core.setup import KrylovSystem, settings
from ..krylov.bicgstab import _BiCGStab
from ..krylov.minres import _check_shift, _Minres
from ..result import SolveResult
from ..validation.inputs import check_maxiter
from .comm import check_same_settings
from .matrix import DistCSR
from .operator import DistOperator
from .pcg import _as_preconditioner, local_start

__all__ = ["bicgstab", "minres"]


def _distributed(name: str, A: DistCSR, b, x0, M, maxiter, default_maxiter: int, kwargs: dict,
                 rtol, atol, monitor, callback, extra: dict | None = None):
    """``(common, system)`` on every rank, or the same error raised on every rank."""
    if not isinstance(A, DistCSR):
        raise TypeError(f"A must be a linsolve.mpi.DistCSR, got {type(A).__name__}; build one "
                        "with DistCSR.from_global or DistCSR.from_rows")
    shared, error, common = None, None, None
    try:
        common = settings(name, kwargs, rtol=rtol, atol=atol, monitor=monitor, label="KSP",
                          callback=callback, active=A.comm.rank == 0, flush=True)
        maxiter = check_maxiter(maxiter, default_maxiter)
        M = _as_preconditioner(M)
        b, x, error = local_start(A, b, x0)
        shared = {"solver": f"linsolve.mpi.{name}", "rtol": common.rtol, "atol": common.atol,
                  "maxiter": maxiter, "preconditioned": M is not None, **(extra or {})}
    except (ValueError, TypeError) as caught:
        error = caught
    check_same_settings(A.comm, shared, error)
    operator = DistOperator(A)
    local_dot = kernels_for(operator.xp, A.dtype).dot

    def dot(u, v) -> float:
        return float(operator.reduce(np.asarray([local_dot(u, v)]))[0])

    M_op = None if M is None else as_operator(lambda r: M(r), operator.xp, A.dtype, A.n_local,
                                              name="M")
    return common, KrylovSystem(operator.xp, operator, M_op, b, x, A.n_local, A.dtype, maxiter,
                                dot)


def bicgstab(A: DistCSR, b: Any, x0: Any = None, *, M: Any = None, rtol: float = 1e-5,
             atol: float = 0.0, maxiter: int | None = None,
             callback: Callable[[np.ndarray], None] | None = None, monitor: Any = False,
             **kwargs) -> SolveResult:
    """Distributed BiCGStab: :func:`linsolve.bicgstab`'s recurrence and result, on local rows.

    Call it on every rank of ``A.comm`` with the same arguments; ``b``,
    ``x0`` and the result's ``x`` are this rank's rows (or ``b``, ``x0``
    global vectors every rank holds), ``M`` acts on local vectors.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm, bicgstab
    >>> A = sp.diags([-1.5, 2.5, -1.0], [-1, 0, 1], shape=(40, 40), format="csr")
    >>> result = bicgstab(DistCSR.from_global(A, comm=SerialComm()), np.ones(40), rtol=1e-10)
    >>> result.converged
    True
    """
    start = time.perf_counter()
    common, system = _distributed("bicgstab", A, b, x0, M, maxiter, 10 * A.shape[0], kwargs,
                                  rtol, atol, monitor, callback)
    record = SolveRecord(common.monitor, start=start)
    with kernel_threads(A.n_local + A.nnz_local) as threads:
        return _BiCGStab(system, common, record, None).run(threads)


def minres(A: DistCSR, b: Any, x0: Any = None, *, M: Any = None, rtol: float = 1e-5,
           shift: float = 0.0, atol: float = 0.0, maxiter: int | None = None,
           callback: Callable[[np.ndarray], None] | None = None, monitor: Any = False,
           **kwargs) -> SolveResult:
    """Distributed MINRES: :func:`linsolve.minres`'s recurrence and result, on local rows.

    As :func:`bicgstab` for the arguments; ``M`` must be SPD as a global
    operator. scipy's ``show`` and ``check`` are not taken here.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm, minres
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(40, 40), format="csr")
    >>> D = DistCSR.from_global(A, comm=SerialComm())
    >>> minres(D, np.ones(40), shift=0.5, rtol=1e-10).converged
    True
    """
    start = time.perf_counter()
    shift = _check_shift(shift)
    common, system = _distributed("minres", A, b, x0, M, maxiter, 5 * A.shape[0], kwargs, rtol,
                                  atol, monitor, callback, {"shift": shift})
    record = SolveRecord(common.monitor, start=start)
    with kernel_threads(A.n_local + A.nnz_local) as threads:
        return _Minres(system, system.x, shift, common, record, False).run(threads)
