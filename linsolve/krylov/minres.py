"""MINRES for symmetric (possibly indefinite) systems, with scipy's keywords and PETSc's reasons.

The recurrence is Paige and Saunders' MINRES (SIAM J. Numer. Anal. 12,
1975) with a symmetric positive definite preconditioner, as in scipy's
``minres`` (a translation of Saunders' MATLAB code; Choi, Paige and
Saunders, SIAM J. Sci. Comput. 33, 2011, section 2, give the same
recurrences): step for step scipy's variables and order of operations,
with the vector work fused into three passes over memory
(:mod:`cext.numba.minres`).

What differs from scipy is when the method stops (see :func:`minres`):
scipy stops on its estimate ``phibar`` of the residual, which with a
preconditioner is ``||r||_M = sqrt(r' M r)``, not ``||r||``; here the
estimate only says when to recompute ``b - A x``, and only that true
residual decides convergence.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import replace
from typing import Any, Callable

from cext.threads import kernel_threads

from ..core.record import SolveRecord
from ..core.setup import check_x0, initial_iterate, krylov_system, settings
from ..core.stopping import (Replacement, ResidualTest, Stop, Tolerance, b_verdict, not_finite,
                             preconditioner_verdict)
from ..result import SolveResult
from ..validation.inputs import dtype_name
from .pcg import _warn_if_not_hermitian

LEAST_SQUARES_TEST = 0.5
"""MINRES has found a least-squares solution when its estimate of ``||A r|| / (||A|| ||r||)``
(scipy's ``test2``) is below ``eps ** LEAST_SQUARES_TEST``. scipy compares ``test2``
with ``rtol`` and reports success; here the true residual decides, and the
threshold is ``sqrt(eps)``, whatever ``rtol`` is: a consistent system gets there
only if ``cond(A) > 1/sqrt(eps)`` (where ``eps cond(A)`` already exceeds
``sqrt(eps)``), and on an inconsistent one the estimate bottoms out near it
(measured: 1e-9 in float64 on a singular shifted Laplacian) before lost
orthogonality drives the iterates away from the least-squares solution."""

PATIENCE = 2.0
"""After a true-residual check that missed the tolerance, the next check comes
when the estimate has dropped by ``||r_true|| / tol``, and by this factor at least."""


def minres(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, shift: float = 0.0,
           maxiter: int | None = None, M: Any = None,
           callback: Callable[[Any], None] | None = None, show: bool = False,
           check: bool = False, atol: float = 0.0, monitor: Any = False,
           **kwargs) -> SolveResult:
    """Solve ``(A - shift I) x = b`` for symmetric (Hermitian), possibly indefinite ``A`` by MINRES.

    scipy's :func:`scipy.sparse.linalg.minres` signature and recurrence, with
    the stopping rule of :func:`linsolve.pcg`: ``converged`` is True only if
    the recomputed ``||b - (A - shift I) x|| <= max(rtol ||b||, atol)``.

    Parameters
    ----------
    A : array, sparse matrix, LinearOperator, object with ``matvec``, or callable
        Symmetric (complex: Hermitian) operator; indefinite and singular are
        allowed. Real scipy CSR input on NumPy runs on fused Numba kernels
        (DIA storage for matrices with few diagonals).
    b : array or array-like of shape (n,) or (n, 1)
        Right-hand side; its namespace (NumPy, CuPy, JAX, any array-API
        library) decides where the solve runs. Integer input is promoted to
        float64; float32 in, float32 out; complex input gives a complex solve.
    x0 : array, array-like or ``'Mb'``, optional
        Initial guess (never modified); default zeros; ``'Mb'`` starts from
        ``M @ b``, as in scipy.
    rtol, atol : float
        Stop at the first ``k`` with ``||b - (A - shift I) x_k|| <= max(rtol ||b||, atol)``.
    shift : float
        Solve ``(A - shift I) x = b``, as in scipy.
    maxiter : int, optional
        Lanczos steps at most, default ``5 n`` (scipy's).
    M : operator-like, optional
        Symmetric (Hermitian) positive definite preconditioner approximating
        ``(A - shift I)^{-1}``, applied as ``M @ r``; accepts what ``A``
        accepts, pyamg ``aspreconditioner()`` and objects with ``solve``.
        It must return a new array (or ``r`` itself), not a buffer it reuses.
    callback : callable, optional
        ``callback(x)`` after every iteration (``x`` is the live iterate:
        copy it to keep it).
    show : bool
        Print scipy's summary of the run (a header, an iteration table of
        ``x[0]``, the relative residual estimate, the estimates of ``||A||``
        and ``cond(A)``, and the exit reason).
    check : bool
        Probe ``A`` and ``M`` for symmetry before solving (a seeded random
        pair, ``|x^H A y - conj(y^H A x)|`` against ``sqrt(eps) ||A x|| ||y||``)
        and raise ValueError when either is visibly not symmetric, as
        scipy does. Without it, a dense or sparse ``A`` is probed anyway and
        a ``UserWarning`` is issued (products not counted in ``matvecs``).
    monitor : bool, file-like or callable
        PETSc ``-ksp_monitor`` lines ``"%3d KSP Residual norm %14.12e"`` of
        ``residual_norms``, as in :func:`linsolve.pcg`.

    Returns
    -------
    SolveResult
        Unpacks as ``x, info`` like scipy (``info`` is ``maxiter`` when the
        iteration limit is reached, 0 when converged, -1 otherwise).
        ``iterations`` counts Lanczos steps; ``matvecs`` the products with
        ``A`` (one per step, one per true-residual check); ``psolves`` the
        applications of ``M``. ``reason``: ``CONVERGED_RTOL``,
        ``CONVERGED_ATOL``, ``DIVERGED_ITS``, ``DIVERGED_NANORINF``,
        ``DIVERGED_INDEFINITE_PC`` (``r' M r < 0``, or ``= 0`` for
        ``r != 0``: ``M`` is not positive definite), ``DIVERGED_BREAKDOWN``
        (the true residual stagnated above the tolerance, the Lanczos
        process ended (``beta = 0``) with the true residual above it, or
        ``x`` is a least-squares solution of a singular system ``b`` is not
        consistent with). ``extra`` holds ``missed_checks`` (true-residual
        checks that did not meet the tolerance), ``anorm`` and ``acond``
        (scipy's estimates of ``||A||`` and ``cond(A)`` from the Lanczos
        tridiagonal) and ``threads``.

    Raises
    ------
    TypeError
        ``tol=`` or another unknown keyword; mixed backends; a bad
        ``monitor``; a real-only preconditioner on a complex system.
    ValueError
        Shapes that do not match; negative ``rtol``/``atol``; bad
        ``maxiter``; a non-finite ``shift``; with ``check=True``, ``A`` or
        ``M`` visibly not symmetric.

    Warns
    -----
    UserWarning
        ``A`` (dense or sparse) is visibly not symmetric (Hermitian).

    Notes
    -----
    *Stopping rule, and how it differs from scipy's.* scipy stops when its
    estimate ``phibar`` satisfies ``phibar <= rtol ||A|| ||x||`` (``||A||``
    estimated from the Lanczos tridiagonal), a backward-error test that is
    not ``||b - A x|| <= rtol ||b||``; with a preconditioner ``phibar`` is
    ``||r||_M = sqrt(r' M r)``, which can be orders of magnitude below
    ``||r||`` (an AMG cycle asked for 1e-10 returned 1e-6), and it also stops
    with ``info = 0`` on a least-squares solution that does not solve the
    system. Here the estimate of ``||r_k||`` is ``phibar`` without ``M``
    (there it is the 2-norm) and, with ``M``, the 2-norm of the residual
    updated by the recurrence ``r_k = s_k^2 r_{k-1} - c_k phibar_{k+1}
    z_{k+1}`` (``z_{k+1}`` the new Lanczos vector before preconditioning;
    one vector more, updated in the pass that updates ``x``). When that
    estimate meets the tolerance, ``b - A x`` is recomputed, and only the
    true residual decides convergence. If it misses, the Lanczos process
    simply continues (no restart), and the next check comes when the
    estimate has dropped by ``||r_true|| / tol`` (at least
    :data:`PATIENCE`); a check that does not halve the previous missed one
    ends the solve with ``DIVERGED_BREAKDOWN``: the tolerance is below the
    attainable accuracy.

    *Residual history.* ``residual_norms[k]`` is ``||b - A x_k||`` where it was
    recomputed (``k = 0``, and every iteration at which the true residual was
    checked), else the estimate above, scaled after a missed check by the
    ratio of the true residual to the estimate there. The monitor reports
    the same numbers.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.krylov.minres import minres
    >>> n = 100
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    >>> b = np.ones(n)
    >>> result = minres(A, b, shift=1.0, rtol=1e-10)  # indefinite: A - I
    >>> result.converged, result.reason
    (True, 'CONVERGED_RTOL')
    >>> bool(np.linalg.norm(b - (A @ result.x - result.x)) <= 1e-10 * np.linalg.norm(b))
    True
    """
    start = time.perf_counter()
    common = settings("minres", kwargs, rtol=rtol, atol=atol, monitor=monitor, label="KSP",
                      callback=callback)
    shift = _check_shift(shift)
    check_x0(x0)
    system = krylov_system(A, b, None if isinstance(x0, str) else x0, M, maxiter,
                           allow_complex=True)
    if maxiter is None:
        system = replace(system, maxiter=5 * system.n)  # scipy's default for minres
    with kernel_threads(system.n + int(getattr(A, "nnz", 0) or 0)) as threads:
        if check:
            _probe_symmetry(system, system.A, "A", raise_error=True)
            if system.M is not None:
                _probe_symmetry(system, system.M, "M", raise_error=True)
        elif system.A.layout != "function":
            _probe_symmetry(system, system.A, "A", raise_error=False)
        record = SolveRecord(common.monitor, start=start)
        x = system.x if not isinstance(x0, str) else initial_iterate(
            x0, system.b, system.M, system.xp, system.n, system.dtype, record)
        return _Minres(system, x, shift, common, record, show).run(threads)


def _check_shift(shift) -> float:
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real) \
            or not math.isfinite(float(shift)):
        raise ValueError(f"shift must be a finite real number, got {shift!r}")
    return float(shift)


def _probe_symmetry(system, operator, name: str, *, raise_error: bool) -> None:
    """:func:`linsolve.krylov.pcg._warn_if_not_hermitian`'s probe, worded for MINRES.

    The probe's warning is caught and issued again (or raised, for
    ``check=True``) naming ``name`` and MINRES; other warnings pass through.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_if_not_hermitian(operator, system.xp, system.dtype, system.n)
    for warning in caught:
        text = str(warning.message)
        if not (issubclass(warning.category, UserWarning) and "look symmetric" in text):
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
            continue
        measured = text.split(";")[0].split(": ", 1)[-1]
        message = (f"{name} does not look symmetric (Hermitian): {measured}; MINRES needs a "
                   "symmetric A and a symmetric positive definite M")
        if raise_error:
            raise ValueError(message)
        warnings.warn(message + " (check=True raises instead)", UserWarning, stacklevel=3)


def _same_memory(a, b) -> bool:
    """Whether two arrays may be one buffer: NumPy's bounds test, else identity."""
    if a is b:
        return True
    if type(a).__module__ == "numpy" and type(b).__module__ == "numpy":
        import numpy as np

        return bool(np.may_share_memory(a, b))
    return False


class _Minres:
    """The iteration's state; ``run`` is scipy's ``minres`` loop on fused kernels."""

    def __init__(self, system, x, shift, common, record, show):
        self.system, self.x, self.shift = system, x, shift
        self.xp, self.A, self.M, self.b = system.xp, system.A, system.M, system.b
        self.kernels = system.A.kernels
        self.dot, self.norm = system.dot, system.norm
        self.maxiter, self.callback = system.maxiter, common.callback
        self.record, self.show = record, show
        self.bnorm = system.norm(system.b)
        self.tolerance = Tolerance.of(common.rtol, common.atol, self.bnorm)
        self.test = ResidualTest(self.tolerance, self.maxiter, self.true_residual,
                                 dtype_name(system.dtype))
        self.rtol = common.rtol
        self.anorm = 0.0
        self.acond = 0.0
        # The fused kernels return their dot products summed over this process's
        # entries; they stand for system.dot only where that is the kernels' own
        # (serial) dot. A system with another inner product (a reduction over
        # ranks) gets every dot from system.dot.
        self.local_dots = system.dot is self.kernels.dot
        layout = self.A.layout
        self.fused_product = (self.local_dots and self.kernels.backend == "numba"
                              and layout in ("csr", "dia"))

    # --- the true residual and the exit ------------------------------------------------

    def true_residual(self):
        """``(b - (A - shift I) x, its norm)``, one product with ``A``."""
        r = self.b - self.A.matvec(self.x)
        if self.shift != 0.0:
            r = r + self.shift * self.x
        self.record.matvecs += 1
        return r, self.norm(r)

    def finish(self, stop: Stop, iterations: int) -> SolveResult:
        if stop.true_residual_norm is None:
            stop = replace(stop, true_residual_norm=self.true_residual()[1])
        if self.show:
            print(f"Exit  minres.    reason  =  {stop.reason}      itn   ={iterations:5d}")
            print(f"Exit  minres.    Anorm   =  {self.anorm:12.4e}      Acond =  "
                  f"{self.acond:12.4e}")
            print(f"Exit  minres.    ||b - Ax|| = {stop.true_residual_norm:12.4e}   "
                  f"tol = {self.tolerance.tol:12.4e}")
            print(f"Exit  minres.    {stop.message}")
        return self.record.result(self.x, stop, iterations,
                                  extra={"missed_checks": self.test.replacements,
                                         "anorm": self.anorm, "acond": self.acond,
                                         "threads": self.threads.threads})

    def verified(self, k: int, why: str) -> Stop:
        """The verdict of the true residual where the recurrence cannot go on (``why``)."""
        rtrue = self.true_residual()[1]
        if not math.isfinite(rtrue):
            return Stop("DIVERGED_NANORINF", f"residual norm is {rtrue} at iteration {k}", rtrue)
        if rtrue <= self.tolerance.tol:
            return self.tolerance.met(rtrue)
        return Stop("DIVERGED_BREAKDOWN", f"{why}, yet ||b - Ax|| = {rtrue:.3e} > "
                                          f"{self.tolerance.tol:.3e}", rtrue)

    # --- the iteration -----------------------------------------------------------------

    def lanczos(self, y, r1, sq, sy, sr):
        """``r1 = sq A y + sy y + sr r1`` and ``y . r1`` (the fused product where there is one)."""
        K, A = self.kernels, self.A
        if self.fused_product:
            if A.layout == "csr":
                return K.csr_minres_lanczos(A.indptr, A.indices, A.data, y, r1, sq, sy, sr)
            return K.dia_minres_lanczos(A.offsets, A.values, y, r1, sq, sy, sr)
        r1, yr = K.minres_lanczos(A.matvec(y), y, r1, sq, sy, sr)
        return r1, (yr if self.local_dots else self.dot(y, r1))

    def run(self, threads) -> SolveResult:
        self.threads = threads
        xp, K, M = self.xp, self.kernels, self.M
        record, test, tol = self.record, self.test, self.tolerance.tol
        dot, local = self.dot, self.local_dots
        if self.show:
            self.print_header()
        stop = b_verdict(self.bnorm)
        if stop is not None:
            if stop.converged:  # scipy returns zeros for b = 0, whatever x0 is: exact
                self.x = xp.zeros_like(self.x)
            record.append(0, self.bnorm)
            return self.finish(stop, 0)

        # r1 = b - A x0; y = M r1; beta1 = sqrt(r1' y)  (scipy's names from here on)
        # decided by a norm through system.dot: every rank takes the same branch under MPI
        if self.system.norm(self.x) != 0.0:
            r0, rnorm = self.true_residual()
        else:
            r0, rnorm = xp.astype(self.b, self.b.dtype, copy=True), self.bnorm
        record.append(0, rnorm)
        if not math.isfinite(rnorm):
            return self.finish(Stop("DIVERGED_NANORINF", f"||b - A x0|| is {rnorm}", rnorm), 0)
        if rnorm <= tol:  # an exact x0: the norm is a true residual already
            return self.finish(self.tolerance.met(rnorm), 0)
        if self.maxiter == 0:
            return self.finish(Stop("DIVERGED_ITS", f"reached maxiter = 0 with ||r|| = "
                                                    f"{rnorm:.3e}", rnorm), 0)
        if M is None:
            y, beta1_sq = r0, rnorm * rnorm
        else:
            y = M.matvec(r0)
            record.psolves += 1
            beta1_sq = dot(r0, y)
            stop = preconditioner_verdict(beta1_sq, 0)
            if stop is not None:
                return self.finish(stop, 0)
        beta1 = math.sqrt(beta1_sq)

        x = self.x
        r2 = r0
        r1 = xp.zeros_like(r0)  # read with a zero factor in the first step
        # with M: the residual itself, by the recurrence, for its 2-norm (phibar is its M-norm)
        r = xp.astype(r0, r0.dtype, copy=True) if M is not None else None
        w1, w2 = xp.zeros_like(r0), xp.zeros_like(r0)  # w_{k-2}, w_{k-1}
        beta, oldb = beta1, 0.0
        dbar = epsln = 0.0
        phibar = beta1
        tnorm2 = 0.0
        gmax, gmin = 0.0, math.inf
        cs, sn = -1.0, 0.0
        estimate = rnorm  # of ||b - A x_k||
        scale = 1.0  # estimate -> history, after a missed check: true / estimate there
        trigger = 1.0  # estimate -> the stopping test (the next check's schedule)
        ls_threshold = float(xp.finfo(self.system.dtype).eps) ** LEAST_SQUARES_TEST
        k = 0
        while True:
            threads.refresh()  # follows the machine's load during long solves
            k += 1
            # Lanczos step: r1 <- A v - shift v - (beta/oldb) r1 with v = y/beta;
            # alfa = v'(that), after the subtraction (Paige's stable order, scipy's)
            r1, yr = self.lanczos(y, r1, 1.0 / beta, -self.shift / beta,
                                  -beta / oldb if k > 1 else 0.0)
            record.matvecs += 1
            alfa = yr / beta
            stop = not_finite("alfa", alfa, k)
            if stop is not None:
                return self.finish(stop, k - 1)
            r1, pp = K.minres_orthogonalize(r1, r2, alfa / beta)
            r1, r2 = r2, r1  # r2 = beta_{k+1} z_{k+1}, the next Lanczos vector
            y_prev = y
            if M is None:
                y, beta_sq = r2, (pp if local else dot(r2, r2))
            else:
                y = M.matvec(r2)
                record.psolves += 1
                if _same_memory(y, y_prev):
                    raise ValueError("M returned the array it returned for the previous vector: "
                                     "MINRES needs both; return a new array from M")
                beta_sq = dot(r2, y)
            stop = not_finite("beta^2", beta_sq, k)
            if stop is None and M is not None and (
                    beta_sq < 0.0 or (beta_sq == 0.0 and (pp if local else dot(r2, r2)) > 0.0)):
                # r'Mr < 0, or = 0 for r != 0 (then beta = 0 is no invariant subspace)
                stop = Stop("DIVERGED_INDEFINITE_PC", f"r'Mr = {beta_sq:.3e} at iteration {k} "
                                                      "for r != 0: M is not positive definite")
            if stop is not None:
                return self.finish(stop, k - 1)
            oldb, beta = beta, math.sqrt(beta_sq)
            tnorm2 += alfa * alfa + oldb * oldb + beta * beta

            # apply the previous rotation Q_{k-1}, then make Q_k (scipy's comments:
            # [delta_k eps_{k+1}; gbar_k dbar_{k+1}] = [cs sn; sn -cs][dbar_k 0; alfa_k beta_{k+1}])
            oldeps = epsln
            delta = cs * dbar + sn * alfa
            gbar = sn * dbar - cs * alfa
            epsln = sn * beta
            dbar = -cs * beta
            root = math.hypot(gbar, dbar)
            gamma = math.hypot(gbar, beta)
            stop = None
            if gamma == 0.0:
                # beta = 0 and T_k singular: no rotation, no step; x stays x_{k-1}
                stop = self.verified(k, f"beta = 0 and gamma = 0 at iteration {k}: the Krylov "
                                        "space is invariant and A - shift I is singular on it "
                                        "(b is not in its range)")
            else:
                cs, sn = gbar / gamma, beta / gamma
                phi, phibar = cs * phibar, sn * phibar

                # w_k = (v_k - oldeps w_{k-2} - delta w_{k-1}) / gamma_k; x += phi w_k
                sv, s1, s2 = 1.0 / (oldb * gamma), -oldeps / gamma, -delta / gamma
                if M is None:
                    x, w1 = K.minres_update(x, w1, w2, y_prev, sv, s1, s2, phi)
                    estimate = phibar  # the 2-norm of the residual without M
                else:
                    # r_k = s_k^2 r_{k-1} - c_k phibar_{k+1} z_{k+1}: the residual in the
                    # Lanczos basis, Z_{k+1} phibar_{k+1} Q_k' e_{k+1} (Choi, Paige and
                    # Saunders 2011, section 2)
                    sp = -cs * phibar / beta if beta > 0.0 else 0.0
                    x, w1, r, rr = K.minres_update_residual(x, w1, w2, y_prev, sv, s1, s2, phi,
                                                            r, r2, sn * sn, sp)
                    estimate = math.sqrt(rr if local else dot(r, r))
                w1, w2 = w2, w1
                self.x = x
                gmax, gmin = max(gmax, gamma), min(gmin, gamma)
                self.anorm = math.sqrt(tnorm2)
                self.acond = gmax / gmin

            rnorm = estimate * scale  # the history's entry, unless the true norm is known
            if stop is not None:
                pass
            elif beta == 0.0:  # an invariant Krylov space: x is exact in exact arithmetic
                stop = self.verified(k, f"beta = 0 at iteration {k} (an invariant Krylov space)")
            elif root <= ls_threshold * self.anorm:
                # scipy's test2, ||A r|| / (||A|| ||r||), at sqrt(eps): a least-squares solution
                stop = self.verified(k, f"||A r|| / (||A|| ||r||) = {root / self.anorm:.1e} at "
                                        f"iteration {k}: x is a least-squares solution (b is "
                                        "not in the range of A - shift I)")
            else:
                outcome = test.check(k, estimate * trigger)
                if isinstance(outcome, Stop):
                    stop = outcome
                elif isinstance(outcome, Replacement):
                    # The true residual missed: the Lanczos process goes on (no restart);
                    # the history follows the true norm, and the next check waits until
                    # the estimate has dropped by ||r_true|| / tol (PATIENCE at least)
                    rnorm = outcome.rnorm
                    if estimate > 0.0:
                        scale = outcome.rnorm / estimate
                        trigger = max(outcome.rnorm, PATIENCE * tol) / estimate
                    else:
                        stop = Stop("DIVERGED_BREAKDOWN", f"the residual estimate is 0 but "
                                                          f"||b - Ax|| = {outcome.rnorm:.3e}",
                                    outcome.rnorm)
            if stop is not None and stop.true_residual_norm is not None:
                rnorm = stop.true_residual_norm
            record.append(k, rnorm)
            if self.callback is not None:
                self.callback(x)
            if self.show:
                self.print_row(k, gbar)
            if stop is not None:
                return self.finish(stop, k)

    # --- show=True: scipy's printout ---------------------------------------------------

    def print_header(self):
        print("Enter minres.   Solution of symmetric Ax = b")
        print(f"Enter minres.   n      =  {self.system.n:3g}     shift  =  {self.shift:23.14e}")
        print(f"Enter minres.   itnlim =  {self.maxiter:3g}     rtol   =  {self.rtol:11.2e}")
        print()
        print("   Itn     x(1)     ||r||/||b||   norm(A)  cond(A) gbar/|A|")

    def print_row(self, k, gbar):
        n, maxiter = self.system.n, self.maxiter
        if not (n <= 40 or k <= 10 or k >= maxiter - 10 or k % 10 == 0):
            return
        first = self.x[0]
        first = complex(first).real if "complex" in dtype_name(self.x.dtype) else float(first)
        relative = self.record.norms[-1] / self.bnorm
        print(f"{k:6g} {first:12.5e} {relative:12.3e} {self.anorm:8.1e} {self.acond:8.1e} "
              f"{gbar / self.anorm:8.1e}")
