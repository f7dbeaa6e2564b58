"""bench.omega's wall-time experiment, at toy sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.omega import WALL_COLUMNS, WALL_OMEGAS, run_wall


@pytest.mark.slow  # compiles and runs a whole bench job: make test-slow
def test_wall_rows_time_both_methods_on_one_sequence():
    pytest.importorskip("pyamg")
    rows = run_wall(T=4, N=8, seed=1)
    assert [set(row) for row in rows] == [set(WALL_COLUMNS)] * 2
    pyamg_row, learned_row = rows
    assert pyamg_row["omega"] in WALL_OMEGAS and pyamg_row["vs_pyamg"] == 1.0
    assert pyamg_row["sweeps"] > 0 and learned_row["sweeps"] > 0
    assert math.isclose(learned_row["vs_pyamg"], learned_row["seconds"] / pyamg_row["seconds"])


@pytest.mark.slow  # compiles and runs a whole bench job: make test-slow
def test_wall_best_fixed_omega_is_the_grid_minimum():
    # the unimodal search over the grid finds the omega with the fewest sweeps
    pytest.importorskip("pyamg")
    import scipy.sparse as sp

    from bench.omega import SOR_RTOL, laplacian_2d, truncated_normal, wall_shift
    from linsolve import sor

    T, N, seed = 3, 6, 2
    rows = run_wall(T=T, N=N, seed=seed)
    rng = np.random.default_rng(seed)
    A = laplacian_2d(N)
    shifts = [wall_shift(rng) for _ in range(T)]
    rhs = [truncated_normal(N * N, rng) for _ in range(T)]
    totals = [sum(sor((A + c * sp.eye(N * N)).tocsr(), b, float(w), rtol=SOR_RTOL).iterations
                  for c, b in zip(shifts, rhs)) for w in WALL_OMEGAS]
    assert rows[0]["sweeps"] == min(totals)


@pytest.mark.slow  # compiles and runs a whole bench job: make test-slow
def test_wall_experiment_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("pyamg")
    import csv

    from bench.__main__ import main

    argv = ["omega", "--experiment", "wall", "--steps", "2", "--size", "8", "--out",
            str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    with open(tmp_path / "omega_wall.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["systems"] for row in rows] == ["2", "2"]
    assert "ChebCB" in capsys.readouterr().out
    assert main(["omega", "--experiment", "wall", "--size", "2", "--out", str(tmp_path)]) == 2
