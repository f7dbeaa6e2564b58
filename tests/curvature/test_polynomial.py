"""Polynomial preconditioning: eigen-structure, condition bound, iterations vs degree, pcg.

Tolerances: the eigenvalue identity is checked to 1e-8 relative to
``sigma_tau(lambda)`` (the largest coefficient involved); Newton's
identities on the trace-normalised spectrum lose about ``tau!`` digits
times eps, far below that for ``tau <= 4``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from array_api_compat import array_namespace

from curvature.newton.polynomial import (elementary_symmetric_from_traces, krylov_gradient,
                                  polynomial_preconditioner, preconditioned_fast_gradient,
                                  preconditioned_gradient)
from linsolve import pcg
from tests.problems import to_numpy


def sigma(values, k):
    """Elementary symmetric polynomial by brute force (small sizes)."""
    return float(sum(np.prod(c) for c in itertools.combinations(values, k))) if k else 1.0


def spd_with_spectrum(eigenvalues, seed=0):
    n = len(eigenvalues)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    B = (Q * eigenvalues) @ Q.T
    return (B + B.T) / 2, Q


def test_newton_identities_match_brute_force():
    lam = np.random.default_rng(1).uniform(0.1, 3.0, 7)
    sig = elementary_symmetric_from_traces([np.sum(lam ** k) for k in range(1, 6)])
    np.testing.assert_allclose(sig, [sigma(lam, k) for k in range(6)], rtol=1e-12)


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_eigenvectors_map_to_sigma_without_own_eigenvalue(backend, degree):
    """The eigen-structure on every backend: numpy, array_api_strict, JAX."""
    xp = backend.xp
    lam = np.random.default_rng(degree).uniform(0.5, 20.0, 9)
    B, Q = spd_with_spectrum(lam, seed=degree)
    P = polynomial_preconditioner(xp.asarray(B), degree)
    for j in range(len(lam)):
        expected = sigma(np.delete(lam, j), degree)
        image = to_numpy(P.solve(xp.asarray(Q[:, j])))
        assert np.linalg.norm(image - expected * Q[:, j]) <= 1e-8 * sigma(lam, degree)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("degree", [1, 2, 3])
def test_condition_number_bound(seed, degree):
    rng = np.random.default_rng(seed)
    lam = np.sort(np.exp(rng.uniform(0, np.log(1e4), 12)))[::-1]
    B, _ = spd_with_spectrum(lam, seed)
    P = polynomial_preconditioner(B, degree)
    dense_P = np.stack([P.solve(e) for e in np.eye(12)], axis=1)
    values = np.linalg.eigvals(dense_P @ B).real  # similar to the SPD P^{1/2} B P^{1/2}
    bound = lam[degree:].sum() / lam.min()
    assert values.max() / values.min() <= bound * (1 + 1e-8)
    assert values.max() <= P.lipschitz * (1 + 1e-10)


def few_large_eigenvalues(n=30, seed=0):
    lam = np.concatenate([[100.0, 50.0, 20.0], np.linspace(1.0, 2.0, n - 3)])
    B, _ = spd_with_spectrum(lam, seed)
    b = np.random.default_rng(seed + 1).standard_normal(n)
    return B, b, (lambda x: 0.5 * x @ B @ x - b @ x), (lambda x: B @ x - b)


def test_iterations_strictly_decrease_with_degree():
    B, b, f, g = few_large_eigenvalues()
    plain, fast = [], []
    for degree in range(4):
        P = polynomial_preconditioner(B, degree)
        r = preconditioned_gradient(f, g, np.zeros(len(b)), P, gtol=1e-6, maxiter=20000)
        assert r.converged
        plain.append(r.iterations)
        # strong convexity in the P^{-1} norm: the smallest eigenvalue of P B
        lam = np.linalg.eigvalsh(B)
        mu = min(lam[j] * sigma(np.delete(lam, j), degree) for j in range(len(lam)))
        r = preconditioned_fast_gradient(f, g, np.zeros(len(b)), P, strong_convexity=mu,
                                         gtol=1e-6, maxiter=20000)
        assert r.converged
        fast.append(r.iterations)
    assert all(a > b for a, b in zip(plain, plain[1:])), plain
    assert all(a > b for a, b in zip(fast, fast[1:])), fast
    assert all(a < b for a, b in zip(fast, plain))


def test_krylov_variant_beats_fixed_polynomial():
    B, b, f, g = few_large_eigenvalues()
    for degree in (1, 2, 3):
        P = polynomial_preconditioner(B, degree)
        fixed = preconditioned_gradient(f, g, np.zeros(len(b)), P, gtol=1e-6, maxiter=20000)
        adaptive = krylov_gradient(f, g, B, np.zeros(len(b)), degree, gtol=1e-6)
        assert adaptive.converged and adaptive.iterations < fixed.iterations
        np.testing.assert_allclose(adaptive.x, np.linalg.solve(B, b), rtol=0, atol=1e-5)


@pytest.mark.parametrize("degree", [3, 4])
def test_krylov_variant_reaches_tight_tolerance(degree):
    # Near ||g|| = 1e-6 (|f| ~ 10) the decrease of f is below its rounding; a
    # test on f alone stalled there until maxiter (DIVERGED_ITS).
    B, b, f, g = few_large_eigenvalues()
    result = krylov_gradient(f, g, B, np.zeros(len(b)), degree, gtol=1e-9, maxiter=200)
    assert result.converged, result.message
    x_star = np.linalg.solve(B, b)
    # ||x - x*|| <= ||B^-1|| ||g|| with lambda_min(B) >= 1
    assert np.linalg.norm(result.x - x_star) <= 1e-9


def test_usable_as_pcg_preconditioner():
    B, b, _, _ = few_large_eigenvalues()
    plain = pcg(B, b, rtol=1e-10)
    for degree in (1, 2):
        result = pcg(B, b, M=polynomial_preconditioner(B, degree), rtol=1e-10)
        # CG already resolves a few isolated eigenvalues; P must not hurt it
        assert result.converged and result.iterations <= plain.iterations
        np.testing.assert_allclose(result.x, np.linalg.solve(B, b), rtol=1e-8)


def test_hutchinson_traces_approximate_exact_coefficients():
    lam = np.concatenate([[50.0, 20.0], np.linspace(1.0, 2.0, 38)])
    B, _ = spd_with_spectrum(lam, 3)
    exact = polynomial_preconditioner(B, 2)
    estimated = polynomial_preconditioner(lambda v: B @ v, 2, "hutchinson", samples=400, seed=0,
                                          n=40)
    np.testing.assert_allclose(estimated.sigma, exact.sigma, rtol=0.1)
    # still a good preconditioner for CG
    assert pcg(B, np.ones(40), M=estimated, rtol=1e-10).converged


def test_operator_input_and_matvec_inverse():
    lam = np.array([5.0, 3.0, 1.0, 0.5])
    B, _ = spd_with_spectrum(lam)
    P = polynomial_preconditioner(lambda v: B @ v, 2, n=4)
    v = np.arange(1.0, 5.0)
    np.testing.assert_allclose(P.matvec(P.solve(v)), v, rtol=1e-9)


def test_misuse_raises():
    B = np.eye(3)
    with pytest.raises(ValueError, match="traces"):
        polynomial_preconditioner(B, 1, traces="lanczos")
    with pytest.raises(ValueError, match="degree"):
        polynomial_preconditioner(B, -1)
    with pytest.raises(ValueError, match="square"):
        polynomial_preconditioner(np.ones((2, 3)), 1)
    with pytest.raises(ValueError, match="n="):
        polynomial_preconditioner(lambda v: v, 1)
    with pytest.raises(ValueError, match="SPD"):
        polynomial_preconditioner(-np.eye(3), 1)
    with pytest.raises(TypeError):
        preconditioned_gradient(lambda x: 0.0, lambda x: x, np.ones(3), "P")


class _MatvecOnly:
    """An operator with ``matvec`` and ``shape`` and nothing else (not callable)."""

    def __init__(self, B):
        self.B, self.shape = B, B.shape

    def matvec(self, v):
        return self.B @ v


def test_exact_traces_of_a_matvec_object():
    B, _ = spd_with_spectrum([10.0, 4.0, 2.0, 1.0])
    P_op = polynomial_preconditioner(_MatvecOnly(B), degree=2)
    P_arr = polynomial_preconditioner(B, degree=2)
    np.testing.assert_allclose(P_op.sigma, P_arr.sigma, rtol=1e-12)


@pytest.mark.parametrize("samples", [0, -3, 2.5, True])
def test_hutchinson_samples_must_be_a_positive_integer(samples):
    with pytest.raises(ValueError, match="samples"):
        polynomial_preconditioner(np.eye(3), degree=1, traces="hutchinson", samples=samples)


def test_hutchinson_non_positive_sigma_is_refused():
    # diag(3, -1) is not SPD but has tr = 2 > 0; every Rademacher probe gives
    # p_1 = 2, p_2 = 10, so sigma_2 = (p_1^2 - p_2) / 2 = -3
    with pytest.raises(ValueError, match="raise samples or use traces='exact'"):
        polynomial_preconditioner(np.diag([3.0, -1.0]), degree=1, traces="hutchinson", seed=0)


def test_matvec_reports_a_failed_solve():
    # P_1 = sigma_1 I - B = -I for B = I with a (corrupted) sigma_1 = 0: CG cannot invert it
    from curvature.newton.polynomial import PolynomialPreconditioner
    P = PolynomialPreconditioner(lambda v: v, 3, array_namespace(np.ones(1)), np.float64, 1,
                                 [1.0, 0.0, 1.0], 1.0)
    with pytest.raises(RuntimeError, match="did not converge"):
        P.matvec(np.ones(3))


def test_krylov_gradient_checks_B_shape():
    f, g = lambda x: 0.5 * float(x @ x), lambda x: x
    with pytest.raises(ValueError, match=r"must be \(3, 3\)"):
        krylov_gradient(f, g, np.eye(4), np.ones(3), degree=1)
    with pytest.raises(ValueError, match=r"must be \(3, 3\)"):
        krylov_gradient(f, g, _MatvecOnly(np.eye(4)), np.ones(3), degree=1)


def test_krylov_gradient_semidefinite_B_is_breakdown():
    # B = 0 is positive semidefinite: V'BV = [[0]] is singular
    b = np.array([1.0, 2.0])
    res = krylov_gradient(lambda x: float(b @ x), lambda x: b, np.zeros((2, 2)), np.zeros(2),
                          degree=1)
    assert res.reason == "DIVERGED_BREAKDOWN"


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_krylov_gradient_costs_degree_plus_one_products(degree):
    B, _ = spd_with_spectrum([50.0, 20.0, 5.0, 2.0, 1.0, 1.0])
    b = np.ones(6)
    products = []

    def matvec(v):
        products.append(1)
        return B @ v

    res = krylov_gradient(lambda x: 0.5 * x @ B @ x - b @ x, lambda x: B @ x - b, matvec,
                          np.zeros(6), degree, gtol=0.0, maxiter=3)
    assert res.iterations == 3
    assert len(products) == 3 * (degree + 1)


@pytest.mark.parametrize("mu, error", [(-1.0, ">= 0"), (1e6, "exceeds")])
def test_fast_gradient_checks_strong_convexity(mu, error):
    B = np.diag([4.0, 1.0])
    P = polynomial_preconditioner(B, degree=1)
    with pytest.raises(ValueError, match=error):
        preconditioned_fast_gradient(lambda x: 0.5 * x @ B @ x, lambda x: B @ x, np.ones(2), P,
                                     strong_convexity=mu)
