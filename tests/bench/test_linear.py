"""The bench command line on tiny sizes: files written, columns, residuals, errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from bench.__main__ import main
from bench.problems import load_matrix, make_problem
from bench.speed import SPEED_COLUMNS
from bench.table import CONVERGENCE_COLUMNS
from linsolve import pcg

RTOL = 1e-8
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(out, stem):
    with open(os.path.join(out, stem + ".csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(os.path.join(out, stem + ".json")) as handle:
        payload = json.load(handle)
    return rows, payload


def _check_table(out, stem, rtol=RTOL):
    for suffix in ("csv", "json", "png"):
        assert os.path.getsize(os.path.join(out, f"{stem}.{suffix}")) > 0
    rows, payload = _read(out, stem)
    assert rows and list(rows[0]) == list(CONVERGENCE_COLUMNS) + ["note"]
    assert len(payload["rows"]) == len(rows)
    for row in payload["rows"]:
        if row["converged"]:
            assert row["true_relative_residual"] <= rtol, row
    for history in payload["histories"]:
        assert len(history["relative_residual"]) == len(history["time_s"])
    return rows, payload


# slow: the whole main job (every method, table and plot; ~17 s of a fresh clone's make test)
@pytest.mark.slow
def test_main_job_tiny(tmp_path, capsys):
    assert main(["--size", "16", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "true_relative_residual" in printed and "pcg-amg" in printed
    rows, payload = _check_table(tmp_path, "poisson2d_n256")
    by_method = {row["method"]: row for row in payload["rows"]}
    # every method ran or says why not; on Poisson each one that ran converges
    for method, row in by_method.items():
        if method.startswith("scipy-minres"):
            # scipy's minres stops on a backward error, ||r|| / (||A|| ||x||) <= rtol,
            # a few digits short of ||r|| <= rtol ||b|| (its note says so)
            assert row["reason"] == "SKIPPED" or row["true_relative_residual"] < 1e-4, row
        else:
            assert row["reason"] == "SKIPPED" or row["converged"], row
    # the table's count for our pcg is what pcg reports when called directly
    problem = make_problem("poisson2d", 16)
    direct = pcg(problem.A, problem.b, rtol=RTOL)
    assert by_method["pcg"]["iterations"] == direct.iterations
    # with no preconditioner our iterates are scipy's, so the counts agree
    assert by_method["scipy-cg"]["iterations"] == direct.iterations
    factor = by_method["pcg"]["convergence_factor"]
    assert 0 < factor < 1


def test_linear_subprocess(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "linear", "--problem", "poisson2d", "--size", "8",
         "--methods", "pcg,scipy-cg,pcg-jacobi", "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    rows, _ = _check_table(tmp_path, "poisson2d_n64")
    assert [row["method"] for row in rows] == ["pcg", "scipy-cg", "pcg-jacobi"]


def test_matrix_market_round_trip(tmp_path):
    A = make_problem("poisson3d", 4).A
    path = tmp_path / "cube.mtx"
    scipy.io.mmwrite(str(path), A, symmetry="symmetric")
    out = tmp_path / "out"
    assert main(["linear", "--matrix", str(path), "--methods", "pcg,pcg-ichol0",
                 "--out", str(out), "--no-progress"]) == 0
    rows, payload = _check_table(out, "cube")
    assert {row["n"] for row in rows} == {"64"} and {row["nnz"] for row in rows} == {str(A.nnz)}
    assert all(row["converged"] for row in payload["rows"])


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    junk = tmp_path / "junk.mtx"
    junk.write_text("this is not a matrix\n")
    assert main(["linear", "--matrix", str(junk), "--out", str(tmp_path)]) == 2
    assert "could not read" in capsys.readouterr().err

    rectangular = tmp_path / "rect.mtx"
    scipy.io.mmwrite(str(rectangular), sp.random(3, 4, density=0.5, format="csr", random_state=0))
    assert main(["linear", "--matrix", str(rectangular), "--out", str(tmp_path)]) == 2
    assert "3 x 4" in capsys.readouterr().err

    assert main(["linear", "--matrix", str(tmp_path / "missing.mtx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["linear", "--problem", "nope", "--size", "4"]) == 2
    assert "unknown problem" in capsys.readouterr().err
    assert main(["linear", "--methods", "pcg,nope", "--size", "4"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "junk.csv")


@pytest.mark.slow  # a whole bench speed run, every stage
def test_speed_tiny(tmp_path, capsys):
    assert main(["speed", "--rows", "kernels", "--size", "12", "--repeat", "1", "--iterations", "3",
                 "--stream-n", "10000", "--matrices", "poisson2d", "--mfac-d", "0",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    assert "ours/scipy" in capsys.readouterr().out
    rows, payload = _read(tmp_path, "speed")
    assert rows and list(rows[0]) == list(SPEED_COLUMNS)
    implementations = [row["implementation"] for row in rows]
    assert implementations[:2] == ["scipy A @ x", "numba csr_spmv"]
    assert any(name.startswith("auto: dia_spmv") for name in implementations)
    assert {"scipy cg", "linsolve pcg"} <= set(implementations)
    assert payload["bandwidth"]["triad_GBps"] > 0
    for row in payload["rows"]:
        assert row["median_ms"] > 0 and np.isfinite(row["speedup_vs_scipy"])


@pytest.mark.slow  # the omega sequences: a whole bench job
def test_omega_command_writes_table_and_plot(tmp_path):
    from bench.__main__ import main

    status = main(["omega", "--experiment", "all", "--variance", "high", "--steps", "12",
                   "--out", str(tmp_path), "--no-progress"])
    assert status == 0
    rows = json.loads((tmp_path / "omega.json").read_text())["rows"]
    assert (tmp_path / "omega.png").stat().st_size > 0
    by = {(row["experiment"], row["method"]): row for row in rows}
    assert {"shifted-high", "heat"} == {row["experiment"] for row in rows}
    for experiment in ("shifted-high", "heat"):
        fixed = [r["mean_iterations"] for (e, m), r in by.items()
                 if e == experiment and m.startswith("fixed")]
        assert by[(experiment, "best fixed (hindsight)")]["mean_iterations"] == min(fixed)
    # Young's omega is instance-optimal for SOR on these consistently ordered matrices
    assert (by[("shifted-high", "instance-optimal (Young)")]["mean_iterations"]
            < by[("shifted-high", "best fixed (hindsight)")]["mean_iterations"])
    assert (by[("heat", "instance-optimal (grid)")]["mean_iterations"]
            <= by[("heat", "best fixed (hindsight)")]["mean_iterations"])


def test_omega_command_rejects_bad_steps(capsys):
    from bench.__main__ import main

    assert main(["omega", "--steps", "0"]) == 2
    assert "error:" in capsys.readouterr().err


def _mtx(path, header, lines):
    path.write_text("%%MatrixMarket matrix coordinate real symmetric\n" + header + "\n"
                    + "".join(line + "\n" for line in lines))
    return path


DIAGONAL = ["1 1 2.0", "2 2 2.0", "3 3 2.0"]


def test_matrix_market_header_is_checked_before_anything_is_allocated(tmp_path, capsys):
    """A header is a claim: each lie is refused by name before the reader or the CSR
    conversion allocates what it claims (16 GB for the first)."""
    cases = {
        "huge": ("1000000000 1000000000 3", DIAGONAL,
                 "1000000000 x 1000000000 matrix with 3 entries; a symmetric positive definite "
                 "matrix stores at least its 1000000000 diagonal entries"),
        "truncated": ("3 3 1000000", DIAGONAL,
                      "declares 1000000 entries in its header but has only 3 lines after it"),
        "fewer": ("3 3 4", DIAGONAL, "declares 4 entries in its header but has only 3 lines"),
        "longer": ("3 3 3", DIAGONAL + ["2 1 -1.0"],
                   "declares 3 entries in its header but has 4 entry lines after it"),
    }
    for name, (header, lines, message) in cases.items():
        path = _mtx(tmp_path / f"{name}.mtx", header, lines)
        assert main(["linear", "--matrix", str(path), "--out", str(tmp_path / "out"),
                     "--max-nnz", "10000000000"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"error: {str(path)!r} ") and message in err, (name, err)
        assert len(err.strip().splitlines()) == 1          # one line, no traceback
    # the honest file with trailing blank lines reads, and solves
    path = _mtx(tmp_path / "honest.mtx", "3 3 4", DIAGONAL + ["2 1 -1.0", "", ""])
    problem = load_matrix(path)
    np.testing.assert_array_equal(problem.A.toarray(), [[2, -1, 0], [-1, 2, 0], [0, 0, 2]])


def test_matrix_market_memory_estimate_is_checked_against_the_limit(tmp_path):
    A = make_problem("poisson2d", 4).A
    path = tmp_path / "square.mtx"
    scipy.io.mmwrite(str(path), A, symmetry="symmetric")
    with pytest.raises(ValueError, match=r"'.*square\.mtx' declares a 16 x 16 matrix with 40 "
                                         r"entries: reading it and building the system needs "
                                         r"about [\d.]+ KiB, over the 1 KiB limit \(max_bytes\)"):
        load_matrix(path, max_bytes=1024)
    assert (load_matrix(path).A != A).nnz == 0       # within the memory available: read
