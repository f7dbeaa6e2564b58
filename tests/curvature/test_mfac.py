"""M-FAC: dense-formula agreement, float32 accuracy at small damping, static entries.

Tolerances: float64 checks use ``1e-10`` relative where the dense reference's
own error is ``cond(F) eps64 <= 3e4 * 2e-16 ~ 1e-11`` (d = 500, m = 32,
damping >= 1e-3, standard-normal gradients: ``||G||^2/m <~ 25``).
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
from array_api_compat import array_namespace

from curvature.mfac.window import MFAC, BlockedMFAC, _eigen_factor
from curvature.mfac.static import MFACStatic
from linsolve import pcg
from tests.conftest import eager_backends
from tests.problems import to_numpy


def _xp(module):
    return array_namespace(module.asarray([1.0]))


def dense_fisher(window: np.ndarray, damping: float) -> np.ndarray:
    k = window.shape[0]
    return damping * np.eye(window.shape[1]) + window.T @ window / k


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --- float64 against the dense formula ----------------------------------------

@pytest.mark.parametrize("damping", [1e-3, 1e-2, 1.0])
def test_solve_matches_dense_at_every_ring_position(backend, damping):
    """The dense reference on every backend."""
    xp = backend.xp
    # JAX compiles the window's operations anew for each warm-up size k < m
    # (~0.2 s a size): m = 8 there keeps warm-up, full and wrapped positions
    # at a quarter of the cost, within the same tolerance (the window is worst
    # conditioned at the k = 5 checkpoint, on either size).
    d, m = (500, 8) if backend.name == "jax" else (500, 32)
    rng = np.random.default_rng(1)
    grads = rng.standard_normal((3 * m, d))
    v = rng.standard_normal(d)
    mfac = MFAC(d, m, damping, xp=xp)
    # Positions: warm-up (k < m), just full, and wrapped around at several offsets.
    checkpoints = {5, m, m + 7, 2 * m + (19 % m), 3 * m}
    for t, g in enumerate(grads, start=1):
        mfac.update(xp.asarray(g))
        if t in checkpoints:
            window = grads[max(0, t - m):t]
            F = dense_fisher(window, damping)
            x = to_numpy(mfac.solve(xp.asarray(v)))
            assert rel(x, np.linalg.solve(F, v)) < 1e-10, t
            assert rel(to_numpy(mfac.matvec(xp.asarray(v))), F @ v) < 1e-12, t
    assert mfac.size == m and mfac.count == 3 * m


@eager_backends   # JAX: new window sizes compile anew (seconds); see the first test
@pytest.mark.parametrize("damping", [1e-3, 1e-2, 1.0])
def test_inverse_and_symmetry(backend, damping):
    xp = backend.xp
    d, m = 500, 32
    rng = np.random.default_rng(2)
    mfac = MFAC(d, m, damping, xp=xp)
    for g in rng.standard_normal((m + 11, d)):
        mfac.update(xp.asarray(g))
    x, u, v = (xp.asarray(a) for a in rng.standard_normal((3, d)))
    back = to_numpy(mfac.matvec(mfac.solve(x)))
    assert rel(back, to_numpy(x)) < 1e-10
    Fu, Fv = to_numpy(mfac.solve(u)), to_numpy(mfac.solve(v))
    lhs, rhs = float(to_numpy(u) @ Fv), float(Fu @ to_numpy(v))
    assert abs(lhs - rhs) <= 1e-12 * np.linalg.norm(to_numpy(u)) * np.linalg.norm(Fv)


def test_empty_window_is_damping_identity():
    mfac = MFAC(7, 3, 0.5)
    v = np.arange(7.0)
    np.testing.assert_allclose(mfac.solve(v), v / 0.5)
    np.testing.assert_allclose(mfac.matvec(v), 0.5 * v)


def test_window_of_one_gradient():
    rng = np.random.default_rng(3)
    mfac = MFAC(20, 1, 0.3)
    for g in rng.standard_normal((4, 20)):
        mfac.update(g)
    v = rng.standard_normal(20)
    F = dense_fisher(g[None, :], 0.3)
    assert rel(mfac.solve(v), np.linalg.solve(F, v)) < 1e-12


# --- float32 at small damping -------------------------------------------------

def _float32_case():
    d, m, damping = 2000, 64, 1e-5
    rng = np.random.default_rng(4)
    grads = rng.standard_normal((m + 9, d)).astype(np.float32)
    window = grads[-m:].astype(np.float64)  # exact float32 values
    g = grads[-5]                           # an in-window gradient
    # float64 SVD reference, written without cancellation: window = W S V',
    # g = V S W' e, F^{-1} g = V diag(s / (lam + s^2/m)) W' e.
    W, s, Vt = np.linalg.svd(window, full_matrices=False)
    e = W[m - 5, :]
    reference = Vt.T @ (s / (damping + s * s / m) * e)
    return d, m, damping, grads, g, reference


@eager_backends   # JAX: new window sizes compile anew (seconds); see the first test
def test_float32_in_window_gradient_small_damping(backend):
    xp = backend.xp
    d, m, damping, grads, g, reference = _float32_case()
    mfac = MFAC(d, m, damping, dtype="float32", xp=xp)
    for row in grads:
        mfac.update(xp.asarray(row))
    x = mfac.solve(xp.asarray(g))
    assert x.dtype == xp.float32
    assert rel(to_numpy(x).astype(np.float64), reference) < 1e-4


def test_naive_float32_formula_fails_the_same_check():
    # The same Woodbury formula with float32 arithmetic throughout: the
    # cancellation in v - G'c, divided by lambda, leaves no correct digit.
    d, m, damping, grads, g, reference = _float32_case()
    G = grads[-m:]
    A = (m * np.float32(damping)) * np.eye(m, dtype=np.float32) + G @ G.T
    c = np.linalg.solve(A, G @ g).astype(np.float32)
    naive = (g - G.T @ c) / np.float32(damping)
    assert naive.dtype == np.float32
    assert rel(naive.astype(np.float64), reference) > 1e-2


# --- static variant -----------------------------------------------------------

@pytest.mark.parametrize("damping", [1e-3, 1e-2, 1.0])
def test_static_entries_match_dense_inverse(backend, damping):
    xp = backend.xp
    d, m = 500, 32
    rng = np.random.default_rng(5)
    G = rng.standard_normal((m, d))
    Finv = np.linalg.inv(dense_fisher(G, damping))
    static = MFACStatic(xp.asarray(G), damping)
    assert static.shape == (d, d)
    diag = to_numpy(static.inverse_diagonal())
    assert np.max(np.abs(diag - np.diag(Finv))) <= 1e-10 * np.max(np.abs(np.diag(Finv)))
    scale = np.max(np.abs(Finv))
    for i, j in [(0, 0), (3, 17), (17, 3), (499, 250), (-1, 42)]:
        assert abs(static.inverse_entry(i, j) - Finv[i, j]) <= 1e-10 * scale
    np.testing.assert_allclose(to_numpy(static.inverse_column(9)), Finv[:, 9],
                               rtol=0, atol=1e-10 * scale)
    v = rng.standard_normal(d)
    assert rel(to_numpy(static.solve(xp.asarray(v))), Finv @ v) < 1e-10
    assert rel(to_numpy(static.matvec(static.solve(xp.asarray(v)))), v) < 1e-10


def test_static_equals_dynamic_on_a_full_window():
    rng = np.random.default_rng(6)
    G = rng.standard_normal((8, 60))
    mfac = MFAC(60, 8, 1e-2)
    for g in G:
        mfac.update(g)
    v = rng.standard_normal(60)
    assert rel(MFACStatic(G, 1e-2).solve(v), mfac.solve(v)) < 1e-11


def test_static_bad_input():
    with pytest.raises(ValueError):
        MFACStatic(np.ones(5), 1.0)
    with pytest.raises(ValueError):
        MFACStatic(np.array([[1.0, np.nan]]), 1.0)
    with pytest.raises(ValueError):
        MFACStatic(np.ones((2, 3)), 0.0)
    static = MFACStatic(np.ones((2, 3)), 1.0)
    with pytest.raises(IndexError):
        static.inverse_entry(3, 0)
    with pytest.raises(ValueError):
        static.solve(np.ones(4))


# --- blocked ------------------------------------------------------------------

@eager_backends   # JAX: new window sizes compile anew (seconds); see the first test
def test_blocked_equals_independent_windows(backend):
    xp = backend.xp
    sizes = [3000, 7, 120, 1]  # one block spans several kernel chunks
    rng = np.random.default_rng(7)
    grads = rng.standard_normal((13, sum(sizes)))
    blocked = BlockedMFAC(sizes, m=5, damping=1e-2, xp=xp)
    for g in grads:
        blocked.update(xp.asarray(g))
    v = rng.standard_normal(sum(sizes))
    x = to_numpy(blocked.solve(xp.asarray(v)))
    Fv = to_numpy(blocked.matvec(xp.asarray(v)))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for s, e in zip(offsets[:-1], offsets[1:]):
        F = dense_fisher(grads[-5:, s:e], 1e-2)
        assert rel(x[s:e], np.linalg.solve(F, v[s:e])) < 1e-10
        assert rel(Fv[s:e], F @ v[s:e]) < 1e-12
    assert blocked.shape == (sum(sizes), sum(sizes)) and blocked.block_sizes == tuple(sizes)


# --- pcg, state, memmap -------------------------------------------------------

def test_mfac_preconditions_pcg():
    rng = np.random.default_rng(8)
    d, m = 300, 20
    grads = rng.standard_normal((m, d))
    mfac = MFAC(d, m, 1e-2)
    for g in grads:
        mfac.update(g)
    # A: the window's Fisher plus a mild diagonal perturbation.
    A = dense_fisher(grads, 1e-2) + np.diag(rng.uniform(0, 2e-3, d))
    b = rng.standard_normal(d)
    plain = pcg(A, b, rtol=1e-8)
    preconditioned = pcg(A, b, M=mfac, rtol=1e-8)
    assert preconditioned.converged
    assert preconditioned.iterations < plain.iterations
    assert rel(preconditioned.x, np.linalg.solve(A, b)) < 1e-6


@eager_backends   # JAX: new window sizes compile anew (seconds); see the first test
def test_state_dict_round_trip(backend):
    xp = backend.xp
    rng = np.random.default_rng(9)
    grads = rng.standard_normal((17, 40))
    a = MFAC(40, 6, 0.1, xp=xp)
    for g in grads[:11]:
        a.update(xp.asarray(g))
    b = MFAC(40, 6, 0.5, xp=xp)
    b.load_state_dict(a.state_dict())
    assert b.count == a.count and b.damping == a.damping
    for g in grads[11:]:  # both continue from the same ring position
        a.update(xp.asarray(g))
        b.update(xp.asarray(g))
    v = xp.asarray(rng.standard_normal(40))
    np.testing.assert_array_equal(to_numpy(a.solve(v)), to_numpy(b.solve(v)))
    with pytest.raises(ValueError):
        MFAC(40, 5, 0.1, xp=xp).load_state_dict(a.state_dict())
    with pytest.raises(ValueError):
        MFAC(40, 6, 0.1, dtype="float32", xp=xp).load_state_dict(a.state_dict())


def test_memmap_window(tmp_path):
    rng = np.random.default_rng(10)
    grads = rng.standard_normal((9, 3000)).astype(np.float32)
    mapped = MFAC(3000, 4, 1e-3, dtype="float32", memmap=tmp_path / "window.dat")
    memory = MFAC(3000, 4, 1e-3, dtype="float32")
    for g in grads:
        mapped.update(g)
        memory.update(g)
    assert isinstance(mapped._G, np.memmap)
    v = rng.standard_normal(3000).astype(np.float32)
    np.testing.assert_array_equal(mapped.solve(v), memory.solve(v))
    state = mapped.state_dict()
    restored = MFAC(3000, 4, 1e-3, dtype="float32", memmap=tmp_path / "other.dat")
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.solve(v), memory.solve(v))
    with pytest.raises(ValueError, match="NumPy-only"):
        MFAC(10, 2, 1.0, xp=_xp(array_api_strict), memmap=tmp_path / "x.dat")


def test_eigen_fallback_factor_matches_cholesky():
    rng = np.random.default_rng(11)
    G = rng.standard_normal((6, 30))
    K = (G @ G.T)[None]
    S = _eigen_factor(_xp(np), K, 0.6)
    np.testing.assert_allclose(np.swapaxes(S, -1, -2) @ S,
                               np.linalg.inv(K + 0.6 * np.eye(6)), rtol=1e-10, atol=1e-14)


def test_rank_deficient_window_at_tiny_damping_does_not_raise():
    # Parallel gradients in d < m: K is singular and the shift k*lam is far
    # below its rounding, so the Cholesky factor may fail (eigh takes over).
    # A vector orthogonal to the window is still mapped to about v / lam.
    g = np.array([0.1, 0.7, 0.3])
    mfac = MFAC(3, 8, 1e-30)
    for scale in np.linspace(0.3, 3.0, 8):
        mfac.update(scale * g)
    v = np.array([0.7, -0.1, 0.0])  # g . v = 0 in exact arithmetic
    x = mfac.solve(v)
    assert np.all(np.isfinite(x))
    # g . v rounds to ~1e-17, not 0: its image (~1e-17 / lam) is the rest.
    assert rel(x, v / 1e-30) < 0.05


# --- misuse -------------------------------------------------------------------

def test_bad_input_raises():
    with pytest.raises(ValueError):
        MFAC(10, 0, 1.0)
    with pytest.raises(ValueError):
        MFAC(0, 3, 1.0)
    for damping in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            MFAC(10, 3, damping)
    with pytest.raises(ValueError):
        MFAC(10, 3, 1.0, dtype="int32")
    with pytest.raises(ValueError):
        BlockedMFAC([], 3, 1.0)
    mfac = MFAC(10, 3, 1.0)
    mfac.update(np.ones(10))
    with pytest.raises(ValueError):
        mfac.update(np.ones(11))
    with pytest.raises(ValueError):
        mfac.update(np.ones((10, 1)))
    bad = np.ones(10)
    bad[4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mfac.update(bad)
    assert mfac.count == 1  # the window is unchanged
    np.testing.assert_allclose(mfac.solve(np.ones(10)), np.ones(10) / 11.0)  # (I + 11')^{-1} 1
    with pytest.raises(ValueError):
        mfac.solve(np.ones(9))
    with pytest.raises(TypeError):
        mfac.solve(array_api_strict.ones(10, dtype=array_api_strict.float64))
    with pytest.raises(TypeError):
        mfac.solve([1.0] * 10)


def test_strided_vectors_equal_packed_ones():
    # a column of a matrix is a strided view: taken (copied once) as a packed vector
    G = np.random.default_rng(31).standard_normal((40, 6))
    strided, packed = MFAC(40, 4, 1e-3), MFAC(40, 4, 1e-3)
    for k in range(6):
        strided.update(G[:, k])
        packed.update(np.ascontiguousarray(G[:, k]))
    v = np.random.default_rng(32).standard_normal((40, 3))
    np.testing.assert_array_equal(strided.solve(v[:, 1]), packed.solve(v[:, 1].copy()))
