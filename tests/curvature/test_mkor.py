"""MKOR: the Sherman-Morrison chain against dense inverses, guards, resets, modes, strict.

Tolerance of the 200-step check: each SM step is backward stable with an
error ``~ n eps cond`` that the next steps multiply by at most ``1/gamma``
in unexcited directions and damp in excited ones; with ``n <= 8``,
``cond(F) < 100`` (asserted) the accumulated relative error measured is
~1e-14, so 1e-9 leaves a wide margin.
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

from curvature.kronecker.mkor import MKOR, sherman_morrison_step
from tests.problems import to_numpy

IN, OUT = 7, 5


def vec(V):
    return np.asarray(V).T.reshape(-1)


def rel(x, y):
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def test_paper_mode_tracks_the_exact_inverse_for_200_updates(backend):
    """The dense reference on every backend: numpy, array_api_strict, JAX."""
    xp = backend.xp
    gamma = 0.9
    rng = np.random.default_rng(0)
    layer = MKOR(IN, OUT, decay=gamma)
    A, G = np.eye(IN + 1), np.eye(OUT)
    for _ in range(200):
        a, g = rng.standard_normal((16, IN)) + 0.5, rng.standard_normal((16, OUT))
        layer.update(xp.asarray(a), xp.asarray(g))
        ab, gb = np.r_[a.mean(axis=0), 1.0], g.mean(axis=0)
        A = gamma * A + (1 - gamma) * np.outer(ab, ab)
        G = gamma * G + (1 - gamma) * np.outer(gb, gb)
    assert np.linalg.cond(A) < 1e3 and np.linalg.cond(G) < 1e3
    J_A, J_G = (to_numpy(J) for J in layer.inverses)
    assert rel(J_A, np.linalg.inv(A)) < 1e-9
    assert rel(J_G, np.linalg.inv(G)) < 1e-9
    for J in (J_A, J_G):
        assert np.max(np.abs(J - J.T)) <= 1e-14 * np.max(np.abs(J))
    assert layer.refused == layer.resets == 0
    # solve/matvec: kron(J_A, J_G) on the column-major vec, and its inverse
    v = rng.standard_normal(OUT * (IN + 1))
    x = to_numpy(layer.solve(xp.asarray(v)))
    assert rel(x, np.kron(J_A, J_G) @ v) < 1e-12
    assert rel(to_numpy(layer.matvec(xp.asarray(x))), v) < 1e-10


def test_zero_gradient_gives_no_nan_and_resets_on_blow_up():
    layer = MKOR(IN, OUT, decay=0.9, reset_threshold=1e6)
    zeros_a, zeros_g = np.zeros((4, IN)), np.zeros((4, OUT))
    grad_W = np.zeros((OUT, IN + 1))
    for _ in range(300):
        layer.update(zeros_a, zeros_g)
        D = layer.precondition(grad_W)
        assert np.all(np.isfinite(D)) and not np.any(D)
        for J in layer.inverses:
            assert np.all(np.isfinite(J))
    # J_G = 0.9^-t I grows past 1e6 after ~131 steps: reset to I (J_A keeps
    # the ones column's direction, so it grows more slowly only on the others)
    assert layer.resets >= 2
    assert np.max(np.abs(layer.inverses[1])) <= 1e6


def test_guard_refuses_a_near_singular_update():
    gamma = 0.9
    c = (1 - gamma) / gamma
    # An inverse that has lost definiteness: 1 + c v'Jv = 1e-14 (near zero).
    J = -np.eye(3)
    v = np.array([1.0, 0.0, 0.0]) * np.sqrt((1 - 1e-14) / c)
    J_new, ok = sherman_morrison_step(J, v, gamma)
    assert not ok and J_new is J
    # the healthy step next to it is taken
    J_new, ok = sherman_morrison_step(np.eye(3), v, gamma)
    dense = gamma * np.eye(3) + (1 - gamma) * np.outer(v, v)
    assert ok and np.allclose(J_new, np.linalg.inv(dense))
    # through the layer: an overflowing activation is refused, not propagated
    layer = MKOR(IN, OUT, decay=gamma)
    rng = np.random.default_rng(1)
    layer.update(rng.standard_normal((8, IN)), rng.standard_normal((8, OUT)))
    before = [J.copy() for J in layer.inverses]
    layer.update(np.full((8, IN), 1e160), rng.standard_normal((8, OUT)))
    assert layer.refused == 1
    assert np.array_equal(layer.inverses[0], before[0])
    assert all(np.all(np.isfinite(J)) for J in layer.inverses)


def test_norm_matched_direction_and_identity_start():
    layer = MKOR(IN, OUT)
    grad_W = np.random.default_rng(2).standard_normal((OUT, IN + 1))
    assert np.array_equal(layer.precondition(grad_W), grad_W)       # no update yet
    rng = np.random.default_rng(3)
    for _ in range(10):
        layer.update(rng.standard_normal((8, IN)), rng.standard_normal((8, OUT)))
    J_A, J_G = layer.inverses
    raw = J_G @ grad_W @ J_A
    D = layer.precondition(grad_W)
    assert np.allclose(D, raw * np.linalg.norm(grad_W) / np.linalg.norm(raw), rtol=1e-13)
    raw_layer = MKOR(IN, OUT, norm_match=False)
    raw_layer.load_state_dict(layer.state_dict())
    assert np.allclose(raw_layer.precondition(grad_W), raw, rtol=1e-13)


def _code_reference(batches, mixing=0.95, threshold=2.0, J=None, flags=None):
    """The authors' code (mkor/mkor.py) in dense float64: identity mixing *before*
    an undecayed unit-weight Sherman-Morrison step, reset flags at max|J| > 2."""
    J = [np.eye(IN + 1), np.eye(OUT)] if J is None else [X.copy() for X in J]
    flags = [True, True] if flags is None else list(flags)
    for a, g in batches:
        for i, v in enumerate((np.r_[a.mean(axis=0), 1.0], g.mean(axis=0))):
            if flags[i]:
                J[i], flags[i] = np.eye(len(v)), False
                continue
            M = mixing * J[i] + (1 - mixing) * np.eye(len(v))
            J[i] = np.linalg.inv(np.linalg.inv(M) + np.outer(v, v))
            if np.max(np.abs(J[i])) > threshold:
                flags = [True, True]
    return J


def test_code_form_is_the_authors_update_and_reinversion_is_exact():
    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((8, IN)), rng.standard_normal((8, OUT))) for _ in range(20)]
    code = MKOR(IN, OUT, decay=0.9, form="code")
    code.update(*batches[0])
    # the code's first update only sets the identity (the flags start raised)
    assert all(np.array_equal(J, np.eye(len(J))) for J in code.inverses)
    assert code.factors is None and code.resets == 0
    for a, g in batches[1:]:
        code.update(a, g)
    for J, ref in zip(code.inverses, _code_reference(batches)):
        assert rel(J, ref) < 1e-12
    # not the decayed paper step followed by mixing (the earlier reading)
    paper = MKOR(IN, OUT, decay=0.9)
    paper.update(*batches[1])
    mixed_after = 0.95 * paper.inverses[1] + 0.05 * np.eye(OUT)
    first = MKOR(IN, OUT, decay=0.9, form="code")
    first.update(*batches[0])
    first.update(*batches[1])
    assert rel(first.inverses[1], mixed_after) > 1e-3
    exact = MKOR(IN, OUT, decay=0.9, reinvert_every=5)
    for a, g in batches:
        exact.update(a, g)
    for J, F in zip(exact.inverses, exact.factors):
        assert np.allclose(J @ F, np.eye(F.shape[0]), atol=1e-12)
    with pytest.raises(ValueError, match="reinvert_every"):
        MKOR(IN, OUT, form="code", reinvert_every=5)


def test_code_form_reset_flags_follow_the_authors_rule():
    rng = np.random.default_rng(7)
    batches = [(rng.standard_normal((8, IN)), rng.standard_normal((8, OUT))) for _ in range(3)]
    layer = MKOR(IN, OUT, form="code")
    layer.update(*batches[0])
    big = [3.0 * np.eye(IN + 1), np.eye(OUT)]
    layer.load_state_dict({**layer.state_dict(), "J_A": big[0], "J_G": big[1],
                           "reset_flags": [False, False]})
    layer.update(*batches[1])
    J_A, J_G = layer.inverses
    assert np.max(np.abs(J_A)) > 2.0                       # the step is taken ...
    assert np.array_equal(J_G, np.eye(OUT))                # ... and flags G at once
    assert layer.resets == 1
    layer.update(*batches[2])
    assert np.array_equal(layer.inverses[0], np.eye(IN + 1)) and layer.resets == 2
    ref = _code_reference(batches[1:], J=big, flags=[False, False])
    for J, R in zip(layer.inverses, ref):
        assert rel(J, R) < 1e-12
    # a round trip keeps the flags and the form
    other = MKOR(IN, OUT, form="code")
    other.load_state_dict(layer.state_dict())
    assert other.factors is None and other._reset_flags == layer._reset_flags
    with pytest.raises(ValueError, match="form"):
        MKOR(IN, OUT).load_state_dict(layer.state_dict())


def test_norm_based_stabilizer_matches_the_dense_rule():
    gamma, epsilon, zeta = 0.9, 5.0, 0.8
    rng = np.random.default_rng(8)
    batches = [(rng.standard_normal((16, IN)), rng.standard_normal((16, OUT)))
               for _ in range(60)]
    layer = MKOR(IN, OUT, decay=gamma, stabilizer_threshold=epsilon, stabilizer_weight=zeta)
    kept = MKOR(IN, OUT, decay=gamma, stabilizer_threshold=epsilon, stabilizer_weight=zeta,
                reinvert_every=1000)       # keeps the factors (re-set at each mixing)
    F = [np.eye(IN + 1), np.eye(OUT)]
    J = [np.eye(IN + 1), np.eye(OUT)]
    fired = 0
    for a, g in batches:
        layer.update(a, g)
        kept.update(a, g)
        for i, v in enumerate((np.r_[a.mean(axis=0), 1.0], g.mean(axis=0))):
            if np.max(np.abs(J[i])) > epsilon:
                J[i] = zeta * J[i] + (1 - zeta) * np.eye(len(v))
                F[i] = np.linalg.inv(J[i])
                fired += 1
            F[i] = gamma * F[i] + (1 - gamma) * np.outer(v, v)
            J[i] = np.linalg.inv(F[i])
    assert fired > 5 and layer.stabilized == fired and layer.resets == 0
    assert layer.factors is None          # no O(d^2) factor for a mixed inverse
    for got, other, ref, factor in zip(layer.inverses, kept.inverses, J, kept.factors):
        assert rel(got, ref) < 1e-9 and np.array_equal(got, other)
        assert np.max(np.abs(got)) <= epsilon / gamma * 1.5
        assert np.allclose(got @ factor, np.eye(len(ref)), atol=1e-9)
    # without it the same data drives the inverses far above epsilon
    plain = MKOR(IN, OUT, decay=gamma)
    for a, g in batches:
        plain.update(a, g)
    assert max(np.max(np.abs(J)) for J in plain.inverses) > 5 * epsilon


def test_hybrid_falls_back_to_first_order():
    layer = MKOR(IN, OUT, hybrid=True, hybrid_window=3, hybrid_tolerance=0.01)
    rng = np.random.default_rng(5)
    layer.update(rng.standard_normal((8, IN)), rng.standard_normal((8, OUT)))
    grad_W = rng.standard_normal((OUT, IN + 1))
    for loss in (1.0, 0.8, 0.6, 0.5):     # decreasing fast: stays second order
        layer.observe_loss(loss)
    assert layer.phase == "second"
    assert not np.array_equal(layer.precondition(grad_W), grad_W)
    for loss in (0.5, 0.5, 0.5):          # stalls: switches, for good
        layer.observe_loss(loss)
    assert layer.phase == "first"
    assert np.array_equal(layer.precondition(grad_W), grad_W)
    # per step: a direction that is not a descent direction uses the gradient
    layer = MKOR(IN, OUT, hybrid=True)
    layer.load_state_dict({**layer.state_dict(), "J_A": -np.eye(IN + 1), "J_G": np.eye(OUT),
                           "F_A": np.eye(IN + 1), "F_G": np.eye(OUT)})
    assert np.array_equal(layer.precondition(grad_W), grad_W) and layer.fallbacks == 1


def test_state_round_trip_and_bad_input():
    rng = np.random.default_rng(6)
    batches = [(rng.standard_normal((8, IN)), rng.standard_normal((8, OUT))) for _ in range(6)]
    layer = MKOR(IN, OUT)
    for a, g in batches[:3]:
        layer.update(a, g)
    other = MKOR(IN, OUT)
    other.load_state_dict(layer.state_dict())
    for a, g in batches[3:]:
        layer.update(a, g)
        other.update(a, g)
    for J, K in zip(layer.inverses, other.inverses):
        assert np.array_equal(J, K)
    with pytest.raises(TypeError, match="floating"):
        layer.update(np.ones((2, IN), dtype=np.int32), np.ones((2, OUT)))
    with pytest.raises(ValueError, match="NaN"):
        layer.update(np.full((2, IN), np.nan), np.ones((2, OUT)))
    with pytest.raises(ValueError, match="shape"):
        layer.update(np.ones((2, IN + 1)), np.ones((2, OUT)))
    with pytest.raises(ValueError, match="form"):
        MKOR(IN, OUT, form="fp16")
    with pytest.raises(ValueError, match="decay"):
        MKOR(IN, OUT, decay=0.0)


@pytest.mark.parametrize("gamma", [0.0, -0.5, 1.5, float("nan")])
def test_sherman_morrison_step_refuses_gamma_outside_0_1(gamma):
    with pytest.raises(ValueError, match="gamma"):
        sherman_morrison_step(np.eye(2), np.ones(2), gamma)


def test_sherman_morrison_step_gamma_one_keeps_J():
    J = np.array([[2.0, 0.5], [0.5, 1.0]])
    J_new, ok = sherman_morrison_step(J, np.ones(2), 1.0)
    assert ok and np.array_equal(J_new, J)


@pytest.mark.parametrize("v, error, match", [
    (np.ones(3), ValueError, r"shape \(2,\)"),
    (np.ones((2, 1)), ValueError, r"shape \(2,\)"),
    (np.array([1.0, np.nan]), ValueError, "NaN or Inf"),
    (np.array([1, 2]), TypeError, "real floating"),
    (np.array([1.0 + 1j, 0.0]), TypeError, "real floating"),
    (array_api_strict.ones(2, dtype=array_api_strict.float64), TypeError, "one array library"),
])
def test_sherman_morrison_step_checks_v(v, error, match):
    with pytest.raises(error, match=match):
        sherman_morrison_step(np.eye(2), v, 0.5)
