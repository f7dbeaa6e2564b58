"""Distributed preconditioned CG: scipy's recurrence, a single-reduction and a pipelined variant.

``variant="standard"`` runs the recurrence of :func:`linsolve.pcg` (and so
of scipy's ``cg``) step for step; only the sums inside the dot products are
split over ranks, so iterates agree with the serial solver to rounding and
the iteration counts agree. It needs two reductions per iteration, ``p'Ap``
before the step and ``r'r`` (with ``r'z``, merged into the same
``Allreduce``) after it: scipy's recurrence allows no fewer.

``variant="single-reduction"`` is Chronopoulos and Gear's CG (J. Comput.
Appl. Math. 25, 1989; PETSc's ``-ksp_cg_single_reduction``): ``r'u``,
``w'u`` and ``r'r`` (``u = M r``, ``w = A u``) in one ``Allreduce``, with
``alpha = gamma / (delta - beta gamma / alpha_prev)``. Same iterates in exact
arithmetic, different rounding.

``variant="pipelined"`` is Ghysels and Vanroose's pipelined CG (Parallel
Computing 40, 2014, Alg. 4; PETSc's ``KSPPIPECG``): the same single
reduction started with ``Iallreduce`` and overlapped with the next
preconditioner application and product.

All three decide convergence from globally reduced scalars only, so every
rank takes the same branch; the stopping rule, residual replacement and
reasons are those of :func:`linsolve.pcg`.

Errors that can arise on some ranks only (a local ``b`` or ``x0`` of the
wrong length, ``M`` returning the wrong shape or raising) are not raised on
the spot, which would leave the other ranks waiting in the next
``Allreduce``: every reduction carries one more number, a "this rank
failed" flag, and once it is set every rank raises (the failing one its own
exception, the others "another rank had invalid input: ..."). The
arguments themselves are checked in one collective before the first
reduction (:func:`~linsolve.mpi.comm.check_same_settings`): a bad argument
on any rank, or ranks passing different ``rtol``, ``atol``, ``maxiter``,
``variant``, ``check_every`` or one ``M`` but not another, raise on every
rank.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from cext.threads import kernel_threads

from ..core.operators import as_operator
from ..core.record import SolveRecord
from ..core.setup import settings
from ..core.stopping import (Replacement, ResidualTest, Stop, Tolerance, b_verdict,
                             curvature_verdict, preconditioner_verdict)
from ..krylov.batched import _Batch
from ..result import SolveResult
from ..validation.inputs import (check_maxiter, check_period, check_real_numeric, is_batch,
                                 per_system_tolerance)
from .comm import check_same_settings, raise_collectively
from .matrix import DistCSR
from .operator import DistOperator

__all__ = ["pcg", "VARIANTS"]

VARIANTS = ("standard", "single-reduction", "pipelined")


def local_vector(A: DistCSR, v, name: str) -> np.ndarray:
    """``v`` as this rank's rows: a local vector, or a global one every rank holds."""
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a {type(v).__name__}")
    v = np.asarray(v)
    check_real_numeric(name, v.dtype)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v.reshape(-1)
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {v.shape}")
    if v.shape[0] == A.n_local:
        return np.array(v, dtype=A.dtype)
    if v.shape[0] == A.shape[0]:
        return A.local_part(v)
    raise ValueError(f"rank {A.comm.rank}: {name} has length {v.shape[0]}; expected the local "
                     f"rows ({A.n_local}) or the global length ({A.shape[0]})")


def local_start(A: DistCSR, b, x0):
    """``(b, x, error)``: this rank's rows of ``b`` and ``x0`` (zeros by default).

    A bad ``b`` or ``x0`` on this rank is returned as ``error``, with zero
    placeholders, not raised: the caller raises it on every rank at its next
    reduction, so that the other ranks do not wait there forever.
    """
    try:
        b = local_vector(A, b, "b")
        x = np.zeros(A.n_local, dtype=A.dtype) if x0 is None else local_vector(A, x0, "x0")
    except (ValueError, TypeError) as caught:
        zeros = np.zeros(A.n_local, dtype=A.dtype)
        return zeros, zeros.copy(), caught
    return b, x, None


def _as_preconditioner(M):
    if M is None:
        return None
    if hasattr(M, "matvec"):
        return M.matvec
    if hasattr(M, "solve"):
        return M.solve
    if callable(M):
        return M
    raise TypeError(f"M must have matvec (or solve) acting on local vectors, or be callable; "
                    f"got {type(M).__name__}")


def pcg(A: DistCSR, b: Any, x0: Any = None, *, M: Any = None, rtol: float = 1e-5,
        atol: float = 0.0, maxiter: int | None = None,
        callback: Callable[[np.ndarray], None] | None = None, monitor: Any = False,
        check_every: int | None = None, variant: str = "standard", **kwargs) -> SolveResult:
    """Distributed CG for SPD ``A``: :func:`linsolve.pcg`'s keywords and result, on local rows.

    Call it on every rank of ``A.comm`` with the same arguments (each with its
    own rows).

    Parameters
    ----------
    A : DistCSR
    b : numpy array
        This rank's rows of the right-hand side (length ``A.n_local``), or
        the global vector (length ``n``) held on every rank. The solve runs
        in ``A.dtype`` (float32 only for a float32 matrix; choose it with
        ``DistCSR.from_global(..., dtype=...)``).
    x0 : numpy array, optional
        Initial guess, local or global like ``b`` (never modified).
    M : optional
        Preconditioner acting on local vectors: an object with ``matvec``
        (e.g. :class:`linsolve.mpi.BlockSOR`'s SSOR) or a callable. Must be
        SPD as a global operator.
    rtol, atol, maxiter, callback, monitor, check_every
        As :func:`linsolve.pcg`; ``monitor`` prints on rank 0 only;
        ``callback(x_local)`` runs on every rank.
    variant : {"standard", "single-reduction", "pipelined"}
        See the module docstring. ``"standard"`` reproduces the serial
        iterates.

    Returns
    -------
    SolveResult
        ``x`` holds this rank's rows (``A.gather(result.x)`` gives the whole
        vector on rank 0); norms, counts and reason are global and equal on
        every rank. ``extra["allreduces"]`` counts the reductions.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.mpi import DistCSR, SerialComm, pcg
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> D = DistCSR.from_global(A, comm=SerialComm())
    >>> result = pcg(D, np.ones(50), rtol=1e-10)
    >>> result.converged, result.iterations
    (True, 25)
    """
    start = time.perf_counter()
    if not isinstance(A, DistCSR):
        raise TypeError(f"A must be a linsolve.mpi.DistCSR, got {type(A).__name__}; build one "
                        "with DistCSR.from_global or DistCSR.from_rows")
    if is_batch(b):
        return _batched(A, b, x0, M, rtol, atol, maxiter, callback, monitor, check_every,
                        variant, kwargs, start)
    shared = None
    try:  # a bad argument on one rank raises on all of them, in check_same_settings
        common = settings("pcg", kwargs, rtol=rtol, atol=atol, monitor=monitor, label="KSP",
                          callback=callback, active=A.comm.rank == 0, flush=True)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        check_every = check_period("check_every", check_every, optional=True)
        maxiter = check_maxiter(maxiter, 10 * A.shape[0])
        M = _as_preconditioner(M)
        b, x, error = local_start(A, b, x0)
        shared = {"solver": "linsolve.mpi.pcg", "rtol": common.rtol, "atol": common.atol,
                  "maxiter": maxiter, "variant": variant, "check_every": check_every,
                  "preconditioned": M is not None}
    except (ValueError, TypeError) as caught:
        error = caught
    # the one collective before the iteration: same settings everywhere, or an error on all
    check_same_settings(A.comm, shared, error)
    solver = _DistPCG(A, M, b, x, common, maxiter, check_every, SolveRecord(common.monitor,
                                                                            start=start))
    if variant == "standard":
        return solver.run_standard()
    return solver.run_single_reduction(pipelined=variant == "pipelined")


def _local_block(A: DistCSR, B, name: str) -> np.ndarray:
    """``B`` of shape ``(k, n_local)`` or ``(k, n)`` (every rank holding all of it) as local rows."""
    B = np.asarray(B)
    check_real_numeric(name, B.dtype)
    if B.ndim != 2 or B.shape[1] not in (A.n_local, A.shape[0]):
        raise ValueError(f"rank {A.comm.rank}: {name} has shape {B.shape}; expected (k, "
                         f"{A.n_local}) local rows or (k, {A.shape[0]}) global ones")
    if B.shape[1] == A.shape[0] and A.shape[0] != A.n_local:
        B = B[:, A.rstart:A.rend]
    return np.array(B, dtype=A.dtype)


def _batched(A, B, x0, M, rtol, atol, maxiter, callback, monitor, check_every, variant, kwargs,
             start):
    """:func:`pcg` on a batch ``B`` (k rows): the serial batched recurrence, its sums reduced
    over the ranks (one Allreduce per step for every system)."""
    shared, error = None, None
    try:
        per_system = np.ndim(rtol) > 0 or np.ndim(atol) > 0
        common = settings("pcg", kwargs, rtol=0.0 if per_system else rtol,
                          atol=0.0 if per_system else atol, monitor=monitor, label="KSP",
                          callback=callback, active=A.comm.rank == 0, flush=True)
        if variant != "standard":
            raise ValueError(f"a batch runs variant='standard' only, got {variant!r}")
        check_every = check_period("check_every", check_every, optional=True)
        maxiter = check_maxiter(maxiter, 10 * A.shape[0])
        B = _local_block(A, B, "b")
        X0 = np.zeros_like(B) if x0 is None else _local_block(A, x0, "x0")
        if X0.shape != B.shape:
            raise ValueError(f"rank {A.comm.rank}: x0 has shape {X0.shape}, b {B.shape}")
        rtols = per_system_tolerance("rtol", rtol, (B.shape[0],))
        atols = per_system_tolerance("atol", atol, (B.shape[0],))
        M = _as_preconditioner(M)
        shared = {"solver": "linsolve.mpi.pcg", "rtol": rtols.tolist(), "atol": atols.tolist(),
                  "maxiter": maxiter, "systems": int(B.shape[0]), "check_every": check_every,
                  "preconditioned": M is not None}
    except (ValueError, TypeError) as caught:
        error = caught
    check_same_settings(A.comm, shared, error)
    A_op = DistOperator(A)
    M_op = None if M is None else as_operator(lambda r: M(r), A_op.xp, A.dtype, A.n_local, name="M")
    run = _Batch(A_op, M_op, B, X0, rtols, atols, maxiter, common.callback, common.monitor,
                 check_every, start, reduce=A_op.reduce)
    with kernel_threads((A.n_local + A.nnz_local) * B.shape[0]) as threads:
        return run.run(threads)


class _DistPCG:
    def __init__(self, A, M, b, x, common, maxiter, check_every, record, error=None):
        self.A, self.M, self.b, self.x = A, M, b, x
        self.error = error  # this rank's pending error, raised everywhere by the next reduction
        self.comm = A.comm
        self.kernels = A._kernels
        self.maxiter, self.callback, self.check_every = maxiter, common.callback, check_every
        self.record = record
        self.allreduces = 0
        bb = self.reduce(self.kernels.dot(b, b))[0]
        self.bnorm = math.sqrt(bb) if bb >= 0 else float("nan")
        self.tolerance = Tolerance.of(common.rtol, common.atol, self.bnorm)
        self.test = ResidualTest(self.tolerance, maxiter, self.true_residual_norm, x.dtype)

    # -- helpers ------------------------------------------------------------------
    def _with_flag(self, local_values) -> np.ndarray:
        return np.array(local_values + (0.0 if self.error is None else 1.0,), dtype=np.float64)

    def _checked(self, sums: np.ndarray) -> np.ndarray:
        """The reduced values, after raising on every rank if some rank's flag was set."""
        if sums[-1] > 0:
            raise_collectively(self.comm, self.error)
        return sums[:-1]

    def reduce(self, *local_values) -> np.ndarray:
        self.allreduces += 1
        return self._checked(self.comm.allreduce_sum(self._with_flag(local_values)))

    def start_reduce(self, *local_values):
        """Non-blocking :meth:`reduce`: a function that waits and returns the sums."""
        self.allreduces += 1
        pending = self.comm.iallreduce_sum(self._with_flag(local_values))
        return lambda: self._checked(pending.wait())

    def apply_M(self, r):
        """``M r``; a failure here is recorded and raised on every rank by the next reduction."""
        self.record.psolves += 1
        if self.error is None:
            try:
                z = np.asarray(self.M(r))
                if z.shape != r.shape:
                    raise ValueError(f"rank {self.comm.rank}: M returned shape {z.shape}, "
                                     f"expected the local rows {r.shape}")
                return z if z.dtype == r.dtype else z.astype(r.dtype)
            except Exception as caught:  # noqa: BLE001 - re-raised, collectively, below
                self.error = caught
        return np.zeros_like(r)  # a placeholder until the next reduction raises

    def true_residual(self):
        r = self.b - self.A.matvec(self.x)
        self.record.matvecs += 1
        return r

    def true_residual_norm(self):
        r = self.true_residual()
        return r, math.sqrt(max(self.reduce(self.kernels.dot(r, r))[0], 0.0))

    def finish(self, stop: Stop, iterations: int) -> SolveResult:
        if stop.true_residual_norm is None:
            stop = replace(stop, true_residual_norm=self.true_residual_norm()[1])
        return self.record.result(self.x, stop, iterations,
                                  extra={"residual_replacements": self.test.replacements,
                                         "allreduces": self.allreduces,
                                         "ranks": self.comm.size})

    def initial_residual(self):
        nonzero = self.reduce(float(np.count_nonzero(self.x)))[0] > 0
        return self.true_residual() if nonzero else self.b.copy()

    def residual_and_z(self, r):
        """``r'r`` and, with a preconditioner, ``z = M r`` and ``r'z``: one Allreduce."""
        K = self.kernels
        if self.M is None:
            rr = self.reduce(K.dot(r, r))[0]
            return rr, r, rr
        z = self.apply_M(r)
        rr, rho = self.reduce(K.dot(r, r), K.dot(r, z))
        return rr, z, rho

    def trivial(self) -> SolveResult | None:
        stop = b_verdict(self.bnorm)
        if stop is None:
            return None
        if stop.converged:
            self.x = np.zeros_like(self.x)
        self.record.append(0, self.bnorm)
        return self.finish(stop, 0)

    # -- scipy's recurrence ---------------------------------------------------------
    def run_standard(self) -> SolveResult:
        done = self.trivial()
        if done is not None:
            return done
        A, K, x = self.A, self.kernels, self.x
        record, test = self.record, self.test
        r = self.initial_residual()
        rr, z, rho = self.residual_and_z(r)
        rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
        record.append(0, rnorm)
        p = np.empty_like(r)
        q = np.empty_like(r)
        rho_prev = 1.0
        restart = True
        k = 0
        while True:
            outcome = test.check(k, rnorm)
            if isinstance(outcome, Stop):
                return self.finish(outcome, k)
            if isinstance(outcome, Replacement):
                r, rnorm = outcome.r, outcome.rnorm
                rr, z, rho = self.residual_and_z(r)
                record.norms[-1] = rnorm
                restart = True
                continue
            stop = None if self.M is None else preconditioner_verdict(rho, k)
            if stop is not None:
                return self.finish(stop, k)
            if restart:
                p[...] = z
                restart = False
            else:
                K.cg_update_p(p, z, rho / rho_prev)
            pAp = self.reduce(A.matvec_dot_local(p, q))[0]
            record.matvecs += 1
            stop = curvature_verdict(pAp, k)
            if stop is not None:
                return self.finish(stop, k)
            alpha = rho / pAp
            K.cg_update_xr(x, r, p, q, alpha)
            rho_prev = rho
            k += 1
            # r'r (for the test) and r'z (for the next beta) in one Allreduce;
            # serial pcg applies M only after the test, so a converged solve
            # here does one psolve more than the serial one.
            rr, z, rho = self.residual_and_z(r)
            rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
            if self.check_every is not None and k % self.check_every == 0 and math.isfinite(rnorm):
                drift = test.drifted(rnorm)
                if drift is not None:
                    r, rnorm, restart = drift.r, drift.rnorm, True
                    rr, z, rho = self.residual_and_z(r)
            record.append(k, rnorm)
            if self.callback is not None:
                self.callback(x)

    # -- one reduction per iteration -----------------------------------------------------
    def run_single_reduction(self, pipelined: bool) -> SolveResult:
        done = self.trivial()
        if done is not None:
            return done
        A, K, x = self.A, self.kernels, self.x
        record, test = self.record, self.test
        if self.M is not None:
            precondition = self.apply_M
        elif pipelined:
            precondition = np.copy  # u and r (m and w) are updated apart: no aliasing
        else:
            precondition = lambda v: v  # noqa: E731 - u is r, w is A r
        k = 0
        overwrite = False  # the next norm replaces the last one (after a residual replacement)
        r = self.initial_residual()
        while True:  # one pass per (re)start from a true residual
            u = precondition(r)
            w = A.matvec(u)
            record.matvecs += 1
            p = np.zeros_like(r)
            s = np.zeros_like(r)
            if pipelined:
                q = np.zeros_like(r)
                zz = np.zeros_like(r)
            gamma_prev = alpha_prev = None
            first = True
            while True:
                local = (K.dot(r, u), K.dot(w, u), K.dot(r, r))
                if pipelined:
                    wait = self.start_reduce(*local)
                    m = precondition(w)          # overlapped with the reduction
                    n = A.matvec(m)
                    record.matvecs += 1
                    # (a failure of M just above is raised by the next reduction,
                    # which every exit path below performs)
                    gamma, delta, rr = wait()
                else:
                    gamma, delta, rr = self.reduce(*local)
                rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
                if overwrite:
                    record.norms[-1] = rnorm
                    overwrite = False
                else:
                    record.append(k, rnorm)
                    if k > 0 and self.callback is not None:
                        self.callback(x)
                outcome = test.check(k, rnorm)
                if isinstance(outcome, Stop):
                    return self.finish(outcome, k)
                if isinstance(outcome, Replacement):
                    r = outcome.r
                    overwrite = True
                    break
                stop = None if self.M is None else preconditioner_verdict(gamma, k)
                if stop is not None:
                    return self.finish(stop, k)
                if first:
                    beta, denominator = 0.0, delta
                else:
                    beta = gamma / gamma_prev
                    denominator = delta - beta * gamma / alpha_prev
                stop = curvature_verdict(denominator, k)
                if stop is not None:
                    return self.finish(stop, k)
                alpha = gamma / denominator
                if pipelined:
                    # Ghysels and Vanroose, Alg. 4: z, q, s, p recurrences, then x, r, u, w
                    K.cg_update_p(zz, n, beta)
                    K.cg_update_p(q, m, beta)
                K.cg_update_p(s, w, beta)
                K.cg_update_p(p, u, beta)
                K.cg_update_xr(x, r, p, s, alpha)
                if pipelined:
                    u -= alpha * q
                    w -= alpha * zz
                else:
                    u = precondition(r)
                    w = A.matvec(u)
                    record.matvecs += 1
                gamma_prev, alpha_prev, first = gamma, alpha, False
                k += 1
                if self.check_every is not None and k % self.check_every == 0:
                    # the recursive norm of the new r is reduced at the top of the
                    # next pass; the drift test needs it now
                    recursive = self.reduce(K.dot(r, r))[0]
                    drift = test.drifted(math.sqrt(max(recursive, 0.0)))
                    if drift is not None:
                        # continue from the true residual with fresh directions
                        r = drift.r
                        break
