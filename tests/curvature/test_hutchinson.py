"""Hutchinson diagonal and Hutch++ trace: exact cases, unbiasedness within standard errors."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

from curvature.hutchinson import hutchinson_diagonal, hutchpp_trace
from tests.problems import to_numpy


def random_symmetric(d, seed):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((d, d))
    return (B + B.T) / 2


def test_diagonal_matrix_recovered_by_one_probe(backend):
    xp = backend.xp
    diag = np.random.default_rng(0).standard_normal(40)
    D = xp.asarray(np.diag(diag))
    estimate = hutchinson_diagonal(lambda v: D @ v, 40, samples=1, seed=3, xp=xp)
    assert array_namespace(estimate) is xp
    np.testing.assert_array_equal(to_numpy(estimate), diag)  # z_i^2 = 1 exactly


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diagonal_error_within_five_standard_errors(seed):
    d, samples = 30, 400
    H = random_symmetric(d, seed)
    estimate = hutchinson_diagonal(lambda v: H @ v, d, samples, seed=seed + 10)
    # Entry i averages z_i sum_j H_ij z_j = H_ii + sum_{j != i} H_ij z_i z_j; the
    # products z_i z_j are independent signs, so the variance per probe is
    # sum_{j != i} H_ij^2.
    off = H - np.diag(np.diag(H))
    standard_error = np.sqrt(np.sum(off ** 2, axis=1) / samples)
    assert np.all(np.abs(estimate - np.diag(H)) <= 5 * standard_error)


def test_diagonal_seed_reproducible_and_validated():
    H = random_symmetric(5, 0)
    a = hutchinson_diagonal(lambda v: H @ v, 5, 7, seed=4)
    b = hutchinson_diagonal(lambda v: H @ v, 5, 7, seed=4)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="samples"):
        hutchinson_diagonal(lambda v: H @ v, 5, 0)
    with pytest.raises(ValueError, match="dim"):
        hutchinson_diagonal(lambda v: H @ v, -1, 3)
    with pytest.raises(ValueError, match="shape"):
        hutchinson_diagonal(lambda v: np.ones(4), 5, 3)


def test_hutchpp_exact_for_low_rank(backend):
    """The exact trace on every backend: numpy, array_api_strict, JAX."""
    xp = backend.xp
    rng = np.random.default_rng(2)
    U = rng.standard_normal((60, 5))
    H_np = U @ U.T
    H = xp.asarray(H_np)
    estimate = hutchpp_trace(lambda v: H @ v, 60, samples=18, seed=0, xp=xp)
    assert estimate == pytest.approx(np.trace(H_np), rel=1e-12)


def test_hutchpp_within_five_standard_errors():
    # Against the empirical spread of repeated estimates (unbiasedness): the
    # mean of 200 estimates is within 5 standard errors of the trace.
    d, samples, runs = 40, 12, 200
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    H = (Q * np.linspace(1.0, 10.0, d)) @ Q.T
    estimates = np.array([hutchpp_trace(lambda v: H @ v, d, samples, seed=s) for s in range(runs)])
    standard_error = estimates.std(ddof=1) / np.sqrt(runs)
    assert abs(estimates.mean() - np.trace(H)) <= 5 * standard_error
    assert estimates.std() < 0.1 * np.trace(H)


def test_hutchpp_needs_three_samples():
    with pytest.raises(ValueError, match="samples"):
        hutchpp_trace(lambda v: v, 4, 2)
