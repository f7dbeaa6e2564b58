"""SSOR-preconditioned CG by Eisenstat's trick: one pass over the matrix per iteration.

Plain PCG with SSOR streams the matrix three times an iteration: the
product with ``A`` and the two triangular sweeps. Eisenstat ("Efficient
implementation of a class of preconditioned conjugate gradient methods",
SIAM J. Sci. Stat. Comput. 2, 1981; PETSc's ``PCEISENSTAT``) splits
``A = W + W^T + (D - 2 D/w)`` with SSOR's ``W = D/w + L``, so that the
preconditioned operator ``W^{-1} A W^{-T}`` needs only the two sweeps:

    W^{-1} A W^{-T} p = t + W^{-1} (p + (D - 2 D/w) t),  t = W^{-T} p.

CG on that operator is, in exact arithmetic, PCG on ``A`` with
``M = SSOR``: the same iterates ``x_k`` (iterates differ in rounding). The
kernels (:mod:`cext.numba.eisenstat`) work in the symmetrically scaled,
permuted variables SSOR stores its factor in (``V = I + C``,
``C = w D^{-1/2} L D^{-1/2}``): ``t = V^{-T} p`` read from ``C^T`` by rows,
then one forward sweep that solves with ``V`` and, from the same rows, forms
``C t``, which updates the residual of the original system alongside the
transformed one. So the norm monitored, tested and recorded is
``||b - A x_k||`` as recursively updated, the same quantity PCG records,
and the exit test is PCG's: ``converged`` only when the recomputed
``||b - A x||`` meets the tolerance (residual replacement otherwise), with
``check_every`` as in :func:`linsolve.pcg`.

Used by :func:`linsolve.pcg` for ``M = precond.ssor(A)`` when ``M`` was built
from this very ``A`` (pattern and values checked: one pass over ``A``), with
a symmetric ``A`` of positive diagonal, the NumPy kernels and ``M``'s dtype;
anything else goes the ordinary way. ``matvecs`` and ``psolves`` count one
each per iteration, as PCG would.

Without a callback or a monitor watching every line, the iterations run in
compiled chunks (:func:`cext.numba.eisenstat.eisenstat_run`, the same
kernels in the same order: the same bits), back in Python wherever the
test, a ``check_every`` check or a failed ``r'z`` / ``p'Ap`` needs a
verdict, and about every :data:`~linsolve.core.chunks.CHUNK_SECONDS`
(Ctrl-C, the thread policy), as :func:`linsolve.pcg`'s own chunks do.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..core.chunks import grown_history, next_budget
from ..core.stopping import (
    Replacement,
    ResidualTest,
    Stop,
    Tolerance,
    b_verdict,
    curvature_verdict,
    preconditioner_verdict,
)
from ..result import SolveResult


def eisenstat_operands(A: Any, M: Any, A_op: Any, dtype: Any):
    """What :func:`eisenstat_pcg` needs of ``M``, or None where the trick does not apply.

    Applies when ``M`` is a symmetric :class:`~linsolve.precond.SSOR` (one factor
    stored) built from ``A`` itself -- the same pattern and the same values --
    and the solve runs on the compiled NumPy kernels in ``M``'s dtype.
    """
    from ..precond.ssor import SSOR  # the package imports pcg: not at module level

    if not isinstance(M, SSOR) or not getattr(M, "symmetric", False):
        return None
    if A_op.kernels.backend != "numba" or np.dtype(dtype) != np.dtype(M.dtype):
        return None
    if not M.built_from(A):
        return None
    return M.eisenstat_factors()


class _Eisenstat:
    """CG on ``V^{-1} Ahat V^{-T}`` with PCG's exit test; ``run`` is the loop."""

    def __init__(self, A_op, operands, b, x, common, maxiter, check_every, record):
        self.A = A_op
        self.kernels = A_op.kernels
        self.b = b
        self.ops = operands
        self.callback = common.callback
        self.check_every = check_every
        self.record = record
        self.bnorm = math.sqrt(self.kernels.dot(b, b))
        self.tolerance = Tolerance.of(common.rtol, common.atol, self.bnorm)
        self.test = ResidualTest(self.tolerance, maxiter, self.true_residual, x.dtype)
        ops = operands
        # x~ = D^{1/2} P x: the iterate in the scaled, permuted numbering
        self.xt = np.empty(x.shape[0], dtype=x.dtype)
        self.kernels.eisenstat_into_permuted(x, ops.perm, ops.scale, self.xt)
        self.x = x

    def original(self) -> np.ndarray:
        """``x = P^T D^{-1/2} x~`` (a new array)."""
        x = np.empty_like(self.xt)
        self.kernels.eisenstat_from_permuted(self.xt, self.ops.perm, self.ops.scale, x)
        return x

    def true_residual(self):
        """``(b - A x, ||b - A x||)``, one product with ``A``."""
        self.x = self.original()
        r = self.b - self.A.matvec(self.x)
        self.record.matvecs += 1
        return r, math.sqrt(self.kernels.dot(r, r))

    def restart_from(self, r, rtilde, rhat) -> float:
        """The transformed residuals of ``r``; returns ``rhat . rhat``."""
        ops = self.ops
        self.kernels.eisenstat_start(*ops.lower, ops.scale, ops.perm, ops.segment_ptr,
                                     ops.stage_ptr, np.ascontiguousarray(r), rtilde, rhat,
                                     ops.quad)
        return self.kernels.dot(rhat, rhat)

    def finish(self, stop: Stop, iterations: int, threads) -> SolveResult:
        self.x = self.original()
        if stop.true_residual_norm is None:
            r = self.b - self.A.matvec(self.x)
            self.record.matvecs += 1
            stop = Stop(stop.reason, stop.message, math.sqrt(self.kernels.dot(r, r)))
        return self.record.result(self.x, stop, iterations,
                                  extra={"residual_replacements": self.test.replacements,
                                         "threads": threads.threads, "eisenstat": True})

    def run(self, threads) -> SolveResult:
        K, ops, record, test = self.kernels, self.ops, self.record, self.test
        stop = b_verdict(self.bnorm)
        if stop is not None:
            if stop.converged:
                self.xt = np.zeros_like(self.xt)
            record.append(0, self.bnorm)
            return self.finish(stop, 0, threads)
        if bool(np.any(self.xt != 0)):
            r, rnorm = self.true_residual()
        else:
            r, rnorm = self.b, self.bnorm
        rtilde, rhat = np.empty_like(self.xt), np.empty_like(self.xt)
        p, t, u, a = (np.empty_like(self.xt) for _ in range(4))
        rho = self.restart_from(r, rtilde, rhat)
        record.append(0, rnorm)
        # a callback or a monitor watching every line sees each iterate as it
        # comes: those solves stay in Python, one iteration a pass
        chunks = None
        if self.callback is None and not record.monitor.watching:
            chunks = _Chunks(self, rtilde, rhat, p, t, u, a)
        rho_prev = 1.0
        restart = True
        k = 0
        while True:
            threads.refresh()
            outcome = test.check(k, rnorm)
            if isinstance(outcome, Stop):
                return self.finish(outcome, k, threads)
            if isinstance(outcome, Replacement):
                rnorm = outcome.rnorm
                rho = self.restart_from(outcome.r, rtilde, rhat)
                record.norms[-1] = rnorm
                restart = True
                continue
            if chunks is not None:
                k, rnorm, rho, rho_prev, restart, stop = chunks.run(k, rnorm, rho, rho_prev,
                                                                    restart)
                if stop is not None:
                    return self.finish(stop, k, threads)
                continue
            record.psolves += 1
            stop = preconditioner_verdict(rho, k)
            if stop is not None:
                return self.finish(stop, k, threads)
            K.eisenstat_backward(*ops.upper, ops.segment_ptr, ops.stage_ptr, rhat, p,
                                 rho / rho_prev, restart, t, ops.upper_quad)
            restart = False
            pq = K.eisenstat_forward(*ops.lower, ops.segment_ptr, ops.stage_ptr, p, t, u, a,
                                     ops.omega, ops.quad)
            record.matvecs += 1
            stop = curvature_verdict(pq, k)
            if stop is not None:
                return self.finish(stop, k, threads)
            alpha = rho / pq
            rho_prev = rho
            rho, rr = K.eisenstat_update(self.xt, rhat, rtilde, t, u, a, ops.root, alpha,
                                         ops.omega)
            k += 1
            rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
            if self.check_every is not None and k % self.check_every == 0 and math.isfinite(rnorm):
                drift = test.drifted(rnorm)
                if drift is not None:
                    rnorm = drift.rnorm
                    rho = self.restart_from(drift.r, rtilde, rhat)
                    restart = True
            record.append(k, rnorm)
            if self.callback is not None:
                self.x = self.original()
                self.callback(self.x)


class _Chunks:
    """:class:`_Eisenstat`'s iterations run by :func:`cext.numba.eisenstat.eisenstat_run`.

    Called from the top of an iteration whose test passed; runs until the
    core's test would stop or replace, a ``check_every`` check is due, or
    its budget is spent (sized to return about every
    :data:`~linsolve.core.chunks.CHUNK_SECONDS`: Ctrl-C, the thread policy's
    refresh). The verdicts are taken here, as :func:`linsolve.pcg`'s chunks
    take them.
    """

    AT_TEST, PC_FAILED, CURVATURE_FAILED, DRIFT_CHECK = 0, 1, 2, 3
    MAX_BUDGET = 2**16

    def __init__(self, solver: _Eisenstat, rtilde, rhat, p, t, u, a):
        self.solver = solver
        self.vectors = (rtilde, rhat, p, t, u, a)
        ops = solver.ops
        self.scalars = np.zeros(4)
        self.counters = np.zeros(3, dtype=np.int64)
        entries = ops.lower[1].shape[0] + ops.upper[1].shape[0] + solver.xt.shape[0]
        # the first budget reads about 2**24 matrix entries; later ones scale by time
        self.budget = min(self.MAX_BUDGET, max(1, 2**24 // max(entries, 1)))
        self.norms = np.empty(min(self.budget, solver.test.maxiter) + 1)

    def run(self, k, rnorm, rho, rho_prev, restart):
        """One compiled call from iteration ``k``'s state (its test passed):
        ``(k, rnorm, rho, rho_prev, restart, stop)`` after it."""
        solver = self.solver
        ops, record, test = solver.ops, solver.record, solver.test
        rtilde, rhat, p, t, u, a = self.vectors
        scalars, counters = self.scalars, self.counters
        scalars[:] = (rnorm, rho, rho_prev, 0.0)
        counters[:] = (k, int(restart), 0)
        end = min(k + self.budget, test.maxiter)
        norms = self.norms = grown_history(self.norms, 0, end - k)
        check_every = 0 if solver.check_every is None else solver.check_every
        tic = time.perf_counter()
        solver.kernels.eisenstat_run(*ops.lower, *ops.upper, ops.segment_ptr, ops.stage_ptr,
                                     ops.root, solver.xt, rhat, rtilde, p, t, u, a, scalars,
                                     counters, norms, ops.omega, test.tol, test.maxiter, end,
                                     check_every, ops.quad, ops.upper_quad)
        elapsed = time.perf_counter() - tic
        began, k, status = k, int(counters[0]), int(counters[2])
        done = k - began
        rnorm, rho, rho_prev = float(scalars[0]), float(scalars[1]), float(scalars[2])
        restart = bool(counters[1])
        record.extend(began + 1, norms[:done - (status == self.DRIFT_CHECK)])
        failed = status in (self.PC_FAILED, self.CURVATURE_FAILED)
        record.psolves += done + failed
        record.matvecs += done + (status == self.CURVATURE_FAILED)
        stop = None
        if status == self.PC_FAILED:
            stop = preconditioner_verdict(float(scalars[3]), k)
        elif status == self.CURVATURE_FAILED:
            stop = curvature_verdict(float(scalars[3]), k)
        elif status == self.DRIFT_CHECK:
            drift = test.drifted(rnorm)
            if drift is not None:
                rnorm = drift.rnorm
                rho = solver.restart_from(drift.r, rtilde, rhat)
                restart = True
            record.append(k, rnorm)
        elif k == end and end < test.maxiter:  # the call ran its whole budget
            self.budget = next_budget(self.budget, elapsed, self.MAX_BUDGET)
        return k, rnorm, rho, rho_prev, restart, stop


def eisenstat_pcg(A: Any, M: Any, A_op: Any, b: Any, x: Any, common: Any, maxiter: int,
                  check_every: int | None, record: Any, threads: Any) -> SolveResult | None:
    """:func:`linsolve.pcg` with ``M = precond.ssor(A)`` by Eisenstat's trick, or None.

    Takes :func:`linsolve.pcg`'s validated pieces: the user's ``A`` (to check
    that ``M`` was built from it), its operator ``A_op``, ``b`` and the
    working copy ``x`` of ``x0``, the common settings, ``maxiter``,
    ``check_every``, the :class:`~linsolve.core.record.SolveRecord` and the
    thread policy of the solve. Returns None, having done nothing, where the
    trick does not apply (see :func:`eisenstat_operands`): the caller then
    runs ordinary PCG.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import pcg, precond
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> result = pcg(A, np.ones(50), M=precond.ssor(A, 1.5), rtol=1e-8)
    >>> result.converged, bool(np.linalg.norm(np.ones(50) - A @ result.x) <= 1e-8 * 50 ** 0.5)
    (True, True)
    """
    if not isinstance(x, np.ndarray) or not isinstance(b, np.ndarray):
        return None
    operands = eisenstat_operands(A, M, A_op, x.dtype)
    if operands is None:
        return None
    solver = _Eisenstat(A_op, operands, b, x, common, maxiter, check_every, record)
    return solver.run(threads)


def eisenstat_solve(A: Any, b: Any, x0: Any = None, *, M: Any, rtol: float = 1e-5,
                    atol: float = 0.0, maxiter: int | None = None, callback: Any = None,
                    monitor: Any = False, check_every: int | None = None) -> SolveResult:
    """:func:`linsolve.pcg` ``(A, b, x0, M=M, ...)`` by Eisenstat's trick, with pcg's set-up.

    For ``M = precond.ssor(A)`` (see :func:`eisenstat_operands`); ValueError
    where the trick does not apply. :func:`linsolve.pcg` reaches the same
    loop through :func:`eisenstat_pcg`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import precond
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> result = eisenstat_solve(A, np.ones(50), M=precond.ssor(A, 1.5), rtol=1e-8)
    >>> result.converged, result.extra["eisenstat"]
    (True, True)
    """

    from cext.threads import kernel_threads

    from ..core.record import SolveRecord
    from ..core.setup import (
        check_x0,
        initial_iterate,
        krylov_operators,
        rhs_and_dtype,
        settings,
    )
    from ..validation.inputs import check_maxiter, check_period

    start = time.perf_counter()
    common = settings("pcg", {}, rtol=rtol, atol=atol, monitor=monitor, label="KSP",
                      callback=callback)
    check_every = check_period("check_every", check_every, optional=True)
    check_x0(x0)
    xp, b, n, dtype = rhs_and_dtype(A, b, allow_complex=True)
    maxiter = check_maxiter(maxiter, 10 * n)
    with kernel_threads(n + int(getattr(A, "nnz", 0) or 0)) as threads:
        A_op, M_op = krylov_operators(A, M, xp, dtype, n)
        record = SolveRecord(common.monitor, start=start)
        x = initial_iterate(x0, b, M_op, xp, n, dtype, record)
        result = eisenstat_pcg(A, M, A_op, b, x, common, maxiter, check_every, record, threads)
    if result is None:
        raise ValueError("Eisenstat's trick needs M = precond.ssor(A) built from this A "
                         "(symmetric, positive diagonal), NumPy arrays and M's dtype; "
                         "use linsolve.pcg for anything else")
    return result
