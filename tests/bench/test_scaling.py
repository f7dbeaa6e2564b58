"""bench.scaling: the table and model on synthetic rows, and one tiny mpiexec run."""

from __future__ import annotations

import json
import math

import pytest

from bench.scaling import COLUMNS, ESTIMATE_COLUMNS, estimate, run_scaling_command, \
    scaling_parser, table_rows
from tests.mpi_support import mpi_unavailable


def _row(mode, ranks, t, n, allreduce=0.0, latency=math.nan, bandwidth=math.nan):
    return {"mode": mode, "ranks": ranks, "grid": "100x100", "n": n, "n_local": n // ranks,
            "iterations": 10, "time_per_iteration_s": t, "halo_s": 1e-5, "local_spmv_s": 1e-4,
            "off_spmv_s": 1e-6 if ranks > 1 else 0.0,
            "allreduce_s": allreduce, "ghosts_max": 100 if ranks > 1 else 0,
            "exchange_latency_s": latency, "exchange_bandwidth_Bps": bandwidth}


MEASURED = [_row("strong", 1, 1e-3, 10000), _row("strong", 2, 6e-4, 10000, 2e-6, 1e-6, 1e10),
            _row("strong", 4, 4e-4, 10000, 3e-6, 1e-6, 1e10),
            _row("weak", 1, 1e-3, 10000), _row("weak", 2, 1.25e-3, 20000, 2e-6, 1e-6, 1e10)]


def test_table_speedup_and_efficiency():
    rows = table_rows(MEASURED, cores=2)
    strong = [r for r in rows if r["mode"] == "strong"]
    assert [round(r["speedup"], 6) for r in strong] == [1.0, round(1 / 0.6, 6), 2.5]
    assert strong[-1]["efficiency"] == pytest.approx(0.625) and strong[-1]["oversubscribed"]
    weak = [r for r in rows if r["mode"] == "weak"]
    assert weak[1]["efficiency"] == pytest.approx(0.8) and weak[1]["speedup"] == pytest.approx(1.6)
    assert all(set(COLUMNS) <= set(r) for r in rows)


def test_estimate_model():
    rows = estimate(MEASURED, ranks=(8, 64))
    assert all(set(ESTIMATE_COLUMNS) <= set(r) for r in rows)
    strong8, strong64, weak8, weak64 = rows
    # compute shrinks as 1/P; Allreduce fitted a + b log2 P through (2, 2us), (4, 3us)
    assert strong8["compute_ms"] == pytest.approx(1e-3 * 1e3 / 8)
    assert strong8["allreduce_ms"] == pytest.approx(2 * (1e-6 + 1e-6 * 3) * 1e3)
    assert strong64["efficiency"] < strong8["efficiency"] < 1
    assert weak8["compute_ms"] == weak64["compute_ms"] and weak64["efficiency"] < weak8["efficiency"]
    assert estimate([_row("strong", 1, 1e-3, 100)]) == []


def test_estimate_with_one_multi_rank_count_reproduces_its_allreduce():
    # only 1 and 4 ranks measured: t_allreduce(P) = b log2 P must pass through (4, 3 us)
    measured = [_row("strong", 1, 1e-3, 10000), _row("strong", 4, 4e-4, 10000, 3e-6, 1e-6, 1e10)]
    four, sixteen = estimate(measured, ranks=(4, 16))
    assert four["allreduce_ms"] == pytest.approx(2 * 3e-6 * 1e3)
    assert sixteen["allreduce_ms"] == pytest.approx(2 * 6e-6 * 1e3)


def test_failed_launch_exits_1(monkeypatch, capsys):
    import bench.scaling

    def failing(*args, **kwargs):
        raise RuntimeError("mpiexec -n 2 (strong) failed with status 1: boom")
    monkeypatch.setattr(bench.scaling, "_mpiexec", lambda: "mpiexec")
    monkeypatch.setattr(bench.scaling, "launch_worker", failing)
    args = scaling_parser("python -m bench scaling").parse_args(["--ranks", "2", "--modes",
                                                                  "strong"])
    assert run_scaling_command(args) == 1
    assert "error: mpiexec -n 2 (strong) failed" in capsys.readouterr().err


def test_bad_input_exits_2(capsys):
    parser = scaling_parser("python -m bench scaling")
    assert run_scaling_command(parser.parse_args(["--ranks", "1,x"])) == 2
    assert run_scaling_command(parser.parse_args(["--modes", "diagonal"])) == 2
    assert run_scaling_command(parser.parse_args(["--timeout", "0"])) == 2
    assert "error:" in capsys.readouterr().err


def test_tiny_scaling_run(tmp_path, capsys):
    reason = mpi_unavailable()
    if reason is not None:
        pytest.skip(reason)
    args = scaling_parser("python -m bench scaling").parse_args(
        ["--ranks", "1,2", "--modes", "strong", "--strong-size", "12", "--iterations", "3",
         "--repeat", "1", "--out", str(tmp_path), "--latency-us", "2", "--bandwidth-gbs", "10"])
    assert run_scaling_command(args) == 0
    out = capsys.readouterr().out
    assert "strong" in out and "Estimate for many ranks" in out
    payload = json.loads((tmp_path / "scaling.json").read_text())
    assert [m["ranks"] for m in payload["measured"]] == [1, 2]
    assert payload["measured"][1]["ghosts_max"] == 12   # one grid line from the neighbour strip
    assert payload["measured"][0]["off_spmv_s"] < 1e-4  # one rank: no ghost rows to multiply
    assert (tmp_path / "scaling.csv").exists() and (tmp_path / "scaling-estimate.csv").exists()
