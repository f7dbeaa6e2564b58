"""Lazy Newton: period 1 is the plain method, Hessian counts, cost with period d, cubic steps.

Tolerances: period 1 against a direct implementation differs only by
``eigh`` versus ``solve`` rounding (``cond(H + lambda I) eps``, below
1e-12 on these well-conditioned problems). Cubic-step residuals are
relative to ``||g||`` with ``||H|| ~ 10``: 1e-10 leaves room for the
eigenvector rounding ``~ d eps ||H||``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
from array_api_compat import array_namespace

from bench.newton_problems import breast_cancer, synthetic_ill_conditioned
from curvature.newton.lazy import cubic_step, lazy_newton
from bench._threads import blas_one_thread
from tests.problems import float32_quartic, to_numpy


def small_logistic(d=10, x0_scale=1.0):
    return synthetic_ill_conditioned(m=80, d=d, cond=10.0, mu=1e-2, seed=4, x0_scale=x0_scale)


def reference_regularized_newton(p, M, steps):
    """Non-lazy gradient-regularised Newton (Mishchenko 2021) with fixed M, written out."""
    x, xs = p.x0.copy(), [p.x0.copy()]
    for _ in range(steps):
        g = p.grad(x)
        x = x - np.linalg.solve(p.hess(x) + math.sqrt(M * np.linalg.norm(g)) * np.eye(p.dim), g)
        xs.append(x)
    return xs


@pytest.mark.parametrize("M", [0.1, 1.0, 10.0])
def test_period_one_reproduces_non_lazy_method(M):
    p = small_logistic(x0_scale=2.0)
    xs = [p.x0]
    lazy_newton(p.fun, p.grad, p.hess, p.x0, period=1, M=M, adaptive=False, gtol=0.0,
                maxiter=8, callback=lambda x: xs.append(np.array(x)))
    refs = reference_regularized_newton(p, M, 8)
    assert len(xs) == len(refs)
    for x, ref in zip(xs, refs):
        np.testing.assert_allclose(x, ref, rtol=0, atol=1e-12 * max(1.0, np.linalg.norm(ref)))


@pytest.mark.parametrize("regularization", ["gradient", "cubic"])
@pytest.mark.parametrize("period", [1, 2, 3, 5, 7])
def test_hessian_count_is_ceil_k_over_period(regularization, period):
    p = small_logistic(x0_scale=3.0)
    for maxiter in (4, 9, 1000):
        r = lazy_newton(p.fun, p.grad, p.hess, p.x0, period=period,
                        regularization=regularization, maxiter=maxiter, gtol=1e-9)
        assert r.n_hess == math.ceil(r.iterations / period) == r.n_factorizations
        assert r.iterations == min(maxiter, r.iterations)


def test_period_d_costs_at_most_half_of_period_one():
    # Logistic regression, d = 200 (1000 Gaussian samples, column scales over
    # a factor of 10, 10% flipped labels): a Hessian costs d gradients.
    p = synthetic_ill_conditioned(m=1000, d=200, cond=100.0, mu=1e-3, seed=0)
    d = p.dim
    costs = {}
    with blas_one_thread():  # threaded 200 x 200 eigh is 25x slower on a busy 2-core box
        _costs(p, costs)
    for regularization in ("gradient", "cubic"):
        assert costs[regularization, d] <= 0.5 * costs[regularization, 1], costs


def _costs(p, costs):
    d = p.dim
    for regularization in ("gradient", "cubic"):
        for period in (1, d):
            r = lazy_newton(p.fun, p.grad, p.hess, p.x0, period=period,
                            regularization=regularization, gtol=1e-6, maxiter=2000)
            assert r.converged
            costs[regularization, period] = r.n_grad + d * r.n_hess


def random_indefinite(d, seed):
    rng = np.random.default_rng(seed)
    lam = np.sort(rng.uniform(-5.0, 10.0, d))
    lam[0] = -abs(lam[0]) - 0.5  # at least one negative eigenvalue
    U, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return lam, U, rng


def check_cubic_optimality(lam, U, g, M):
    h, r = cubic_step(lam, U, g, M)
    H = (U * lam) @ U.T
    assert abs(np.linalg.norm(h) - r) <= 1e-10 * max(r, 1.0)
    residual = (H + 0.5 * M * r * np.eye(len(lam))) @ h + g
    assert np.linalg.norm(residual) <= 1e-10 * max(np.linalg.norm(g), 1.0)
    assert lam.min() + 0.5 * M * r >= -1e-10
    return h, r


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("M", [0.01, 1.0, 100.0])
def test_cubic_step_optimality_conditions(seed, M):
    lam, U, rng = random_indefinite(20, seed)
    check_cubic_optimality(lam, U, rng.standard_normal(20), M)


@pytest.mark.parametrize("seed", range(4))
def test_cubic_step_hard_case(seed):
    lam, U, rng = random_indefinite(15, seed)
    c = rng.standard_normal(15) * 1e-2
    c[0] = 0.0  # g orthogonal to the bottom eigenvector
    g = U @ c
    M = 1.0
    h, r = check_cubic_optimality(lam, U, g, M)
    assert r == pytest.approx(-2 * lam[0] / M, rel=1e-10)  # on the boundary of the hard case
    # the global minimiser: no random point has a lower model value
    model = lambda s: g @ s + 0.5 * s @ ((U * lam) @ U.T) @ s + M / 6 * np.linalg.norm(s) ** 3
    trials = h + 0.3 * rng.standard_normal((200, 15))
    assert all(model(s) >= model(h) - 1e-12 for s in trials)


def test_cubic_step_zero_gradient_convex():
    h, r = cubic_step(np.array([1.0, 2.0]), np.eye(2), np.zeros(2), 1.0)
    assert r == 0.0 and not np.any(h)


@pytest.mark.parametrize("regularization", ["gradient", "cubic"])
def test_minimizer_matches_scipy(regularization):
    p = breast_cancer(mu=1e-3)
    ref = scipy.optimize.minimize(p.fun, p.x0, jac=p.grad, hess=p.hess, method="trust-ncg",
                                  options={"gtol": 1e-10})
    r = lazy_newton(p.fun, p.grad, p.hess, p.x0, period=5, regularization=regularization,
                    gtol=1e-11, maxiter=2000)
    assert r.converged and ref.success
    assert np.linalg.norm(r.x - ref.x) <= 1e-8 * np.linalg.norm(ref.x)


@pytest.mark.parametrize("regularization", ["gradient", "cubic"])
def test_backend_agnostic(backend, regularization):
    """The first-order condition of the quartic's minimiser, on every backend."""
    xp = backend.xp
    A_np = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    b_np = np.array([1.0, -1.0, 2.0])
    A, b = xp.asarray(A_np), xp.asarray(b_np)
    fun = lambda x: float(0.5 * xp.sum(x * (A @ x)) - xp.sum(b * x) + 0.25 * xp.sum(x ** 4))
    grad = lambda x: A @ x - b + x ** 3
    hess = lambda x: A + 3.0 * xp.eye(3) * (x ** 2)[None, :]
    r = lazy_newton(fun, grad, hess, xp.asarray([3.0, -3.0, 3.0]), period=2,
                    regularization=regularization)
    assert r.converged and array_namespace(r.x) is xp and r.x.dtype == xp.float64
    # converged: ||grad|| <= gtol = 1e-8, recomputed here in NumPy (rounding ~1e-15)
    x = to_numpy(r.x)
    np.testing.assert_allclose(A_np @ x - b_np + x ** 3, 0, atol=1e-8)


def test_hvp_form_matches_matrix_form():
    p = small_logistic()
    a = lazy_newton(p.fun, p.grad, p.hess, p.x0, period=3)
    b = lazy_newton(p.fun, p.grad, p.hvp, p.x0, period=3)
    assert a.iterations == b.iterations and b.history["n_hvp"][-1] == p.dim * b.n_hess
    np.testing.assert_allclose(b.x, a.x, atol=1e-10)


def test_non_adaptive_indefinite_is_breakdown():
    H = np.diag([1.0, -4.0])
    r = lazy_newton(lambda x: 0.5 * x @ H @ x, lambda x: H @ x, lambda x: H,
                    np.array([1.0, 0.01]), adaptive=False, M=1e-3)
    assert r.reason == "DIVERGED_BREAKDOWN"


def test_misuse_raises():
    p = small_logistic()
    with pytest.raises(ValueError, match="regularization"):
        lazy_newton(p.fun, p.grad, p.hess, p.x0, regularization="quadratic")
    with pytest.raises(ValueError, match="period"):
        lazy_newton(p.fun, p.grad, p.hess, p.x0, period=0)
    with pytest.raises(ValueError, match="M"):
        lazy_newton(p.fun, p.grad, p.hess, p.x0, M=0.0)
    with pytest.raises(ValueError, match="NaN"):
        lazy_newton(p.fun, p.grad, p.hess, np.full(p.dim, np.nan))


@pytest.mark.parametrize("regularization", ["gradient", "cubic"])
def test_float32_converges_without_rounding_failures(regularization):
    # the acceptance slack follows eps(float32); a float64 1e-14 stalled near the minimiser
    fun, grad, hess, x0, gtol = float32_quartic()
    res = lazy_newton(fun, grad, hess, x0, period=2, regularization=regularization, gtol=gtol)
    assert res.reason == "CONVERGED_GTOL", res.message
    assert res.x.dtype == np.float32


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_cubic_step_radius_overflow_raises_arithmetic_error():
    # ||h(r)|| > r up to the largest float: no finite bracket (was an endless
    # doubling guard-free loop followed by brentq on an infinite interval)
    with pytest.raises(ArithmeticError, match="raise M"):
        cubic_step(np.array([1.0]), np.eye(1), np.array([1e300]), 5e-324)


def test_secular_equation_failure_is_a_result_not_an_exception(monkeypatch):
    def failing_brentq(*args, **kwargs):
        raise RuntimeError("Failed to converge after 200 iterations")

    monkeypatch.setattr(scipy.optimize, "brentq", failing_brentq)
    A = np.array([[3.0, 1.0], [1.0, 2.0]]); b = np.array([1.0, 1.0])
    res = lazy_newton(lambda x: 0.5 * x @ A @ x - b @ x, lambda x: A @ x - b, lambda x: A,
                      np.zeros(2), regularization="cubic")
    assert res.reason == "DIVERGED_BREAKDOWN" and "secular" in res.message
