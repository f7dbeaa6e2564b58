"""``bench linear --rhs K``: batched and block CG against K separate calls, in one table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.__main__ import main
from bench.many_rhs import RHS_METHODS, rhs_problem
from bench.problems import make_problem
from linsolve import pcg

RTOL = 1e-8


@pytest.mark.slow  # compiles and runs a whole bench job: make test-slow
def test_rhs_table_against_separate_solves(tmp_path, capsys):
    assert main(["linear", "--problem", "poisson2d", "--size", "8", "--rhs", "3",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    assert "pcg-batched" in capsys.readouterr().out
    payload = json.loads((tmp_path / "poisson2d_n64_rhs3.json").read_text())
    assert payload["rhs"] == 3
    rows = {row["method"]: row for row in payload["rows"]}
    assert list(rows) == list(RHS_METHODS)
    # the reference: one direct pcg call per right-hand side of the same block
    problem = rhs_problem(make_problem("poisson2d", 8), 3)
    counts = [pcg(problem.A, b, rtol=RTOL).iterations for b in problem.b]
    for name, row in rows.items():
        assert row["converged"] and row["true_relative_residual"] <= RTOL, row
        assert row["time_to_solution_s"] > 0
    for name in ("scipy-cg", "pcg", "pcg-batched"):
        # same recurrences: the largest single count (scipy's cg: the same
        # iterates without a preconditioner, to rounding)
        assert abs(rows[name]["iterations"] - max(counts)) <= (1 if name == "scipy-cg" else 0)
    assert rows["pcg"]["note"].count(f"sum {sum(counts)}") == 1
    assert rows["block-cg"]["iterations"] <= max(counts)
    # the plot: worst residual over the systems, one point per iteration of the
    # calls one after another (separate) or per shared iteration (batched)
    histories = {history["method"]: history for history in payload["histories"]}
    assert len(histories["pcg"]["relative_residual"]) == sum(counts) + 1
    assert len(histories["pcg-batched"]["relative_residual"]) == max(counts) + 1
    for history in histories.values():
        assert len(history["time_s"]) == len(history["relative_residual"])
        assert history["relative_residual"][0] == 1.0
        assert history["relative_residual"][-1] <= RTOL


def test_rhs_bad_input(tmp_path, capsys):
    assert main(["linear", "--size", "4", "--rhs", "0", "--out", str(tmp_path)]) == 2
    assert "--rhs must be at least 1" in capsys.readouterr().err
    assert main(["linear", "--size", "4", "--rhs", "2", "--methods", "gmres",
                 "--out", str(tmp_path)]) == 2
    assert "pcg-batched" in capsys.readouterr().err
    assert main(["linear", "--sizes", "4,x", "--out", str(tmp_path)]) == 2
    assert "--sizes takes" in capsys.readouterr().err
    # a problem CG does not apply to: every row says why, nothing fails
    assert main(["linear", "--problem", "convdiff2d", "--size", "4", "--rhs", "2",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    (written,) = tmp_path.glob("convdiff2d*_n16_rhs2.json")
    rows = json.loads(written.read_text())["rows"]
    assert {row["reason"] for row in rows} == {"SKIPPED"}
    assert np.all([row["note"] for row in rows])
