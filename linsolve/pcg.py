"""Preconditioned conjugate gradients with scipy's semantics and PETSc's reasons."""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

from cext.registry import writes_in_place
from cext.threads import kernel_threads

from ._validate import (as_initial_guess, as_rhs, check_maxiter, check_nonnegative, dtype_name,
                        reject_unknown_keywords, stopping_tolerance, working_dtype)
from .operators import as_operator
from .result import SolveResult

_MONITOR_FORMAT = "%3d KSP Residual norm %14.12e"
_LOG = logging.getLogger("linsolve")

# After a residual replacement the true residual must fall below this fraction
# of the previous replacement's, or the solve is declared stagnated: the
# recursive residual has left the attainable accuracy of the working precision.
_STAGNATION_FACTOR = 0.5

# A periodic check replaces the recursive residual only when the true one is
# this much larger: below it, CG's own recursion is left alone (and its
# iterates stay equal to scipy's).
_DRIFT_FACTOR = 2.0


def pcg(A: Any, b: Any, x0: Any = None, *, M: Any = None, rtol: float = 1e-5,
        atol: float = 0.0, maxiter: int | None = None,
        callback: Callable[[Any], None] | None = None, monitor: Any = False,
        check_every: int | None = None, check_symmetric: bool = True,
        **kwargs) -> SolveResult:
    """Solve ``A x = b`` for symmetric (Hermitian) positive definite ``A`` by (preconditioned) CG.

    Same keywords, stopping rule and (with ``M=None``) the same iterates as
    :func:`scipy.sparse.linalg.cg`, with failures reported as values and a
    guarantee scipy lacks: ``converged`` is True only if the *true*
    residual ``||b - A x||`` meets the tolerance.

    Parameters
    ----------
    A : array, sparse matrix, LinearOperator, object with ``matvec``, or callable
        SPD (or complex Hermitian positive definite) operator; ``numpy.matrix``
        too. Real scipy CSR input on NumPy runs on fused Numba kernels (DIA
        storage when the matrix has few diagonals); complex input runs on the
        array-API reference kernels, whose dot products conjugate.
    b : array or array-like of shape (n,) or (n, 1)
        Right-hand side; its namespace (NumPy, CuPy, any array-API library)
        decides where the solve runs; lists and ``numpy.matrix`` become NumPy
        arrays. Integer input is promoted to float64; float32 in gives
        float32 out, complex64 in complex64 out; complex ``A`` or ``b`` makes
        the solve complex.
    x0 : array, array-like or ``'Mb'``, optional
        Initial guess (never modified). Default zeros; ``'Mb'`` starts from
        ``M @ b`` (``b`` without ``M``), as in scipy.
    M : operator-like, optional
        SPD preconditioner approximating ``A^{-1}``, applied as ``M @ r``;
        accepts everything ``A`` does, pyamg ``aspreconditioner()``, and
        objects with ``solve`` (curvature approximations of ``A``).
    rtol, atol : float
        Stop at the first ``k`` with ``||r_k|| <= max(rtol * ||b||, atol)``.
    maxiter : int, optional
        Iteration limit, default ``10 * n``.
    callback : callable, optional
        ``callback(x)`` after every iteration (``x`` is the live iterate: copy
        it to keep it).
    monitor : bool, file-like or callable
        ``True`` prints PETSc ``-ksp_monitor`` lines,
        ``"%3d KSP Residual norm %14.12e"``, to stdout; an object with
        ``write`` receives the same lines; a callable is called as
        ``monitor(k, rnorm)``. Each line is also logged at DEBUG level to the
        ``"linsolve"`` logger (whatever ``monitor`` is).
    check_every : int, optional
        Also recompute ``b - A x`` every ``check_every`` iterations; if it has
        drifted above twice the recursive residual, continue from it with a
        restart (guards long float32 runs). Default: only at exit.
    check_symmetric : bool
        For dense and sparse ``A``, probe ``|x^H A y - conj(y^H A x)|`` with
        a seeded random pair before solving and warn (``UserWarning``) when it
        exceeds ``sqrt(eps)`` relative to ``||A x|| ||y||``: CG's answer for
        a non-symmetric ``A`` is meaningless. Two products, not counted in
        ``matvecs``; skipped for matrix-free operators.

    Returns
    -------
    SolveResult
        Unpacks as ``x, info`` like scipy. ``reason`` is one of
        ``CONVERGED_RTOL``, ``CONVERGED_ATOL``, ``DIVERGED_ITS``,
        ``DIVERGED_NANORINF`` (NaN/Inf met, within one iteration),
        ``DIVERGED_INDEFINITE_MAT`` (``p'Ap <= 0``),
        ``DIVERGED_INDEFINITE_PC`` (``r'Mr <= 0``), ``DIVERGED_BREAKDOWN``
        (the true residual stagnated above the tolerance). ``extra`` holds
        ``residual_replacements`` and ``threads``, the kernel threads in use
        at exit (:func:`linsolve.set_num_threads`; fewer while other
        processes keep cores busy).

    Raises
    ------
    TypeError
        ``tol=`` or another unknown keyword; mixed backends; a ``monitor``
        that is none of the accepted kinds; a real-only preconditioner on a
        complex system.
    ValueError
        Shapes that do not match; negative or non-numeric ``rtol``/``atol``;
        bad ``maxiter``; a string ``x0`` other than ``'Mb'``.

    Warns
    -----
    UserWarning
        ``A`` is visibly not symmetric (Hermitian); see ``check_symmetric``.

    Notes
    -----
    ``tol=`` is refused (scipy renamed it ``rtol``), except in pyamg's
    accelerator call ``pcg(A, b, x0=, tol=, maxiter=, M=, callback=,
    residuals=)`` made by ``MultilevelSolver.solve(accel=pcg)``: there
    ``tol`` is the relative tolerance and ``residuals`` (a list) receives
    the residual norms.

    When the recursive residual meets the tolerance, the true residual is
    recomputed. If it does not meet it too, CG restarts from ``x`` with the
    true residual (residual replacement). If a second replacement does not
    halve the true residual, the solve stops with ``DIVERGED_BREAKDOWN``:
    the tolerance is below the attainable accuracy of the dtype.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import pcg
    >>> n = 50
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    >>> b = np.ones(n)
    >>> result = pcg(A, b, rtol=1e-10)
    >>> result.converged, result.reason, result.iterations
    (True, 'CONVERGED_RTOL', 25)
    >>> bool(np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b))
    True
    """
    start = time.perf_counter()
    # pyamg's accelerator call (see Notes): its tol is relative, our rtol
    pyamg_call = "tol" in kwargs and "residuals" in kwargs
    if pyamg_call:
        rtol, residuals = kwargs.pop("tol"), kwargs.pop("residuals")
    reject_unknown_keywords("pcg", kwargs)
    rtol = check_nonnegative("rtol", rtol)
    atol = check_nonnegative("atol", atol)
    if check_every is not None and (not isinstance(check_every, int) or check_every < 1):
        raise ValueError(f"check_every must be a positive int or None, got {check_every!r}")
    report = _monitor_sink(monitor)
    if isinstance(x0, str) and x0 != "Mb":
        raise ValueError(f"x0 must be an array, None or 'Mb' (start from M @ b), got {x0!r}")
    xp, b = as_rhs(b, allow_complex=True)
    n = b.shape[0]
    maxiter = check_maxiter(maxiter, 10 * n)
    # Like scipy, A and b fix the precision; M is applied in it.
    dtype = working_dtype(xp, b, A, allow_complex=True)
    b = xp.astype(b, dtype)
    with kernel_threads(n + int(getattr(A, "nnz", 0) or 0)) as threads:
        A_op = as_operator(A, xp, dtype, n, name="A")
        if check_symmetric and A_op.layout != "function":
            _warn_if_not_hermitian(A_op, xp, dtype, n)
        M_op = None if M is None else as_operator(M, xp, dtype, n, name="M", prefer_solve=True)
        psolves = 0
        if isinstance(x0, str):  # 'Mb', scipy's start from M @ b
            Mb = b if M_op is None else M_op.matvec(b)
            psolves = 0 if M_op is None else 1
            x = xp.astype(Mb, dtype, copy=True)  # M may return b itself
        else:
            x = as_initial_guess(x0, xp, n, dtype)
        solver = _PCG(A_op, M_op, b, x, rtol, atol, maxiter, callback, report, check_every)
        solver.psolves = psolves
        solver.jacobi_scale = _jacobi_scale(M, A_op, dtype)
        result = solver.run(start, threads)
    if pyamg_call and residuals is not None:
        residuals[:] = result.residual_norms.tolist()
    return result


def _jacobi_scale(M, A_op, dtype):
    """``1 / diag(A)`` in the working dtype when ``M`` is a Jacobi preconditioner that the
    fused update ``cg_update_xrz`` can apply (compiled kernels, real dtype), else None."""
    from .precond.jacobi import Jacobi  # the package imports pcg: not at module level

    if not isinstance(M, Jacobi) or A_op.kernels.backend != "numba":
        return None
    xp = A_op.xp
    if dtype not in (xp.float32, xp.float64) or M.inverse_diagonal.shape != (A_op.shape[0],):
        return None
    return xp.astype(M.inverse_diagonal, dtype, copy=False)


def _monitor_sink(monitor) -> Callable[[int, float], None] | None:
    """``monitor`` as a function ``(k, rnorm) -> None``, or None; TypeError for other kinds."""
    if isinstance(monitor, (bool, np.bool_)) or (isinstance(monitor, int) and monitor in (0, 1)):
        monitor = bool(monitor)  # 0 and 1 as before monitor took streams and callables
    if monitor is None or monitor is False:
        return None
    if monitor is True:
        # sys.stdout looked up at each line, so redirections made later apply
        return lambda k, rnorm: print(_MONITOR_FORMAT % (k, rnorm), file=sys.stdout)
    write = getattr(monitor, "write", None)
    if callable(write):
        return lambda k, rnorm: write(_MONITOR_FORMAT % (k, rnorm) + "\n")
    if callable(monitor):
        return monitor
    raise TypeError(f"monitor must be True/False, a file-like object with write(), or a "
                    f"callable monitor(k, rnorm); got {type(monitor).__name__}")


def _warn_if_not_hermitian(A, xp, dtype, n: int) -> None:
    """Warn when ``x^H A y`` and ``conj(y^H A x)`` visibly differ for a seeded random pair.

    For a Hermitian ``A`` they differ by rounding only, about ``sqrt(n) eps``
    relative to ``||A x|| ||y||``; the threshold ``sqrt(eps)`` leaves room for
    that and still catches any asymmetry that would mislead CG.
    """
    if n == 0:
        return
    # Uniform draws in the working precision and the kernels' fused dot: the
    # probe costs about two products (normal float64 draws plus casts and
    # temporaries cost 5-10 CG iterations at n = 1e6).
    rng = np.random.default_rng(0)
    name = dtype_name(dtype)
    is_complex = "complex" in name
    real = np.float32 if name.endswith(("float32", "complex64")) else np.float64

    def draw():
        u = rng.random(n, dtype=real) - real(0.5)
        return u + 1j * (rng.random(n, dtype=real) - real(0.5)) if is_complex else u

    x, y = (xp.astype(xp.asarray(draw()), dtype) for _ in range(2))
    Ax, Ay = A.matvec(x), A.matvec(y)

    def vdot(u, v):
        return complex(xp.sum(xp.conj(u) * v)) if is_complex else float(A.kernels.dot(u, v))

    def norm(u):
        return math.sqrt(abs(vdot(u, u)))

    defect = abs(vdot(x, Ay) - vdot(y, Ax).conjugate())
    scale = max(norm(Ax) * norm(y), norm(Ay) * norm(x))
    if not (math.isfinite(defect) and math.isfinite(scale)) or scale == 0.0:
        return  # NaN/Inf are reported by the solve itself
    threshold = math.sqrt(float(xp.finfo(dtype).eps))
    if defect > threshold * scale:
        warnings.warn(f"A does not look symmetric (Hermitian): |x'Ay - y'Ax| = "
                      f"{defect / scale:.1e} relative to |Ax||y| for a random pair, above "
                      f"{threshold:.1e}; CG needs a symmetric positive definite A "
                      "(check_symmetric=False silences this check)", UserWarning, stacklevel=3)


class _PCG:
    """The iteration's state; ``run`` is scipy's ``cg`` loop with fused kernels."""

    def __init__(self, A, M, b, x, rtol, atol, maxiter, callback, monitor, check_every):
        self.A, self.M, self.b, self.x = A, M, b, x
        self.xp = A.xp
        self.kernels = A.kernels
        self.maxiter, self.callback, self.monitor = maxiter, callback, monitor
        self.check_every = check_every
        self.matvecs = 0
        self.psolves = 0
        self.jacobi_scale = None  # set by pcg for a Jacobi M on the compiled kernels
        self.replacements = 0
        self.bnorm = math.sqrt(self.kernels.dot(b, b))
        # scipy's max(rtol*||b||, atol); the reason names the larger bound
        self.tol, self.reason_converged = stopping_tolerance(rtol, atol, self.bnorm)

    def true_residual(self):
        r = self.b - self.A.matvec(self.x)
        self.matvecs += 1
        return r

    def finish(self, start, reason, iterations, norms, message, rtrue=None):
        if rtrue is None:
            r = self.true_residual()
            rtrue = math.sqrt(self.kernels.dot(r, r))
        converged = reason.startswith("CONVERGED")
        return SolveResult(x=self.x, converged=converged, reason=reason,
                           iterations=iterations,
                           residual_norms=np.asarray(norms, dtype=np.float64),
                           true_residual_norm=float(rtrue), matvecs=self.matvecs,
                           time=time.perf_counter() - start, message=message,
                           psolves=self.psolves,
                           extra={"residual_replacements": self.replacements,
                                  "threads": self.threads.threads})

    def converged_reason(self):
        return self.reason_converged

    def report(self, k, rnorm):
        if self.monitor is not None:
            self.monitor(k, rnorm)
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug(_MONITOR_FORMAT, k, rnorm)

    def run(self, start, threads) -> SolveResult:
        self.threads = threads
        xp, K, A, M = self.xp, self.kernels, self.A, self.M
        x = self.x
        # NumPy, CuPy, array_api_strict: the fused kernels update x, r, p in the
        # solver's own buffers (x is a copy of x0). JAX arrays are immutable: the
        # same recurrences build new arrays (the kernels return p; x, r below).
        in_place = writes_in_place(xp)
        if not math.isfinite(self.bnorm):
            return self.finish(start, "DIVERGED_NANORINF", 0, [self.bnorm],
                               "b contains NaN or Inf", rtrue=self.bnorm)
        if self.bnorm == 0.0:
            # scipy returns zeros here, whatever x0 is: the exact solution.
            self.x = xp.zeros_like(x)
            return self.finish(start, "CONVERGED_ATOL", 0, [0.0], "b = 0: x = 0 is exact",
                               rtrue=0.0)
        if bool(xp.any(x != 0)):
            r = self.true_residual()
        else:
            r = xp.astype(self.b, self.b.dtype, copy=True)
        rr = K.dot(r, r)
        rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
        norms = [rnorm]
        self.report(0, rnorm)
        p = xp.empty_like(r)
        q = xp.empty_like(r)
        # A diagonal M (Jacobi) is fused into the update: z = scale * r and r'z
        # come out of the pass that updates r (pending holds r'z, scaled z).
        scale = self.jacobi_scale if in_place else None
        scaled = xp.empty_like(r) if scale is not None else None
        pending = None
        rho_prev = 1.0
        restart = True
        last_replacement = math.inf
        k = 0
        while True:
            threads.refresh()  # follows the machine's load during long solves
            if not math.isfinite(rnorm):
                return self.finish(start, "DIVERGED_NANORINF", k, norms,
                                   f"residual norm is {rnorm} at iteration {k}")
            if rnorm <= self.tol:
                rtrue_vec = self.true_residual()
                rtrue = math.sqrt(K.dot(rtrue_vec, rtrue_vec))
                if rtrue <= self.tol:
                    return self.finish(start, self.converged_reason(), k, norms,
                                       f"||r|| = {rtrue:.3e} <= {self.tol:.3e}", rtrue=rtrue)
                if rtrue > _STAGNATION_FACTOR * last_replacement or not math.isfinite(rtrue):
                    return self.finish(
                        start, "DIVERGED_BREAKDOWN", k, norms,
                        f"true residual {rtrue:.3e} stagnated above the tolerance "
                        f"{self.tol:.3e} (limit of attainable accuracy in {x.dtype})",
                        rtrue=rtrue)
                # Residual replacement: continue from x with the true residual.
                last_replacement = rtrue
                self.replacements += 1
                r = rtrue_vec
                rr = rtrue * rtrue
                rnorm = rtrue
                norms[-1] = rtrue
                restart = True
                pending = None
                continue
            if k >= self.maxiter:
                return self.finish(start, "DIVERGED_ITS", k, norms,
                                   f"reached maxiter = {self.maxiter} with ||r|| = {rnorm:.3e}")
            if M is None:
                z, rho = r, rr
            else:
                if pending is not None:  # z and r'z from the fused Jacobi update
                    z, rho, pending = scaled, pending, None
                else:
                    z = M.matvec(r)
                    rho = K.dot(r, z)
                self.psolves += 1
                if not math.isfinite(rho):
                    return self.finish(start, "DIVERGED_NANORINF", k, norms,
                                       f"r'Mr is {rho} at iteration {k}")
                if rho <= 0.0:
                    return self.finish(start, "DIVERGED_INDEFINITE_PC", k, norms,
                                       f"r'Mr = {rho:.3e} <= 0: M is not positive definite")
            if restart:
                if in_place:
                    p[...] = z
                else:
                    p = z
                restart = False
            else:
                p = K.cg_update_p(p, z, rho / rho_prev)
            q, pAp = A.matvec_dot(p, q)
            self.matvecs += 1
            if not math.isfinite(pAp):
                return self.finish(start, "DIVERGED_NANORINF", k, norms,
                                   f"p'Ap is {pAp} at iteration {k}")
            if pAp <= 0.0:
                return self.finish(start, "DIVERGED_INDEFINITE_MAT", k, norms,
                                   f"p'Ap = {pAp:.3e} <= 0: A is not positive definite")
            alpha = rho / pAp
            if scale is not None:
                rr, pending = K.cg_update_xrz(x, r, p, q, alpha, scale, scaled)
            elif in_place:
                rr = K.cg_update_xr(x, r, p, q, alpha)
            else:
                x, r = x + alpha * p, r - alpha * q
                self.x = x
                rr = K.dot(r, r)
            rho_prev = rho
            k += 1
            rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
            if self.check_every is not None and k % self.check_every == 0 and math.isfinite(rnorm):
                rtrue_vec = self.true_residual()
                rtrue = math.sqrt(K.dot(rtrue_vec, rtrue_vec))
                if rtrue > _DRIFT_FACTOR * rnorm:
                    # The recursion has drifted from b - Ax: continue from the
                    # true residual, restarting the directions (keeping p with
                    # a replaced r can diverge once the gap is large).
                    r, rr, rnorm, restart = rtrue_vec, rtrue * rtrue, rtrue, True
                    pending = None
                    self.replacements += 1
            norms.append(rnorm)
            self.report(k, rnorm)
            if self.callback is not None:
                self.callback(x)
