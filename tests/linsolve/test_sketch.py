"""sketch_solve: randomized Kaczmarz against its theory, block sketches, misuse and failure values."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from linsolve.sketch import sketch_solve

from tests.problems import poisson1d


def _prescribed(n: int, m: int | None = None, low=1.0, high=3.0, seed=0):
    """A (m x n) with singular values linspace(low, high, n); a consistent b."""
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (U * np.linspace(low, high, n)) @ V.T
    x_true = rng.standard_normal(n)
    return A, A @ x_true, x_true


@pytest.fixture(scope="module")
def square200():
    return _prescribed(200)


def test_kaczmarz_reaches_1e8_on_a_consistent_200_system(square200):
    A, b, x_true = square200
    result = sketch_solve(A, b, seed=0, rtol=1e-8, maxiter=100_000)
    assert result.converged and result.reason == "CONVERGED_RTOL"
    assert np.linalg.norm(b - A @ result.x) <= 1e-8 * np.linalg.norm(b)
    assert result.true_residual_norm <= 1e-8 * np.linalg.norm(b)
    assert len(result.residual_norms) == result.iterations + 1
    # error <= ||A^-1|| * residual, sigma_min = 1
    assert np.linalg.norm(result.x - x_true) <= 1.01 * 1e-8 * np.linalg.norm(b)


def test_kaczmarz_mean_contraction_obeys_the_strohmer_vershynin_bound(square200):
    # E||x_k - x*||^2 <= (1 - sigma_min^2/||A||_F^2)^k ||x_0 - x*||^2.
    # Measured: the mean over 8 seeds of ||e_K||^2/||e_0||^2 after K = 1500
    # steps. Margin for randomness: the sample mean may exceed the
    # expectation; with 8 seeds we allow 1.5x the bound (the observed mean is
    # in fact well below it: the bound is driven by the smallest singular
    # value alone).
    A, b, x_true = square200
    sigma = np.linalg.svd(A, compute_uv=False)
    rho = 1.0 - sigma[-1] ** 2 / np.sum(sigma ** 2)
    K = 1500
    ratios = []
    for seed in range(8):
        result = sketch_solve(A, b, seed=seed, rtol=0.0, maxiter=K)
        assert result.iterations == K and result.reason == "DIVERGED_ITS"
        ratios.append(np.sum((result.x - x_true) ** 2) / np.sum(x_true ** 2))
    observed = float(np.mean(ratios))
    assert observed <= 1.5 * rho ** K
    # per-step factor, geometric mean over the steps
    assert observed ** (1.0 / K) <= rho + 1e-4


def test_uniform_sampling_and_sparse_input_agree_with_dense():
    A = (poisson1d(30) + sp.eye(30)).tocsr()  # eigenvalues in (1, 5)
    x_true = np.linspace(-1.0, 1.0, 30)
    b = A @ x_true
    dense = sketch_solve(A.toarray(), b, seed=3, rtol=1e-9, maxiter=100_000)
    sparse = sketch_solve(A, b, seed=3, rtol=1e-9, maxiter=100_000)
    assert dense.converged and sparse.converged
    # the same random rows: the same iterates up to rounding
    assert dense.iterations == sparse.iterations
    np.testing.assert_allclose(dense.x, sparse.x, rtol=1e-10, atol=1e-12)
    uniform = sketch_solve(A, b, seed=3, sampling="uniform", rtol=1e-9, maxiter=100_000)
    assert uniform.converged


def test_same_seed_same_iterates_and_generator_is_advanced():
    A, b, _ = _prescribed(20, seed=2)
    first = sketch_solve(A, b, seed=7, maxiter=300)
    second = sketch_solve(A, b, seed=7, maxiter=300)
    np.testing.assert_array_equal(first.x, second.x)
    rng = np.random.default_rng(7)
    third = sketch_solve(A, b, seed=rng, maxiter=300)
    np.testing.assert_array_equal(first.x, third.x)
    fourth = sketch_solve(A, b, seed=rng, maxiter=300)
    assert not np.array_equal(third.x, fourth.x)


@pytest.mark.parametrize("sketch", ["rows", "gaussian", "countsketch"])
@pytest.mark.parametrize("sparse", [False, True])
def test_block_sketches_solve_an_overdetermined_consistent_system(sketch, sparse):
    A, b, x_true = _prescribed(40, m=120, seed=4)
    result = sketch_solve(sp.csr_matrix(A) if sparse else A, b, sketch=sketch, sketch_size=10,
                          seed=0, rtol=1e-10, maxiter=5000)
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, x_true, atol=1e-8)


@pytest.mark.parametrize("sketch", ["rows", "gaussian"])
def test_indefinite_kkt_matrix(sketch):
    H = np.diag([1.0, 2.0, -1.0, 4.0])
    G = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, -1.0, 2.0]])
    K = np.block([[H, G.T], [G, np.zeros((2, 2))]])
    assert np.linalg.eigvalsh(K).min() < 0
    z = np.arange(1.0, 7.0)
    result = sketch_solve(K, K @ z, sketch=sketch, sketch_size=1 if sketch == "rows" else 3,
                          seed=0, rtol=1e-10, maxiter=200_000)
    assert result.converged
    np.testing.assert_allclose(result.x, z, atol=1e-8)


def test_inconsistent_system_stops_at_maxiter_with_a_reason():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((60, 10))
    b = rng.standard_normal(60)  # not in the range of A
    result = sketch_solve(A, b, seed=0, maxiter=3000)
    assert not result.converged and result.reason == "DIVERGED_ITS"
    assert result.iterations == 3000 and "inconsistent" in result.message
    x, info = result
    assert info == 3000


def test_default_maxiter_is_bounded():
    A = np.array([[1.0, 1.0], [1.0, 1.0]])
    result = sketch_solve(A, np.array([1.0, 2.0]), seed=0)  # inconsistent
    assert result.reason == "DIVERGED_ITS" and result.iterations == 1000


def test_zero_rhs_exact_start_and_x0_untouched():
    A, b, x_true = _prescribed(10, seed=6)
    zero = sketch_solve(A, np.zeros(10), seed=0)
    assert zero.converged and zero.iterations == 0 and not np.any(zero.x)
    x0 = x_true.copy()
    exact = sketch_solve(A, b, x0=x0, seed=0, rtol=1e-8)
    assert exact.converged and exact.iterations == 0
    np.testing.assert_array_equal(x0, x_true)


def test_dtypes_float32_kept_integer_upcast():
    A = np.array([[4.0, 1.0], [1.0, 3.0]], dtype=np.float32)
    b = np.array([1.0, 2.0], dtype=np.float32)
    result = sketch_solve(A, b, seed=0, rtol=1e-5)
    assert result.x.dtype == np.float32 and result.converged
    integer = sketch_solve(np.array([[2, 0], [0, 4]]), np.array([2, 4]), seed=0)
    assert integer.x.dtype == np.float64
    np.testing.assert_allclose(integer.x, [1.0, 1.0])


def test_b_of_shape_n_by_1():
    A = np.eye(3) * 2.0
    result = sketch_solve(A, np.ones((3, 1)), seed=0)
    assert result.x.shape == (3,)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"tol": 1e-5}, TypeError, "rtol"),
    ({"sketch": "srht"}, ValueError, "sketch"),
    ({"sampling": "leverage"}, ValueError, "sampling"),
    ({"sketch_size": 0}, ValueError, "sketch_size"),
    ({"sketch_size": 4}, ValueError, "sketch_size"),
    ({"sketch_size": 1.5}, ValueError, "sketch_size"),
    ({"rtol": -1.0}, ValueError, "rtol"),
    ({"maxiter": -1}, ValueError, "maxiter"),
    ({"check_every": 0}, ValueError, "check_every"),
    ({"check_every": 2.5}, ValueError, "check_every"),
    ({"seed": "zero"}, TypeError, "seed"),
])
def test_misuse_raises(kwargs, error, match):
    with pytest.raises(error, match=match):
        sketch_solve(np.eye(3), np.ones(3), **kwargs)


def test_bad_shapes_nan_and_operators_raise():
    with pytest.raises(ValueError, match="shape"):
        sketch_solve(np.eye(3), np.ones(4))
    with pytest.raises(ValueError, match="2-D"):
        sketch_solve(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        sketch_solve(np.array([[1.0, np.nan], [0.0, 1.0]]), np.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        sketch_solve(np.eye(2), np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="x0"):
        sketch_solve(np.eye(2), np.ones(2), x0=np.ones(3))
    with pytest.raises(TypeError, match="entries"):
        sketch_solve(lambda v: v, np.ones(2))
    with pytest.raises(TypeError, match="complex"):
        sketch_solve(np.eye(2, dtype=complex), np.ones(2))
    with pytest.raises(ValueError, match="zero"):
        sketch_solve(np.zeros((2, 2)), np.ones(2))


def test_array_api_strict_block_sketch():
    xp = pytest.importorskip("array_api_strict")
    A, b, x_true = _prescribed(8, m=12, seed=8)
    result = sketch_solve(xp.asarray(A), xp.asarray(b), sketch="gaussian", sketch_size=4,
                          seed=0, rtol=1e-10, maxiter=2000)
    assert result.converged
    np.testing.assert_allclose(np.asarray(result.x), x_true, atol=1e-8)
    rows = sketch_solve(xp.asarray(A), xp.asarray(b), sketch="rows", sketch_size=3, seed=0,
                        rtol=1e-10, maxiter=5000)
    assert rows.converged
    with pytest.raises(TypeError, match="namespace"):
        sketch_solve(A, xp.asarray(b))


def test_norm_sampling_needs_as_many_nonzero_rows_as_the_sketch_size():
    # Two of the four rows are zero: norm sampling without replacement can
    # draw at most two distinct rows per step. numpy's own message ("Fewer
    # non-zero entries in p than size") named neither cause nor fix.
    A = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    b = np.array([2.0, 3.0, 0.0, 0.0])
    for matrix in (A, sp.csr_matrix(A)):
        with pytest.raises(ValueError, match="exceeds the 2 nonzero rows.*sampling='uniform'"):
            sketch_solve(matrix, b, sketch="rows", sketch_size=3, seed=0)
        at_limit = sketch_solve(matrix, b, sketch="rows", sketch_size=2, seed=0, rtol=1e-12)
        assert at_limit.converged and at_limit.iterations == 1
        np.testing.assert_allclose(at_limit.x, [1.0, 3.0], rtol=1e-14)
        uniform = sketch_solve(matrix, b, sketch="rows", sketch_size=3, sampling="uniform",
                               seed=0, rtol=1e-12)
        assert uniform.converged
        np.testing.assert_allclose(uniform.x, [1.0, 3.0], rtol=1e-14)


def test_uniform_sampling_counts_zero_rows_drawn_as_steps():
    # (documented): a zero row drawn leaves x alone but is a step. A diagonal
    # system is solved by drawing each of its two nonzero rows once; with
    # eight zero rows, uniform sampling needs more steps than two, and
    # row_steps counts every draw.
    A = np.zeros((10, 2))
    A[0, 0], A[1, 1] = 2.0, 4.0
    b = A @ np.array([1.0, 1.0])
    kaczmarz = sketch_solve(sp.csr_matrix(A), b, sampling="uniform", seed=1, rtol=1e-12)
    assert kaczmarz.converged and kaczmarz.iterations > 2
    assert kaczmarz.extra["row_steps"] == kaczmarz.iterations
    block = sketch_solve(A, b, sketch_size=2, sampling="uniform", seed=1, rtol=1e-12)
    assert block.converged and block.extra["row_steps"] == 2 * block.iterations
