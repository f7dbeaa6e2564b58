"""``python -m bench sketch``: sketched Newton on equality-constrained problems against scipy.

Problems: the Hock-Schittkowski set of :mod:`bench.hock_schittkowski`,
constrained logistic regression on scikit-learn's breast-cancer data
(Hong et al.'s experiment: ``min mean log(1 + exp(-y a'x))`` subject to
``A x = b`` and ``||x||^2 = 1``), and a small PDE-constrained control
problem (5-point Laplacian state equation on an N x N grid).

Methods: :func:`linsolve.sketched_newton` with three
sketches of the KKT system (``kaczmarz``: single rows, ``block``: half of
the rows per step, ``gaussian``: a Gaussian sketch as wide as the system,
i.e. an exact projection), and scipy.optimize's ``SLSQP`` and
``trust-constr`` with the same derivatives. The KKT residual of every row is
measured the same way: ``||(grad f + G' lam, c)||`` at the returned ``x``
with least-squares multipliers ``lam``. A problem with a known optimum
counts as solved when the method says it converged and
``|f - f*| <= 1e-4 max(1, |f*|)``. Logistic regression has no optimum in the
literature (``f_star`` is NaN): a method's own convergence claim is not
evidence there, so it counts as solved when the KKT residual measured here is
at most ``KKT_TOLERANCE`` (the ``gtol`` given to the sketched methods); the
``solved_by`` column says which test a row passed or failed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

from linsolve.sketch.constrained import constrained_problem
from linsolve.sketch.newton import sketched_newton

from .hock_schittkowski import ConstrainedBenchProblem, hock_schittkowski_problems
from .table import format_table, write_csv, write_json

SKETCH_COLUMNS = ("problem", "n", "m", "method", "reason", "converged", "outer_iterations",
                  "inner_steps", "kkt_residual", "fun", "f_star", "f_error", "solved", "solved_by",
                  "time_s")
METHODS = ("kaczmarz", "block", "gaussian", "SLSQP", "trust-constr")
OBJECTIVE_TOLERANCE = 1e-4
# gtol of the sketched methods, and the bar for problems without a known f*
KKT_TOLERANCE = 1e-6
SOLVED_BY_OBJECTIVE = "f_star"
SOLVED_BY_KKT = "kkt (f* unknown)"


def logistic_regression_problem(n_constraints: int = 3, seed: int = 0) -> ConstrainedBenchProblem:
    """Constrained logistic regression on scikit-learn's breast-cancer data (569 x 30).

    Features standardised; ``A`` (``n_constraints`` x 30) Gaussian and
    ``b = A x_feasible`` for a random unit ``x_feasible`` so that ``A x = b``
    and ``||x||^2 = 1`` have common points. Start: the unit vector
    ``ones / sqrt(30)``. ``f*``: none in the literature; the table compares
    the methods with each other.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    X = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    y = np.where(data.target > 0, 1.0, -1.0)
    N, d = X.shape
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n_constraints, d))
    feasible = rng.standard_normal(d)
    feasible /= np.linalg.norm(feasible)
    b = A @ feasible
    Xy = X * y[:, None]

    def fun(x):
        return np.mean(np.logaddexp(0.0, -Xy @ x))

    def grad(x):
        s = 0.5 * (1.0 - np.tanh(0.5 * (Xy @ x)))  # sigmoid(-y a'x), stable
        return -(Xy.T @ s) / N

    def cons(x):
        return np.concatenate([A @ x - b, [x @ x - 1.0]])

    def jac(x):
        return np.vstack([A, 2.0 * x[None, :]])

    def hess_lagrangian(x, lam):
        p = 0.5 * (1.0 - np.tanh(0.5 * (Xy @ x)))
        return (X.T * (p * (1.0 - p))) @ X / N + 2.0 * lam[-1] * np.eye(d)

    problem = constrained_problem(fun, cons, grad=grad, jac=jac, hess_lagrangian=hess_lagrangian,
                                  name="logistic")
    return ConstrainedBenchProblem("logreg-cancer", problem, np.full(d, 1.0 / math.sqrt(d)), None,
                                   f"breast cancer {N} x {d}, {n_constraints} linear + norm "
                                   "constraint")


def pde_control_problem(N: int = 6, alpha: float = 1e-3) -> ConstrainedBenchProblem:
    """Distributed control of the Poisson equation on an N x N interior grid.

    ``-Laplace y = u`` with zero boundary values, 5-point differences,
    ``h = 1/(N + 1)``; minimise ``(1/2) ||y - y_d||^2 + (alpha/2) ||u||^2``
    (grid sums) with target ``y_d = sin(pi s) sin(pi t)``. Written in the
    scaled control ``v = h^2 u`` so that the state equation reads
    ``L y - v = 0`` with ``L`` the unscaled stencil ``[4, -1]``, and the
    objective ``(1/2) ||y - y_d||^2 + (alpha / (2 h^4)) ||v||^2``: the same
    minimiser, a KKT matrix with entries of order one. Variables
    ``(y, v)``, n = 2 N^2, m = N^2. ``f*`` from a direct solve of the
    (linear) KKT system.
    """
    h = 1.0 / (N + 1)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    L = (sp.kron(sp.eye(N), T) + sp.kron(T, sp.eye(N))).toarray()
    grid = np.arange(1, N + 1) * h
    target = np.outer(np.sin(np.pi * grid), np.sin(np.pi * grid)).ravel()
    k = N * N
    J = np.hstack([L, -np.eye(k)])
    weights = np.concatenate([np.ones(k), np.full(k, alpha / h ** 4)])
    shift = np.concatenate([target, np.zeros(k)])

    def fun(x):
        return 0.5 * np.sum(weights * (x - shift) ** 2)

    def grad(x):
        return weights * (x - shift)

    problem = constrained_problem(fun, lambda x: J @ x, grad=grad, jac=lambda x: J,
                                  hess_lagrangian=lambda x, lam: np.diag(weights),
                                  name="pde-control")
    K = np.block([[np.diag(weights), J.T], [J, np.zeros((k, k))]])
    solution = np.linalg.solve(K, np.concatenate([weights * shift, np.zeros(k)]))[:2 * k]
    return ConstrainedBenchProblem(f"pde-control-N{N}", problem, np.zeros(2 * k),
                                   float(fun(solution)),
                                   f"5-point Laplacian, {N}x{N} grid, alpha={alpha}; f* direct")


def kkt_residual(problem, x) -> float:
    """``||(grad f + G' lam, c)||`` with least-squares multipliers at ``x``.

    ``inf`` where ``x`` or the derivatives there are not finite (``lstsq``
    would raise instead, and lose the whole table to one diverged method).

    Examples
    --------
    >>> from bench.hock_schittkowski import hock_schittkowski_problems
    >>> hs6 = hock_schittkowski_problems()[0]
    >>> kkt_residual(hs6.problem, np.array([1.0, 1.0]))
    0.0
    >>> kkt_residual(hs6.problem, np.array([np.nan, 1.0]))
    inf
    """
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)):
        return math.inf
    grad, G, c = problem.grad(x), problem.jac(x), problem.cons(x)
    if not (np.all(np.isfinite(grad)) and np.all(np.isfinite(G)) and np.all(np.isfinite(c))):
        return math.inf
    lam = -np.linalg.lstsq(G.T, grad, rcond=None)[0]
    return math.hypot(float(np.linalg.norm(grad + G.T @ lam)), float(np.linalg.norm(c)))


def _sketch_options(method: str, bench: ConstrainedBenchProblem) -> dict:
    size = bench.n + bench.m
    return {"kaczmarz": {"sketch": "rows", "sketch_size": 1},
            "block": {"sketch": "rows", "sketch_size": max(1, (size + 1) // 2)},
            "gaussian": {"sketch": "gaussian", "sketch_size": size}}[method]


def _run_scipy(method: str, bench: ConstrainedBenchProblem, maxiter: int):
    from scipy.optimize import NonlinearConstraint, minimize

    p = bench.problem
    m = bench.m
    if method == "SLSQP":
        constraints = [{"type": "eq", "fun": p.cons, "jac": p.jac}]
        result = minimize(p.fun, bench.x0, jac=p.grad, method="SLSQP", constraints=constraints,
                          options={"maxiter": maxiter, "ftol": 1e-12})
        return result.x, bool(result.success), result.message, int(result.nit), 0
    zero = np.zeros(m)
    constraint = NonlinearConstraint(
        p.cons, zero, zero, jac=p.jac,
        hess=lambda x, v: p.hess_lagrangian(x, v) - p.hess_lagrangian(x, zero))
    result = minimize(p.fun, bench.x0, jac=p.grad, hess=lambda x: p.hess_lagrangian(x, zero),
                      method="trust-constr", constraints=[constraint],
                      options={"maxiter": maxiter, "gtol": 1e-8, "xtol": 1e-12})
    inner = int(getattr(result, "cg_niter", 0))
    return result.x, result.status in (1, 2), result.message, int(result.nit), inner


def run_one(method: str, bench: ConstrainedBenchProblem, *, maxiter: int = 100,
            max_inner: int = 20_000, seed: int = 0) -> dict:
    """One row of the table."""
    start = time.perf_counter()
    if method in ("SLSQP", "trust-constr"):
        x, converged, message, outer, inner = _run_scipy(method, bench, maxiter)
        reason = "CONVERGED" if converged else "NOT_CONVERGED: " + str(message)[:40]
    else:
        options = _sketch_options(method, bench)
        # the inner budget counts sketch steps; a block step costs sketch_size row steps
        result = sketched_newton(bench.problem, bench.x0, seed=seed, gtol=KKT_TOLERANCE,
                                 maxiter=maxiter,
                                 max_inner=max(50, max_inner // options["sketch_size"]),
                                 **options)
        x, converged, reason = result.x, result.converged, result.reason
        outer, inner = result.iterations, result.extra["inner_total"]
    elapsed = time.perf_counter() - start
    fun = bench.problem.fun(x)
    residual = kkt_residual(bench.problem, x)
    if bench.f_star is None:
        # no optimum to compare with: judge the point, not the method's claim
        f_error = float("nan")
        solved, solved_by = residual <= KKT_TOLERANCE, SOLVED_BY_KKT
    else:
        f_error = abs(fun - bench.f_star)
        solved = bool(converged) and f_error <= OBJECTIVE_TOLERANCE * max(1.0, abs(bench.f_star))
        solved_by = SOLVED_BY_OBJECTIVE
    return {"problem": bench.name, "n": bench.n, "m": bench.m, "method": method,
            "reason": reason, "converged": bool(converged), "outer_iterations": outer,
            "inner_steps": inner, "kkt_residual": residual, "fun": float(fun),
            "f_star": float("nan") if bench.f_star is None else float(bench.f_star),
            "f_error": f_error, "solved": bool(solved), "solved_by": solved_by, "time_s": elapsed}


def sketch_problems(names=None, *, quick: bool = False) -> list[ConstrainedBenchProblem]:
    """The problems of the table (``quick``: HS6, HS28, HS48 and a 4 x 4 control problem)."""
    problems = hock_schittkowski_problems()
    if quick:
        problems = [p for p in problems if p.name in ("HS6", "HS28", "HS48")]
        problems.append(pde_control_problem(4))
    else:
        problems += [logistic_regression_problem(), pde_control_problem()]
    if names:
        wanted = {name.strip().lower() for name in names}
        problems = [p for p in problems if p.name.lower() in wanted]
        if not problems:
            raise ValueError(f"no problem among {sorted(wanted)}")
    return problems


def sketch_parser(prog: str) -> argparse.ArgumentParser:
    """Command-line options of ``python -m bench sketch``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Sketched Newton on equality-constrained problems vs scipy.")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--problems", help="comma-separated problem names (default all)")
    parser.add_argument("--quick", action="store_true", help="three HS problems and a 4x4 grid")
    parser.add_argument("--maxiter", type=int, default=100, help="outer iterations (default 100)")
    parser.add_argument("--max-inner", type=int, default=20_000,
                        help="row steps per outer iteration (default 20000; a block "
                             "sketch of size s gets max(50, this / s) steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--name", default="sketch", help="stem of the output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_sketch_command(args: argparse.Namespace) -> int:
    """Run the table, print it, write ``<out>/<name>.csv`` and ``.json``.

    Returns the exit status: 0, 2 after ``error: ...`` for bad input, 130
    after Ctrl-C (the finished rows are written).
    """
    from ._progress import progress_bar

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    try:
        if unknown or not methods:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
        if args.maxiter < 1 or args.max_inner < 1:
            raise ValueError("--maxiter and --max-inner must be at least 1")
        problems = sketch_problems(args.problems.split(",") if args.problems else None,
                                   quick=args.quick)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = []
    try:
        with progress_bar(total=len(problems) * len(methods), desc="sketch",
                          disable=args.no_progress) as bar:
            for bench in problems:
                for method in methods:
                    bar.set_postfix_str(f"{bench.name} {method}")
                    rows.append(run_one(method, bench, maxiter=args.maxiter,
                                        max_inner=args.max_inner, seed=args.seed))
                    bar.update()
    except KeyboardInterrupt:
        interrupted = True
    else:
        interrupted = False
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.name)
    write_csv(stem + ".csv", rows, SKETCH_COLUMNS)
    write_json(stem + ".json", {"columns": list(SKETCH_COLUMNS), "rows": rows,
                                "objective_tolerance": OBJECTIVE_TOLERANCE,
                                "kkt_tolerance": KKT_TOLERANCE,
                                "interrupted": interrupted,
                                "notes": {p.name: p.note for p in problems if p.note}})
    print(format_table(rows, SKETCH_COLUMNS))
    unknown = sorted({row["problem"] for row in rows if row["solved_by"] == SOLVED_BY_KKT})
    if unknown:
        print(f"note: f* unknown for {', '.join(unknown)}: solved means KKT residual <= "
              f"{KKT_TOLERANCE:g} at the returned x, whatever the method claims; elsewhere "
              f"converged and |f - f*| <= {OBJECTIVE_TOLERANCE:g} max(1, |f*|)")
    solved = {}
    for row in rows:
        solved.setdefault(row["method"], []).append(row["solved"])
    print("solved: " + ", ".join(f"{m} {sum(v)}/{len(v)}" for m, v in solved.items()))
    print(f"wrote {stem}.csv, {stem}.json")
    return 130 if interrupted else 0
