"""Gradient-normalized Newton: Rosenbrock budget, the decrease test, approximations, backends."""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
import scipy.optimize
from array_api_compat import array_namespace

from bench.newton_problems import breast_cancer, rosenbrock, synthetic_ill_conditioned
from curvature.newton.gradient_normalized import gradient_normalized_newton
from tests.problems import float32_quartic, to_numpy


@pytest.mark.parametrize("approximation", ["exact", "gauss_newton"])
def test_rosenbrock_within_sixty_iterations(approximation):
    p = rosenbrock()
    hess = p.hess if approximation == "exact" else p.gauss_newton
    r = gradient_normalized_newton(p.fun, p.grad, hess, p.x0, gtol=1e-12, maxiter=200)
    assert r.converged
    below = np.flatnonzero(r.history["fun"] < 1e-8)
    assert below.size and below[0] <= 60, below[:1]
    # minimiser agrees with scipy's (and the known (1, 1)) to 1e-8
    ref = scipy.optimize.minimize(p.fun, p.x0, jac=p.grad, hess=p.hess, method="trust-ncg",
                                  options={"gtol": 1e-11})
    assert ref.success
    assert np.linalg.norm(r.x - ref.x) <= 1e-8 and np.linalg.norm(r.x - 1.0) <= 1e-8


@pytest.mark.parametrize("approximation", ["exact", "gauss_newton"])
def test_every_accepted_step_passes_the_decrease_test(approximation):
    p = rosenbrock()
    hess = p.hess if approximation == "exact" else p.gauss_newton
    r = gradient_normalized_newton(p.fun, p.grad, hess, p.x0, gtol=1e-10)
    h = r.history
    f, gnorm, lam = h["fun"], h["grad_norm"], h["lam"]
    assert np.isnan(lam[0]) and np.all(lam[1:] > 0)
    # f(x_k) - f(x_{k+1}) >= ||grad f(x_{k+1})||^2 / (8 lambda_k)   (B = I)
    assert np.all(f[:-1] - f[1:] >= gnorm[1:] ** 2 / (8 * lam[1:]))
    # rejected trials cost function/gradient calls beyond one per iteration
    assert r.n_fun >= r.iterations + 1 and r.n_hess == r.iterations


def test_fisher_on_logistic_regression_matches_scipy():
    # for logistic regression (canonical link) the Fisher matrix is the Hessian
    p = breast_cancer(mu=1e-3)
    ref = scipy.optimize.minimize(p.fun, p.x0, jac=p.grad, hess=p.hess, method="trust-ncg",
                                  options={"gtol": 1e-10})
    fisher = gradient_normalized_newton(p.fun, p.grad, p.gauss_newton, p.x0, gtol=1e-11)
    assert fisher.converged
    assert np.linalg.norm(fisher.x - ref.x) <= 1e-8 * np.linalg.norm(ref.x)


def test_norm_matrix_and_hvp_form():
    p = synthetic_ill_conditioned(m=80, d=8, cond=10.0, mu=1e-2, seed=2, x0_scale=2.0)
    plain = gradient_normalized_newton(p.fun, p.grad, p.hess, p.x0, gtol=1e-11)
    B = np.diag(np.linspace(1.0, 3.0, p.dim))
    weighted = gradient_normalized_newton(p.fun, p.grad, p.hess, p.x0, B=B, gtol=1e-11)
    hvp = gradient_normalized_newton(p.fun, p.grad, p.hvp, p.x0, gtol=1e-11, inner_rtol=1e-13)
    assert plain.converged and weighted.converged and hvp.converged
    assert hvp.history["n_hvp"][-1] > 0
    np.testing.assert_allclose(weighted.x, plain.x, atol=1e-10)
    np.testing.assert_allclose(hvp.x, plain.x, atol=1e-10)


def test_backend_agnostic(backend):
    """Rosenbrock's minimiser (1, 1) on every backend."""
    xp = backend.xp
    fun = lambda x: float(100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2)
    grad = lambda x: xp.stack([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]),
                               200 * (x[1] - x[0] ** 2)])
    hess = lambda x: xp.reshape(xp.stack([1200 * x[0] ** 2 - 400 * x[1] + 2, -400 * x[0],
                                          -400 * x[0], xp.asarray(200.0)]), (2, 2))
    r = gradient_normalized_newton(fun, grad, hess, xp.asarray([-2.0, 2.0]), gtol=1e-10)
    assert r.converged and array_namespace(r.x) is xp and r.fun < 1e-8
    # ||x - x*|| <= ||grad|| / lambda_min(H(x*)) = 1e-10 / 0.4 near x* = (1, 1)
    assert np.linalg.norm(to_numpy(r.x) - 1.0) <= 1e-8


def test_maxiter_and_misuse():
    p = rosenbrock()
    r = gradient_normalized_newton(p.fun, p.grad, p.hess, p.x0, maxiter=3)
    assert r.reason == "DIVERGED_ITS" and r.iterations == 3
    with pytest.raises(ValueError, match="gamma"):
        gradient_normalized_newton(p.fun, p.grad, p.hess, p.x0, gamma=0.0)
    with pytest.raises(ValueError, match="B"):
        gradient_normalized_newton(p.fun, p.grad, p.hess, p.x0, B=np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        gradient_normalized_newton(p.fun, p.grad, p.hess, np.array([np.inf, 0.0]))


def test_float32_converges_without_rounding_failures():
    # the decrease test allows eps(float32) rounding of f; without it the
    # last trials were all rejected (DIVERGED_LINE_SEARCH)
    fun, grad, hess, x0, gtol = float32_quartic()
    res = gradient_normalized_newton(fun, grad, hess, x0, gtol=gtol)
    assert res.reason == "CONVERGED_GTOL", res.message
    assert res.x.dtype == np.float32


def test_rejected_trial_at_gamma_min_stops_at_once():
    # f never decreases, so every trial fails; at gamma_min the next one would repeat it
    calls = []
    fun = lambda x: calls.append(1) or 0.0
    res = gradient_normalized_newton(fun, lambda x: np.ones(2), lambda x: np.eye(2),
                                     np.zeros(2), gamma=1e-9, gamma_min=1e-9)
    assert res.reason == "DIVERGED_LINE_SEARCH" and "gamma_min" in res.message
    assert len(calls) == 2       # the start and one trial, not 40 identical trials


@pytest.mark.parametrize("B, error", [
    (np.array([[1.0, 0.0], [0.0, -1.0]]), "not symmetric positive definite"),
    (np.array([[1.0, 0.0], [0.0, np.nan]]), "NaN or Inf"),
])
def test_B_must_be_finite_spd(B, error):
    with pytest.raises(ValueError, match=error):
        gradient_normalized_newton(lambda x: 0.5 * float(x @ x), lambda x: x,
                                   lambda x: np.eye(2), np.ones(2), B=B)


def test_mixed_namespaces_are_refused():
    fun, hess = lambda x: 0.5 * float(x @ x), lambda x: np.eye(2)
    with pytest.raises(TypeError, match="x0's library"):
        gradient_normalized_newton(fun, lambda x: x, hess, np.ones(2),
                                   B=array_api_strict.eye(2, dtype=array_api_strict.float64))
    with pytest.raises(TypeError, match="x0's library"):
        gradient_normalized_newton(fun, lambda x: array_api_strict.asarray(x), hess, np.ones(2))


def test_user_errors_in_the_factorisation_propagate(monkeypatch):
    # only LinAlgError means "not positive definite"; other errors must surface
    xp = array_namespace(np.ones(1))
    cholesky, calls = xp.linalg.cholesky, []

    def cholesky_with_a_bug(A):
        calls.append(1)
        if len(calls) > 1:   # the entry check of B passes; the trial solve has the bug
            raise ValueError("user bug")
        return cholesky(A)

    monkeypatch.setattr(xp.linalg, "cholesky", cholesky_with_a_bug)
    with pytest.raises(ValueError, match="user bug"):
        gradient_normalized_newton(lambda x: 0.5 * float(x @ x), lambda x: x,
                                   lambda x: np.eye(2), np.ones(2), B=2.0 * np.eye(2))
