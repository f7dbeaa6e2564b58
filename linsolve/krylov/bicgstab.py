"""BiCGStab for non-symmetric systems, with scipy's semantics and PETSc's reasons.

The recurrence is van der Vorst's (SIAM J. Sci. Stat. Comput. 13, 1992),
right-preconditioned as in scipy's ``bicgstab`` (Saad, *Iterative Methods
for Sparse Linear Systems*, 2nd ed., Algorithm 7.7 applied to ``A M y = b``,
``x = M y``), so the residual it updates is the true residual's recursion
``b - A x`` and not a preconditioned one. One step::

    rho   = r0_hat^H r                        (Lanczos breakdown if it vanishes)
    beta  = (rho / rho_prev) (alpha / omega)
    p     = r + beta (p - omega v)
    v     = A M p                             (p_hat = M p)
    alpha = rho / (r0_hat^H v)                (Lanczos breakdown if r0_hat^H v vanishes)
    s     = r - alpha v                       (the half step: x + alpha p_hat has residual s)
    t     = A M s                             (s_hat = M s)
    omega = (t^H s) / (t^H t)                 (breakdown if t = 0 or t is orthogonal to s)
    x    += alpha p_hat + omega s_hat
    r     = s - omega t

Where it departs from scipy, and why:

- Convergence is the core's :class:`~linsolve.core.stopping.ResidualTest`:
  when the recursive norm meets ``max(rtol ||b||, atol)``, ``b - A x`` is
  recomputed and the solve is converged only if that meets it too;
  otherwise BiCGStab restarts from the true residual (residual
  replacement) and stops with ``DIVERGED_BREAKDOWN`` when replacements no
  longer gain. The half step is tested the same way: when ``||s||`` meets
  the tolerance, ``x + alpha p_hat`` becomes the iterate and its true
  residual decides (scipy returns it unchecked).
- Breakdown tests are relative, not scipy's absolute ``eps**2``: ``rho``
  and ``r0_hat^H v`` vanish when below ``eps ||r0_hat|| ||r||`` (resp.
  ``||v||``), rounding level for vectors that carry relative errors of
  ``eps``; ``omega`` when ``|t^H s| <= eps ||t|| ||s||``. scipy's absolute
  test breaks down on a well-posed system whose ``x0`` is nearly exact
  (``|rho| = ||r||^2 < eps^2`` for small residuals); this one does not.
- A Lanczos breakdown (``rho`` or ``r0_hat^H v``) after the residual has
  decreased since the last start restarts the method from the current
  iterate with ``r0_hat = r`` (counted in ``extra["restarts"]``); without
  progress since the last start it is reported. A vanishing ``omega`` or
  ``t`` is reported at once (a restart does not change ``t^H s``), after
  the half step ``x + alpha p_hat``, whose residual ``s`` is known. Every
  breakdown's message names the scalar; a restart that loops is
  impossible: each needs progress, and ``maxiter`` bounds the steps.
- NaN or Inf in any scalar of the recurrence stops the solve at once with
  ``DIVERGED_NANORINF``.

Inner products. Every one comes from ``system.dot`` or, where the system's
dot is the kernels' own, from the fused kernels that compute it in the pass
that produces its vector; a reducing dot (as under MPI) turns the fused
kernels off. Complex systems need the full ``u^H v`` for ``rho``,
``r0_hat^H v`` and ``t^H s`` (complex numbers), where ``system.dot`` is the
real part only: the fused path has the reference kernels' complex ``vdot``
(``xp.sum(xp.conj(u) * v)``); the plain path takes the imaginary part as
``Re(u^H (-i v))``, a second ``system.dot``.

Kernels (:mod:`cext.numba.bicgstab`, with CuPy and array-API twins). A step
is five passes over memory: ``p``'s update; ``v = A p_hat`` with
``r0_hat^H v`` and ``v^H v``; ``s = r - alpha v`` with ``s^H s``;
``t = A s_hat`` with ``t^H s`` and ``t^H t``; ``x`` and ``r`` with
``r^H r`` and ``r0_hat^H r``. ``s`` is written over ``r``. A Jacobi ``M``
on a sparse ``A`` is folded into the matrix: BiCGStab right-preconditioned
by ``D^{-1}`` runs on ``A D^{-1}``, whose columns are scaled once per
solve, and ``x += D^{-1} (alpha p + omega s)`` (the iterates equal scipy's
to rounding; ``psolves`` still counts two applications a step).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace
from typing import Any, Callable

from cext.registry import writes_in_place
from cext.threads import kernel_threads

from ..core.record import SolveRecord
from ..core.setup import KrylovSystem, check_x0, initial_iterate, krylov_system, settings
from ..core.stopping import Replacement, ResidualTest, Stop, Tolerance, b_verdict, not_finite
from ..result import SolveResult
from ..validation.inputs import dtype_name


def bicgstab(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0,
             maxiter: int | None = None, M: Any = None,
             callback: Callable[[Any], None] | None = None, monitor: Any = False,
             **kwargs) -> SolveResult:
    """Solve ``A x = b`` for a general (non-symmetric) ``A`` by BiCGStab.

    Same keywords, stopping rule and (without breakdowns) the same iterates
    as :func:`scipy.sparse.linalg.bicgstab`, right-preconditioned as scipy's,
    with failures reported as values and the guarantee of
    :func:`linsolve.pcg`: ``converged`` is True only if the *true* residual
    ``||b - A x||`` meets the tolerance.

    Parameters
    ----------
    A : array, sparse matrix, LinearOperator, object with ``matvec``, or callable
        Square operator, real or complex; ``numpy.matrix`` too. Real scipy
        sparse input on NumPy runs on fused Numba kernels (DIA storage when
        the matrix has few diagonals); complex input on the array-API
        reference kernels.
    b : array or array-like of shape (n,) or (n, 1)
        Right-hand side; its namespace (NumPy, CuPy, any array-API library)
        decides where the solve runs. Integer input is promoted to float64;
        float32 in gives float32 out, complex64 in complex64 out; complex
        ``A`` or ``b`` makes the solve complex.
    x0 : array, array-like or ``'Mb'``, optional
        Initial guess (never modified). Default zeros; ``'Mb'`` starts from
        ``M @ b`` (``b`` without ``M``), as in scipy.
    rtol, atol : float
        Converged when ``||b - A x|| <= max(rtol * ||b||, atol)``, checked on
        the recomputed residual.
    maxiter : int, optional
        Limit on BiCGStab steps (each two products with ``A`` and two with
        ``M``), default ``10 * n``.
    M : operator-like, optional
        Preconditioner approximating ``A^{-1}``, applied on the right
        (``A M y = b``, ``x = M y``), so the residual monitored is
        ``b - A x`` itself. Accepts everything ``A`` does, pyamg
        ``aspreconditioner()``, and objects with ``solve``. A
        :func:`linsolve.precond.jacobi` on a sparse ``A`` is folded into
        the matrix (a copy of its values, scaled once per solve).
    callback : callable, optional
        ``callback(x)`` after every step (``x`` is the live iterate: copy it
        to keep it).
    monitor : bool, file-like or callable
        ``True`` prints PETSc ``-ksp_monitor`` lines,
        ``"%3d KSP Residual norm %14.12e"``; an object with ``write``
        receives them; a callable is called as ``monitor(k, rnorm)``.

    Returns
    -------
    SolveResult
        Unpacks as ``x, info`` like scipy (``info`` is -1 on any breakdown,
        where scipy returns -10 or -11). ``iterations`` counts BiCGStab
        steps (a step that ends at its half is one step); ``matvecs`` and
        ``psolves`` the products with ``A`` and ``M`` actually spent (the
        recomputed residuals included). ``reason`` is one of
        ``CONVERGED_RTOL``, ``CONVERGED_ATOL``, ``DIVERGED_ITS``,
        ``DIVERGED_NANORINF``, ``DIVERGED_BREAKDOWN`` (a scalar of the
        recurrence vanished, named in ``message``, or the true residual
        stagnated above the tolerance). ``extra`` holds
        ``residual_replacements``, ``restarts`` (after Lanczos breakdowns)
        and ``threads``.

    Raises
    ------
    TypeError
        ``tol=`` or another unknown keyword; mixed backends; a bad
        ``monitor``; a real-only preconditioner on a complex system.
    ValueError
        Shapes that do not match; negative or non-numeric ``rtol``/``atol``;
        bad ``maxiter``; a string ``x0`` other than ``'Mb'``.

    Notes
    -----
    See the module notes for the breakdown tests and the restarts after a
    Lanczos breakdown, where this solver departs from scipy's.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.krylov.bicgstab import bicgstab
    >>> n = 100
    >>> A = sp.diags([-1.5, 2.5, -1.0], [-1, 0, 1], shape=(n, n), format="csr")  # upwind
    >>> b = np.ones(n)
    >>> result = bicgstab(A, b, rtol=1e-10)
    >>> result.converged, result.reason
    (True, 'CONVERGED_RTOL')
    >>> bool(np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b))
    True
    >>> result.matvecs == 2 * result.iterations + 1  # + the true residual at exit
    True
    """
    start = time.perf_counter()
    common = settings("bicgstab", kwargs, rtol=rtol, atol=atol, monitor=monitor, label="KSP",
                      callback=callback)
    check_x0(x0)
    with kernel_threads(_work(A, b)) as threads:
        system = krylov_system(A, b, None if isinstance(x0, str) else x0, M, maxiter,
                               allow_complex=True)
        record = SolveRecord(common.monitor, start=start)
        system = replace(system, x=initial_iterate(x0, system.b, system.M, system.xp, system.n,
                                                   system.dtype, record)
                         if isinstance(x0, str) else system.x)
        return _BiCGStab(system, common, record, _jacobi_scale(M, system)).run(threads)


def _work(A, b) -> int:
    """Rows plus stored entries, for the thread policy (0 where unknown)."""
    shape = getattr(A, "shape", None) or getattr(b, "shape", None) or (0,)
    return int(shape[0] or 0) + int(getattr(A, "nnz", 0) or 0)


def _jacobi_scale(M, system: KrylovSystem):
    """``1 / diag(A)`` when ``M`` is a Jacobi preconditioner that can be folded into a
    sparse ``A`` (compiled kernels, real dtype), else None."""
    from ..precond.jacobi import Jacobi  # the package imports the solvers: not at module level

    kernels, xp = system.A.kernels, system.xp
    if not isinstance(M, Jacobi) or kernels.backend not in ("numba", "cupy"):
        return None
    if system.A.layout not in ("csr", "dia"):
        return None
    if system.dtype not in (xp.float32, xp.float64) or M.inverse_diagonal.shape != (system.n,):
        return None
    return xp.astype(M.inverse_diagonal, system.dtype, copy=False)


def _column_scaled(A, scale):
    """A copy of the sparse operator ``A`` (CSR or DIA) with column ``j`` scaled by
    ``scale[j]``: ``A diag(scale)``, built once per solve (one pass over the entries)."""
    xp = A.xp
    AM = copy.copy(A)
    if A.layout == "csr":
        AM.data = A.data * xp.take(scale, xp.astype(A.indices, xp.int64))
        return AM
    n = A.shape[0]
    values = xp.astype(A.values, A.values.dtype, copy=True)  # fused path: writable
    for d, offset in enumerate(A.offsets):  # values[d, i] = A[i, i + offset]
        lo, hi = max(0, -offset), min(n, n - offset)
        if lo < hi:
            values[d, lo:hi] *= scale[lo + offset:hi + offset]
    AM.values = values
    return AM


class _BiCGStab:
    """The iteration's state; ``run`` is scipy's ``bicgstab`` loop on fused kernels."""

    def __init__(self, system: KrylovSystem, common, record: SolveRecord, jacobi_scale):
        self.system = system
        self.xp = system.xp
        self.A, self.M, self.b, self.x = system.A, system.M, system.b, system.x
        self.kernels = system.A.kernels
        self.record = record
        self.callback = common.callback
        self.complex = "complex" in dtype_name(system.dtype)
        self.eps = float(self.xp.finfo(system.dtype).eps)
        # The fused kernels write in place and return their dots, computed over the
        # local arrays: they run where the namespace writes in place (not JAX) and the
        # system's dot is the kernels' own. Elsewhere (a reducing dot, as under MPI)
        # the plain path builds new arrays and takes every inner product from the system.
        self.fused = writes_in_place(self.xp) and system.dot is self.kernels.dot
        # Jacobi on a sparse A: right preconditioning by M = diag(scale) is BiCGStab on
        # A M, whose columns are scaled once here; the products are (A M) p and (A M) s,
        # and x += scale (alpha p + omega s) recovers the iterate (p_hat and s_hat are
        # never stored: a Jacobi step costs one more read of scale, not four passes).
        self.scale = jacobi_scale if self.fused else None
        self.AM = None if self.scale is None else _column_scaled(system.A, self.scale)
        self.bnorm = system.norm(system.b)
        self.tolerance = Tolerance.of(common.rtol, common.atol, self.bnorm)
        self.test = ResidualTest(self.tolerance, system.maxiter, self.true_residual,
                                 system.dtype)
        self.restarts = 0
        self._known = None  # (r, ||r||) while r is the true residual of the current x

    # --- inner products -----------------------------------------------------------

    def vdot(self, u, v):
        """``u^H v``, through ``system.dot``; complex for a complex system.

        ``system.dot`` is ``Re(u^H v)`` only; the imaginary part is
        ``Re(u^H (-i v))``, a second call, so a reducing dot still sees every
        inner product (see the module notes).
        """
        dot = self.system.dot
        if self.complex:
            return complex(dot(u, v), dot(u, -1j * v))
        return dot(u, v)

    def norm2(self, u) -> float:
        """``u^H u`` (real), through ``system.dot``."""
        return self.system.dot(u, u)

    def product(self, p, q, w):
        """``(A p, w^H (A p), ||A p||^2)``, fused into the product where the kernels allow;
        ``q`` is a buffer the fused kernels write into."""
        A, K = (self.A if self.AM is None else self.AM), self.kernels
        self.record.matvecs += 1
        if self.fused and A.layout == "csr":
            wq, qq = K.bicgstab_csr_spmv_dots(A.indptr, A.indices, A.data, p, q, w)
            return q, wq, qq
        if self.fused and A.layout == "dia":
            wq, qq = K.bicgstab_dia_spmv_dots(A.offsets, A.values, p, q, w)
            return q, wq, qq
        q = A.matvec(p)
        return q, self.vdot(w, q), self.norm2(q)

    def precondition(self, u):
        if self.M is None:
            return u
        self.record.psolves += 1
        return self.M.matvec(u)

    # --- the core's hooks ---------------------------------------------------------

    def true_residual(self):
        """``(b - A x, ||b - A x||)``: one product with ``A``, none while it is known."""
        if self._known is not None:
            return self._known
        r, rnorm = self.system.residual(self.x, self.record)
        self._known = (r, rnorm)
        return r, rnorm

    def finish(self, stop: Stop, iterations: int) -> SolveResult:
        if stop.true_residual_norm is None:
            stop = replace(stop, true_residual_norm=self.true_residual()[1])
        return self.record.result(self.x, stop, iterations,
                                  extra={"residual_replacements": self.test.replacements,
                                         "restarts": self.restarts,
                                         "threads": self.threads.threads})

    def step_done(self, k: int, rnorm: float) -> None:
        self.record.append(k, rnorm)
        if self.callback is not None:
            self.callback(self.x)

    # --- the iteration ------------------------------------------------------------

    def run(self, threads) -> SolveResult:
        self.threads = threads
        xp, K, record, test = self.xp, self.kernels, self.record, self.test
        fused, scale = self.fused, self.scale
        stop = b_verdict(self.bnorm)
        if stop is not None:
            if stop.converged:  # scipy returns zeros for b = 0, whatever x0 is: exact
                self.x = xp.zeros_like(self.x)
            record.append(0, self.bnorm)
            return self.finish(stop, 0)
        # x0 = 0 is decided by a norm, not xp.any: under a reducing dot every rank takes
        # the same branch (the product inside true_residual is collective there)
        if self.norm2(self.x) != 0.0:
            r, rnorm = self.true_residual()
        else:
            r = xp.astype(self.b, self.b.dtype, copy=True)
            rnorm = self.bnorm
            self._known = (r, rnorm)
        record.append(0, rnorm)
        # buffers the fused kernels write into (the plain path builds new arrays)
        p, v, t = (xp.empty_like(r) for _ in range(3))
        restart = True
        start_norm = math.inf  # ||r|| when the current run (re)started
        rho = rho_prev = alpha = omega = 0.0
        k = 0
        while True:
            threads.refresh()  # follows the machine's load during long solves
            outcome = test.check(k, rnorm)
            if isinstance(outcome, Stop):
                return self.finish(outcome, k)
            if isinstance(outcome, Replacement):
                # continue from x with the true residual: a fresh start
                r, rnorm = outcome.r, outcome.rnorm
                record.norms[-1] = rnorm
                restart = True
                continue
            if restart:
                # r0_hat = r (scipy's choice): rho = ||r||^2 cannot vanish. Computed as
                # scipy does, not as rnorm**2, whose rounding (2.0000000000000004 for
                # ||(1, 1)||^2) would spoil an exact alpha.
                r_hat = xp.astype(r, r.dtype, copy=True)
                rhat_norm = rnorm
                rho = self.norm2(r)
                start_norm = rnorm
                if fused:
                    p[...] = r
                else:
                    p = r
                restart = False
            else:
                stop = not_finite("rho = r0_hat'r", abs(rho), k)
                if stop is not None:
                    return self.finish(stop, k)
                threshold = self.eps * rhat_norm * rnorm
                if abs(rho) <= threshold:
                    stop = self.lanczos_breakdown("rho = r0_hat'r", "||r0_hat|| ||r||", rho,
                                                  threshold, rnorm, start_norm, k)
                    if stop is not None:
                        return self.finish(stop, k)
                    restart = True
                    continue
                beta = (rho / rho_prev) * (alpha / omega)
                stop = not_finite("beta", abs(beta), k)
                if stop is not None:
                    return self.finish(stop, k)
                if fused:
                    p = K.bicgstab_update_p(p, r, v, beta, omega)
                else:
                    p = r + beta * (p - omega * v)
            if scale is not None:
                record.psolves += 1  # folded into A M: the product takes p
                p_hat = p
            else:
                p_hat = self.precondition(p)
            v, rhat_v, vv = self.product(p_hat, v, r_hat)
            stop = not_finite("r0_hat'v", abs(rhat_v), k) or not_finite("v'v", vv, k)
            if stop is not None:
                return self.finish(stop, k)
            threshold = self.eps * rhat_norm * math.sqrt(vv)
            if abs(rhat_v) <= threshold:
                stop = self.lanczos_breakdown("r0_hat'v", "||r0_hat|| ||v||", rhat_v, threshold,
                                              rnorm, start_norm, k)
                if stop is not None:
                    return self.finish(stop, k)
                restart = True
                continue
            alpha = rho / rhat_v
            self._known = None  # r becomes s, then x moves
            if fused:
                ss = K.bicgstab_update_s(r, v, alpha)
                s = r
            else:
                s = r - alpha * v
                ss = self.norm2(s)
            snorm = math.sqrt(ss) if ss >= 0 else float("nan")
            if not math.isfinite(snorm):
                return self.finish(Stop("DIVERGED_NANORINF",
                                        f"||s|| is {snorm} at iteration {k}"), k)
            if snorm <= test.tol:
                # The half step: x + alpha p_hat has residual s. It becomes the iterate;
                # the test at the top of the loop checks its true residual (and restarts
                # from it where the recursion has drifted).
                self.half_step(p_hat, alpha)
                r, rnorm, k, restart = s, snorm, k + 1, True
                self.step_done(k, rnorm)
                continue
            if scale is not None:
                record.psolves += 1  # folded into A M: the product takes s
                s_hat = s
            else:
                s_hat = self.precondition(s)
            t, st, tt = self.product(s_hat, t, s)
            stop = not_finite("s't", abs(st), k) or not_finite("t't", tt, k)
            if stop is None and tt == 0.0:
                stop = Stop("DIVERGED_BREAKDOWN", f"t't = 0 in step {k + 1}: t = A M s vanished "
                            f"for ||s|| = {snorm:.3e} (A M is singular)")
            threshold = self.eps * math.sqrt(tt) * snorm
            if stop is None and abs(st) <= threshold:
                stop = Stop("DIVERGED_BREAKDOWN",
                            f"omega = t's/t't vanished in step {k + 1}: |t's| = {abs(st):.3e} <= "
                            f"eps ||t|| ||s|| = {threshold:.3e} (t = A M s is orthogonal to s; "
                            "BiCGStab's minimal-residual step cannot progress)")
            if stop is not None:
                if stop.reason == "DIVERGED_BREAKDOWN":  # keep the half step's progress
                    self.half_step(p_hat, alpha)
                    k += 1
                    self.step_done(k, snorm)
                return self.finish(stop, k)
            omega = st.conjugate() / tt  # t^H s / t^H t; the kernels return s^H t
            if scale is not None:
                rr, rho_next = K.bicgstab_update_xr_scaled(self.x, r, p, s, t, r_hat, alpha,
                                                           omega, scale)
            elif fused:
                rr, rho_next = K.bicgstab_update_xr(self.x, r, p_hat, s_hat, t, r_hat, alpha,
                                                    omega)
            else:
                self.x = self.x + (alpha * p_hat + omega * s_hat)
                r = s - omega * t
                rr, rho_next = self.norm2(r), self.vdot(r_hat, r)
            rho_prev, rho = rho, rho_next
            k += 1
            rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
            self.step_done(k, rnorm)

    def half_step(self, p_hat, alpha) -> None:
        """``x += alpha p_hat`` (the BiCG iterate, whose residual is ``s``)."""
        if self.scale is not None:  # Jacobi folded into A M: p_hat = scale * p
            p_hat = self.scale * p_hat
        if self.fused:
            self.x[...] = self.x + alpha * p_hat
        else:
            self.x = self.x + alpha * p_hat

    def lanczos_breakdown(self, name: str, norms: str, value, threshold: float, rnorm: float,
                          start_norm: float, k: int) -> Stop | None:
        """None (restart from ``x`` with ``r0_hat = r``) where the residual fell since the
        last start; else the ``DIVERGED_BREAKDOWN`` naming ``name``."""
        if rnorm < start_norm:
            self.restarts += 1
            return None
        symbol = name.split(" = ")[0]
        return Stop("DIVERGED_BREAKDOWN",
                    f"{name} vanished in step {k + 1}: |{symbol}| = {abs(value):.3e} <= eps "
                    f"{norms} = {threshold:.3e}, and ||r|| = {rnorm:.3e} has not decreased "
                    f"since the last start ({start_norm:.3e}), so a restart with r0_hat = r "
                    "would not help")

