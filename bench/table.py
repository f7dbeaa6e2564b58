"""Result rows: plain dicts with fixed columns, printed as a text table and saved as CSV/JSON."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Sequence

CONVERGENCE_COLUMNS = (
    "problem", "n", "nnz", "method", "iterations", "converged", "time_to_solution_s",
    "setup_time_s", "solve_time_s", "time_per_iteration_ms", "reason",
    "true_relative_residual", "convergence_factor",
)
"""Columns of a convergence table (CSV order); ``note`` follows in CSV and JSON.

``time_to_solution_s`` (set-up plus solve) is the headline: a preconditioner
that costs hundreds of iterations to build has not made the solve faster,
whatever its per-iteration figures say."""


def format_value(value: Any) -> str:
    """Short text for one cell: floats in 4 significant digits, NaN as ``-``.

    Examples
    --------
    >>> format_value(1.23456e-9), format_value(float("nan")), format_value(12)
    ('1.235e-09', '-', '12')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with a header line.

    Examples
    --------
    >>> print(format_table([{"a": 1, "b": 0.5}], ["a", "b"]))
    a  b
    -  ---
    1  0.5
    """
    cells = [[format_value(row.get(column, "")) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths)),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Write ``rows`` to ``path`` with exactly ``columns`` (extra keys are dropped)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON; NaN/Inf become null (JSON has neither)."""
    with open(path, "w") as handle:
        json.dump(_finite(payload), handle, indent=1)
        handle.write("\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
