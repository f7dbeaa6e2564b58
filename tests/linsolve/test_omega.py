"""Omega tuners (SPEC section 3): learner invariants, learning, save/restore, Young's omega."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from linsolve.tuning.omega import (DEFAULT_OMEGAS, OmegaBandit, OmegaContextualBandit,
                            jacobi_spectral_radius, young_omega)
from linsolve.tuning.tsallis import (TsallisState, tsallis_distribution, tsallis_init,
                                    tsallis_loss_estimates, tsallis_probabilities,
                                    tsallis_update)
from linsolve.tuning.contextual import (chebcb_distribution, chebcb_gamma, chebcb_init,
                                       chebyshev_features, squarecb_probabilities)

from tests.problems import poisson2d

SUM_TOL = 1e-10

finite_losses = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40)
etas = st.floats(1e-8, 1e8)


def assert_tsallis_invariants(losses, eta):
    p, x = tsallis_probabilities(losses, eta)
    assert abs(p.sum() - 1.0) <= SUM_TOL
    assert np.all(p > 0)
    assert x < np.min(losses)
    return p, x


# -- the normaliser search -----------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(finite_losses, etas)
def test_tsallis_probabilities_invariants(losses, eta):
    assert_tsallis_invariants(losses, eta)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30), st.floats(1e-3, 1e3))
def test_tsallis_probabilities_match_formula(losses, eta):
    # p_i = 4 / (eta (L_i - x))^2: x is computed as min L - 2z/eta, so L_i - x
    # carries an absolute rounding error of about eps * max|L|; relative to
    # L_i - x >= 2/eta that is below eps * 1e3 * 1e3 / 2.
    p, x = assert_tsallis_invariants(losses, eta)
    formula = 4.0 / (eta * (np.asarray(losses) - x)) ** 2
    np.testing.assert_allclose(p, formula, rtol=1e-8, atol=0)


def test_tsallis_probabilities_is_the_regularised_leader():
    # p minimises <p, L> - (4/eta) sum sqrt(p) over the simplex: any feasible
    # perturbation increases the objective.
    rng = np.random.default_rng(0)
    losses, eta = rng.normal(size=6) * 3, 0.7
    p, _ = tsallis_probabilities(losses, eta)

    def objective(q):
        return q @ losses - 4.0 / eta * np.sqrt(q).sum()

    for _ in range(100):
        direction = rng.normal(size=6)
        direction -= direction.mean()
        q = p + 1e-3 * direction / np.abs(direction).max() * p.min()
        assert objective(q) >= objective(p) - 1e-14


@pytest.mark.parametrize("losses, eta", [
    ([0.0], 1.0),                                  # one arm
    ([5.0], 1e-9),
    ([3.0] * 50, 2.0),                             # all tied
    ([1.0, 1.0, 1e6], 1e8),                        # two tied best, one far
    ([0.0, 1e-12, 2e-12], 1e12),                   # tiny gaps, huge eta
    ([0.0, 1.0, 2.0], 1e-12),                      # tiny eta: nearly uniform
    ([-1e300, 1e300], 1.0),                        # gaps overflow
    ([0.0, 1.0], 1e300),                           # eta * gap overflows
    (list(np.linspace(0, 1, 1000)), 50.0),         # many arms
    ([1e15, 1e15 + 2.0], 1e3),                     # large offset
    ([-50.0, -40.0], 2.0),                         # min L < -1: the authors' start overshoots
])
def test_tsallis_probabilities_adversarial(losses, eta):
    p, x = assert_tsallis_invariants(losses, eta)
    if len(set(losses)) == 1:
        np.testing.assert_allclose(p, 1.0 / len(losses), rtol=1e-14)
        assert x == pytest.approx(losses[0] - 2 * math.sqrt(len(losses)) / eta, rel=1e-14)


def test_authors_newton_start_overshoots():
    # learners/TsallisINF.m: 20 Newton steps from x = -1. With min L = -50 the
    # start is above min L and the iteration never returns below it; the
    # safeguarded search starts at min L - 2/eta and stays there.
    losses, eta = np.array([-50.0, -40.0]), 2.0
    x = -1.0
    with np.errstate(all="ignore"):
        for _ in range(20):
            probs = 4 * (eta * (losses - x)) ** -2.0
            x = x - (probs.sum() - 1) / (eta * (probs**1.5).sum())
    assert not x < losses.min()
    assert tsallis_probabilities(losses, eta)[1] < losses.min()


@pytest.mark.parametrize("losses, eta", [([], 1.0), ([[0.0, 1.0]], 1.0), ([0.0, np.nan], 1.0),
                                         ([0.0, np.inf], 1.0), ([0.0], 0.0), ([0.0], -1.0),
                                         ([0.0], np.inf), ([0.0], np.nan)])
def test_tsallis_probabilities_rejects(losses, eta):
    with pytest.raises(ValueError):
        tsallis_probabilities(losses, eta)


# -- Tsallis-INF state and update ------------------------------------------------------

def test_normalisation_matches_spec():
    # loss estimate = accumulated importance-weighted (c - 1) / (mean cost - 1)
    state = tsallis_init(3)
    p0 = tsallis_distribution(state)[0]
    state = tsallis_update(state, 1, 21.0)
    state = tsallis_update(state, 1, 41.0)
    p1 = tsallis_distribution(tsallis_update(tsallis_init(3), 1, 21.0))[0]
    expected_sums = [0.0, 20.0 / p0[1] + 40.0 / p1[1], 0.0]
    np.testing.assert_allclose(state.importance_sums, expected_sums, rtol=1e-14)
    assert state.t == 3 and state.cost_sum == 62.0
    np.testing.assert_allclose(tsallis_loss_estimates(state), np.array(expected_sums) / 30.0,
                               rtol=1e-14)


def test_tsallis_update_is_pure():
    state = tsallis_init(4)
    before = state.importance_sums.copy()
    new = tsallis_update(state, 2, 10.0)
    np.testing.assert_array_equal(state.importance_sums, before)
    assert new is not state and state.t == 1


def test_all_costs_one_keeps_scale_finite():
    state = tsallis_init(3)
    for arm in (0, 1, 2, 0):
        state = tsallis_update(state, arm, 1.0)
        p, x = tsallis_distribution(state)
        np.testing.assert_allclose(p, 1 / 3, rtol=1e-14)
    state = tsallis_update(state, 0, 0.0)  # a b = 0 solve: zero iterations
    assert_tsallis_invariants(tsallis_loss_estimates(state), 2 / math.sqrt(state.t))


costs = st.lists(st.floats(0.0, 1e4), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(costs, st.integers(0, 2**32 - 1))
def test_bandit_invariants_every_round(cost_sequence, seed):
    tuner = OmegaBandit(seed=seed)
    for cost in cost_sequence:
        losses = tsallis_loss_estimates(tuner.state)
        p, x = assert_tsallis_invariants(losses, 2 / math.sqrt(tuner.state.t))
        np.testing.assert_array_equal(tuner.probabilities(), p)
        arm, omega = tuner.choose()
        assert omega == DEFAULT_OMEGAS[arm]
        tuner.update(cost)
    assert [r.cost for r in tuner.history] == cost_sequence


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1.0, 3.0), st.floats(0.0, 1e4)), min_size=1, max_size=40),
       st.sampled_from(["tsallis-bins", "chebcb"]), st.integers(0, 2**32 - 1))
def test_contextual_invariants_every_round(rounds, method, seed):
    tuner = OmegaContextualBandit((-1.0, 3.0), omegas=[1.0, 1.3, 1.6, 1.9], method=method,
                                  n_bins=3, degree=4, seed=seed)
    for context, cost in rounds:
        p = tuner.probabilities(context)
        assert abs(p.sum() - 1) <= SUM_TOL and np.all(p > 0)
        if method == "chebcb":
            assert math.isfinite(chebcb_gamma(tuner.state, 4, 4.0))
        tuner.choose(context)
        tuner.update(cost)
    assert [(r.context, r.cost) for r in tuner.history] == rounds


def test_tsallis_concentrates_on_best_arm():
    # stochastic bandit: cost of arm i ~ 40 + 10 |i - 6| + noise, best arm 6.
    # Over seeds 0-7 the last 1000 rounds play arm 6 89-98% of the time.
    rng = np.random.default_rng(1)
    tuner = OmegaBandit(np.linspace(1.0, 1.9, 10), seed=2)
    means = 40.0 + 10.0 * np.abs(np.arange(10) - 6)
    for _ in range(3000):
        arm, _ = tuner.choose()
        tuner.update(max(means[arm] + 5.0 * rng.standard_normal(), 1.0))
    arms = np.array([r.arm for r in tuner.history])
    assert int(tuner.probabilities().argmax()) == 6
    assert np.mean(arms[-1000:] == 6) > 0.75
    assert np.mean(means[arms[-1000:]]) < means[6] + 3.0
    assert np.mean(arms[-1000:] == 6) > np.mean(arms[:300] == 6)


def contextual_cost(omega, context, rng):
    # best omega moves from 1.1 (context 0) to 1.9 (context 1)
    return 30.0 + 200.0 * (omega - 1.1 - 0.8 * context) ** 2 + 2.0 * rng.standard_normal()


@pytest.mark.parametrize("method", ["chebcb", "tsallis-bins"])
def test_contextual_recovers_context_dependent_best_arm(method):
    rng = np.random.default_rng(3)
    omegas = np.linspace(1.0, 1.95, 20)
    tuner = OmegaContextualBandit((0.0, 1.0), omegas, method=method, n_bins=5, seed=4)
    for _ in range(3000):
        context = rng.random()
        _, omega = tuner.choose(context)
        tuner.update(contextual_cost(omega, context, rng))
    tail = tuner.history[-600:]
    # excess cost over the best omega per context, against the best fixed omega's
    # (over seeds 0-4: ratio 0.02-0.03 for ChebCB, 0.39-0.48 for 5 bins)
    regret = np.mean([200 * (r.omega - 1.1 - 0.8 * r.context) ** 2 for r in tail])
    best_fixed = min(np.mean([200 * (w - 1.1 - 0.8 * r.context) ** 2 for r in tail])
                     for w in omegas)
    assert regret < (0.2 if method == "chebcb" else 0.7) * best_fixed
    if method == "chebcb":
        for context in (0.1, 0.5, 0.9):
            chosen = omegas[tuner.probabilities(context).argmax()]
            assert abs(chosen - (1.1 + 0.8 * context)) <= 0.1


def test_chebyshev_features_and_squarecb():
    s = 0.3
    np.testing.assert_allclose(chebyshev_features(0.65, 0.0, 1.0, 5),
                               [math.cos(j * math.acos(s)) for j in range(6)], rtol=1e-14)
    p = squarecb_probabilities([2.0, 1.0, 5.0], gamma=4.0)
    np.testing.assert_allclose(p, [1 / 7, 1 - 1 / 7 - 1 / 19, 1 / 19], rtol=1e-14)
    state = chebcb_init(3, 2)
    p, yhat = chebcb_distribution(state, chebyshev_features(0.5, 0, 1, 2), 2, 1.0, 1.0)
    np.testing.assert_allclose(p, 1 / 3, rtol=1e-14)
    assert not yhat.any()


# -- save / restore ------------------------------------------------------------------

def make_tuners(seed):
    return [OmegaBandit(seed=seed),
            OmegaContextualBandit((0.0, 1.0), method="tsallis-bins", seed=seed),
            OmegaContextualBandit((0.0, 1.0), method="chebcb", seed=seed)]


def play(tuner, rounds, rng, stop_pending=False):
    choices = []
    for k in range(rounds):
        context = rng.random()
        arm, omega = tuner.choose(context)
        choices.append(arm)
        if stop_pending and k == rounds - 1:
            return choices, context, omega
        tuner.update(contextual_cost(omega, context, rng))
    return choices, None, None


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("through_json", [False, True])
def test_state_dict_round_trip_gives_identical_future(index, through_json):
    reference = make_tuners(7)[index]
    play(reference, 150, np.random.default_rng(0))
    saved = reference.state_dict()
    if through_json:
        saved = json.loads(json.dumps(saved))
    rng_state = np.random.default_rng(1).bit_generator.state
    expected, _, _ = play(reference, 150, np.random.default_rng(1))

    restored = type(reference).from_state_dict(saved)
    rng = np.random.default_rng(1)
    rng.bit_generator.state = rng_state
    assert play(restored, 150, rng)[0] == expected
    assert restored.history == reference.history
    assert json.dumps(restored.state_dict()) == json.dumps(reference.state_dict())

    # load_state_dict into an existing, differently advanced tuner of the same config
    other = make_tuners(99)[index]
    play(other, 20, np.random.default_rng(5))
    other.load_state_dict(saved)
    assert play(other, 150, np.random.default_rng(1))[0] == expected


def test_state_dict_with_pending_choice():
    tuner = OmegaBandit(seed=3)
    rng = np.random.default_rng(0)
    play(tuner, 30, rng)
    arm, omega = tuner.choose()
    saved = json.loads(json.dumps(tuner.state_dict()))
    tuner.update(70.0)
    clone = OmegaBandit.from_state_dict(saved)
    clone.update(70.0)
    assert clone.history[-1] == tuner.history[-1]
    assert clone.choose() == tuner.choose()


def test_load_state_dict_rejects_other_configuration():
    saved = OmegaBandit(seed=0).state_dict()
    with pytest.raises(ValueError, match="configuration"):
        OmegaBandit(np.linspace(1, 1.9, 5)).load_state_dict(saved)
    with pytest.raises(ValueError, match="state dict"):
        OmegaContextualBandit((0, 1)).load_state_dict(saved)


# -- misuse raises --------------------------------------------------------------------

@pytest.mark.parametrize("omegas", [[], [1.0, 2.0], [0.0, 1.0], [-0.5], [1.0, np.nan],
                                    [[1.0, 1.5]]])
def test_bad_grid_raises(omegas):
    with pytest.raises(ValueError):
        OmegaBandit(omegas)
    with pytest.raises(ValueError):
        OmegaContextualBandit((0.0, 1.0), omegas)


@pytest.mark.parametrize("kwargs", [dict(method="ucb"), dict(n_bins=0), dict(degree=-1),
                                    dict(ridge=0.0), dict(context_range=(1.0, 0.0)),
                                    dict(context_range=(0.0, np.inf)), dict(context_range=3.0)])
def test_bad_contextual_arguments_raise(kwargs):
    kwargs = {"context_range": (0.0, 1.0), **kwargs}
    with pytest.raises(ValueError):
        OmegaContextualBandit(**kwargs)


@pytest.mark.parametrize("method", ["tsallis-bins", "chebcb"])
def test_bad_context_raises(method):
    tuner = OmegaContextualBandit((0.0, 1.0), method=method)
    for context in (-0.01, 1.01, np.nan):
        with pytest.raises(ValueError, match="outside"):
            tuner.choose(context)
    with pytest.raises(ValueError, match="needs a context"):
        tuner.choose()
    with pytest.raises(TypeError):
        tuner.choose("a")
    tuner.choose(0.0)
    tuner.update(10.0, context=0.0)  # the same context is accepted
    tuner.choose(1.0)
    with pytest.raises(ValueError, match="differs"):
        tuner.update(10.0, context=0.5)


def test_protocol_misuse_raises():
    tuner = OmegaBandit(seed=0)
    with pytest.raises(RuntimeError, match="choose"):
        tuner.update(3.0)
    tuner.choose()
    with pytest.raises(RuntimeError, match="twice"):
        tuner.choose()
    for cost in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="cost"):
            tuner.update(cost)
    with pytest.raises(TypeError):
        tuner.update("many")
    with pytest.raises(ValueError):
        tuner.observe(20, 3.0)


def test_cancel_withdraws_the_choice_and_rewinds_the_generator():
    tuner, twin = OmegaBandit(seed=0), OmegaBandit(seed=0)
    with pytest.raises(RuntimeError, match="pending"):
        tuner.cancel()
    first = tuner.choose()
    tuner.cancel()
    assert tuner.choose() == first == twin.choose()  # the same draw again
    tuner.update(10.0)
    twin.update(10.0)
    assert tuner.state_dict() == twin.state_dict()


def test_observe_without_choose():
    a, b = OmegaBandit(seed=0), OmegaBandit(seed=0)
    p = a.probabilities()
    a.observe(4, 30.0)
    b.state = tsallis_update(b.state, 4, 30.0, p[4])
    np.testing.assert_array_equal(a.state.importance_sums, b.state.importance_sums)
    assert a.history[0].arm == 4 and isinstance(a.state, TsallisState)


# -- Young's omega ----------------------------------------------------------------------

@pytest.mark.parametrize("N, shift", [(10, 0.0), (30, 0.0), (10, -0.15), (10, 0.45)])
def test_young_omega_poisson_closed_form(N, shift):
    # eigenvalues of the 5-point Laplacian: 4 - 2cos(i pi h) - 2cos(j pi h); the
    # Jacobi matrix of A + c I has spectral radius 4 cos(pi h) / (4 + c).
    A = poisson2d(N) + shift * sp.eye(N * N)
    h = 1.0 / (N + 1)
    rho = 4.0 * math.cos(math.pi * h) / (4.0 + shift)
    assert jacobi_spectral_radius(A) == pytest.approx(rho, abs=1e-9)
    assert young_omega(A) == pytest.approx(2 / (1 + math.sqrt(1 - rho**2)), abs=1e-8)
    if shift == 0.0:
        assert young_omega(A) == pytest.approx(2 / (1 + math.sin(math.pi * h)), abs=1e-8)


def test_young_omega_small_and_bad_inputs():
    assert young_omega(np.array([[2.0, -1.0], [-1.0, 2.0]])) == pytest.approx(
        2 / (1 + math.sqrt(1 - 0.25)), rel=1e-14)
    with pytest.raises(ValueError, match="rho_J < 1"):
        young_omega(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="positive diagonal"):
        young_omega(np.array([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="square"):
        young_omega(np.ones((2, 3)))


# -- .solve with the real solvers (skipped until linsolve.sor exists) ----------------------

@pytest.fixture
def sor_module():
    return pytest.importorskip("linsolve.sor")


def test_solve_learns_from_sor_iterations(sor_module):
    A = poisson2d(8)
    rng = np.random.default_rng(0)
    tuner = OmegaBandit(seed=0)
    for _ in range(5):
        b = rng.standard_normal(64)
        result = tuner.solve(A, b)
        assert result.converged
        reference = sor_module.sor(A, b, result.extra["omega"], rtol=1e-8)
        assert result.iterations == reference.iterations == result.extra["cost"]
        assert tuner.history[-1].cost == result.iterations
        assert tuner.history[-1].omega == result.extra["omega"]
    assert tuner.state.t == 6


def test_solve_non_converged_costs_the_cap(sor_module):
    tuner = OmegaBandit(seed=0)
    result = tuner.solve(poisson2d(8), np.ones(64), maxiter=3)
    assert not result.converged and result.extra["cost"] == 3 == tuner.history[-1].cost


def test_solve_ssor_pcg_and_contextual(sor_module):
    A = poisson2d(8)
    tuner = OmegaContextualBandit((0.0, 1.0), method="chebcb", seed=0)
    result = tuner.solve(A + 0.5 * sp.eye(64), np.ones(64), context=0.5, solver="ssor-pcg")
    assert result.converged and tuner.history[-1].context == 0.5
    assert np.linalg.norm(np.ones(64) - (A + 0.5 * sp.eye(64)) @ result.x) <= 1e-8 * 8
    with pytest.raises(ValueError, match="context"):
        tuner.solve(A, np.ones(64))


def test_solve_failure_leaves_tuner_unchanged(sor_module):
    tuner = OmegaBandit(seed=0)
    before = json.dumps(tuner.state_dict())
    with pytest.raises(ValueError):
        tuner.solve(poisson2d(4), np.ones(5))  # wrong shape: the solver raises
    with pytest.raises(ValueError, match="solver"):
        tuner.solve(poisson2d(4), np.ones(16), solver="gmres")
    assert json.dumps(tuner.state_dict()) == before
