"""Damped Newton methods with global step-size schedules.

With the Newton direction ``n = H^{-1} g`` and the Newton decrement
``G = sqrt(g' n)`` (the gradient's dual local norm ``||g||_x^*``), every
schedule steps ``x+ = x - alpha n`` with ``alpha`` in (0, 1]:

* ``"aicn"``: Hanzely, Kamzolov, Pasechnyuk, Gasnikov, Richtarik and Takac,
  "A Damped Newton Method Achieves Global O(1/k^2) and Local Quadratic
  Convergence Rate" (AICN, NeurIPS 2022), Algorithm 1:
  ``alpha = (-1 + sqrt(1 + 2 L G)) / (L G) = 2 / (1 + sqrt(1 + 2 L G))``,
  the minimiser over ``alpha`` of the cubic upper model
  ``f - alpha G^2 + alpha^2 G^2 / 2 + L alpha^3 G^3 / 6`` for
  ``L``-semi-strongly self-concordant ``f``. The second form is used: it
  has no cancellation for small ``L G``.
* ``"root"``: Hanzely, Abdukhakimov and Takac, "Newton Method Revisited:
  Global Convergence Rates up to O(k^-3) for Stepsize Schedules and
  Linesearch Procedures" (2024): ``alpha = 1 / (1 + theta)`` with
  ``theta = (L G^nu)^(1 / (1 + nu))`` for a Hessian that is Holder
  continuous with exponent ``nu`` in the local norm (``nu = 1``: Lipschitz
  Hessian, ``theta = sqrt(L G)``; ``nu = 2``: Lipschitz third derivative,
  ``theta = (L G^2)^(1/3)``, the O(k^-3) case). This ``theta`` is the
  root of the model's stationarity condition ``1 - alpha = L alpha^{1+nu}
  G^nu`` with ``alpha^{1+nu}`` replaced by ``(1 + theta)^{-(1+nu)}``, so the
  step never exceeds the model's minimiser. (Read from the paper's
  abstract and Holder model; the exact constants of its theorems may
  differ by a factor absorbed into ``L``.)
* ``"universal"``: the constants unknown: backtracking on ``theta``.
  Start each iteration from half the last accepted ``theta``; accept
  ``alpha = 1 / (1 + theta)`` when ``f(x+) <= f(x) - alpha G^2 / 4``,
  otherwise double ``theta`` (from ``2^-10`` if it was 0). The test allows
  ``8 eps (1 + |f|)`` (``eps`` of the working dtype) for the rounding of ``f``.
* ``"greedy"``: line search on (0, 1] along ``n``: ``alpha = 1`` when the
  directional derivative there, ``phi'(1) = -grad(x - n)' n``, is at most
  ``c G^2`` (``c = 0.1``) and ``f`` did not increase (beyond its rounding); otherwise regula falsi
  (Illinois) on ``phi'`` over [0, 1] until ``|phi'(alpha)| <= c G^2``
  -- the paper's Newton method with exact line search, made inexact the
  way a Wolfe search is. Once ``G^2`` is below the rounding of ``f`` the
  search has nothing to measure and the full step is taken. Its gradients
  are the next iteration's, not extra. Both rounding allowances are
  multiples of ``eps (1 + |f|)`` with ``eps`` that of the working dtype.
* ``"newton"``: ``alpha = 1`` (pure Newton), for comparison.

Adaptive ``L`` (the default of ``"aicn"`` and ``"root"``). The constant of
the ``"aicn"`` and ``"root"`` schedules belongs to the problem and is rarely
known; a guess too small makes the steps too long and the iteration can
climb (AICN with ``L = 1`` from ``x0 = 10 * ones`` on logistic
regression ended at ``f = 4e5`` from ``f(x0) = 1e4``). Without ``L`` (or
with ``adaptive=True``) the constant is estimated by backtracking, the
way adaptive cubic regularisation (Cartis, Gould and Toint's ARC) and
:func:`curvature.newton.lazy` find theirs: try the schedule's step with the
current ``L`` (1 at the start), accept it when ``f(x+)`` lies below the
schedule's upper model at that step,

* ``"aicn"``: ``f - alpha G^2 + alpha^2 G^2 / 2 + L (alpha G)^3 / 6`` (the
  cubic model whose minimiser AICN's step is),
* ``"root"``: ``f - alpha G^2 + alpha^2 G^2 / 2 + L (alpha G)^(2+nu) / (2+nu)``
  (the Holder model whose stationarity condition is the one above),

and otherwise double ``L`` (up to 60 times); after an accepted step ``L`` is
halved (not below 1e-12). An accepted step decreases ``f`` by at least
``alpha G^2 / 2`` (at either schedule's step the model lies at least that
far below ``f``), so the iteration is monotone; the test
allows ``8 eps (1 + |f|)`` for rounding, as the universal schedule's does.
The model uses only ``G``, ``alpha`` and values of ``f``, so the estimate is
affine invariant too. It costs one function value per trial; on
logistic regression 1.5 to 1.8 per iteration. A given ``L`` with
``adaptive`` left unset is used as is, as before.

A result is never worse than the start without saying so: if the final
``f`` exceeds ``f(x0)`` (beyond the same rounding allowance) the message says
so, ``extra["worse_than_x0"]`` is True, and a run that met ``gtol`` there (a
stationary point above the start: only possible for a non-convex ``f``)
is reported as ``DIVERGED_BREAKDOWN``, not converged.

All schedules are affine invariant: ``G``, ``f`` along ``n`` and the
tests use only invariant quantities, so running on ``f(S y)`` gives
``S y_k = x_k`` up to rounding.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from ._hessian import (LocalHessian, Objective, check_maxiter, check_positive, dot, finish,
                       hessian_kind, new_recorder, norm, prepare_x0, record, rounding_slack)

__all__ = ["damped_newton", "SCHEDULES", "aicn_step", "root_step"]

SCHEDULES = ("aicn", "root", "universal", "greedy", "newton")

_UNIVERSAL_DECREASE = 0.25   # accept when f decreases by at least this * alpha * G^2
_UNIVERSAL_THETA_MIN = 2.0 ** -10
_UNIVERSAL_TRIALS = 60
_GREEDY_SLOPE = 0.1          # |phi'(alpha)| <= this * G^2 ends the greedy search
_GREEDY_TRIALS = 30
_ROUNDING_FACTOR = 8.0       # f may move by this * eps(dtype) * (1 + |f|) by rounding alone
_ADAPTIVE_L0 = 1.0           # first trial of the adaptive L when none is given
_ADAPTIVE_DOUBLINGS = 60
_ADAPTIVE_L_MIN = 1e-12      # halving stops here (doubling from 0 would never move)


def aicn_step(L: float, decrement: float) -> float:
    """AICN's step ``2 / (1 + sqrt(1 + 2 L G))`` for the Newton decrement ``G``.

    Examples
    --------
    >>> aicn_step(1.0, 0.0), round(aicn_step(1.0, 4.0), 6)
    (1.0, 0.5)
    """
    return 2.0 / (1.0 + math.sqrt(1.0 + 2.0 * L * decrement))


def root_step(L: float, decrement: float, nu: float = 1.0) -> float:
    """The root schedule's step ``1 / (1 + (L G^nu)^(1/(1+nu)))``.

    Examples
    --------
    >>> root_step(1.0, 4.0), root_step(0.5, 4.0, nu=2.0)
    (0.3333333333333333, 0.3333333333333333)
    """
    theta = (L * decrement ** nu) ** (1.0 / (1.0 + nu))
    return 1.0 / (1.0 + theta)


def damped_newton(fun: Callable[[Any], float], grad: Callable[[Any], Any], hess: Any, x0: Any,
                  *, schedule: str = "aicn", L: float | None = None,
                  adaptive: bool | None = None, nu: float = 1.0,
                  gtol: float = 1e-8, maxiter: int = 100, inner_rtol: float = 1e-10,
                  callback: Callable[[Any], None] | None = None):
    """Minimise a convex ``fun`` by Newton steps ``x - alpha H^{-1} g`` with a global schedule.

    Parameters
    ----------
    fun, grad : callable
        ``fun(x) -> float`` and ``grad(x) -> array (n,)``.
    hess : callable or curvature object
        ``hess(x) -> (n, n)`` array, an HVP ``hess(x, v) -> array`` (the
        direction then comes from :func:`linsolve.pcg` to ``inner_rtol``),
        an object with ``matvec``/``solve``, or ``hess(x)`` returning one.
    x0 : array (n,)
        Start; its namespace and floating dtype are kept.
    schedule : {"aicn", "root", "universal", "greedy", "newton"}
        Step-size rule (see the module docstring).
    L : float, optional
        Smoothness constant of the ``"aicn"`` and ``"root"`` schedules
        (unused by the others). Not given: estimated by backtracking from
        1.0 (see ``adaptive``). Given: used as is, unless ``adaptive=True``,
        which makes it the first trial.
    adaptive : bool, optional
        Backtracking on ``L`` for ``"aicn"`` and ``"root"`` (see the module
        docstring). Default: True when ``L`` is not given, False when it is
        (and for the other schedules, which have no constant to estimate).
        So the default call, ``schedule="aicn"`` without ``L``, needs no
        constant and converges from far starts where AICN with a fixed
        ``L = 1`` climbs; ``adaptive=False`` without ``L`` is fixed ``L = 1``.
    nu : float
        Holder exponent of the ``"root"`` schedule, in [0, 2].
    gtol : float
        Stop when ``||grad||_2 <= gtol``.
    maxiter : int
        Iteration limit.
    inner_rtol : float
        Relative tolerance of the CG solve for HVP ``hess``.
    callback : callable, optional
        ``callback(x)`` after every iteration.

    Returns
    -------
    MinimizeResult
        ``history`` has the extra columns ``decrement`` (``G`` at that
        iterate; NaN at the last), ``L`` (the constant of the ``"aicn"`` or
        ``"root"`` step that reached the iterate; NaN at the start and for
        the other schedules) and ``n_hvp``. Reasons:
        ``CONVERGED_GTOL``, ``DIVERGED_ITS``, ``DIVERGED_NANORINF`` (NaN/Inf
        in ``f`` or the gradient), ``DIVERGED_BREAKDOWN`` (``g' n <= 0``:
        the Hessian is not positive definite, or the solve failed; or
        ``gtol`` met at a point with ``f`` above ``f(x0)``),
        ``DIVERGED_LINE_SEARCH`` (the universal or greedy search, or 60
        doublings of the adaptive ``L``, failed). ``extra`` holds ``f0``
        (``f(x0)``) and ``worse_than_x0``: whether the final ``f`` exceeds
        ``f0`` beyond rounding; if so the message ends by saying so.

    Raises
    ------
    ValueError
        Unknown schedule, x0 not 1-D or not finite, bad constants, a
        gradient or Hessian of the wrong shape.
    TypeError
        ``hess`` of an unsupported kind, complex ``x0``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]]); b = np.array([1.0, 1.0])
    >>> fun = lambda x: 0.5 * x @ A @ x - b @ x + 0.25 * np.sum(x ** 4)
    >>> grad = lambda x: A @ x - b + x ** 3
    >>> hess = lambda x: A + np.diag(3 * x ** 2)
    >>> res = damped_newton(fun, grad, hess, np.array([5.0, -5.0]))   # AICN, adaptive L
    >>> res.converged, res.reason, bool(np.linalg.norm(grad(res.x)) <= 1e-8)
    (True, 'CONVERGED_GTOL', True)
    >>> res.n_hess == res.n_factorizations == res.iterations
    True
    >>> fixed = damped_newton(fun, grad, hess, np.array([5.0, -5.0]), L=1.0)  # AICN, L = 1
    >>> fixed.converged, fixed.n_fun == fixed.iterations + 1
    (True, True)
    """
    start = time.perf_counter()
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    if adaptive is None:
        adaptive = L is None and schedule in ("aicn", "root")
    elif not isinstance(adaptive, bool):
        raise ValueError(f"adaptive must be True, False or None, got {adaptive!r}")
    if adaptive and schedule not in ("aicn", "root"):
        raise ValueError(f"adaptive=True applies to the aicn and root schedules; {schedule!r} "
                         "has no constant to estimate")
    L = _ADAPTIVE_L0 if L is None else check_positive("L", L)
    nu = check_positive("nu", nu, allow_zero=True)
    if nu > 2:
        raise ValueError(f"nu must lie in [0, 2], got {nu}")
    gtol = check_positive("gtol", gtol, allow_zero=True)
    inner_rtol = check_positive("inner_rtol", inner_rtol, allow_zero=True)
    maxiter = check_maxiter(maxiter)
    xp, x = prepare_x0(x0)
    n, dtype = x.shape[0], x.dtype
    kind = hessian_kind(hess)
    rec = new_recorder("decrement", "L")
    obj = Objective(fun, grad, xp, n, dtype, rec)

    f, g = obj.fun(x), obj.grad(x)
    f0 = f

    def stop(reason: str, message: str):
        # never hand back a point worse than the start without saying so
        worse = f > f0 + rounding_slack(xp, dtype, f0, _ROUNDING_FACTOR)
        if worse:
            if reason == "CONVERGED_GTOL":
                reason = "DIVERGED_BREAKDOWN"
                message += (", at a stationary point that is no descent from x0 (f is not "
                            "convex, and a step went uphill)")
            message += (f"; the returned f = {f:.6e} is above f(x0) = {f0:.6e}: "
                        "the point is worse than the start")
        return finish(rec, x, f, reason, k, start, message, f0=f0, worse_than_x0=worse)

    theta = 0.0  # the universal schedule's state
    uses_L = schedule in ("aicn", "root")
    L_used = math.nan  # the constant of the step that reached x
    k = 0
    while True:
        gnorm = norm(xp, g)
        step_taken = 0.0 if k == 0 else alpha
        if not (math.isfinite(f) and math.isfinite(gnorm)):
            record(rec, fun=f, grad_norm=gnorm, step=step_taken, decrement=math.nan, L=L_used)
            return stop("DIVERGED_NANORINF", "the objective or its gradient is NaN or Inf")
        if gnorm <= gtol:
            record(rec, fun=f, grad_norm=gnorm, step=step_taken, decrement=math.nan, L=L_used)
            return stop("CONVERGED_GTOL", f"gradient norm {gnorm:.3e} <= gtol {gtol:.3e}")
        if k >= maxiter:
            record(rec, fun=f, grad_norm=gnorm, step=step_taken, decrement=math.nan, L=L_used)
            return stop("DIVERGED_ITS",
                        f"maxiter {maxiter} reached with gradient norm {gnorm:.3e}")
        H = LocalHessian(hess, kind, x, xp, n, dtype, rec, inner_rtol)
        direction = H.solve(g)
        G2 = dot(xp, g, direction) if direction is not None else math.nan
        record(rec, fun=f, grad_norm=gnorm, step=step_taken,
               decrement=math.sqrt(G2) if G2 > 0 else math.nan, L=L_used)
        if direction is None or not G2 > 0:
            if direction is not None and not math.isfinite(G2):
                return stop("DIVERGED_NANORINF", "the Newton direction is NaN or Inf")
            return stop("DIVERGED_BREAKDOWN",
                        "g' H^{-1} g <= 0 or the Newton system could not be solved: "
                        "the Hessian is not positive definite here")
        decrement = math.sqrt(G2)
        g_new = None
        if uses_L and adaptive:
            alpha, f_new, L_used = _adaptive(obj, xp, x, direction, f, decrement, L, schedule, nu)
            if alpha is None:
                return stop("DIVERGED_LINE_SEARCH",
                            f"{_ADAPTIVE_DOUBLINGS} doublings of L (to {L_used:.3e}) "
                            "found no step below the model")
            L = max(L_used / 2.0, _ADAPTIVE_L_MIN)
        elif schedule == "aicn":
            alpha, L_used = aicn_step(L, decrement), L
        elif schedule == "root":
            alpha, L_used = root_step(L, decrement, nu), L
        elif schedule == "newton":
            alpha = 1.0
        elif schedule == "universal":
            alpha, f_new, theta = _universal(obj, xp, x, direction, f, G2, theta)
            if alpha is None:
                return stop("DIVERGED_LINE_SEARCH", "the universal schedule found no "
                            f"decrease in {_UNIVERSAL_TRIALS} trials")
        else:
            alpha, f_new, g_new = _greedy(obj, xp, x, direction, f, G2)
            if alpha is None:
                return stop("DIVERGED_LINE_SEARCH",
                            f"the greedy line search failed in {_GREEDY_TRIALS} trials")
        x = x - alpha * direction
        k += 1
        if schedule == "newton" or (uses_L and not adaptive):
            f_new = obj.fun(x)
        f = f_new
        g = obj.grad(x) if g_new is None else g_new
        if callback is not None:
            callback(x)


def _adaptive(obj: Objective, xp, x, direction, f: float, decrement: float, L: float,
              schedule: str, nu: float):
    """The aicn/root step with backtracking on ``L``; ``(alpha, f(x+), L)`` or ``(None, ...)``.

    Accepts the first ``L`` (doubling from the given one) whose step lands
    below the schedule's upper model of ``f`` along the Newton direction
    (module docstring): AICN's cubic model in the local norm, or the Holder
    model of the root schedule.
    """
    G2 = decrement * decrement
    slack = rounding_slack(xp, obj.dtype, f, _ROUNDING_FACTOR)
    for _ in range(_ADAPTIVE_DOUBLINGS):
        if schedule == "aicn":
            alpha = aicn_step(L, decrement)
            model_excess = L * (alpha * decrement) ** 3 / 6.0
        else:
            alpha = root_step(L, decrement, nu)
            model_excess = L * (alpha * decrement) ** (2.0 + nu) / (2.0 + nu)
        model = f - alpha * G2 + 0.5 * alpha * alpha * G2 + model_excess
        f_new = obj.fun(x - alpha * direction)
        if math.isfinite(f_new) and f_new <= model + slack:
            return alpha, f_new, L
        L *= 2.0
    return None, None, L / 2.0


def _universal(obj: Objective, xp, x, direction, f: float, G2: float, theta: float):
    """Backtracking on ``theta``; returns ``(alpha, f(x+), theta)`` or ``(None, ...)``."""
    theta = theta / 2.0
    # once alpha G^2 / 4 is below f's rounding the test cannot see the decrease
    slack = rounding_slack(xp, obj.dtype, f, _ROUNDING_FACTOR)
    for _ in range(_UNIVERSAL_TRIALS):
        alpha = 1.0 / (1.0 + theta)
        f_new = obj.fun(x - alpha * direction)
        if math.isfinite(f_new) and f_new <= f - _UNIVERSAL_DECREASE * alpha * G2 + slack:
            return alpha, f_new, theta
        theta = max(2.0 * theta, _UNIVERSAL_THETA_MIN)
    return None, None, theta


def _greedy(obj: Objective, xp, x, direction, f: float, G2: float):
    """Inexact exact line search on (0, 1]; returns ``(alpha, f(x+), grad(x+))``."""
    target = _GREEDY_SLOPE * G2
    # f may not decrease measurably once G^2 is below its rounding: allow that
    f_limit = f + rounding_slack(xp, obj.dtype, f, _ROUNDING_FACTOR)

    def trial(alpha):
        y = x - alpha * direction
        fy, gy = obj.fun(y), obj.grad(y)
        return fy, gy, -dot(xp, gy, direction)

    lo, slope_lo = 0.0, -G2
    hi = 1.0
    f_hi, g_hi, slope_hi = trial(hi)
    if G2 <= rounding_slack(xp, obj.dtype, f, 2.0 * _ROUNDING_FACTOR):
        # the predicted decrease G^2/2 is below the rounding of f: nothing left to
        # search for, take the full Newton step
        return 1.0, f_hi, g_hi
    if math.isfinite(f_hi) and math.isfinite(slope_hi) and slope_hi <= target and f_hi <= f_limit:
        return 1.0, f_hi, g_hi
    # phi is not decreasing at 1 (or f is not finite there): bracket [0, 1].
    side = 0
    for _ in range(_GREEDY_TRIALS):
        if not (math.isfinite(f_hi) and math.isfinite(slope_hi)):
            alpha = (lo + hi) / 2.0        # bisect away from the non-finite end
        else:
            alpha = hi - slope_hi * (hi - lo) / (slope_hi - slope_lo)
            alpha = min(max(alpha, lo + 1e-3 * (hi - lo)), hi - 1e-3 * (hi - lo))
        fa, ga, slope = trial(alpha)
        finite = math.isfinite(fa) and math.isfinite(slope)
        if finite and abs(slope) <= target and fa <= f_limit:
            return alpha, fa, ga
        if finite and slope < 0:
            lo, slope_lo = alpha, slope
            if side == -1:
                slope_hi /= 2.0   # Illinois: halve the stale end
            side = -1
        else:
            hi, f_hi, slope_hi = alpha, fa, slope
            if side == 1:
                slope_lo /= 2.0
            side = 1
    return None, None, None
