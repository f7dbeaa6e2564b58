"""K-FAC: dense Kronecker formulas, the vec convention, state, bad input, array_api_strict.

Tolerances: the test layer (7 inputs + bias, 5 outputs, batch 64,
standard-normal data, damping 1e-3) has ``cond(kron(A, G) + lambda I)``
below about ``1e4``; both the dense reference solve and the factored
evaluation have relative errors of ``c n eps64 cond ~ 1e-11``, so 1e-10
relative is derived, not guessed.
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

from curvature.kronecker.kfac import KFAC, kl_clip_scale
from tests.problems import to_numpy

IN, OUT, BATCH = 7, 5, 64


def vec(V):
    return np.asarray(V).T.reshape(-1)     # column-major


def rel(x, y):
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def _batches(count, seed=0, batch=BATCH):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, IN)), rng.standard_normal((batch, OUT)))
            for _ in range(count)]


def _dense_factors(batches, decay):
    A = G = None
    for a, g in batches:
        ab = np.c_[a, np.ones(len(a))]
        Ab, Gb = ab.T @ ab / len(a), g.T @ g / len(a)
        A, G = (Ab, Gb) if A is None else (decay * A + (1 - decay) * Ab,
                                           decay * G + (1 - decay) * Gb)
    return A, G


def test_eigen_mode_is_the_exact_damped_kronecker_inverse(backend):
    """The dense reference on every backend: numpy, array_api_strict, JAX."""
    xp = backend.xp
    damping, decay = 1e-3, 0.9
    batches = _batches(4)
    layer = KFAC(IN, OUT, damping=damping, decay=decay, mode="eigen")
    for a, g in batches:
        layer.update(xp.asarray(a), xp.asarray(g))
    A, G = (to_numpy(f) for f in layer.factors)
    assert np.array_equal(A, A.T) and np.array_equal(G, G.T)      # exactly symmetric
    A_ref, G_ref = _dense_factors(batches, decay)
    assert rel(A, A_ref) < 1e-14 and rel(G, G_ref) < 1e-14
    F = np.kron(A, G) + damping * np.eye(OUT * (IN + 1))
    assert np.linalg.cond(F) < 1e5
    rng = np.random.default_rng(5)
    grad_W = rng.standard_normal((OUT, IN + 1))
    expected = np.linalg.solve(F, vec(grad_W))
    D = to_numpy(layer.precondition(xp.asarray(grad_W)))
    assert rel(vec(D), expected) < 1e-10
    x = to_numpy(layer.solve(xp.asarray(vec(grad_W))))
    assert rel(x, expected) < 1e-10
    assert rel(to_numpy(layer.matvec(xp.asarray(vec(grad_W)))), F @ vec(grad_W)) < 1e-12


@pytest.mark.parametrize("pi_heuristic", [False, True])
def test_inverse_mode_is_the_factored_dense_form(backend, pi_heuristic):
    xp = backend.xp
    damping = 1e-2
    batches = _batches(3, seed=1)
    layer = KFAC(IN, OUT, damping=damping, decay=0.8, mode="inverse", pi_heuristic=pi_heuristic)
    for a, g in batches:
        layer.update(xp.asarray(a), xp.asarray(g))
    A, G = _dense_factors(batches, 0.8)
    pi = np.sqrt((np.trace(A) / (IN + 1)) / (np.trace(G) / OUT)) if pi_heuristic else 1.0
    assert layer.pi == pytest.approx(pi, rel=1e-14)
    root = np.sqrt(damping)
    F = np.kron(A + pi * root * np.eye(IN + 1), G + root / pi * np.eye(OUT))
    v = np.random.default_rng(2).standard_normal(OUT * (IN + 1))
    assert rel(to_numpy(layer.solve(xp.asarray(v))), np.linalg.solve(F, v)) < 1e-10
    assert rel(to_numpy(layer.matvec(xp.asarray(v))), F @ v) < 1e-12


def test_batch_of_one_gives_the_outer_product_exactly():
    # Small-integer data: every product and the symmetrisation are exact, so
    # kron(A, G) and vec(g a')vec(g a')' must agree bit for bit.
    rng = np.random.default_rng(3)
    a = rng.integers(-4, 5, (1, IN)).astype(np.float64)
    g = rng.integers(-4, 5, (1, OUT)).astype(np.float64)
    layer = KFAC(IN, OUT)
    layer.update(a, g)
    A, G = layer.factors
    u = vec(np.outer(g[0], np.r_[a[0], 1.0]))                     # vec(g a_bar')
    assert np.array_equal(np.kron(A, G), np.outer(u, u))
    # and with real-valued data to rounding
    a, g = rng.standard_normal((1, IN)), rng.standard_normal((1, OUT))
    layer = KFAC(IN, OUT, bias=False)
    layer.update(a, g)
    A, G = layer.factors
    u = vec(np.outer(g[0], a[0]))
    assert np.allclose(np.kron(A, G), np.outer(u, u), rtol=4e-16, atol=4e-16 * np.abs(u).max() ** 2)
    assert np.array_equal(A, A.T) and np.array_equal(G, G.T)


def test_vec_convention_weight_gradient():
    # The mean-loss weight gradient is (1/n) sum g_i a_i'; its column-major
    # vec is the mean of kron(a_i, g_i): the vector kron(A, G) is built for.
    rng = np.random.default_rng(4)
    a, g = rng.standard_normal((6, IN)), rng.standard_normal((6, OUT))
    ab = np.c_[a, np.ones(6)]
    grad_W = g.T @ ab / 6
    assert np.allclose(vec(grad_W), np.mean([np.kron(x, y) for x, y in zip(ab, g)], axis=0))


def test_inverse_refresh_every_k_steps_and_solve_matvec_pair():
    batches = _batches(5, seed=6)
    layer = KFAC(IN, OUT, damping=1e-2, inverse_update_freq=3)
    v = np.random.default_rng(7).standard_normal(OUT * (IN + 1))
    for t, (a, g) in enumerate(batches, start=1):
        layer.update(a, g)
        if t == 1:
            after_first = layer.solve(v)
        if t == 3:      # frozen since update 1
            assert np.array_equal(layer.solve(v), after_first)
        assert rel(layer.solve(layer.matvec(v)), v) < 1e-12
    A, G = _dense_factors(batches[:4], 0.95)   # refreshed at updates 1 and 4
    F = np.kron(A, G) + 1e-2 * np.eye(v.size)
    assert rel(layer.solve(v), np.linalg.solve(F, v)) < 1e-10


def test_damping_change_and_identity_before_updates():
    layer = KFAC(IN, OUT, damping=1e-2, mode="inverse")
    v = np.arange(OUT * (IN + 1), dtype=np.float64)
    assert np.array_equal(layer.solve(v), v)          # no factors: identity
    a, g = _batches(1)[0]
    layer.update(a, g)
    layer.damping = 1.0
    A, G = layer.factors
    F = np.kron(A + np.eye(IN + 1), G + np.eye(OUT))
    assert rel(layer.solve(v), np.linalg.solve(F, v)) < 1e-12


def test_kl_clip_scales_the_step():
    a, g = _batches(1)[0]
    layer = KFAC(IN, OUT, damping=1e-3, kl_clip=1e-3)
    layer.update(a, g)
    grad_W = np.ones((OUT, IN + 1))
    free = KFAC(IN, OUT, damping=1e-3)
    free.update(a, g)
    D_free = free.precondition(grad_W)
    nu = min(1.0, np.sqrt(1e-3 / (0.1 ** 2 * np.sum(D_free * grad_W))))
    assert nu < 1.0
    assert np.allclose(layer.precondition(grad_W, lr=0.1), nu * D_free, rtol=1e-13)
    assert kl_clip_scale([D_free], [grad_W], 0.1, 1e-3) == pytest.approx(nu, rel=1e-13)
    assert kl_clip_scale([-D_free], [grad_W], 0.1, 1e-3) == 1.0


def test_state_dict_round_trip():
    batches = _batches(6, seed=8)
    layer = KFAC(IN, OUT, damping=1e-2, inverse_update_freq=2, mode="inverse")
    for a, g in batches[:3]:
        layer.update(a, g)
    state = layer.state_dict()
    other = KFAC(IN, OUT, damping=5.0, inverse_update_freq=2, mode="inverse")
    other.load_state_dict(state)
    for a, g in batches[3:]:
        layer.update(a, g)
        other.update(a, g)
    v = np.random.default_rng(9).standard_normal(OUT * (IN + 1))
    assert np.array_equal(layer.solve(v), other.solve(v))
    with pytest.raises(ValueError, match="in_features"):
        KFAC(IN + 1, OUT).load_state_dict(state)


def test_bad_input_raises():
    layer = KFAC(IN, OUT)
    a, g = _batches(1)[0]
    with pytest.raises(ValueError, match="shape"):
        layer.update(a[:, :3], g)
    with pytest.raises(ValueError, match="batch size"):
        layer.update(a[:10], g)
    with pytest.raises(TypeError, match="floating"):
        layer.update(a.astype(np.int64), g)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        layer.update(bad, g)
    assert layer.step == 0 and layer.factors is None
    layer.update(a, g)
    with pytest.raises(TypeError, match="numpy"):
        layer.update(array_api_strict.asarray(a), array_api_strict.asarray(g))
    with pytest.raises(ValueError, match="shape"):
        layer.precondition(np.ones((OUT, IN)))
    with pytest.raises(ValueError, match="shape"):
        layer.solve(np.ones(3))
    with pytest.raises(ValueError, match="mode"):
        KFAC(IN, OUT, mode="exact")
    with pytest.raises(ValueError, match="damping"):
        KFAC(IN, OUT, damping=0.0)
    with pytest.raises(ValueError, match="decay"):
        KFAC(IN, OUT, decay=1.0)


def test_pcg_accepts_kfac_as_preconditioner():
    from linsolve import pcg

    a, g = _batches(1, seed=10)[0]
    layer = KFAC(IN, OUT, damping=1e-1)
    layer.update(a, g)
    A, G = layer.factors
    F = np.kron(A, G) + 1e-1 * np.eye(OUT * (IN + 1))
    b = np.random.default_rng(11).standard_normal(F.shape[0])
    result = pcg(F, b, M=layer, rtol=1e-10)
    assert result.converged and result.iterations <= 2     # exact inverse: one step


def test_batched_layers_match_one_by_one(backend):
    from curvature.kronecker.kfac import precondition_layers

    xp = backend.xp
    rng = np.random.default_rng(12)
    layers = [KFAC(IN, OUT, damping=1e-2) for _ in range(3)]
    layers += [KFAC(3, 2), KFAC(3, 2, mode="inverse")]
    grads = []
    for layer in layers:
        layer.update(xp.asarray(rng.standard_normal((16, layer.in_features))),
                     xp.asarray(rng.standard_normal((16, layer.out_features))))
        grads.append(xp.asarray(rng.standard_normal((layer.rows, layer.cols))))
    batched = precondition_layers(layers, grads)
    for D, layer, grad in zip(batched, layers, grads):
        assert rel(to_numpy(D), to_numpy(layer.precondition(grad))) < 1e-12
