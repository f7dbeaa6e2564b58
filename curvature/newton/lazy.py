"""Regularised Newton steps with lazy (stale) Hessians.

Doikov, Chayti and Jaggi, "Second-order optimization with lazy Hessians"
(ICML 2023). The Hessian is recomputed only every ``period`` steps (default
``d``, the paper's optimal choice: a Hessian costs about ``d`` gradients)
at the "snapshot" point; one eigendecomposition ``H = U diag(lam) U'`` is
stored with it, and every step until the next snapshot is an O(d^2)
solve in that eigenbasis:

* ``regularization="gradient"`` (the paper's Algorithm 1 with the
  gradient-regularised step of Mishchenko 2021 / Doikov and Nesterov):
  ``x+ = x - (H + lambda I)^{-1} g``, ``lambda = sqrt(M ||g||)``, the
  minimiser of the model ``g'h + h'Hh/2 + lambda ||h||^2 / 2``;
* ``regularization="cubic"`` (their cubic Newton with lazy Hessians):
  ``h`` minimises ``g'h + h'Hh/2 + M ||h||^3 / 6``. With ``c = U'g`` the
  minimiser is ``h = -U (c / (lam + M r / 2))`` where ``r = ||h||`` is the
  root of the secular equation ``||h(r)|| = r`` on ``lam_min + M r/2 > 0``
  (Nesterov and Polyak 2006, Section 5), found by bracketed Brent search
  on the host; in the hard case (``c`` has no component on the eigenspace
  of a negative ``lam_min`` and ``||h(r_0)|| < r_0`` at ``r_0 =
  -2 lam_min / M``) the step is ``h(r_0) + tau u_min`` with ``tau`` making
  ``||h|| = r_0``.

``adaptive=True`` finds ``M`` by backtracking (the paper's adaptive
variant, Section 5): a step is accepted when ``f(x+)`` is below the model
value (doubling ``M`` otherwise, up to 60 times), and ``M`` is halved after
each accepted step (not below 1e-12). The test allows ``45 eps (1 + |f|)``
(``eps`` of the working dtype; about ``1e-14 (1 + |f|)`` in float64) for
rounding of ``f`` near the minimiser. The Hessian schedule is not changed by
backtracking: Hessians are computed at iterations ``0, period, 2 period,
...``, so ``ceil(k / period)`` of them for ``k`` iterations.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Callable

import numpy as np

from ._hessian import (LocalHessian, Objective, check_maxiter, check_positive, dot, finish,
                       hessian_kind, new_recorder, norm, prepare_x0, record, rounding_slack,
                       stop_test)

__all__ = ["lazy_newton", "cubic_step", "REGULARIZATIONS"]

REGULARIZATIONS = ("gradient", "cubic")
_MAX_DOUBLINGS = 60
_ROUNDING_FACTOR = 45.0   # slack 45 eps (1 + |f|): 1e-14 (1 + |f|) in float64
_MAX_BRACKET_DOUBLINGS = 2100   # from 1e-8 past the largest float64: a safety cap only
_M_MIN = 1e-12   # floor for the halving (the authors' codes use 1e-5 to 1e-9): without
                 # one, M halves towards 0 near the minimiser and 60 doublings no longer
                 # reach a useful value when a stale Hessian suddenly needs one


class _CubicStepError(ArithmeticError):
    """The secular equation of :func:`cubic_step` could not be solved; ``reason`` says how."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _host(v) -> np.ndarray:
    """A 1-D array of any namespace as a NumPy float64 copy (O(d), no device assumptions)."""
    if isinstance(v, np.ndarray):
        return v.astype(np.float64)
    return np.asarray([float(v[i]) for i in range(v.shape[0])])


def cubic_step(eigenvalues, eigenvectors, g, M: float):
    """Global minimiser of ``g'h + h'Hh/2 + M ||h||^3 / 6`` for ``H = U diag(lam) U'``.

    Returns ``(h, r)`` with ``r = ||h||``; then ``(H + M r/2 I) h = -g`` and
    ``H + M r/2 I`` is positive semidefinite (the optimality conditions).
    O(d^2) for the two products with ``U``, O(d) per secular-equation
    evaluation.

    Raises
    ------
    ArithmeticError
        The secular equation has no finite bracketed root (the radius
        overflows, NaN, or Brent's method failed); :func:`lazy_newton`
        turns this into ``DIVERGED_NANORINF`` or ``DIVERGED_BREAKDOWN``.

    Examples
    --------
    >>> import numpy as np
    >>> lam, U = np.array([-1.0, 2.0]), np.eye(2)
    >>> h, r = cubic_step(lam, U, np.array([0.0, 1.0]), M=3.0)   # the hard case
    >>> bool(np.allclose((np.diag(lam) + 1.5 * r * np.eye(2)) @ h, [0.0, -1.0]))
    True
    >>> round(r, 12), bool(lam[0] + 1.5 * r >= -1e-12)
    (0.666666666667, True)
    """
    from array_api_compat import array_namespace
    from scipy.optimize import brentq  # here, not at import: scipy.optimize loads slowly

    xp = array_namespace(g)
    c = eigenvectors.T @ g
    lam_host, c_host = _host(eigenvalues), _host(c)
    lam_min = float(lam_host.min())
    scale = max(np.abs(lam_host).max(), 1.0)
    r_low = max(0.0, -2.0 * lam_min / M)

    def coefficients(r):
        return -c_host / (lam_host + 0.5 * M * r)

    def secular(r):
        return float(np.linalg.norm(coefficients(r))) - r

    gnorm = float(np.linalg.norm(c_host))
    if gnorm == 0.0 and lam_min >= 0:
        return xp.zeros_like(g), 0.0
    bottom = np.abs(lam_host - lam_min) <= 1e-12 * scale
    hard = lam_min < 0 and float(np.linalg.norm(c_host[bottom])) <= 1e-14 * max(gnorm, 1e-300)
    if hard:
        rest = np.where(bottom, 0.0, -c_host / np.where(bottom, 1.0, lam_host - lam_min))
        if float(np.linalg.norm(rest)) <= r_low:
            tau = math.sqrt(max(r_low ** 2 - float(np.linalg.norm(rest)) ** 2, 0.0))
            index = int(np.flatnonzero(bottom)[0])
            rest[index] = tau
            coeff = xp.asarray(rest, dtype=g.dtype)
            return eigenvectors @ coeff, r_low
    # secular(r) decreases from +inf (or >= 0) at r_low to -inf: bracket and solve.
    lo = r_low * (1.0 + 1e-15) + 1e-300
    while not secular(lo) >= 0:  # only at lo = r_low with ||h|| < r (near hard case)
        lo = r_low + (lo - r_low) * 0.5
        if lo <= r_low * (1.0 + 1e-16):
            break
    hi = max(2.0 * lo, 1e-8)
    for _ in range(_MAX_BRACKET_DOUBLINGS):
        secular_hi = secular(hi)
        if not secular_hi > 0:
            break
        hi *= 2.0
    else:
        raise _CubicStepError("DIVERGED_BREAKDOWN", "no upper bracket for the cubic step's "
                              f"radius after {_MAX_BRACKET_DOUBLINGS} doublings")
    if not (math.isfinite(hi) and math.isfinite(secular_hi)):
        raise _CubicStepError("DIVERGED_NANORINF", "the cubic step's radius overflows or is "
                              "NaN (gradient too large for M); raise M")
    if secular(lo) > 0:
        try:
            r = brentq(secular, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=200)
        except (ValueError, RuntimeError) as error:   # no sign change, or no convergence
            raise _CubicStepError("DIVERGED_BREAKDOWN",
                                  f"the secular equation of the cubic step failed: {error}"
                                  ) from None
    else:
        r = lo
    if not math.isfinite(r):
        raise _CubicStepError("DIVERGED_NANORINF", "the cubic step's radius is NaN or Inf")
    coeff = xp.asarray(coefficients(r), dtype=g.dtype)
    return eigenvectors @ coeff, r


def lazy_newton(fun: Callable[[Any], float], grad: Callable[[Any], Any], hess: Any, x0: Any,
                *, period: int | None = None, regularization: str = "gradient",
                M: float | None = None, adaptive: bool = True, gtol: float = 1e-8,
                maxiter: int = 1000, callback: Callable[[Any], None] | None = None):
    """Regularised Newton with a Hessian (and one ``eigh``) every ``period`` steps.

    Parameters
    ----------
    fun, grad, hess, x0 :
        As in :func:`curvature.newton.damped_newton`; ``hess`` in operator
        form is made dense with ``d`` products per snapshot.
    period : int, optional
        Steps per Hessian, default ``d``. ``period=1`` is the non-lazy method.
    regularization : {"gradient", "cubic"}
    M : float, optional
        Regularisation constant (Hessian Lipschitz estimate); default 1.0,
        the starting value when ``adaptive``.
    adaptive : bool
        Backtracking on ``M`` (see the module docstring).
    gtol, maxiter, callback :
        Stop at ``||g|| <= gtol``; iteration limit; ``callback(x)`` per step.

    Returns
    -------
    MinimizeResult
        Extra history columns ``M`` (the constant of the step that reached
        the iterate) and ``n_hvp``. Reasons ``CONVERGED_GTOL``,
        ``DIVERGED_ITS``, ``DIVERGED_NANORINF`` (also a cubic step whose
        radius overflows), ``DIVERGED_LINE_SEARCH``
        (60 doublings of ``M`` did not pass the test), ``DIVERGED_BREAKDOWN``
        (non-adaptive gradient regularisation with ``H + lambda I`` not
        positive definite; or the cubic step's secular equation failed).

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]]); b = np.array([1.0, 1.0])
    >>> fun = lambda x: 0.5 * x @ A @ x - b @ x + 0.25 * np.sum(x ** 4)
    >>> grad = lambda x: A @ x - b + x ** 3
    >>> hess = lambda x: A + np.diag(3 * x ** 2)
    >>> res = lazy_newton(fun, grad, hess, np.array([3.0, -3.0]), period=2)
    >>> res.converged, res.n_hess == -(-res.iterations // 2) == res.n_factorizations
    (True, True)
    """
    start = time.perf_counter()
    if regularization not in REGULARIZATIONS:
        raise ValueError(f"unknown regularization {regularization!r}; "
                         f"expected one of {REGULARIZATIONS}")
    M = 1.0 if M is None else check_positive("M", M)
    gtol = check_positive("gtol", gtol, allow_zero=True)
    maxiter = check_maxiter(maxiter)
    xp, x = prepare_x0(x0)
    n, dtype = x.shape[0], x.dtype
    if period is None:
        period = n
    if isinstance(period, bool) or not isinstance(period, numbers.Integral) or period < 1:
        raise ValueError(f"period must be a positive integer or None, got {period!r}")
    kind = hessian_kind(hess)
    rec = new_recorder("M")
    obj = Objective(fun, grad, xp, n, dtype, rec)
    f, g = obj.fun(x), obj.grad(x)
    k, M_used = 0, math.nan
    lam = U = None
    while True:
        gnorm = norm(xp, g)
        record(rec, fun=f, grad_norm=gnorm, step=0.0 if k == 0 else step_norm, M=M_used)
        done = stop_test(rec, x, f, gnorm, k, gtol, maxiter, start)
        if done is not None:
            return done
        if k % period == 0:
            H = LocalHessian(hess, kind, x, xp, n, dtype, rec).dense()
            if not bool(xp.all(xp.isfinite(H))):
                return finish(rec, x, f, "DIVERGED_NANORINF", k, start, "the Hessian has NaN/Inf")
            lam, U = xp.linalg.eigh(H)
            rec.n_factorizations += 1
        for _ in range(_MAX_DOUBLINGS):
            try:
                h, model_decrease, ok = _step(lam, U, g, gnorm, M, regularization, xp)
            except _CubicStepError as error:
                return finish(rec, x, f, error.reason, k, start, str(error))
            if not ok:
                if not adaptive:
                    return finish(rec, x, f, "DIVERGED_BREAKDOWN", k, start,
                                  "H + sqrt(M ||g||) I is not positive definite; "
                                  "raise M or use adaptive=True")
                M *= 2.0
                continue
            x_new = x + h
            f_new = obj.fun(x_new)
            slack = rounding_slack(xp, dtype, f, _ROUNDING_FACTOR)
            if not adaptive or (math.isfinite(f_new) and f_new - f <= model_decrease + slack):
                break
            M *= 2.0
        else:
            return finish(rec, x, f, "DIVERGED_LINE_SEARCH", k, start,
                          f"{_MAX_DOUBLINGS} doublings of M found no acceptable step")
        M_used = M
        if adaptive:
            M = max(M / 2.0, _M_MIN)
        step_norm = norm(xp, h)
        x, f = x_new, f_new
        g = obj.grad(x)
        k += 1
        if callback is not None:
            callback(x)


def _step(lam, U, g, gnorm: float, M: float, regularization: str, xp):
    """``(h, model(h) - f, ok)`` from the stored eigendecomposition, O(d^2)."""
    c = U.T @ g
    if regularization == "gradient":
        shift = math.sqrt(M * gnorm)
        denominator = lam + shift
        if not float(xp.min(denominator)) > 0:
            return None, None, False
        hc = -c / denominator
        h = U @ hc
        # g'h + h'Hh/2 + shift ||h||^2 / 2 in the eigenbasis
        model = dot(xp, c, hc) + 0.5 * dot(xp, hc * (lam + shift), hc)
        return h, model, True
    h, r = cubic_step(lam, U, g, M)
    hc = U.T @ h
    model = dot(xp, c, hc) + 0.5 * dot(xp, hc * lam, hc) + M * r ** 3 / 6.0
    return h, model, True
