"""MINRES, BiCGStab and GMRES over ranks: the serial recurrences on a :class:`DistCSR`.

Each method's recurrence is the serial one of :mod:`linsolve.krylov`, run on
a :class:`~linsolve.core.setup.KrylovSystem` whose operator is this rank's
rows (the product exchanges the halo first) and whose inner product sums
over the ranks: every rank computes the same scalars and takes the same
branch. The fused single-node kernels are not used here (their dots are
local); each inner product is one ``Allreduce``.

GMRES's orthogonalisation is the serial kernel's CGS2
(:func:`cext.numba.gmres.gmres_project`) split at its reductions
(:func:`_distributed_project`): a pass's ``j + 1`` dots and ``||w||^2`` are
one ``Allreduce`` of ``j + 2`` numbers, so an Arnoldi step costs two
reductions (three where the second update is applied), not the ``j + 1``
of modified Gram-Schmidt, one per basis vector.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from cext import kernels_for
from cext.threads import kernel_threads

from ..core.operators import as_operator
from ..core.record import SolveRecord
from ..core.setup import KrylovSystem, settings
from ..krylov.bicgstab import _BiCGStab
from ..krylov.gmres import _GMRES, _check_callback_type
from ..krylov.minres import _check_shift, _Minres
from ..result import SolveResult
from ..validation.inputs import check_maxiter, check_period
from .comm import check_same_settings
from .matrix import DistCSR
from .operator import DistOperator
from .pcg import _as_preconditioner, local_start

__all__ = ["bicgstab", "fgmres", "gmres", "minres"]


def _distributed(name: str, A: DistCSR, b, x0, M, maxiter, default_maxiter: int, kwargs: dict,
                 rtol, atol, monitor, callback, extra: dict | None = None,
                 check: Callable[[], dict] | None = None):
    """``(common, system)`` on every rank, or the same error raised on every rank.

    ``check``, when given, validates the method's own arguments (raising
    ``ValueError``/``TypeError``) and returns them as settings every rank
    must share, added to ``extra``.
    """
    if not isinstance(A, DistCSR):
        raise TypeError(f"A must be a linsolve.mpi.DistCSR, got {type(A).__name__}; build one "
                        "with DistCSR.from_global or DistCSR.from_rows")
    shared, error, common = None, None, None
    try:
        common = settings(name, kwargs, rtol=rtol, atol=atol, monitor=monitor, label="KSP",
                          callback=callback, active=A.comm.rank == 0, flush=True)
        extra = {**(extra or {}), **(check() if check is not None else {})}
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


def gmres(A: DistCSR, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0,
          restart: int | None = None, maxiter: int | None = None, M: Any = None,
          callback: Callable[[Any], None] | None = None, callback_type: str | None = None,
          monitor: Any = False, flexible: bool = False, **kwargs) -> SolveResult:
    """Distributed restarted GMRES: :func:`linsolve.gmres`'s recurrence and result, on local rows.

    The serial method's keywords and meanings (``restart``, ``maxiter``
    counting restart cycles, ``callback_type``, right preconditioning, the
    true-residual exit and the reasons); the Arnoldi orthogonalisation's
    sums run over the ranks (see the module notes). Call it on every rank
    of ``A.comm`` with the same arguments; ``b``, ``x0`` and the result's
    ``x`` are this rank's rows (or ``b``, ``x0`` global vectors every rank
    holds), ``M`` acts on local vectors (the same linear map at every
    application unless ``flexible=True``), and ``callback`` receives the
    local rows of ``x`` (``'x'``) or the global ``||r|| / ||b||``
    (``'pr_norm'``). scipy's ``x0='Mb'`` is not taken here.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm, gmres
    >>> A = sp.diags([-1.5, 2.5, -1.0], [-1, 0, 1], shape=(40, 40), format="csr")
    >>> result = gmres(DistCSR.from_global(A, comm=SerialComm()), np.ones(40), rtol=1e-10,
    ...                restart=10)
    >>> result.converged, result.reason
    (True, 'CONVERGED_RTOL')
    """
    start = time.perf_counter()
    name = "fgmres" if flexible else "gmres"
    checked: dict = {}

    def check() -> dict:
        if isinstance(x0, str):
            raise ValueError(f"linsolve.mpi.{name}: x0={x0!r} is not taken over ranks; pass "
                             "the start itself, e.g. x0=M(b_local) for scipy's 'Mb'")
        checked["callback_type"] = _check_callback_type(name, callback, callback_type)
        period = check_period("restart", 20 if restart is None else restart)
        checked["restart"] = max(1, min(period, A.shape[0]))  # scipy: min(restart, n)
        # the callback may differ between ranks (printing on rank 0 only): not shared
        return {"restart": checked["restart"], "flexible": bool(flexible)}

    common, system = _distributed(name, A, b, x0, M, maxiter, 10 * A.shape[0], kwargs, rtol,
                                  atol, monitor, callback, check=check)
    operator = system.A
    record = SolveRecord(common.monitor, start=start)
    with kernel_threads(A.n_local + A.nnz_local) as threads:
        solver = _GMRES(system, common, checked["callback_type"], checked["restart"],
                        bool(flexible), record, project=_distributed_project(operator),
                        any_nonzero=lambda x: operator.reduce(
                            np.asarray([float(np.count_nonzero(x))]))[0] > 0)
        return solver.run(threads)


def fgmres(A: DistCSR, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0,
           restart: int | None = None, maxiter: int | None = None, M: Any = None,
           callback: Callable[[Any], None] | None = None, callback_type: str | None = None,
           monitor: Any = False, **kwargs) -> SolveResult:
    """Distributed flexible GMRES: :func:`gmres` with ``flexible=True`` (see
    :func:`linsolve.fgmres`): ``M`` may change between applications.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm, fgmres
    >>> A = sp.diags([-1.5, 2.5, -1.0], [-1, 0, 1], shape=(40, 40), format="csr")
    >>> fgmres(DistCSR.from_global(A, comm=SerialComm()), np.ones(40), rtol=1e-10,
    ...        M=lambda r: r / 2.5).converged
    True
    """
    return gmres(A, b, x0, rtol=rtol, atol=atol, restart=restart, maxiter=maxiter, M=M,
                 callback=callback, callback_type=callback_type, monitor=monitor,
                 flexible=True, **kwargs)


def _distributed_project(operator: DistOperator) -> Callable:
    """:func:`cext.numba.gmres.gmres_project` over ranks: same arguments, results and rule.

    ``V`` holds this rank's columns of the basis, ``w`` this rank's rows.
    Each classical Gram-Schmidt pass forms the local ``V w`` and ``w . w``
    (float64) and sums them in one ``Allreduce``; the second update is
    skipped where the serial kernel skips it (its coefficients at most
    ``tau u ||w_1||``), decided on the reduced sums, so every rank agrees.
    Where the second update is applied, the norm after it is reduced once
    more (the serial kernel's Pythagorean estimate plus check, computed
    directly: the same value to rounding). Returns ``(w, h)``, ``w``
    orthogonalised and scaled in place.
    """
    reduce = operator.reduce

    def sums(block, w, rows: int):
        """The reduced ``V w`` and ``w . w``, formed in float64 (float32 data upcast)."""
        block, w = block.astype(np.float64, copy=False), w.astype(np.float64, copy=False)
        local = np.empty(rows + 1)
        local[:rows] = block @ w
        local[rows] = np.dot(w, w)
        return reduce(local)

    def project(V, j, w, h, tau):
        rows = j + 1
        block = V[:rows]
        first = sums(block, w, rows)
        w -= first[:rows] @ block  # rounded once to w's dtype, as in the kernel
        second = sums(block, w, rows)
        coefficients, squares = first[:rows], second[rows]
        projected = float(np.dot(second[:rows], second[:rows]))
        unit = 2.0**-53 if V.itemsize == 8 else 2.0**-24
        if not projected <= (tau * unit) ** 2 * second[rows]:  # NaN: applied, and reported
            w -= second[:rows] @ block
            squares = sums(block[:0], w, 0)[0]
            coefficients = first[:rows] + second[:rows]
        norm = math.sqrt(squares) if squares >= 0.0 else math.nan
        if 0.0 < norm < math.inf:
            w *= 1.0 / norm
        h[:rows] = coefficients
        h[rows] = norm
        h[rows + 1] = math.sqrt(first[rows]) if first[rows] >= 0.0 else math.nan
        return w, h

    return project
