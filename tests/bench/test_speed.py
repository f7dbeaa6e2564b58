"""bench.speed on finite-element matrices and under contention: builders, busy processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse as sp

from bench import speed
from bench.__main__ import main
from bench.contention import busy_processes
from bench.speed import SPEED_COLUMNS, SpeedRecord, parse_matrices, pcg_target, summary_lines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytest.importorskip("skfem")
from bench.fem import FEM_MATRICES, fem_matrix  # noqa: E402  (after the skip)

# name -> (refinement, n): counts of interior nodes (times 3 for elasticity)
# on the meshes the builders make; p2tet on level r has the unknowns of
# p1tet on level r + 1 (its edge midpoints are the next level's new nodes).
TINY = {"p1tri": (3, 49), "p1tet": (3, 259), "p2tet": (2, 259), "elasticity3d": (2, 270)}


def _gone(pid: int) -> bool:
    """The process no longer exists, or is a zombie nobody has reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("name", FEM_MATRICES)
def test_fem_matrix_is_canonical_spd_csr(name):
    refine, n = TINY[name]
    A = fem_matrix(name, refine)
    assert sp.issparse(A) and A.format == "csr" and A.shape == (n, n)
    assert A.dtype == np.float64 and A.indices.dtype == np.int32 and A.indptr.dtype == np.int32
    assert A.has_sorted_indices and A.has_canonical_format
    assert not (A.data == 0).any()
    assert (A != A.T).nnz == 0  # exactly symmetric, as CG's theory assumes
    eigenvalues = np.linalg.eigvalsh(A.toarray())
    # positive beyond eigvalsh's own rounding, n eps lambda_max
    assert eigenvalues[0] > n * np.finfo(np.float64).eps * eigenvalues[-1]


def test_fem_matrices_are_not_stencils():
    # the reason for jittering p1tri and for the refined (not tensor) tet mesh
    from bench.fem import p1_triangles

    assert p1_triangles(3, jitter=0.0).nnz == 5 * 49 - 4 * 7  # the 5-point stencil
    for name in FEM_MATRICES:
        A = fem_matrix(name, TINY[name][0])
        assert np.diff(A.indptr).max() > 5


def test_fem_builders_refuse_bad_levels():
    with pytest.raises(ValueError, match="refine of p1tet"):
        fem_matrix("p1tet", 1)
    with pytest.raises(ValueError, match="unknown finite-element matrix"):
        fem_matrix("q2hex", 1)


def test_busy_processes_die_when_the_body_raises():
    started = []
    with pytest.raises(RuntimeError):
        with busy_processes(2) as processes:
            started = list(processes)
            assert all(process.poll() is None for process in started)
            raise RuntimeError("measurement failed")
    assert len(started) == 2
    assert all(process.returncode == -signal.SIGKILL for process in started)
    assert all(_gone(process.pid) for process in started)


def test_busy_processes_die_on_ctrl_c():
    with pytest.raises(KeyboardInterrupt):
        with busy_processes(1) as processes:
            started = list(processes)
            raise KeyboardInterrupt
    assert all(process.returncode is not None and _gone(process.pid) for process in started)


def test_busy_processes_refuse_negative_count():
    with pytest.raises(ValueError, match=">= 0"):
        with busy_processes(-1):
            pass


def _run_child(body: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``body`` in a fresh interpreter; it prints the busy child's pid first."""
    script = textwrap.dedent("""
        import os, signal, sys
        from bench.contention import busy_processes
        with busy_processes(1) as processes:
            print(processes[0].pid, flush=True)
    """) + textwrap.indent(textwrap.dedent(body), "    ")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    return done, int(done.stdout.split()[0])


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # do not leave it spinning if the test fails
            return False
        time.sleep(0.02)
    return True


def test_busy_processes_die_on_sigterm():
    done, pid = _run_child("os.kill(os.getpid(), signal.SIGTERM)\nsignal.pause()\n")
    assert done.returncode == 128 + signal.SIGTERM
    assert _gone(pid)


def test_busy_processes_end_when_their_parent_is_killed():
    # SIGKILL runs no cleanup: the spin loop itself notices the parent is gone
    done, pid = _run_child("os.kill(os.getpid(), signal.SIGKILL)\n")
    assert done.returncode == -signal.SIGKILL
    assert _wait_gone(pid)


def test_pcg_targets_and_verdict_lines():
    assert [pcg_target("poisson2d", k) for k in (0, 1, 2, 3, 5)] == [0.4, 0.9, 1.0, 1.1, 1.1]
    assert pcg_target("elasticity3d", 0) == 0.5
    record = SpeedRecord(rows=[
        {"matrix": "poisson2d", "implementation": "linsolve pcg", "ours_over_scipy": 0.45},
        {"matrix": "p2tet", "implementation": "linsolve pcg", "ours_over_scipy": 0.45}])
    lines = summary_lines(record)
    assert lines[0].startswith("poisson2d:") and lines[1].startswith("p2tet:")
    assert "target <= 0.4" in lines[0] and lines[0].endswith("NOT met")
    assert "target <= 0.5" in lines[1] and lines[1].endswith(": met")
    assert parse_matrices(None) == ("poisson2d",) + FEM_MATRICES
    with pytest.raises(ValueError, match="unknown matrix"):
        parse_matrices("poisson2d,q2hex")


@pytest.mark.slow  # a bench speed job beside busy processes
def test_speed_command_under_contention_records_environment(tmp_path, capsys, monkeypatch):
    started = []
    real_busy_processes = speed.busy_processes

    @contextlib.contextmanager
    def recording(k):
        with real_busy_processes(k) as processes:
            started.extend(processes)
            yield processes

    monkeypatch.setattr(speed, "busy_processes", recording)
    status = main(["speed", "--rows", "kernels", "--size", "8", "--matrices", "poisson2d,p1tet",
                   "--refine", "p1tet=3",
                   "--contention", "1", "--repeat", "1", "--iterations", "3",
                   "--stream-n", "10000", "--mfac-d", "4096", "--out", str(tmp_path),
                   "--no-progress"])
    assert status == 0
    out = capsys.readouterr().out
    assert "p1tet: pcg time per iteration ours/scipy" in out and "target <= 0.9" in out
    assert "environment:" in out and "1 busy process" in out

    assert len(started) == 1
    assert all(process.returncode is not None and _gone(process.pid) for process in started)

    payload = json.loads((tmp_path / "speed.json").read_text())
    env = payload["environment"]
    assert env["contention"] == payload["contention"] == 1
    assert env["numba_num_threads"] >= 1 and env["cpu_count"] == os.cpu_count()
    assert env["numba_threading_layer"] in ("omp", "tbb", "workqueue")  # a parallel kernel ran
    assert {"NUMBA_NUM_THREADS", "OMP_WAIT_POLICY"} <= set(env["env"])
    assert len(env["loadavg_start"]) == 3 and len(env["loadavg_end"]) == 3
    blas = [pool for pool in env["threadpools"] if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)  # held to one thread
    assert all({"internal_api", "num_threads", "architecture"} <= set(pool) for pool in blas)

    assert [m["name"] for m in payload["matrices"]] == ["poisson2d", "p1tet"]
    assert payload["matrices"][1]["n"] == TINY["p1tet"][1]
    assert payload["columns"] == list(SPEED_COLUMNS)
    by_matrix = {}
    for row in payload["rows"]:
        by_matrix.setdefault(row["matrix"], set()).add(row["implementation"])
    assert {"scipy cg", "linsolve pcg"} <= by_matrix["p1tet"]
    assert "linsolve sor redblack" in by_matrix["poisson2d"]
    assert "linsolve sor redblack" not in by_matrix["p1tet"]  # not two-colourable
    assert {"linsolve sor natural", "linsolve sor multicolor", "pyamg sor (forward)"} <= by_matrix["p1tet"]
    assert {f"linsolve pcg + {name}" for name in ("jacobi", "ichol0", "ssor", "chebyshev(4)")} \
        <= by_matrix["p1tet"]
    assert "p1tet: multicolor SOR time per sweep ours/pyamg" in out and "target <= 0.6" in out
    assert "p1tet: pcg + ichol0 / plain pcg time per iteration" in out and "target <= 2.5" in out
    # the M-FAC rows come last, in the same table, with their verdicts
    mfac = [row for row in payload["rows"] if row["implementation"].startswith("M-FAC ")]
    assert payload["rows"][-len(mfac):] == mfac and payload["mfac_d"] == 4096
    assert {"M-FAC solve", "M-FAC update", "M-FAC gemv"} <= {row["implementation"] for row in mfac}
    for row in mfac:
        assert row["n"] == 4096 and row["nnz"] == 4096 * 256 and row["median_ms"] > 0
        assert row["ours_over_scipy"] == pytest.approx(1 / row["speedup_vs_scipy"])
    assert "M-FAC solve / bare BLAS passes" in out and "target <= 1.2" in out
    assert "M-FAC update / bare BLAS passes" in out and "target <= 1.3" in out
    assert {row["benchmark"] for row in mfac} >= {"M-FAC vs BLAS G@v + c@G (best of 1)"}


@pytest.mark.parametrize("argv, message", [
    (["--matrices", "poisson2d,q2hex"], "unknown matrix"),
    (["--contention", "-1"], "--contention"),
    (["--refine", "p1tet=1"], "--refine"),
    (["--mfac-d", "10"], "--mfac-d"),
    (["--mfac-d", "1000.5"], "--mfac-d"),
    (["--rows", "kernels,nope"], "unknown row group"),
])
def test_speed_command_input_errors(tmp_path, capsys, argv, message):
    assert main(["speed", *argv, "--out", str(tmp_path), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "speed.json")


def test_group_rows_carry_ratios_and_targets():
    """The family, rhs and solution rows on tiny matrices: structure, finite ratios, verdicts."""
    from bench.family_rows import family_speed_rows
    from bench.problems import poisson2d
    from bench.rhs_speed import floor_ratio, matrix_bytes, rhs_rows
    from bench.solution_speed import small_solve_rows
    from linsolve import block_cg, pcg

    rows = family_speed_rows(repeat=1, iterations=4, refine={"p1tri": 3}, convdiff_n=6,
                             fem=("p1tri",))
    A = fem_matrix("p1tet", 3)
    rows += rhs_rows("p1tet", A, k=2, repeat=1)
    rows += small_solve_rows("poisson2d", poisson2d(6), repeat=1)
    for row in rows:
        assert set(SPEED_COLUMNS) <= set(row) and row["group"] in speed.ROW_GROUPS
        assert np.isfinite(row["median_ms"]) and row["median_ms"] > 0
        assert row["ours_over_scipy"] == pytest.approx(1 / row["speedup_vs_scipy"])
    by = {(row["matrix"], row["implementation"]): row for row in rows}
    assert by["p1tri", "linsolve gmres+ilu0"]["target"] == 0.2
    assert by["p1tri", "linsolve minres"]["target"] == 0.5
    assert by["shifted laplacian", "linsolve minres"]["target"] == 0.5
    assert {matrix for matrix, _ in by} == {"p1tri", "convdiff2d(Pe=1)", "shifted laplacian",
                                            "p1tet", "poisson2d"}
    # the counts in the labels are the solvers' own, called directly
    B = np.random.default_rng(1).standard_normal((2, A.shape[0]))
    largest = max(pcg(A, b, rtol=1e-8).iterations for b in B)
    block = int(block_cg(A, B, rtol=1e-8).iterations.max())
    assert any(f"({block} block iterations vs {largest} largest single)" in name
               for _, name in by)
    assert ("poisson2d", f"linsolve pcg ({pcg(poisson2d(6), np.random.default_rng(0).standard_normal(36), rtol=1e-8).iterations} iterations)") in by
    # the bandwidth model: 12 bytes an entry and 4 a row pointer, 11 vector passes
    assert matrix_bytes(A) == 12 * A.nnz + 4 * (A.shape[0] + 1)
    v = 11 * 8 * A.shape[0]
    assert floor_ratio(A, 8) == pytest.approx((matrix_bytes(A) + 8 * v)
                                              / (8 * (matrix_bytes(A) + v)))
    lines = summary_lines(SpeedRecord(rows=rows))
    assert any(line.startswith("p1tri: gmres+ilu0 iteration vs scipy: linsolve gmres+ilu0 = ")
               and "(target <= 0.2, quiet)" in line for line in lines)
    assert sum("target <=" in line for line in lines) == sum(
        1 for row in rows if row["target"] == row["target"])


# slow: a whole bench job (every time-to-solution row, ~24 s of a fresh clone's make test)
@pytest.mark.slow
def test_solution_rows_tiny():
    from bench.solution_speed import TARGETS, solution_rows

    matrices = []
    rows = solution_rows(repeat=1, iterations=3, matrices=matrices,
                         levels={"setup": ("p1tet", 3), "p2": ("p2tet", 2),
                                 "p1tri": ("p1tri", 3)},
                         small=(("poisson2d", 6),), mid=(("elasticity3d", 1),))
    assert [m["name"] for m in matrices] == ["p1tet", "p2tet", "p1tri", "poisson2d",
                                             "elasticity3d"]
    for row in rows:
        assert np.isfinite(row["ours_over_scipy"]) and row["ours_over_scipy"] > 0, row
    targets = {row["target"] for row in rows if row["target"] == row["target"]}
    assert targets <= set(TARGETS.values())
    names = [row["implementation"] for row in rows]
    assert "precond.ichol0(A) set-up, from scratch" in names
    assert any(name.startswith("linsolve sor multicolor, from scratch") for name in names)
    assert "pyamg sor (forward, natural)" in names
    assert any(row["benchmark"].startswith("ichol0 set-up in pcg+ichol0 iterations")
               and row["target"] == 20.0 for row in rows)
