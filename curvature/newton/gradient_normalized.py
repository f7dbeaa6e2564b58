"""Gradient-regularised Newton with approximate Hessians and gradient-normalised smoothness.

Semenov, Jaggi and Doikov, "Gradient-Normalized Smoothness for Optimization
with Approximate Hessians" (2025), Algorithm 1 (and the authors' code,
``epfml/grad-norm-smooth``, ``grad_norm_smooth``). With ``H`` the exact
Hessian or an approximation (Gauss-Newton, Fisher), ``B`` a fixed SPD
matrix defining the norm (default ``I``) and ``||g||_* = sqrt(g' B^{-1} g)``:

    lambda = ||g||_* / gamma,      h = -(H + lambda B)^{-1} g,

and the step is accepted when ``f(x) - f(x + h) >= ||grad f(x + h)||_*^2 /
(8 lambda)``; then ``gamma`` doubles for the next iteration, otherwise
``gamma`` halves and the step is recomputed with the same ``H``.

Departures from the authors' code, and why:

* When ``H + lambda B`` is not positive definite (an indefinite exact
  Hessian on a non-convex problem) their code keeps the previous step;
  here it counts as a rejected trial (``gamma`` halves, so ``lambda``
  grows until the matrix is positive definite).
* After 40 rejected trials their code takes the last step anyway; here
  the method stops with ``DIVERGED_LINE_SEARCH``, so every accepted step
  satisfies the decrease test.
* Their ``lambda = ||g|| / (gamma + 1e-8)`` guard is replaced by a lower
  bound ``gamma_min`` (default 1e-9) on ``gamma``, as their code also has.

With ``B = I`` and a dense Hessian the trials reuse one ``eigh`` of ``H``
(O(d^2) each); with a general ``B`` each trial is a Cholesky check plus a
solve; an operator ``hess`` (HVP or curvature object) solves each trial
by :func:`linsolve.pcg` on ``H + lambda B``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
from array_api_compat import is_array_api_obj

from linsolve import pcg

from .._checks import namespace_of
from ._hessian import (LocalHessian, Objective, check_maxiter, check_positive,
                       dot, finish, hessian_kind, new_recorder, prepare_x0, record,
                       rounding_slack, stop_test)

__all__ = ["gradient_normalized_newton"]

_MAX_TRIALS = 40


def gradient_normalized_newton(fun: Callable[[Any], float], grad: Callable[[Any], Any],
                               hess: Any, x0: Any, *, B: Any = None, gamma: float = 1.0,
                               gamma_min: float = 1e-9, gtol: float = 1e-8,
                               maxiter: int = 1000, inner_rtol: float = 1e-10,
                               callback: Callable[[Any], None] | None = None):
    """Gradient-regularised Newton ``x+ = x - (H + (||g||_*/gamma) B)^{-1} g`` with adaptive gamma.

    Parameters
    ----------
    fun, grad, hess, x0 :
        As in :func:`curvature.newton.damped_newton`; ``hess`` may be the
        exact Hessian or an approximation such as Gauss-Newton ``J'J`` or a
        Fisher matrix (any symmetric positive semidefinite model works;
        an indefinite one is handled by the search on ``gamma``).
    B : array (n, n), optional
        SPD matrix of the norm; default the identity.
    gamma : float
        Initial ``gamma``.
    gamma_min : float
        Lower bound on ``gamma``.
    gtol, maxiter, inner_rtol, callback :
        Stop at ``||g||_2 <= gtol``; iteration limit; CG tolerance for
        operator ``hess``; ``callback(x)`` per accepted step.

    Returns
    -------
    MinimizeResult
        Extra history columns ``lam`` (the ``lambda`` of the accepted step
        that reached the iterate, NaN at the start), ``gamma`` (after the
        update) and ``n_hvp``. ``n_factorizations`` counts factorisations
        (one ``eigh`` per Hessian with ``B = I``, else one per trial).
        Reasons ``CONVERGED_GTOL``, ``DIVERGED_ITS``, ``DIVERGED_NANORINF``,
        ``DIVERGED_LINE_SEARCH`` (40 rejected trials in one iteration, or a
        rejected trial at ``gamma_min``, which further trials would only repeat).

    Examples
    --------
    >>> import numpy as np
    >>> fun = lambda x: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
    >>> grad = lambda x: np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]),
    ...                            200 * (x[1] - x[0] ** 2)])
    >>> hess = lambda x: np.array([[1200 * x[0] ** 2 - 400 * x[1] + 2, -400 * x[0]],
    ...                            [-400 * x[0], 200.0]])
    >>> res = gradient_normalized_newton(fun, grad, hess, np.array([-2.0, 2.0]), gtol=1e-10)
    >>> res.converged, bool(np.allclose(res.x, 1.0, atol=1e-9)), res.fun < 1e-8
    (True, True, True)
    """
    start = time.perf_counter()
    gamma = check_positive("gamma", gamma)
    gamma_min = check_positive("gamma_min", gamma_min)
    gtol = check_positive("gtol", gtol, allow_zero=True)
    inner_rtol = check_positive("inner_rtol", inner_rtol, allow_zero=True)
    maxiter = check_maxiter(maxiter)
    xp, x = prepare_x0(x0)
    n, dtype = x.shape[0], x.dtype
    if B is not None:
        if not is_array_api_obj(B) or tuple(B.shape) != (n, n):
            raise ValueError(f"B must be an ({n}, {n}) array of x0's namespace")
        namespace_of(B, "B", xp, "x0")
        B = xp.astype(B, dtype)
        if not bool(xp.all(xp.isfinite(B))):
            raise ValueError("B contains NaN or Inf; it must be a finite SPD matrix")
        try:
            xp.linalg.cholesky((B + B.T) / 2)
        except np.linalg.LinAlgError:
            raise ValueError("B is not symmetric positive definite (its Cholesky "
                             "factorisation failed); pass an SPD B or None for the "
                             "identity") from None
    kind = hessian_kind(hess)
    rec = new_recorder("lam", "gamma")
    obj = Objective(fun, grad, xp, n, dtype, rec)

    def dual_norm(v) -> float:
        if B is None:
            return float(xp.linalg.vector_norm(v))
        return math.sqrt(max(dot(xp, v, xp.linalg.solve(B, v)), 0.0))

    f, g = obj.fun(x), obj.grad(x)
    g_dual = dual_norm(g)
    k, lam_used = 0, math.nan
    while True:
        gnorm = float(xp.linalg.vector_norm(g))
        record(rec, fun=f, grad_norm=gnorm, step=0.0 if k == 0 else step_norm, lam=lam_used,
               gamma=gamma)
        done = stop_test(rec, x, f, gnorm, k, gtol, maxiter, start)
        if done is not None:
            return done
        H = LocalHessian(hess, kind, x, xp, n, dtype, rec, inner_rtol)
        if H.matrix is not None and not bool(xp.all(xp.isfinite(H.matrix))):
            return finish(rec, x, f, "DIVERGED_NANORINF", k, start, "the Hessian has NaN/Inf")
        try:
            solver = _ShiftedSolver(H, B, xp, rec, n, inner_rtol)
        except np.linalg.LinAlgError:  # eigh did not converge (CuPy raises the same class)
            return finish(rec, x, f, "DIVERGED_NANORINF", k, start,
                          "the Hessian's eigendecomposition failed or overflowed: its "
                          "entries are too large for the dtype")
        for _ in range(_MAX_TRIALS):
            lam = g_dual / gamma
            h = solver.solve(lam, g)
            if h is not None:
                x_new = x + h
                f_new, g_new = obj.fun(x_new), obj.grad(x_new)
                g_new_dual = dual_norm(g_new)
                # The slack lets f's rounding (relative to the working dtype) pass
                # a step whose true decrease is at the level of that rounding.
                if (math.isfinite(f_new) and math.isfinite(g_new_dual)
                        and f - f_new >= g_new_dual ** 2 / (8.0 * lam)
                        - rounding_slack(xp, dtype, f)):
                    gamma = 2.0 * gamma
                    break
            if gamma <= gamma_min:
                # the next trial would repeat this one exactly
                return finish(rec, x, f, "DIVERGED_LINE_SEARCH", k, start,
                              f"the trial step at gamma_min = {gamma_min:.3e} failed the "
                              "decrease test")
            gamma = max(0.5 * gamma, gamma_min)
        else:
            return finish(rec, x, f, "DIVERGED_LINE_SEARCH", k, start,
                          f"{_MAX_TRIALS} trial steps failed the decrease test")
        step_norm = float(xp.linalg.vector_norm(h))
        lam_used = lam
        x, f, g, g_dual = x_new, f_new, g_new, g_new_dual
        k += 1
        if callback is not None:
            callback(x)


class _ShiftedSolver:
    """``-(H + lam B)^{-1} g`` for several ``lam`` at one point; None if not positive definite."""

    def __init__(self, H: LocalHessian, B, xp, rec, n: int, inner_rtol: float):
        self.H, self.B, self.xp, self.rec, self.n, self.inner_rtol = H, B, xp, rec, n, inner_rtol
        self.eig = None
        if H.matrix is not None and B is None:
            # H/2 + H'/2 rounds exactly as (H + H')/2 (halving is exact) but cannot
            # overflow for entries near the largest float.
            lam, U = xp.linalg.eigh(H.matrix / 2 + H.matrix.T / 2)
            rec.n_factorizations += 1
            if not bool(xp.all(xp.isfinite(lam))):
                raise np.linalg.LinAlgError("eigenvalues overflow")
            self.eig = (lam, U)

    def solve(self, lam: float, g):
        xp = self.xp
        if self.eig is not None:
            eigenvalues, U = self.eig
            shifted = eigenvalues + lam
            if not float(xp.min(shifted)) > 0:
                return None
            return -(U @ ((U.T @ g) / shifted))
        if self.H.matrix is not None:
            A = self.H.matrix + lam * self.B
            self.rec.n_factorizations += 1
            try:
                xp.linalg.cholesky((A + A.T) / 2)  # the positive-definiteness check
                return -xp.linalg.solve(A, g)
            except np.linalg.LinAlgError:  # not positive definite (CuPy raises the same class)
                return None
        B = self.B
        shifted = (lambda v: self.H.matvec(v) + lam * v) if B is None else \
            (lambda v: self.H.matvec(v) + lam * (B @ v))
        result = pcg(shifted, g, rtol=self.inner_rtol, maxiter=10 * self.n)
        self.rec.n_hvp += result.matvecs
        if not result.converged:
            return None
        return -result.x
