"""Convergence tables: every method on every problem, one row each, saved as CSV, JSON, PNG.

The histories behind the plot hold, for every method alike, the true
relative residual ``||b - A x_k|| / ||b||`` against the time stamped after
each iteration (setup included; see :class:`bench.methods._Trace`).

A row's residual and factor are recomputed here, independently of what the
solver reports: ``true_relative_residual = ||b - A x|| / ||b||`` with scipy's
SpMV, and ``convergence_factor = (h_k / h_0)^(1/k)`` from the method's
relative residual history ``h`` (the average reduction per iteration).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .methods import METHODS, MethodRun
from .problems import Problem, asymmetry
from .table import CONVERGENCE_COLUMNS, format_table, write_csv, write_json


@dataclass
class ConvergenceRecord:
    """Rows computed so far, with the histories behind the plot.

    ``interrupted`` is True when Ctrl-C stopped the run: what is here is
    complete row by row and is still written out.
    """

    rows: list[dict] = field(default_factory=list)
    histories: list[dict] = field(default_factory=list)
    interrupted: bool = False


def convergence_factor(history: np.ndarray) -> float:
    """Mean residual reduction per iteration, ``(h_k / h_0)^(1/k)``; NaN if undefined.

    Examples
    --------
    >>> convergence_factor(np.array([1.0, 0.1, 0.01]))
    0.1
    """
    k = len(history) - 1
    if k < 1 or not history[0] > 0 or not np.isfinite(history[-1]):
        return math.nan
    return float(round((history[-1] / history[0]) ** (1.0 / k), 15))


def make_row(problem: Problem, method: str, run: MethodRun, rtol: float) -> dict:
    """One table row for ``run``; the residual is recomputed from ``run.x``."""
    if run.x is not None:
        norm_b = float(np.linalg.norm(problem.b))
        residual = float(np.linalg.norm(problem.b - problem.A @ run.x))
        true_relative = residual / norm_b if norm_b > 0 else residual
    else:
        true_relative = math.nan
    # "converged" is judged on the true residual for every method alike
    # (scipy's own flag trusts its recursive residual).
    converged = bool(run.reason.startswith("CONVERGED") and true_relative <= rtol)
    total = run.setup_time + run.solve_time
    per_iteration = 1e3 * run.solve_time / run.iterations if run.iterations else math.nan
    return {
        "problem": problem.name, "n": problem.n, "nnz": problem.nnz, "method": method,
        "iterations": run.iterations, "reason": run.reason, "converged": converged,
        "true_relative_residual": true_relative,
        "convergence_factor": convergence_factor(run.residual_history),
        "setup_time_s": run.setup_time, "solve_time_s": run.solve_time, "total_time_s": total,
        "time_per_iteration_ms": per_iteration, "note": run.note,
    }


def _failed(error: Exception) -> MethodRun:
    return MethodRun(None, 0, "FAILED", np.zeros(0), 0.0, 0.0, f"{type(error).__name__}: {error}")


def run_convergence(problems: Sequence[Problem], methods: Sequence[str], rtol: float,
                    maxiter: int | None = None, progress: bool | None = None) -> ConvergenceRecord:
    """Run ``methods`` on ``problems``; Ctrl-C ends the run early and keeps finished rows.

    Parameters
    ----------
    problems, methods
        Problems and method names (keys of :data:`bench.methods.METHODS`).
    rtol : float
        Relative tolerance for every method.
    maxiter : int, optional
        Iteration limit; default ``min(10 n, 10000)`` (scipy's ``10 n`` can
        take hours on a hard user matrix).
    progress : bool, optional
        False: silent. Otherwise a bar on a terminal, plain lines off one
        (:func:`bench._progress.progress_bar`).
    """
    from ._progress import progress_bar

    record = ConvergenceRecord()
    jobs = [(problem, method) for problem in problems for method in methods]
    bar = progress_bar(jobs, disable=progress is False, unit="solve")
    try:
        for problem, method in bar:
            bar.set_description(f"{problem.name}: {method}")
            limit = maxiter if maxiter is not None else min(10 * problem.n, 10_000)
            try:
                run = METHODS[method](problem, rtol, limit)
            except KeyboardInterrupt:
                raise
            except Exception as error:  # a failing method is a row, not the end of the table
                run = _failed(error)
            row = make_row(problem, method, run, rtol)
            record.rows.append(row)
            # the plot's curves: true residuals at measured per-iteration times
            # (bench.methods._Trace); a skipped or failed method has none
            residual = run.trace_residual if run.trace_residual is not None else np.zeros(0)
            seconds = run.trace_time_s if run.trace_time_s is not None else np.zeros(0)
            record.histories.append({"problem": problem.name, "method": method,
                                     "relative_residual": residual.tolist(),
                                     "time_s": seconds.tolist()})
    except KeyboardInterrupt:
        record.interrupted = True
    finally:
        bar.close()
    return record


def warn_if_asymmetric(problem: Problem, stream=None) -> None:
    """Print a warning when a matrix said to be SPD is not symmetric (CG assumes it is)."""
    stream = stream or sys.stderr  # looked up per call: tests swap sys.stderr
    if getattr(problem, "kind", "spd") != "spd":
        return  # a non-symmetric or indefinite gallery problem: the table picks its methods
    skew = asymmetry(problem.A)
    if skew > 1e-12:
        print(f"warning: {problem.name} is not symmetric (max|A - A^T| / max|A| = {skew:.2e}); "
              "CG assumes a symmetric positive definite matrix", file=stream)


def save_convergence(record: ConvergenceRecord, out: str | os.PathLike, name: str,
                     rtol: float, meta: dict | None = None) -> dict[str, str]:
    """Write ``<out>/<name>.csv``, ``.json`` and ``.png``; return their paths by suffix."""
    from .plot import plot_convergence

    os.makedirs(out, exist_ok=True)
    paths = {suffix: os.path.join(out, f"{name}.{suffix}") for suffix in ("csv", "json", "png")}
    write_csv(paths["csv"], record.rows, CONVERGENCE_COLUMNS + ("note",))
    write_json(paths["json"], {"rtol": rtol, "interrupted": record.interrupted, **(meta or {}),
                               "columns": list(CONVERGENCE_COLUMNS) + ["note"],
                               "rows": record.rows, "histories": record.histories})
    plot_convergence(record.histories, paths["png"], title=f"{name} (rtol={rtol:g})", rtol=rtol)
    return paths


def print_convergence(record: ConvergenceRecord, stream=None) -> None:
    """The table, then one line per skipped or failed method with its note."""
    stream = stream or sys.stdout  # looked up per call: tests swap sys.stdout
    print(format_table(record.rows, CONVERGENCE_COLUMNS), file=stream)
    for row in record.rows:
        if row["reason"] in ("SKIPPED", "FAILED"):
            print(f"  {row['method']}: {row['reason'].lower()}: {row['note']}", file=stream)
    if record.interrupted:
        print("interrupted: the rows above are the ones finished before Ctrl-C", file=stream)
