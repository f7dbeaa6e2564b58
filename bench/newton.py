"""Cost tables of the Newton family (part of ``python -m bench curvature``).

For every problem of :mod:`bench.newton_problems` each method runs from the
problem's start to ``||grad|| <= gtol`` (default 1e-8) or its iteration
limit. Rows give iterations, the oracle counts (function values,
gradients, Hessians -- or Hessian-vector products for scipy's methods --
and factorisations), ``cost = n_grad + d * n_hess`` (a Hessian priced at
``d`` gradients, the convention of Doikov, Chayti and Jaggi), the final
gradient norm, ``f - f_best`` (``f_best``: the lowest value any method
reached on that problem) and the wall time to the tolerance.

Methods: pure Newton; damped Newton with the ``aicn``, ``root``,
``universal`` and ``greedy`` schedules (``L = 10`` on logistic problems,
1 elsewhere); lazy Newton (gradient regularisation, adaptive ``M``) with
periods 1, ``ceil(sqrt(d))`` and ``d``; gradient-normalized Newton with the
exact Hessian and, where the problem has one, its Gauss-Newton/Fisher
matrix; gradient descent with backtracking on the step (the first-order
reference); scipy.optimize's ``Newton-CG`` and ``trust-ncg`` (the outside
reference; ``n_hess`` counts their Hessian evaluations, ``n_factorizations``
is not applicable).

Use :func:`run_newton` (rows) and :data:`COLUMNS`; ``--quick`` keeps three
small problems.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable

import numpy as np

from . import newton_problems as problems
from ._threads import blas_one_thread
from .table import format_table, write_csv, write_json

__all__ = ["COLUMNS", "run_newton", "newton_problem_list", "newton_methods", "gradient_descent"]

COLUMNS = ("problem", "d", "method", "iterations", "reason", "converged", "n_fun", "n_grad",
           "n_hess", "n_factorizations", "cost", "grad_norm", "f_gap", "time_s")
GTOL = 1e-8


def newton_problem_list(quick: bool) -> list:
    """The problems of the table (three small ones with ``quick``)."""
    if quick:
        return [problems.breast_cancer(x0_scale=10.0), problems.rosenbrock(),
                problems.log_sum_exp(m=100, d=20)]
    return [problems.breast_cancer(), problems.breast_cancer(x0_scale=10.0),
            problems.digits_one_vs_rest(0), problems.synthetic_ill_conditioned(m=1000, d=200,
                                                                              cond=1e3),
            problems.log_sum_exp(), problems.rosenbrock(), problems.polytope_feasibility()]


def _label(problem) -> str:
    far = problem.x0.any() and problem.name not in ("rosenbrock", "polytope_feasibility")
    return problem.name + ("_far" if far else "")


def gradient_descent(fun, grad, x0, *, gtol: float = GTOL, maxiter: int = 10000,
                     L: float = 1.0):
    """Gradient descent with the authors' backtracking on ``L`` (doubling / halving).

    Returns a :class:`linsolve.MinimizeResult`.
    """
    from curvature.newton._hessian import Objective, finish, new_recorder, record

    start = time.perf_counter()
    x = np.array(x0, dtype=np.float64)
    rec = new_recorder()
    obj = Objective(fun, grad, np, x.shape[0], x.dtype, rec)
    f, g = obj.fun(x), obj.grad(x)
    for k in range(maxiter + 1):
        gnorm = float(np.linalg.norm(g))
        record(rec, fun=f, grad_norm=gnorm, step=0.0 if k == 0 else 1.0 / L)
        if not (math.isfinite(f) and math.isfinite(gnorm)):
            return finish(rec, x, f, "DIVERGED_NANORINF", k, start, "NaN or Inf")
        if gnorm <= gtol:
            return finish(rec, x, f, "CONVERGED_GTOL", k, start, "gradient below gtol")
        if k == maxiter:
            break
        for _ in range(60):
            x_new = x - g / L
            f_new = obj.fun(x_new)
            if f_new <= f - 0.5 * gnorm ** 2 / L:
                break
            L *= 2.0
        else:
            return finish(rec, x, f, "DIVERGED_LINE_SEARCH", k, start, "no decrease")
        L = max(L / 2.0, 1e-12)
        x, f, g = x_new, f_new, obj.grad(x_new)
    return finish(rec, x, f, "DIVERGED_ITS", maxiter, start, "maxiter reached")


def newton_methods(problem, quick: bool) -> list[tuple[str, Callable]]:
    """``(name, run)`` pairs; ``run()`` returns a dict of the row's measured fields."""
    from curvature.newton.gradient_normalized import gradient_normalized_newton
    from curvature.newton.lazy import lazy_newton
    from curvature.newton.damped import damped_newton

    p, d = problem, problem.dim
    L = 10.0 if "logistic" in p.name or p.name in ("breast_cancer",) or "digits" in p.name \
        else 1.0
    maxiter = 200 if quick else 500
    fgh = (p.fun, p.grad, p.hess, p.x0)
    methods = [("newton", lambda: damped_newton(*fgh, schedule="newton", gtol=GTOL,
                                                maxiter=maxiter))]
    for schedule in ("aicn", "root", "universal", "greedy"):
        methods.append((f"damped_{schedule}",
                        lambda s=schedule: damped_newton(*fgh, schedule=s, L=L, gtol=GTOL,
                                                         maxiter=maxiter)))
    for period in sorted({1, math.ceil(math.sqrt(d)), d}):
        methods.append((f"lazy_period_{period}",
                        lambda m=period: lazy_newton(*fgh, period=m, gtol=GTOL,
                                                     maxiter=20 * maxiter)))
    methods.append(("gradnorm_exact", lambda: gradient_normalized_newton(
        *fgh, gtol=GTOL, maxiter=maxiter)))
    if p.gauss_newton is not None:
        methods.append(("gradnorm_gauss_newton", lambda: gradient_normalized_newton(
            p.fun, p.grad, p.gauss_newton, p.x0, gtol=GTOL, maxiter=maxiter)))
    methods.append(("gradient_descent", lambda: gradient_descent(
        p.fun, p.grad, p.x0, gtol=GTOL, maxiter=2000 if quick else 20000)))
    methods.append(("scipy_newton_cg", lambda: _scipy(p, "Newton-CG", maxiter)))
    methods.append(("scipy_trust_ncg", lambda: _scipy(p, "trust-ncg", maxiter)))
    return methods


def _scipy(p, method: str, maxiter: int) -> dict:
    import scipy.optimize

    options = {"maxiter": maxiter}
    if method == "Newton-CG":
        options["xtol"] = 1e-12
    else:
        options["gtol"] = GTOL
    start = time.perf_counter()
    result = scipy.optimize.minimize(p.fun, p.x0, jac=p.grad, hessp=p.hvp or
                                     (lambda x, v: p.hess(x) @ v), method=method,
                                     options=options)
    elapsed = time.perf_counter() - start
    gnorm = float(np.linalg.norm(p.grad(result.x)))
    return {"iterations": int(result.nit), "reason": "success" if result.success else "failed",
            "converged": gnorm <= GTOL, "n_fun": int(result.nfev), "n_grad": int(result.njev),
            "n_hess": int(getattr(result, "nhev", 0)), "n_factorizations": math.nan,
            "fun": float(result.fun), "grad_norm": gnorm, "time_s": elapsed,
            "hess_is_hvp": True}


def _row(problem, name: str, outcome) -> dict:
    d = problem.dim
    if isinstance(outcome, dict):
        row = dict(outcome)
        # scipy counts Hessian-vector products: price each at one gradient
        row["cost"] = row["n_grad"] + row["n_hess"]
        row.pop("hess_is_hvp", None)
    else:
        row = {"iterations": outcome.iterations, "reason": outcome.reason,
               "converged": outcome.converged, "n_fun": outcome.n_fun,
               "n_grad": outcome.n_grad, "n_hess": outcome.n_hess,
               "n_factorizations": outcome.n_factorizations, "fun": outcome.fun,
               "grad_norm": float(outcome.history["grad_norm"][-1]), "time_s": outcome.time}
        row["cost"] = row["n_grad"] + d * row["n_hess"]
    row.update(problem=_label(problem), d=d, method=name)
    return row


def run_newton(out_dir: str | os.PathLike | None = None, quick: bool = False,
               progress: bool = True) -> list[dict]:
    """Run every method on every problem; write ``curvature_newton.csv/.json`` to ``out_dir``.

    Returns the rows (dicts with :data:`COLUMNS` and ``fun``). ``progress``
    prints one line per finished row to stderr.
    """
    with blas_one_thread():
        rows = _run_rows(quick, progress)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        write_csv(os.path.join(out_dir, "curvature_newton.csv"), rows, COLUMNS)
        write_json(os.path.join(out_dir, "curvature_newton.json"),
                   {"gtol": GTOL, "columns": list(COLUMNS), "rows": rows})
    return rows


def _run_rows(quick: bool, progress: bool) -> list[dict]:
    rows = []
    for problem in newton_problem_list(quick):
        problem_rows = []
        for name, run in newton_methods(problem, quick):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                try:
                    outcome = run()
                except Exception as error:  # a method that raises is a row, not a crash
                    outcome = {"iterations": 0, "reason": f"error: {type(error).__name__}",
                               "converged": False, "n_fun": 0, "n_grad": 0, "n_hess": 0,
                               "n_factorizations": 0, "fun": math.nan, "grad_norm": math.nan,
                               "time_s": math.nan}
            row = _row(problem, name, outcome)
            problem_rows.append(row)
            if progress:
                print(f"  {row['problem']}: {name} {row['reason']} in {row['iterations']} "
                      f"iterations", file=sys.stderr)
        finite = [r["fun"] for r in problem_rows if math.isfinite(r["fun"])]
        best = min(finite) if finite else math.nan
        for row in problem_rows:
            row["f_gap"] = row["fun"] - best
        rows.extend(problem_rows)
    return rows


def main(argv=None) -> int:  # pragma: no cover - thin command-line wrapper
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.newton", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="results")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rows = run_newton(args.out, quick=args.quick, progress=not args.no_progress)
    print(format_table(rows, COLUMNS))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
