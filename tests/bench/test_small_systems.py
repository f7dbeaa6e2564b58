"""The small-systems table: rows, ratios and the targets they are held to."""

from __future__ import annotations

from bench.small_systems import (
    ITERATION_TARGET,
    SOLVE_TARGET,
    Row,
    _interleaved,
    report,
)


def test_rows_report_best_over_best_against_their_target():
    rows = [Row("solve", "poisson2d-32", 1024, 4992, 102, (3e-4, 4e-4), (1e-3, 1e-3)),
            Row("per-iteration", "p2tet-4", 24335, 609711, 50, (6e-4, 7e-4), (1e-3, 1e-3))]
    assert rows[0].target == SOLVE_TARGET and rows[1].target == ITERATION_TARGET
    assert rows[0].ratio == 0.3 and rows[1].median_ratio == 0.7
    lines = report(rows)
    assert lines[1].endswith("0.40 met") and lines[2].endswith("0.50 MISSED")


def test_interleaved_calls_each_side_once_a_round():
    calls = []
    first, second = _interleaved(lambda: calls.append("a"), lambda: calls.append("b"), 4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert first[0] <= first[1] and second[0] <= second[1]  # best <= median
