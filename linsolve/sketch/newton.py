"""Adaptive inexact Newton for equality constraints, with the KKT system solved by sketching.

Hong, Na, Mahoney and Kolar, "Constrained optimization via exact augmented
Lagrangian and randomized iterative sketching" (ICML 2023), AdaSketch-Newton.
For ``min f(x) s.t. c(x) = 0`` with Lagrangian ``L = f + lam' c``, gradient
``g = grad f + G' lam`` (``G`` the constraint Jacobian) and KKT residual
``F = (g, c)``, each iteration

1. builds ``B``: the Hessian ``H`` of the Lagrangian, shifted by
   ``tau I`` when the reduced Hessian ``Z' H Z`` (``Z`` a basis of the null
   space of ``G``) is not positive definite;
2. solves ``[[B, G'], [G, 0]] z = -F`` inexactly by sketch-and-project
   (:func:`linsolve.sketch.sketch_solve`), warm-started, until
   ``||K z + F|| <= theta ||F||``;
3. accepts ``z = (dx, dlam)`` only if it is a descent direction of the exact
   augmented Lagrangian merit
   ``L_eta = L + (eta1/2) ||c||^2 + (eta2/2) ||g||^2``, namely
   ``grad L_eta' z <= -(eta2/2) ||F||^2``; otherwise it raises the penalty
   ``eta1 <- rho eta1``, tightens ``theta <- theta/10`` and continues the
   sketch solve from the current ``z`` (inner steps capped);
4. takes an Armijo step on ``L_eta``:
   ``L_eta(z + a dz) <= L_eta(z) + beta a grad L_eta' dz``, halving ``a``.

The merit's gradient is ``(g + eta1 G'c + eta2 H g, c + eta2 G g)`` with
``H`` the Hessian of the *Lagrangian* (the authors' code uses the Hessian of
``f`` there, which is wrong for nonlinear constraints). Departures from the
paper: its accuracy threshold couples ``theta`` to the penalties through
problem constants that are unknown in practice; here ``theta`` starts at
``accuracy`` and is divided by 10 whenever the descent test fails, which is
the same loop (more sketch steps or larger ``eta1`` until descent) with
observable quantities. ``eta2`` is kept fixed.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Callable

import numpy as np
import scipy.linalg as sla

from ..validation.inputs import reject_unknown_keywords
from .constrained import ConstrainedProblem
from ..result import HistoryRecorder, MinimizeResult
from .solve import SKETCHES, as_generator, sketch_solve

HISTORY_COLUMNS = ("kkt_residual", "inner_iterations", "merit", "merit_previous",
                   "directional_derivative", "descent_bound", "eta1", "eta2", "accuracy",
                   "sketch_residual", "hessian_shift")
"""Extra columns of ``MinimizeResult.history`` written by :func:`sketched_newton`."""


def _positive(name, value, *, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'nonnegative' if allow_zero else 'positive'} "
                         f"finite number, got {value!r}")
    return float(value)


def _count(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class _Evaluator:
    """Problem calls with shape checks and cost counters."""

    def __init__(self, problem, n, recorder):
        self.problem, self.n, self.rec = problem, n, recorder
        self.m = None

    def first_order(self, x):
        f = float(self.problem.fun(x))
        grad = np.asarray(self.problem.grad(x), dtype=float).reshape(-1)
        c = np.atleast_1d(np.asarray(self.problem.cons(x), dtype=float)).reshape(-1)
        G = np.atleast_2d(np.asarray(self.problem.jac(x), dtype=float))
        self.rec.n_fun += 1
        self.rec.n_grad += 1
        if self.m is None:
            self.m = c.shape[0]
        if grad.shape != (self.n,):
            raise ValueError(f"problem.grad returned shape {grad.shape}, expected ({self.n},)")
        if c.shape != (self.m,) or G.shape != (self.m, self.n):
            raise ValueError(f"problem.cons/jac returned shapes {c.shape}/{G.shape}, expected "
                             f"({self.m},)/({self.m}, {self.n}): the number of constraints m "
                             f"(fixed by cons(x0)) and the jac's shape (m, n) must not change "
                             f"from one point to the next")
        return f, grad, c, G

    def hessian(self, x, lam):
        H = np.asarray(self.problem.hess_lagrangian(x, lam), dtype=float)
        self.rec.n_hess += 1
        if H.shape != (self.n, self.n):
            raise ValueError(f"problem.hess_lagrangian returned shape {H.shape}, "
                             f"expected ({self.n}, {self.n})")
        return (H + H.T) / 2


def _merit(f, c, lam, g, eta1, eta2):
    return f + lam @ c + 0.5 * eta1 * (c @ c) + 0.5 * eta2 * (g @ g)


def _merit_gradient(g, c, G, H, eta1, eta2):
    """Gradient of the merit in ``(x, lam)``: ``(g + eta1 G'c + eta2 H g, c + eta2 G g)``."""
    return np.concatenate([g + eta1 * (G.T @ c) + eta2 * (H @ g), c + eta2 * (G @ g)])


def _modified_hessian(H, G, delta):
    """``(H + tau I, tau)`` with ``Z' (H + tau I) Z >= delta`` on the null space of ``G``."""
    Z = sla.null_space(G) if G.shape[0] else np.eye(H.shape[0])
    if Z.shape[1] == 0:
        return H, 0.0
    smallest = float(np.linalg.eigvalsh(Z.T @ H @ Z)[0])
    if smallest >= delta:
        return H, 0.0
    # Reflect the most negative curvature rather than lifting it to delta:
    # a reduced Hessian left near zero gives enormous null-space steps.
    tau = max(delta, abs(smallest)) - smallest
    return H + tau * np.eye(H.shape[0]), tau


def sketched_newton(problem: ConstrainedProblem, x0: Any, lam0: Any = None, *,
                    sketch: str = "rows", sketch_size: int = 1, seed=None, gtol: float = 1e-6,
                    maxiter: int = 100, max_inner: int = 20_000, accuracy: float = 0.5,
                    eta1: float = 1.0, eta2: float = 1.0, penalty_growth: float = 10.0,
                    armijo: float = 1e-4, max_backtracks: int = 40, curvature_floor: float = 1e-8,
                    max_descent_tries: int = 12, sharpening: float = 0.5,
                    callback: Callable[[np.ndarray, np.ndarray], None] | None = None,
                    **kwargs) -> MinimizeResult:
    """Minimize ``f(x)`` subject to ``c(x) = 0`` by sketched, adaptive inexact Newton steps.

    Parameters
    ----------
    problem : ConstrainedProblem
        Object with ``fun, grad, cons, jac, hess_lagrangian`` (see
        :mod:`linsolve.sketch.constrained`; :func:`~linsolve.sketch.constrained.constrained_problem`
        builds one from callables).
    x0 : array of shape (n,)
    lam0 : array of shape (m,), optional
        Initial multipliers; default the least-squares estimate
        ``argmin ||grad f(x0) + G(x0)' lam||``.
    sketch, sketch_size :
        The sketch of :func:`~linsolve.sketch.sketch_solve` for the KKT system.
        The default, single-row Kaczmarz, is the cheapest per step but may
        not reach the accuracy the descent test asks on ill-conditioned KKT
        matrices within ``max_inner`` (``python -m bench sketch``: 18 of 25
        test problems solved; block rows with ``sketch_size`` half the rows
        23 of 25; ``sketch="gaussian"`` at full width, an exact projection,
        all 25). Raise ``sketch_size`` or ``max_inner`` when it breaks down.
    seed : None, int or numpy.random.Generator
        Source of all sketches.
    gtol : float
        Stop when the KKT residual ``||(grad_x L, c)||`` is at most ``gtol``.
    maxiter : int
        Outer iterations.
    max_inner : int
        Cap on the sketch steps of one outer iteration (reported per
        iteration in ``history["inner_iterations"]``). A direction that
        passes the descent test when the cap is reached is taken at the
        accuracy reached (``history["sketch_residual"]``, the relative KKT
        residual of the inexact solve, beside the target ``accuracy``).
    accuracy : float
        Initial relative accuracy ``theta`` of the inexact solve, in (0, 1).
    eta1, eta2 : float
        Initial penalties of the merit; ``eta1`` grows by ``penalty_growth``
        whenever the descent test fails.
    armijo : float
        Sufficient-decrease constant ``beta`` of the line search.
    max_backtracks : int
        Step halvings before ``DIVERGED_LINE_SEARCH`` (``DIVERGED_NANORINF``
        when the merit was NaN or Inf at every trial step).
    curvature_floor : float
        Smallest eigenvalue required of the reduced Hessian; below it the
        Hessian is shifted (``history["hessian_shift"]``) so that its smallest
        eigenvalue becomes ``max(curvature_floor, |lambda_min|)``.
    max_descent_tries : int
        Tighten-and-raise rounds before ``DIVERGED_BREAKDOWN``. Also
        ``DIVERGED_BREAKDOWN``, at once: ``max_inner`` is spent short of the
        accuracy and no larger ``eta1`` can make the direction a descent
        direction.
    sharpening : float
        Accuracy of iteration k: ``theta_k = min(accuracy, ||F_k||^sharpening)``
        (the paper's sharpened condition, giving a superlinear local rate);
        0 keeps ``theta = accuracy`` (linear rate).
    callback : callable, optional
        ``callback(x, lam)`` after every accepted step.

    Returns
    -------
    MinimizeResult
        ``extra`` holds the final multipliers ``lam``, ``inner_total``,
        ``armijo``, the final ``kkt_residual`` and the penalties ``eta1``,
        ``eta2`` in force at exit.
        History columns beyond the standard ones: :data:`HISTORY_COLUMNS`.
        ``accuracy`` is the target ``theta`` the accepted direction was
        solved for (after any tightening), ``sketch_residual`` the accuracy
        it reached, ``||K z + F|| / ||F||`` (above ``accuracy`` only when
        ``max_inner`` cut the solve short). ``grad_norm`` is ``||grad_x L||``;
        ``merit``/``merit_previous`` are the merit after/before the step,
        both with the penalties used for that step, so that
        ``directional_derivative <= descent_bound`` and
        ``merit <= merit_previous + armijo * step * directional_derivative``
        can be checked row by row.

    Raises
    ------
    ValueError
        Bad shapes, NaN in ``x0``/``lam0``, parameters out of range.
    TypeError
        ``problem`` lacks a method; unknown keywords.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve.sketch.constrained import constrained_problem
    >>> hs28 = constrained_problem(lambda x: (x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2,
    ...                            lambda x: [x[0] + 2 * x[1] + 3 * x[2] - 1])
    >>> result = sketched_newton(hs28, np.array([-4.0, 1.0, 1.0]), seed=0)
    >>> result.reason, np.allclose(result.x, [0.5, -0.5, 0.5], atol=1e-5)
    ('CONVERGED_KKT', True)
    """
    start = time.perf_counter()
    reject_unknown_keywords("sketched_newton", kwargs)
    for method in ("fun", "grad", "cons", "jac", "hess_lagrangian"):
        if not callable(getattr(problem, method, None)):
            raise TypeError(f"problem must have a callable {method}(); build one with "
                            "linsolve.sketch.constrained.constrained_problem")
    if sketch not in SKETCHES:
        raise ValueError(f"sketch must be one of {SKETCHES}, got {sketch!r}")
    gtol = _positive("gtol", gtol, allow_zero=True)
    accuracy = _positive("accuracy", accuracy)
    if accuracy >= 1:
        raise ValueError(f"accuracy must be in (0, 1), got {accuracy}")
    eta1, eta2 = _positive("eta1", eta1), _positive("eta2", eta2)
    penalty_growth = _positive("penalty_growth", penalty_growth)
    if penalty_growth <= 1:
        raise ValueError(f"penalty_growth must exceed 1, got {penalty_growth}")
    armijo = _positive("armijo", armijo)
    if armijo >= 1:
        raise ValueError(f"armijo must be in (0, 1), got {armijo}")
    curvature_floor = _positive("curvature_floor", curvature_floor)
    sharpening = _positive("sharpening", sharpening, allow_zero=True)
    maxiter, max_inner = _count("maxiter", maxiter), _count("max_inner", max_inner, 1)
    max_backtracks = _count("max_backtracks", max_backtracks)
    max_descent_tries = _count("max_descent_tries", max_descent_tries, 1)
    rng = as_generator(seed)

    x = np.array(x0, dtype=float, copy=True).reshape(-1) if np.ndim(x0) <= 2 else None
    if x is None or np.asarray(x0).ndim not in (1, 2) or (np.ndim(x0) == 2 and np.shape(x0)[1] != 1):
        raise ValueError(f"x0 must have shape (n,), got {np.shape(x0)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 contains NaN or Inf")
    n = x.shape[0]
    rec = HistoryRecorder(*HISTORY_COLUMNS)
    ev = _Evaluator(problem, n, rec)
    f, grad_f, c, G = ev.first_order(x)
    m = c.shape[0]
    if lam0 is None:
        lam = -np.linalg.lstsq(G.T, grad_f, rcond=None)[0] if m else np.zeros(0)
    else:
        lam = np.array(lam0, dtype=float, copy=True).reshape(-1)
        if lam.shape != (m,):
            raise ValueError(f"lam0 must have shape ({m},), got {np.shape(lam0)}")
        if not np.all(np.isfinite(lam)):
            raise ValueError("lam0 contains NaN or Inf")
    g = grad_f + G.T @ lam
    kkt = math.hypot(float(np.linalg.norm(g)), float(np.linalg.norm(c)))
    nan = float("nan")
    rec.record(fun=f, grad_norm=np.linalg.norm(g), step=0.0, kkt_residual=kkt,
               inner_iterations=0, merit=nan, merit_previous=nan, directional_derivative=nan,
               descent_bound=nan, eta1=eta1, eta2=eta2, accuracy=nan, sketch_residual=nan,
               hessian_shift=0.0)
    inner_total = 0
    k = 0

    def finish(reason, message):
        return MinimizeResult(x=x, fun=f, converged=reason.startswith("CONVERGED"), reason=reason,
                              iterations=k, history=rec.arrays(), message=message,
                              time=time.perf_counter() - start,
                              extra={"lam": lam, "inner_total": inner_total, "armijo": armijo,
                                     "kkt_residual": kkt, "eta1": eta1, "eta2": eta2})

    while True:
        if not (math.isfinite(kkt) and math.isfinite(f)):
            return finish("DIVERGED_NANORINF", f"NaN or Inf at iteration {k}")
        if kkt <= gtol:
            return finish("CONVERGED_KKT", f"KKT residual {kkt:.3e} <= gtol = {gtol:.3e}")
        if k >= maxiter:
            return finish("DIVERGED_ITS", f"reached maxiter = {maxiter} with KKT residual "
                                          f"{kkt:.3e} > {gtol:.3e}")
        H = ev.hessian(x, lam)
        if not np.all(np.isfinite(H)):
            # a value, not sketch_solve's "A contains NaN" ValueError
            return finish("DIVERGED_NANORINF", f"the Hessian of the Lagrangian has NaN or Inf "
                                               f"entries at iteration {k}")
        B, tau = _modified_hessian(H, G, curvature_floor)
        rec.n_factorizations += 1  # the eigendecomposition of the reduced Hessian
        K = np.block([[B, G.T], [G, np.zeros((m, m))]])
        F = np.concatenate([g, c])
        merit_grad = _merit_gradient(g, c, G, H, eta1, eta2)
        z = np.zeros(n + m)
        inner = 0
        relative = nan
        accepted = False
        stalled = False
        theta = min(accuracy, kkt ** sharpening) if sharpening > 0 else accuracy
        for _ in range(max_descent_tries):
            budget = max_inner - inner
            if budget > 0:
                solve = sketch_solve(K, -F, x0=z, sketch=sketch,
                                     sketch_size=min(sketch_size, n + m), seed=rng,
                                     rtol=theta, maxiter=budget)
                z = np.asarray(solve.x, dtype=float)
                inner += solve.iterations
            bound = -0.5 * eta2 * kkt ** 2
            dot = float(merit_grad @ z)
            relative = float(np.linalg.norm(K @ z + F)) / kkt
            accurate = relative <= theta * (1 + 1e-12)
            # accept a descent direction at the accuracy asked for, or at the
            # accuracy the capped inner solve reached
            if dot <= bound and (accurate or inner >= max_inner):
                accepted = True
                break
            if inner >= max_inner and not accurate and float(z[:n] @ (G.T @ c)) >= 0.0:
                # No sketch steps are left, so z is final, and the slope's
                # eta1 term, eta1 dx'G'c, is not negative: a larger eta1
                # cannot make z a descent direction (eta2 only changes after
                # an accurate solve). Further rounds would only inflate eta1.
                stalled = True
                break
            # Not a descent direction: a larger penalty on ||c||^2 and a more
            # accurate solve. When the solve was accurate and the Hessian was
            # shifted, the term eta2 g'(H - B) dx of the merit's slope can
            # outweigh -eta2 ||g||^2 for any eta1: lower eta2 as well.
            eta1 *= penalty_growth
            if accurate and tau > 0:
                eta2 /= penalty_growth
            merit_grad = _merit_gradient(g, c, G, H, eta1, eta2)
            theta /= 10.0
        inner_total += inner
        if stalled:
            return finish("DIVERGED_BREAKDOWN",
                          f"max_inner = {max_inner} sketch steps reached only a relative KKT "
                          f"residual of {relative:.3e} > theta = {theta:.3e} at iteration {k}, "
                          "and the direction is not a descent direction of the merit for any "
                          "eta1; raise max_inner")
        if not accepted:
            return finish("DIVERGED_BREAKDOWN",
                          f"no descent direction of the merit after {max_descent_tries} "
                          f"rounds ({inner} sketch steps; max_inner = {max_inner})")
        dx, dlam = z[:n], z[n:]
        merit_old = _merit(f, c, lam, g, eta1, eta2)
        alpha = 1.0
        any_finite = False
        for _ in range(max_backtracks + 1):
            x_new, lam_new = x + alpha * dx, lam + alpha * dlam
            f_new, grad_new, c_new, G_new = ev.first_order(x_new)
            g_new = grad_new + G_new.T @ lam_new
            merit_new = _merit(f_new, c_new, lam_new, g_new, eta1, eta2)
            any_finite = any_finite or math.isfinite(merit_new)
            if merit_new <= merit_old + armijo * alpha * dot:
                break
            alpha *= 0.5
        else:
            if not any_finite:
                return finish("DIVERGED_NANORINF",
                              f"the merit was NaN or Inf at every one of the {max_backtracks + 1} "
                              f"trial steps of the line search at iteration {k} (smallest step "
                              f"{2 * alpha:.3e})")
            return finish("DIVERGED_LINE_SEARCH",
                          f"no Armijo step on the merit after {max_backtracks} halvings at "
                          f"iteration {k}")
        x, lam, f, c, G, g = x_new, lam_new, f_new, c_new, G_new, g_new
        kkt = math.hypot(float(np.linalg.norm(g)), float(np.linalg.norm(c)))
        k += 1
        rec.record(fun=f, grad_norm=np.linalg.norm(g), step=alpha, kkt_residual=kkt,
                   inner_iterations=inner, merit=merit_new, merit_previous=merit_old,
                   directional_derivative=dot, descent_bound=bound, eta1=eta1, eta2=eta2,
                   accuracy=theta, sketch_residual=relative, hessian_shift=tau)
        if callback is not None:
            callback(x, lam)
