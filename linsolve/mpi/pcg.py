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
import sys
import time
from typing import Any, Callable

import numpy as np

from .._validate import (check_maxiter, check_nonnegative, check_real_numeric,
                         reject_unknown_keywords, stopping_tolerance)
from ..result import SolveResult
from .comm import check_same_settings, raise_collectively
from .matrix import DistCSR

__all__ = ["pcg", "VARIANTS"]

VARIANTS = ("standard", "single-reduction", "pipelined")

_MONITOR_FORMAT = "%3d KSP Residual norm %14.12e"
_STAGNATION_FACTOR = 0.5  # as linsolve.pcg
_DRIFT_FACTOR = 2.0       # as linsolve.pcg


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
        callback: Callable[[np.ndarray], None] | None = None, monitor: bool = False,
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
    settings = None
    try:  # a bad argument on one rank raises on all of them, in check_same_settings
        reject_unknown_keywords("pcg", kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        rtol = check_nonnegative("rtol", rtol)
        atol = check_nonnegative("atol", atol)
        if check_every is not None and (isinstance(check_every, bool)
                                        or not isinstance(check_every, int) or check_every < 1):
            raise ValueError(f"check_every must be a positive int or None, got {check_every!r}")
        maxiter = check_maxiter(maxiter, 10 * A.shape[0])
        M = _as_preconditioner(M)
        b, x, error = local_start(A, b, x0)
        settings = {"solver": "linsolve.mpi.pcg", "rtol": rtol, "atol": atol, "maxiter": maxiter,
                    "variant": variant, "check_every": check_every,
                    "preconditioned": M is not None}
    except (ValueError, TypeError) as caught:
        error = caught
    # the one collective before the iteration: same settings everywhere, or an error on all
    check_same_settings(A.comm, settings, error)
    solver = _DistPCG(A, M, b, x, rtol, atol, maxiter, callback, monitor, check_every)
    if variant == "standard":
        return solver.run_standard(start)
    return solver.run_single_reduction(start, pipelined=variant == "pipelined")


class _DistPCG:
    def __init__(self, A, M, b, x, rtol, atol, maxiter, callback, monitor, check_every,
                 error=None):
        self.A, self.M, self.b, self.x = A, M, b, x
        self.error = error  # this rank's pending error, raised everywhere by the next reduction
        self.comm = A.comm
        self.kernels = A._kernels
        self.maxiter, self.callback, self.check_every = maxiter, callback, check_every
        self.monitor = monitor and self.comm.rank == 0
        self.matvecs = self.psolves = self.replacements = self.allreduces = 0
        bb = self.reduce(self.kernels.dot(b, b))[0]
        self.bnorm = math.sqrt(bb) if bb >= 0 else float("nan")
        self.tol, self.reason_converged = stopping_tolerance(rtol, atol, self.bnorm)

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
        self.psolves += 1
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
        self.matvecs += 1
        return r

    def true_residual_norm(self):
        r = self.true_residual()
        return r, math.sqrt(max(self.reduce(self.kernels.dot(r, r))[0], 0.0))

    def report(self, k, rnorm):
        if self.monitor:
            print(_MONITOR_FORMAT % (k, rnorm), file=sys.stdout, flush=True)

    def converged_reason(self):
        return self.reason_converged

    def finish(self, start, reason, iterations, norms, message, rtrue=None):
        if rtrue is None:
            rtrue = self.true_residual_norm()[1]
        return SolveResult(x=self.x, converged=reason.startswith("CONVERGED"), reason=reason,
                           iterations=iterations, residual_norms=np.asarray(norms, dtype=np.float64),
                           true_residual_norm=float(rtrue), matvecs=self.matvecs,
                           time=time.perf_counter() - start, message=message,
                           psolves=self.psolves,
                           extra={"residual_replacements": self.replacements,
                                  "allreduces": self.allreduces, "ranks": self.comm.size})

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

    def check_exit(self, start, k, rnorm, norms, last_replacement):
        """Serial pcg's tests at the top of an iteration: a result, or a replacement residual."""
        if not math.isfinite(rnorm):
            return self.finish(start, "DIVERGED_NANORINF", k, norms,
                               f"residual norm is {rnorm} at iteration {k}"), None
        if rnorm <= self.tol:
            r_true, rtrue = self.true_residual_norm()
            if rtrue <= self.tol:
                return self.finish(start, self.converged_reason(), k, norms,
                                   f"||r|| = {rtrue:.3e} <= {self.tol:.3e}", rtrue=rtrue), None
            if rtrue > _STAGNATION_FACTOR * last_replacement or not math.isfinite(rtrue):
                return self.finish(
                    start, "DIVERGED_BREAKDOWN", k, norms,
                    f"true residual {rtrue:.3e} stagnated above the tolerance {self.tol:.3e} "
                    f"(limit of attainable accuracy in {self.x.dtype})", rtrue=rtrue), None
            return None, (r_true, rtrue)
        if k >= self.maxiter:
            return self.finish(start, "DIVERGED_ITS", k, norms,
                               f"reached maxiter = {self.maxiter} with ||r|| = {rnorm:.3e}"), None
        return None, None

    def check_rho(self, start, k, rho, norms):
        if self.M is None:
            return None
        if not math.isfinite(rho):
            return self.finish(start, "DIVERGED_NANORINF", k, norms, f"r'Mr is {rho} at iteration {k}")
        if rho <= 0.0:
            return self.finish(start, "DIVERGED_INDEFINITE_PC", k, norms,
                               f"r'Mr = {rho:.3e} <= 0: M is not positive definite")
        return None

    def check_pap(self, start, k, pAp, norms):
        if not math.isfinite(pAp):
            return self.finish(start, "DIVERGED_NANORINF", k, norms, f"p'Ap is {pAp} at iteration {k}")
        if pAp <= 0.0:
            return self.finish(start, "DIVERGED_INDEFINITE_MAT", k, norms,
                               f"p'Ap = {pAp:.3e} <= 0: A is not positive definite")
        return None

    def trivial(self, start):
        if not math.isfinite(self.bnorm):
            return self.finish(start, "DIVERGED_NANORINF", 0, [self.bnorm],
                               "b contains NaN or Inf", rtrue=self.bnorm)
        if self.bnorm == 0.0:
            self.x = np.zeros_like(self.x)
            return self.finish(start, "CONVERGED_ATOL", 0, [0.0], "b = 0: x = 0 is exact",
                               rtrue=0.0)
        return None

    # -- scipy's recurrence ---------------------------------------------------------
    def run_standard(self, start) -> SolveResult:
        done = self.trivial(start)
        if done is not None:
            return done
        A, K, x = self.A, self.kernels, self.x
        r = self.initial_residual()
        rr, z, rho = self.residual_and_z(r)
        rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
        norms = [rnorm]
        self.report(0, rnorm)
        p = np.empty_like(r)
        q = np.empty_like(r)
        rho_prev = 1.0
        restart = True
        last_replacement = math.inf
        k = 0
        while True:
            done, replacement = self.check_exit(start, k, rnorm, norms, last_replacement)
            if done is not None:
                return done
            if replacement is not None:
                r, rtrue = replacement
                last_replacement = rtrue
                self.replacements += 1
                rr, z, rho = self.residual_and_z(r)
                rnorm = rtrue
                norms[-1] = rtrue
                restart = True
                continue
            done = self.check_rho(start, k, rho, norms)
            if done is not None:
                return done
            if restart:
                p[...] = z
                restart = False
            else:
                K.cg_update_p(p, z, rho / rho_prev)
            pAp = self.reduce(A.matvec_dot_local(p, q))[0]
            self.matvecs += 1
            done = self.check_pap(start, k, pAp, norms)
            if done is not None:
                return done
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
                r_true, rtrue = self.true_residual_norm()
                if rtrue > _DRIFT_FACTOR * rnorm:
                    r, rnorm, restart = r_true, rtrue, True
                    rr, z, rho = self.residual_and_z(r)
                    self.replacements += 1
            norms.append(rnorm)
            self.report(k, rnorm)
            if self.callback is not None:
                self.callback(x)

    # -- one reduction per iteration -----------------------------------------------------
    def run_single_reduction(self, start, pipelined: bool) -> SolveResult:
        done = self.trivial(start)
        if done is not None:
            return done
        A, K, x = self.A, self.kernels, self.x
        if self.M is not None:
            precondition = self.apply_M
        elif pipelined:
            precondition = np.copy  # u and r (m and w) are updated apart: no aliasing
        else:
            precondition = lambda v: v  # noqa: E731 - u is r, w is A r
        last_replacement = math.inf
        k = 0
        norms: list[float] = []
        overwrite = False  # the next norm replaces the last one (after a residual replacement)
        r = self.initial_residual()
        while True:  # one pass per (re)start from a true residual
            u = precondition(r)
            w = A.matvec(u)
            self.matvecs += 1
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
                    self.matvecs += 1
                    # (a failure of M just above is raised by the next reduction,
                    # which every exit path below performs)
                    gamma, delta, rr = wait()
                else:
                    gamma, delta, rr = self.reduce(*local)
                rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
                if overwrite:
                    norms[-1] = rnorm
                    overwrite = False
                else:
                    norms.append(rnorm)
                    self.report(k, rnorm)
                    if k > 0 and self.callback is not None:
                        self.callback(x)
                done, replacement = self.check_exit(start, k, rnorm, norms, last_replacement)
                if done is not None:
                    return done
                if replacement is not None:
                    r, last_replacement = replacement
                    self.replacements += 1
                    overwrite = True
                    break
                done = self.check_rho(start, k, gamma, norms)
                if done is not None:
                    return done
                if first:
                    beta, denominator = 0.0, delta
                else:
                    beta = gamma / gamma_prev
                    denominator = delta - beta * gamma / alpha_prev
                done = self.check_pap(start, k, denominator, norms)
                if done is not None:
                    return done
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
                    self.matvecs += 1
                gamma_prev, alpha_prev, first = gamma, alpha, False
                k += 1
                if self.check_every is not None and k % self.check_every == 0:
                    r_true, rtrue = self.true_residual_norm()
                    recursive = self.reduce(K.dot(r, r))[0]
                    if rtrue > _DRIFT_FACTOR * math.sqrt(max(recursive, 0.0)):
                        # continue from the true residual with fresh directions
                        r = r_true
                        self.replacements += 1
                        break
