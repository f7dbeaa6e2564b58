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
from typing import Callable, Mapping, Sequence

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


def true_relative_residual(A, b: np.ndarray, x: np.ndarray) -> float:
    """``||b - A x|| / ||b||`` (``||b - A x||`` where ``b = 0``); the largest over the rows of a block.

    ``b`` and ``x`` are vectors, or ``(k, n)`` blocks of ``k`` systems (a
    row each, scipy's batched convention).

    Examples
    --------
    >>> A = np.diag([1.0, 2.0])
    >>> true_relative_residual(A, np.array([1.0, 0.0]), np.array([0.5, 0.0]))
    0.5
    >>> true_relative_residual(A, np.eye(2), np.array([[1.0, 0.0], [0.0, 0.25]]))
    0.5
    """
    B = np.atleast_2d(b)
    residuals = np.linalg.norm(B - (A @ np.atleast_2d(x).T).T, axis=1)
    norms = np.linalg.norm(B, axis=1)
    relative = np.where(norms > 0, residuals / np.where(norms > 0, norms, 1.0), residuals)
    return float(relative.max())


def make_row(problem: Problem, method: str, run: MethodRun, rtol: float) -> dict:
    """One table row for ``run``; the residual is recomputed from ``run.x``.

    With several right-hand sides (``problem.b`` of shape ``(k, n)``) the
    residual is the worst system's, and ``time_per_iteration_ms`` divides
    the solve by ``run.extra["work_iterations"]`` where the runner gives it
    (the sum of the counts of ``k`` separate calls), else by ``iterations``.
    """
    true_relative = (true_relative_residual(problem.A, problem.b, run.x) if run.x is not None
                     else math.nan)
    # "converged" is judged on the true residual for every method alike
    # (scipy's own flag trusts its recursive residual).
    converged = bool(run.reason.startswith("CONVERGED") and true_relative <= rtol)
    total = run.setup_time + run.solve_time
    work = run.extra.get("work_iterations", run.iterations)
    per_iteration = 1e3 * run.solve_time / work if work else math.nan
    return {
        "problem": problem.name, "n": problem.n, "nnz": problem.nnz, "method": method,
        "iterations": run.iterations, "reason": run.reason, "converged": converged,
        "true_relative_residual": true_relative,
        "convergence_factor": convergence_factor(run.residual_history),
        "setup_time_s": run.setup_time, "solve_time_s": run.solve_time,
        "time_to_solution_s": total, "time_per_iteration_ms": per_iteration, "note": run.note,
    }


def _failed(error: Exception) -> MethodRun:
    return MethodRun(None, 0, "FAILED", np.zeros(0), 0.0, 0.0, f"{type(error).__name__}: {error}")


def run_convergence(problems: Sequence[Problem], methods: Sequence[str], rtol: float,
                    maxiter: int | None = None, progress: bool | None = None,
                    runners: Mapping[str, Callable[..., MethodRun]] | None = None
                    ) -> ConvergenceRecord:
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
    runners : mapping, optional
        Method name -> runner; default :data:`bench.methods.METHODS`
        (:data:`bench.many_rhs.RHS_METHODS` for several right-hand sides).
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
                run = (runners or METHODS)[method](problem, rtol, limit)
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
            record.histories.append({"problem": problem.name, "n": problem.n, "method": method,
                                     "relative_residual": residual.tolist(),
                                     "time_s": seconds.tolist(),
                                     "time_to_solution_s": row["time_to_solution_s"]})
    except KeyboardInterrupt:
        record.interrupted = True
    finally:
        bar.close()
    return record


SWEEP_SPREAD = 0.2
"""Mesh independence, as the convergence table judges it: over a size sweep
a method's iteration counts stay within 20% of each other (largest over
smallest at most 1.2)."""


def size_sweep(record: ConvergenceRecord) -> tuple[list[dict], list[str]]:
    """Each method's iteration counts over the problem sizes of ``record``, side by side.

    Returns the rows and their columns: ``method``, one ``n=<n>`` column per
    size (in the order run), ``spread`` (largest count over smallest, minus
    one) and ``mesh_independent`` (spread at most :data:`SWEEP_SPREAD`).
    A size where the method did not converge shows its reason instead of a
    count, and the method gets no verdict.

    Examples
    --------
    >>> record = ConvergenceRecord(rows=[
    ...     {"method": "minres", "n": 530, "iterations": 54, "converged": True, "reason": ""},
    ...     {"method": "minres", "n": 2210, "iterations": 61, "converged": True, "reason": ""}])
    >>> rows, columns = size_sweep(record)
    >>> columns, rows[0]["spread"], rows[0]["mesh_independent"]
    (['method', 'n=530', 'n=2210', 'spread', 'mesh_independent'], 0.1296, True)
    """
    sizes: list[int] = []
    for row in record.rows:
        if row["n"] not in sizes:
            sizes.append(row["n"])
    columns = ["method"] + [f"n={n}" for n in sizes] + ["spread", "mesh_independent"]
    table: dict[str, dict] = {}
    for row in record.rows:
        entry = table.setdefault(row["method"], {"method": row["method"], "_counts": []})
        if row["converged"]:
            entry[f"n={row['n']}"] = row["iterations"]
            entry["_counts"].append(row["iterations"])
        else:
            # a count that met no verdict still shows, with why it is not one
            why = (f"true residual {row['true_relative_residual']:.1e}"
                   if str(row["reason"]).startswith("CONVERGED") else row["reason"])
            entry[f"n={row['n']}"] = (f"{row['iterations']} ({why})"
                                      if row["reason"] not in ("SKIPPED", "FAILED") else why)
            entry["_failed"] = True
    rows = []
    for entry in table.values():
        counts = entry.pop("_counts")
        if entry.pop("_failed", False) or len(counts) < len(sizes) or min(counts) < 1:
            entry["spread"], entry["mesh_independent"] = math.nan, "-"
        else:
            entry["spread"] = round(max(counts) / min(counts) - 1.0, 4)
            entry["mesh_independent"] = bool(entry["spread"] <= SWEEP_SPREAD)
        rows.append(entry)
    return rows, columns


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
    payload = {"rtol": rtol, "interrupted": record.interrupted, **(meta or {}),
               "columns": list(CONVERGENCE_COLUMNS) + ["note"],
               "rows": record.rows, "histories": record.histories}
    if _is_sweep(record):
        sweep_rows, sweep_columns = size_sweep(record)
        payload["sweep"] = {"columns": sweep_columns, "rows": sweep_rows,
                            "spread_limit": SWEEP_SPREAD}
    write_json(paths["json"], payload)
    plot_convergence(record.histories, paths["png"], title=f"{name} (rtol={rtol:g})", rtol=rtol)
    return paths


def _is_sweep(record: ConvergenceRecord) -> bool:
    return len({row["n"] for row in record.rows}) > 1


def print_convergence(record: ConvergenceRecord, stream=None) -> None:
    """The table, then one line per skipped or failed method with its note."""
    stream = stream or sys.stdout  # looked up per call: tests swap sys.stdout
    print(format_table(record.rows, CONVERGENCE_COLUMNS), file=stream)
    seen = set()
    for row in record.rows:
        # a sweep repeats a skipped method at every size: say why once
        if row["reason"] in ("SKIPPED", "FAILED") and (row["method"], row["note"]) not in seen:
            seen.add((row["method"], row["note"]))
            print(f"  {row['method']}: {row['reason'].lower()}: {row['note']}", file=stream)
    if _is_sweep(record):
        sweep_rows, sweep_columns = size_sweep(record)
        print(f"\niterations by size (mesh independent: largest / smallest count "
              f"<= {1 + SWEEP_SPREAD:g})", file=stream)
        print(format_table(sweep_rows, sweep_columns), file=stream)
    if record.interrupted:
        print("interrupted: the rows above are the ones finished before Ctrl-C", file=stream)
