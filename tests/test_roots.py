"""inverse_root: accuracy against constructed spectra, failure reporting, backends."""

import numpy as np
import pytest
import array_api_strict

import curvature.roots as roots_module
from curvature.roots import RootError, RootInfo, inverse_root
from tests.problems import to_numpy

NAMESPACES = [pytest.param(np, id="numpy"), pytest.param(array_api_strict, id="strict")]
U64 = np.finfo(np.float64).eps


def constructed(n, cond, p, seed=0):
    """A = Q diag(lam) Q' from a random orthogonal Q, and the exact root from Q and lam."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.logspace(0, np.log10(cond), n)
    return (Q * lam) @ Q.T, (Q * lam ** (-1.0 / p)) @ Q.T


def rel_error(X, ref):
    return np.linalg.norm(np.asarray(X) - ref) / np.linalg.norm(ref)


def test_eigh_reference_accuracy_cond_1e8():
    # Backward-stable eigh: error ~ u * cond = 1.1e-8 at worst; measured ~3e-10.
    A, ref = constructed(128, 1e8, 4)
    X, info = inverse_root(A, 4, method="eigh", return_info=True)
    assert rel_error(X, ref) <= 1e-8
    assert info.converged and info.method == "eigh" and info.iterations == 0


def test_newton_reference_accuracy_cond_1e8():
    # Coupled Newton at cond 1e8 in float64 reaches ~2e-10 in 25 iterations
    # (log(1e8)/log((5/4)^4) ~ 21 growth steps, then quadratic convergence).
    A, ref = constructed(128, 1e8, 4)
    X, info = inverse_root(A, 4, method="newton", tol=1e-14, return_info=True)
    assert rel_error(X, ref) <= 1e-8
    assert info.iterations <= 30
    assert info.converged and info.method == "newton"


def test_newton_float32_cond_1e8_reports_failure():
    # Eigenvalues 1e-8 * ||A|| are below float32's resolution of A: no root exists
    # in that precision, and Newton must say so.
    A, _ = constructed(128, 1e8, 4)
    A32 = A.astype(np.float32)
    X, info = inverse_root(A32, 4, method="newton", return_info=True)
    assert not info.converged
    assert info.residual > roots_module.RESIDUAL_THRESHOLD
    assert X.dtype == np.float32 and np.all(np.isfinite(X))
    with pytest.raises(RootError, match="root failed"):
        inverse_root(A32, 4, method="newton")


def test_auto_falls_back_to_float64_eigh_when_newton_fails(monkeypatch):
    # Pretend the namespace is CuPy, so auto tries Newton first.
    monkeypatch.setattr(roots_module, "is_cupy_namespace", lambda xp: True)
    A, _ = constructed(64, 1e8, 4)
    A32 = A.astype(np.float32)
    X, info = inverse_root(A32, 4, eps=1e-6, eps_mode="relative", return_info=True)
    assert info.method == "newton+eigh" and info.converged and X.dtype == np.float32
    A, ref = constructed(32, 1e2, 2)
    X, info = inverse_root(A, 2, return_info=True)
    assert info.method == "newton" and rel_error(X, ref) <= 1e-12


@pytest.mark.parametrize("xp", NAMESPACES)
@pytest.mark.parametrize("method", ["eigh", "newton"])
def test_namespaces_and_batches(xp, method):
    blocks = [constructed(16, c, 3, seed=s) for s, c in enumerate([1.0, 1e2, 1e4, 1e6])]
    A = np.stack([a for a, _ in blocks]).reshape(2, 2, 16, 16)
    ref = np.stack([r for _, r in blocks]).reshape(2, 2, 16, 16)
    X, info = inverse_root(xp.asarray(A), 3, method=method, return_info=True)
    X = to_numpy(X)
    assert X.shape == (2, 2, 16, 16) and info.converged
    # per block: c * u * cond, cond up to 1e6
    for i in range(2):
        for j in range(2):
            assert rel_error(X[i, j], ref[i, j]) <= 100 * U64 * 1e6


def test_batched_equals_per_block():
    A = np.stack([constructed(12, 1e3, 4, seed=s)[0] for s in range(5)])
    X = inverse_root(A, 4, method="eigh")
    for k in range(5):
        np.testing.assert_allclose(X[k], inverse_root(A[k], 4, method="eigh"),
                                   rtol=0, atol=1e3 * U64 * np.abs(X[k]).max())


def test_symmetrises_input():
    A, _ = constructed(10, 10.0, 2)
    skew = np.triu(np.ones((10, 10)), 1)
    B = A + skew - skew.T            # same symmetric part
    np.testing.assert_allclose(inverse_root(B, 2), inverse_root(A, 2), atol=1e-13)


@pytest.mark.parametrize("method", ["eigh", "newton"])
def test_rank_deficient_with_eps_is_finite(method):
    rng = np.random.default_rng(1)
    G = rng.standard_normal((20, 5))
    A = G @ G.T                       # rank 5 of 20
    X, info = inverse_root(A, 4, eps=1e-6, method=method, return_info=True)
    assert np.all(np.isfinite(X)) and info.converged
    if method == "eigh":              # the null space gets eps^(-1/4)
        lam = np.linalg.eigvalsh(X)
        assert lam.max() == pytest.approx(1e-6 ** -0.25, rel=1e-6)


def test_rank_deficient_without_eps_fails_loudly():
    with pytest.raises(RootError):
        inverse_root(np.zeros((4, 4)), 2, method="eigh")
    X, info = inverse_root(np.zeros((4, 4)), 2, method="newton", return_info=True)
    assert not info.converged


def test_slightly_indefinite_is_shifted_to_eps():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    lam = np.array([-1e-10, 1e-3, 1, 2, 3, 4, 5, 6.0])
    A = (Q * lam) @ Q.T
    eps = 1e-6
    shifted = lam + (eps - lam[0])    # all eigenvalues move together
    ref = (Q * shifted ** -0.5) @ Q.T
    X = inverse_root(A, 2, eps=eps)
    assert rel_error(X, ref) <= 1e-8  # u * cond(shifted) = 1.3e-9
    Xn, info = inverse_root(A, 2, eps=eps, method="newton", return_info=True)
    assert np.all(np.isfinite(Xn)) and info.converged


def test_relative_eps_scales_with_largest_eigenvalue():
    A = np.diag([1e4, 0.0])
    X = inverse_root(A, 2, eps=1e-6, eps_mode="relative")
    np.testing.assert_allclose(np.diag(X), [(1e4 + 1e-2) ** -0.5, 1e-2 ** -0.5], rtol=1e-12)


def test_float32_in_float32_out():
    A, ref = constructed(16, 10.0, 2)
    for method in ("eigh", "newton"):
        X = inverse_root(A.astype(np.float32), 2, method=method)
        assert X.dtype == np.float32 and rel_error(X, ref) <= 100 * np.finfo(np.float32).eps * 10


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_raise(bad):
    A = np.eye(3)
    A[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        inverse_root(A, 2)


@pytest.mark.parametrize("p", [0, -1, 1.5, True, "2"])
def test_p_must_be_positive_int(p):
    with pytest.raises(ValueError, match="positive int"):
        inverse_root(np.eye(2), p)


def test_bad_arguments():
    with pytest.raises(ValueError):
        inverse_root(np.ones((2, 3)), 2)
    with pytest.raises(ValueError):
        inverse_root(np.eye(2), 2, method="svd")
    with pytest.raises(ValueError):
        inverse_root(np.eye(2), 2, eps_mode="scaled")
    with pytest.raises(ValueError):
        inverse_root(np.eye(2), 2, eps=-1.0)


def test_p_one_is_inverse_and_info_is_frozen():
    A, _ = constructed(6, 1e3, 1)
    X, info = inverse_root(A, 1, return_info=True)
    np.testing.assert_allclose(X @ A, np.eye(6), atol=1e3 * 1e3 * U64)
    assert isinstance(info, RootInfo)
    with pytest.raises(Exception):
        info.residual = 0.0


def test_parallel_batched_eigh_path_equals_serial():
    """Large NumPy batches are split across threads; every block's root is unchanged."""
    pytest.importorskip("threadpoolctl")
    from curvature import roots

    rng = np.random.default_rng(3)
    G = rng.standard_normal((4, 128, 128))
    A = G @ np.swapaxes(G, -1, -2) / 128 + 1e-3 * np.eye(128)
    assert 4 * 128**3 < roots._PARALLEL_MIN_WORK  # lower the bar to take the threaded path
    old = roots._PARALLEL_MIN_WORK
    roots._PARALLEL_MIN_WORK = 1
    try:
        X, info = inverse_root(A.reshape(2, 2, 128, 128), 4, method="eigh", return_info=True)
    finally:
        roots._PARALLEL_MIN_WORK = old
    serial = np.stack([inverse_root(a, 4, method="eigh") for a in A]).reshape(2, 2, 128, 128)
    np.testing.assert_array_equal(X, serial)
    assert info.converged and info.method == "eigh" and info.residual < 1e-10
