"""inverse_root: accuracy against constructed spectra, failure reporting, backends."""

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given, settings
from hypothesis import strategies as st

import curvature.shampoo.roots as roots_module
from curvature.shampoo.roots import RootError, RootInfo, inverse_root
from tests.problems import to_numpy

U64 = np.finfo(np.float64).eps
U32 = float(np.finfo(np.float32).eps)


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


@pytest.mark.parametrize("method", ["eigh", "newton"])
def test_namespaces_and_batches(backend, method):
    """The reference test on every backend: numpy, array_api_strict, JAX."""
    blocks = [constructed(16, c, 3, seed=s) for s, c in enumerate([1.0, 1e2, 1e4, 1e6])]
    A = np.stack([a for a, _ in blocks]).reshape(2, 2, 16, 16)
    ref = np.stack([r for _, r in blocks]).reshape(2, 2, 16, 16)
    X, info = inverse_root(backend.asarray(A), 3, method=method, return_info=True)
    assert array_namespace(X) is backend.xp
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
    # rounding-level asymmetry is symmetrised (the root of the symmetric part); visible
    # asymmetry is refused (tests/curvature/test_curvature_bad_input.py)
    A, _ = constructed(10, 10.0, 2)
    skew = np.triu(np.ones((10, 10)), 1) * 1e-12
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


def _slightly_indefinite():
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    lam = np.array([-1e-10, 1e-3, 1, 2, 3, 4, 5, 6.0])
    return (Q * lam) @ Q.T, Q, lam


@pytest.mark.parametrize("method", ["eigh", "newton"])
def test_slightly_indefinite_gets_the_ridge(method):
    A, Q, lam = _slightly_indefinite()
    eps = 1e-6
    ref = (Q * (lam + eps) ** -0.5) @ Q.T     # the root of A + eps I
    X, info = inverse_root(A, 2, eps=eps, method=method, return_info=True)
    cond = (lam[-1] + eps) / (lam[0] + eps)   # 6.7e6
    # eigh: u * cond = 1.5e-9; Newton adds its stopping error n * tol / p
    assert rel_error(X, ref) <= 8 * 1000 * U64 / 2 + 10 * U64 * cond
    assert info.converged


def test_floor_shifts_the_slightly_indefinite_to_eps():
    A, Q, lam = _slightly_indefinite()
    eps = 1e-6
    shifted = lam + (eps - lam[0])    # all eigenvalues move together
    ref = (Q * shifted ** -0.5) @ Q.T
    X = inverse_root(A, 2, eps=eps, floor=True)
    assert rel_error(X, ref) <= 1e-8  # u * cond(shifted) = 1.3e-9
    with pytest.raises(ValueError, match="floor"):
        inverse_root(A, 2, eps=eps, floor=True, method="newton")


def test_floor_under_auto_uses_eigh_on_every_backend(monkeypatch):
    monkeypatch.setattr(roots_module, "is_cupy_namespace", lambda xp: True)
    _, info = inverse_root(np.diag([0.1, 3.1]), 2, eps=1.0, floor=True, return_info=True)
    assert info.method == "eigh"


# --- one meaning of eps: the ridge A + eps I, for every method ------------------

@pytest.mark.parametrize("method", ["auto", "eigh", "newton"])
def test_eps_is_the_same_ridge_for_every_method(method):
    # The old eigh floored the smallest eigenvalue at eps
    # ([1, 0.5]) where Newton added eps I ([0.9535, 0.4939]).
    X = inverse_root(np.diag([0.1, 3.1]), 2, eps=1.0, method=method)
    ref = np.diag([1.1 ** -0.5, 4.1 ** -0.5])
    # n * tol / p of Newton's stop (n = 2, p = 2) plus u * cond(A + I)
    assert rel_error(X, ref) <= 1000 * U64 + 10 * U64 * (4.1 / 1.1)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 24), p=st.integers(1, 6),
       log_cond=st.floats(0.0, 6.0), log_scale=st.floats(-3.0, 3.0),
       log_ratio=st.floats(-1.0, 1.0), eps_mode=st.sampled_from(["absolute", "relative"]))
def test_eigh_and_newton_give_the_same_root_for_the_same_eps(seed, n, p, log_cond, log_scale,
                                                             log_ratio, eps_mode):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.logspace(0.0, log_cond, n) * 10.0 ** log_scale
    A = (Q * lam) @ Q.T
    # eps near the smallest eigenvalue, where a floor and a ridge differ most
    ridge = 10.0 ** log_ratio * lam[0]
    eps = ridge / np.linalg.norm(A) if eps_mode == "relative" else ridge
    ref = (Q * (lam + ridge) ** (-1.0 / p)) @ Q.T
    Xe, info_e = inverse_root(A, p, eps=eps, eps_mode=eps_mode, method="eigh", return_info=True)
    Xn, info_n = inverse_root(A, p, eps=eps, eps_mode=eps_mode, method="newton",
                              return_info=True)
    assert info_e.converged and info_n.converged
    cond = (lam[-1] + ridge) / (lam[0] + ridge)
    # Newton stops at max|M - I| <= tol, so ||M - I||_2 <= n tol and X is off
    # by at most n tol / p; both methods add rounding of order n u cond.
    newton_stop = n * 1000 * U64 / p
    assert rel_error(Xe, ref) <= 10 * n * U64 * cond
    assert rel_error(Xn, ref) <= newton_stop + 10 * n * U64 * cond
    assert rel_error(Xe, Xn) <= newton_stop + 20 * n * U64 * cond


# --- every method checks its residual -------------------------------------------

def _float32_cond_1e9():
    """16 x 16 SPD with condition 2.5e9, exact in float32: B B' with B bidiagonal
    (1 on the diagonal, -1.875 above), so the float32 data is the float64 matrix."""
    B = np.eye(16) - 1.875 * np.eye(16, k=1)
    A = B @ B.T
    assert np.array_equal(A.astype(np.float32).astype(np.float64), A)
    lam, Q = np.linalg.eigh(A)
    return A, lam, Q


def test_eigh_float32_ill_conditioned_root_is_reported_failed():
    # An unchecked eigh gave RootInfo(residual=198.6, converged=True) and no RootError.
    A, lam, _ = _float32_cond_1e9()
    A32 = A.astype(np.float32)
    X, info = inverse_root(A32, 4, eps=1e-12, method="eigh", return_info=True)
    assert info.method == "eigh" and not info.converged
    assert info.residual > roots_module.RESIDUAL_THRESHOLD
    # the measure is the residual itself: ||(A + eps I) X^4 - I||_F / sqrt(n) of the
    # returned root, evaluated in float64, is as bad (u32 * cond = 3e2)
    X64 = X.astype(np.float64)
    direct = np.linalg.norm((A + 1e-12 * np.eye(16)) @ np.linalg.matrix_power(X64, 4)
                            - np.eye(16)) / 4
    assert direct > roots_module.RESIDUAL_THRESHOLD
    with pytest.raises(RootError, match="root failed"):
        inverse_root(A32, 4, eps=1e-12, method="eigh")


def test_auto_recomputes_a_failed_float32_eigh_root_in_float64():
    A, lam, Q = _float32_cond_1e9()
    X, info = inverse_root(A.astype(np.float32), 4, eps=1e-12, return_info=True)
    assert info.method == "eigh+eigh" and info.converged and X.dtype == np.float32
    cond = lam[-1] / lam[0]
    assert info.residual <= 16 * U64 * cond          # n u cond = 9e-6, in float64
    ref = (Q * (lam + 1e-12) ** -0.25) @ Q.T
    # the float32 cast of the root, plus float64 eigh's u * cond
    assert rel_error(X, ref) <= 2 * U32 + 16 * U64 * cond


def test_float64_eigh_failure_is_not_retried():
    A, _ = constructed(16, 1e16, 4)          # u * cond = 2 in float64
    X, info = inverse_root(A, 4, return_info=True)
    assert info.method == "eigh" and not info.converged
    assert info.residual > roots_module.RESIDUAL_THRESHOLD


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
    from curvature.shampoo import roots

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
