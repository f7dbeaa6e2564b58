"""bench.sketch and bench.hock_schittkowski: problem data, logistic regression, the command (fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bench.sketch
from bench.hock_schittkowski import ConstrainedBenchProblem, hock_schittkowski_problems
from bench.sketch import (KKT_TOLERANCE, SKETCH_COLUMNS, SOLVED_BY_KKT, SOLVED_BY_OBJECTIVE,
                          kkt_residual, logistic_regression_problem, pde_control_problem, run_one,
                          run_sketch_command, sketch_parser)
from linsolve.sketch.newton import sketched_newton

S2 = np.sqrt(2.0)
# published minimizers (Hock and Schittkowski 1981), to check the transcription
MINIMIZERS = {
    "HS6": [1, 1], "HS7": [0, np.sqrt(3)], "HS26": [1, 1, 1], "HS27": [-1, 1, 0],
    "HS28": [0.5, -0.5, 0.5], "HS39": [1, 1, 0, 0], "HS42": [2, 2, 0.6 * S2, 0.8 * S2],
    "HS46": [1] * 5, "HS47": [1] * 5, "HS48": [1] * 5, "HS49": [1] * 5, "HS50": [1] * 5,
    "HS51": [1] * 5, "HS52": np.array([-33, 11, 180, -158, 11]) / 349,
    "HS56": [2.4, 1.2, 1.2, np.arcsin(np.sqrt(4 / 7)), np.arcsin(np.sqrt(2 / 7)),
             np.arcsin(np.sqrt(2 / 7)), np.pi / 2],
    "HS61": [5.326770157, -2.118998639, 3.210464239], "BT1": [1, 0],
}


def test_problem_set_matches_the_published_minimizers():
    problems = {p.name: p for p in hock_schittkowski_problems()}
    assert {"HS6", "HS7", "HS8", "HS9", "HS26", "HS27", "HS28", "HS39", "HS40", "HS42", "HS46",
            "HS47", "HS48", "HS49", "HS50", "HS51", "HS52", "HS56", "HS61", "HS77", "HS78",
            "HS79", "BT1"} == set(problems)
    for name, x_star in MINIMIZERS.items():
        p = problems[name]
        x = np.asarray(x_star, dtype=float)
        assert abs(p.problem.fun(x) - p.f_star) <= 1e-7 * max(1, abs(p.f_star)), name
        assert np.linalg.norm(p.problem.cons(x)) <= 1e-7, name
        assert kkt_residual(p.problem, x) <= 1e-6, name
    for p in problems.values():
        assert p.x0.shape == (p.n,) and p.problem.jac(p.x0).shape == (p.m, p.n)


def test_constrained_logistic_regression_reaches_1e4_within_20_iterations():
    pytest.importorskip("sklearn")
    bench = logistic_regression_problem()
    result = sketched_newton(bench.problem, bench.x0, seed=0, gtol=1e-4, maxiter=20)
    assert result.converged and result.iterations <= 20, result.message
    assert result.history["kkt_residual"][-1] <= 1e-4
    assert kkt_residual(bench.problem, result.x) <= 1e-4
    x = result.x
    assert abs(x @ x - 1) <= 1e-4  # on the sphere


def test_pde_control_matches_the_direct_solution():
    bench = pde_control_problem(4)
    row = run_one("block", bench, maxiter=30)
    assert row["solved"] and row["kkt_residual"] <= 1e-6


def test_sketch_command_quick_writes_the_table(tmp_path, capsys):
    args = sketch_parser("bench sketch").parse_args(
        ["--quick", "--methods", "kaczmarz,gaussian,SLSQP", "--out", str(tmp_path)])
    assert run_sketch_command(args) == 0
    printed = capsys.readouterr().out
    assert "HS28" in printed and "solved:" in printed
    payload = json.loads((tmp_path / "sketch.json").read_text())
    assert payload["columns"] == list(SKETCH_COLUMNS)
    assert len(payload["rows"]) == 4 * 3
    assert all(row["solved"] for row in payload["rows"] if row["method"] != "kaczmarz")
    header = (tmp_path / "sketch.csv").read_text().splitlines()[0]
    assert header.split(",") == list(SKETCH_COLUMNS)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "cg"], "unknown methods"),
    (["--problems", "HS999"], "no problem"),
    (["--maxiter", "0"], "maxiter"),
])
def test_sketch_command_rejects_bad_input(tmp_path, capsys, argv, message):
    parser = sketch_parser("bench sketch")
    assert run_sketch_command(parser.parse_args(argv + ["--out", str(tmp_path)])) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error


def _claims_convergence_at_x0(problem, x0, **options):
    """A method that says it converged without moving."""
    from types import SimpleNamespace

    return SimpleNamespace(x=np.array(x0, dtype=float), converged=True, reason="CONVERGED_KKT",
                           iterations=0, extra={"inner_total": 0})


def test_without_f_star_solved_means_a_small_kkt_residual(monkeypatch):
    hs28 = next(p for p in hock_schittkowski_problems() if p.name == "HS28")
    unknown = ConstrainedBenchProblem("HS28-no-f*", hs28.problem, hs28.x0, None)
    # a real solve: judged by the KKT residual measured here, f_star reported as unknown
    row = run_one("gaussian", unknown, maxiter=30)
    assert row["solved_by"] == SOLVED_BY_KKT and np.isnan(row["f_star"])
    assert row["solved"] and row["kkt_residual"] <= KKT_TOLERANCE
    assert run_one("gaussian", hs28, maxiter=30)["solved_by"] == SOLVED_BY_OBJECTIVE
    # a convergence claim at a point that is no KKT point does not count
    monkeypatch.setattr(bench.sketch, "sketched_newton", _claims_convergence_at_x0)
    row = run_one("gaussian", unknown)
    assert row["converged"] and row["kkt_residual"] > KKT_TOLERANCE and not row["solved"]


def test_kkt_residual_of_a_non_finite_point_is_inf():
    hs6 = hock_schittkowski_problems()[0]
    assert kkt_residual(hs6.problem, np.array([np.nan, 1.0])) == np.inf
    assert kkt_residual(hs6.problem, np.array([np.inf, 1.0])) == np.inf
