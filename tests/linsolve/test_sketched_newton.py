"""sketched_newton: HS6 and HS28 reach their solutions; every accepted step obeys the paper's tests."""

from __future__ import annotations

import numpy as np
import pytest

from linsolve.sketch.constrained import ConstrainedProblem, constrained_problem
from linsolve.result import HISTORY_FIELDS
from linsolve.sketch.newton import HISTORY_COLUMNS, sketched_newton

HS28 = constrained_problem(lambda x: (x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2,
                           lambda x: [x[0] + 2 * x[1] + 3 * x[2] - 1], name="HS28")
HS6 = constrained_problem(lambda x: (1 - x[0]) ** 2, lambda x: [10 * (x[1] - x[0] ** 2)],
                          name="HS6")


def _assert_descent_and_armijo(result):
    h = result.history
    beta = result.extra["armijo"]
    accepted = slice(1, None)  # row 0 is the start
    dd, bound = h["directional_derivative"][accepted], h["descent_bound"][accepted]
    assert np.all(dd <= bound), "a direction failed the descent test"
    assert np.all(bound < 0)
    rhs = h["merit_previous"][accepted] + beta * h["step"][accepted] * dd
    assert np.all(h["merit"][accepted] <= rhs), "an accepted step failed the Armijo test"
    assert np.all((h["step"][accepted] > 0) & (h["step"][accepted] <= 1))


@pytest.mark.parametrize("problem, x0, x_star", [
    (HS28, [-4.0, 1.0, 1.0], [0.5, -0.5, 0.5]),
    (HS6, [-1.2, 1.0], [1.0, 1.0]),
])
def test_reaches_the_solution_with_kaczmarz_inner_solves(problem, x0, x_star):
    result = sketched_newton(problem, np.array(x0), seed=0, gtol=1e-4)
    assert result.converged and result.reason == "CONVERGED_KKT", result.message
    h = result.history
    assert h["kkt_residual"][-1] <= 1e-4
    np.testing.assert_allclose(result.x, x_star, atol=1e-4)
    assert abs(result.fun) <= 1e-7
    _assert_descent_and_armijo(result)
    # the inner (sketch) steps are reported and capped
    assert np.all(h["inner_iterations"][1:] >= 1)
    assert np.all(h["inner_iterations"] <= 20_000)
    assert set(HISTORY_FIELDS + HISTORY_COLUMNS) <= set(h)
    assert all(len(column) == result.iterations + 1 for column in h.values())


def test_block_sketch_and_tight_tolerance():
    result = sketched_newton(HS6, np.array([-1.2, 1.0]), sketch="gaussian", sketch_size=3,
                             seed=1, gtol=1e-10)
    assert result.converged
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-8)
    _assert_descent_and_armijo(result)
    # multipliers: grad f + G' lam = 0 at the solution
    lam = result.extra["lam"]
    x = result.x
    assert np.linalg.norm(HS6.grad(x) + HS6.jac(x).T @ lam) <= 1e-10


def test_hessian_is_modified_when_the_reduced_hessian_is_indefinite():
    # f = x0^4/4 - x0^2/2 + x1^2 on x1 = 0: reduced Hessian 3 x0^2 - 1 < 0 near x0 = 0
    problem = constrained_problem(lambda x: x[0] ** 4 / 4 - x[0] ** 2 / 2 + x[1] ** 2,
                                  lambda x: [x[1]])
    result = sketched_newton(problem, np.array([0.1, 0.5]), seed=0, sketch="gaussian",
                             sketch_size=3)
    assert result.converged
    assert result.history["hessian_shift"][1] > 0
    np.testing.assert_allclose(abs(result.x[0]), 1.0, atol=1e-6)
    np.testing.assert_allclose(result.fun, -0.25, atol=1e-10)
    _assert_descent_and_armijo(result)


def test_limits_give_reasons_not_hangs():
    result = sketched_newton(HS6, np.array([-1.2, 1.0]), seed=0, maxiter=1)
    assert not result.converged and result.reason == "DIVERGED_ITS"
    assert result.iterations == 1
    capped = sketched_newton(HS6, np.array([-1.2, 1.0]), seed=1, max_inner=3, maxiter=5)
    assert capped.reason == "DIVERGED_ITS" and capped.iterations == 5, capped.message
    h = capped.history
    inner, reached, target = (h[key][1:] for key in
                              ("inner_iterations", "sketch_residual", "accuracy"))
    assert np.all((inner >= 1) & (inner <= 3))
    # the accuracy reached is recorded beside the target: above it only when
    # the cap cut the solve short (here at least once)
    assert np.all((reached <= target * (1 + 1e-12)) | (inner == 3))
    assert np.any(reached > target)
    _assert_descent_and_armijo(capped)


def test_spent_inner_budget_stops_without_inflating_the_penalty():
    # HS28 from the usual start, one Kaczmarz step per iteration: the step
    # is not a descent direction and dx'G'c >= 0, so no eta1 helps. The
    # solver stops in the first round instead of multiplying eta1 by 10 in
    # each of the max_descent_tries rounds that can do no sketch work.
    result = sketched_newton(HS28, np.array([-4.0, 1.0, 1.0]), seed=0, max_inner=1)
    assert result.reason == "DIVERGED_BREAKDOWN" and result.iterations == 0
    assert "max_inner = 1" in result.message and "raise max_inner" in result.message
    assert result.extra["eta1"] == 1.0 and result.extra["eta2"] == 1.0
    assert result.extra["inner_total"] == 1


def test_line_search_with_only_non_finite_trials_reports_nan():
    x_start = np.array([-4.0, 1.0, 1.0])

    def objective(x):  # finite only at the start: every trial step gives NaN
        value = (x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2
        return value if np.array_equal(np.real(x), x_start) else value * np.nan

    problem = constrained_problem(objective, lambda x: [x[0] + 2 * x[1] + 3 * x[2] - 1],
                                  grad=lambda x: np.array([2 * (x[0] + x[1]),
                                                           2 * (x[0] + 2 * x[1] + x[2]),
                                                           2 * (x[1] + x[2])]))
    result = sketched_newton(problem, x_start, seed=0, max_backtracks=3)
    assert result.reason == "DIVERGED_NANORINF" and not result.converged
    assert "every one of the 4 trial steps" in result.message


def test_already_optimal_start_and_explicit_multipliers():
    result = sketched_newton(HS28, np.array([0.5, -0.5, 0.5]), np.array([0.0]), seed=0)
    assert result.converged and result.iterations == 0
    assert result.n_hess == 0 and result.n_fun == 1


def test_seeded_runs_repeat():
    a = sketched_newton(HS28, np.array([-4.0, 1.0, 1.0]), seed=3)
    b = sketched_newton(HS28, np.array([-4.0, 1.0, 1.0]), seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.history["inner_iterations"], b.history["inner_iterations"])


def test_protocol_and_complex_step_derivatives():
    assert isinstance(HS28, ConstrainedProblem)
    problem = constrained_problem(lambda x: np.sin(x[0]) * x[1] ** 3, lambda x: [x[0] ** 2 * x[1]])
    x = np.array([0.3, 1.2])
    np.testing.assert_allclose(problem.grad(x), [np.cos(0.3) * 1.2 ** 3,
                                                 3 * np.sin(0.3) * 1.2 ** 2], rtol=1e-14)
    np.testing.assert_allclose(problem.jac(x), [[2 * 0.3 * 1.2, 0.3 ** 2]], rtol=1e-14)
    lam = np.array([2.0])
    exact = np.array([[-np.sin(0.3) * 1.2 ** 3 + 2 * 2 * 1.2, 3 * np.cos(0.3) * 1.44 + 2 * 2 * 0.3],
                      [3 * np.cos(0.3) * 1.44 + 2 * 2 * 0.3, 6 * np.sin(0.3) * 1.2]])
    np.testing.assert_allclose(problem.hess_lagrangian(x, lam), exact, rtol=1e-8)


def test_misuse_raises():
    x0 = np.array([-4.0, 1.0, 1.0])
    with pytest.raises(TypeError, match="callable fun"):
        sketched_newton(object(), x0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        sketched_newton(HS28, x0, tol=1e-3)
    with pytest.raises(ValueError, match="x0"):
        sketched_newton(HS28, np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        sketched_newton(HS28, np.array([np.nan, 1.0, 1.0]))
    with pytest.raises(ValueError, match="lam0"):
        sketched_newton(HS28, x0, np.ones(2))
    wrong = constrained_problem(lambda x: x @ x, lambda x: [x[0]], grad=lambda x: np.ones(2))
    with pytest.raises(ValueError, match="grad"):
        sketched_newton(wrong, x0)
    with pytest.raises(ValueError, match="sketch"):
        sketched_newton(HS28, x0, sketch="srht")
    for key, value in (("accuracy", 1.5), ("eta1", -1.0), ("armijo", 0.0), ("maxiter", -1),
                       ("penalty_growth", 1.0), ("max_inner", 0)):
        with pytest.raises(ValueError, match=key):
            sketched_newton(HS28, x0, **{key: value})
    with pytest.raises(TypeError, match="callable"):
        constrained_problem(1.0, lambda x: x)


def test_non_finite_hessian_is_a_reason_not_an_exception():
    problem = constrained_problem(lambda x: x @ x, lambda x: [x[0] + x[1] - 1],
                                  hess_lagrangian=lambda x, lam: np.full((2, 2), np.nan))
    result = sketched_newton(problem, np.array([3.0, -1.0]), seed=0)
    assert result.reason == "DIVERGED_NANORINF" and "Hessian" in result.message


def _changing_constraint(calls_before_change: int):
    """x0 + x1 = 1, which gains a second value after ``calls_before_change`` calls."""
    calls = []

    def cons(x):
        calls.append(None)
        extra = [x[0]] if len(calls) > calls_before_change else []
        return [x[0] + x[1] - 1] + extra

    return constrained_problem(lambda x: x[0] ** 2 + x[1] ** 2, cons)


@pytest.mark.parametrize("calls_before_change, where", [
    (2, r"cons returned shape \(2,\) at x \+ i h e_1 but \(1,\) at x \+ i h e_0"),  # complex step
    (3, r"cons returned 2 values near x but 1 at the point the multipliers belong to"),  # FD Hessian
    (11, r"problem\.cons/jac returned shapes \(2,\)/\(2, 2\), expected \(1,\)/\(1, 2\)"),  # next x
])
def test_constraint_that_changes_shape_is_refused_by_name(calls_before_change, where):
    with pytest.raises(ValueError, match=where):
        sketched_newton(_changing_constraint(calls_before_change), np.array([2.0, 0.0]), seed=0)
    # the same problem without the change is solved: x = (1/2, 1/2)
    result = sketched_newton(_changing_constraint(10**9), np.array([2.0, 0.0]), seed=0)
    assert result.converged and np.allclose(result.x, [0.5, 0.5], atol=1e-6)
