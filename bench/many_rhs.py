"""Many right-hand sides in the convergence table: batched and block CG against k separate solves.

``python -m bench linear --rhs k`` solves ``A X = B`` for ``k`` right-hand
sides, the rows of ``B`` (scipy's batched convention, shape ``(k, n)``):
row 0 is the problem's own ``b``, the others seeded random vectors
(:func:`bench.problems.rhs`), so every method sees the same block. The
methods (:data:`RHS_METHODS`):

=================  ==========================================================
``scipy-cg``       scipy's ``cg``, one call per system
``pcg``            our ``pcg``, one call per system
``pcg-batched``    ``pcg(A, B)``: k recurrences sharing each product with ``A``
``block-cg``       ``block_cg(A, B)``: one shared Krylov space, deflated
=================  ==========================================================

A row's ``iterations`` is the largest single-system count (block CG: its
block iterations), ``solve_time_s`` the time until all ``k`` solutions are
held, and the true residual the worst system's. ``time_per_iteration_ms``
divides the solve by the work done: the sum of the ``k`` counts for the
separate calls, the (block) iteration count for the others, where one
iteration advances every system still running.

The plot's curves (:class:`_BlockTrace`) are the worst relative true
residual over the ``k`` systems, a system not yet started counting with its
initial residual; for separate calls the iteration axis runs over the calls
one after another, so it ends at the sum of the counts. The time axis is
the solver's own, as for one right-hand side (:class:`bench.methods._Trace`).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .methods import MethodRun, _kind_note, _skipped
from .problems import SPD, Problem, rhs


def rhs_problem(problem: Problem, k: int, seed: int = 0) -> Problem:
    """``problem`` with ``k`` right-hand sides: its own ``b`` first, then seeded random ones.

    Examples
    --------
    >>> from bench.problems import make_problem
    >>> block = rhs_problem(make_problem("poisson2d", 4), 3)
    >>> block.b.shape, block.name, bool((block.b[0] == make_problem("poisson2d", 4).b).all())
    ((3, 16), 'poisson2d (k=3)', True)
    """
    if int(k) != k or k < 1:
        raise ValueError(f"--rhs must be a whole number >= 1, got {k!r}")
    n = problem.n
    B = np.stack([np.asarray(problem.b, dtype=np.float64)]
                 + [rhs(n, seed + 1000 + j) for j in range(1, int(k))])
    return Problem(f"{problem.name} (k={int(k)})", problem.A, B, problem.kind, problem.blocks)


class _BlockTrace:
    """Callbacks stamping the time and the worst relative true residual over ``k`` systems.

    ``system(j)`` is the callback of a single-vector solve of system ``j``;
    ``block`` that of a batched or block solve (it receives all ``k``
    iterates). Only the rows that changed are recomputed; the time spent
    here is subtracted from every later stamp.
    """

    def __init__(self, problem: Problem, setup_time: float):
        self.A, self.B = problem.A, problem.b
        norms = np.linalg.norm(self.B, axis=1)
        self.norms = np.where(norms > 0, norms, 1.0)
        self.relative = norms / self.norms  # x0 = 0
        self.per_system: list[list[float]] = [[float(r)] for r in self.relative]
        self.setup_time = setup_time
        self.time_s = [setup_time]
        self.residual = [float(self.relative.max())]
        self.excluded = 0.0
        self.start = time.perf_counter()

    def _update(self, rows, X) -> None:
        now = time.perf_counter()
        self.time_s.append(self.setup_time + now - self.start - self.excluded)
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        R = self.B[rows] - (self.A @ X.T).T
        self.relative[rows] = np.linalg.norm(R, axis=1) / self.norms[rows]
        for j in rows:
            self.per_system[j].append(float(self.relative[j]))
        self.residual.append(float(self.relative.max()))
        self.excluded += time.perf_counter() - now

    def system(self, j: int) -> Callable:
        return lambda xk: self._update([j], xk)

    def block(self, X) -> None:
        self._update(list(range(self.B.shape[0])), X)

    def arrays(self) -> dict:
        return {"trace_time_s": np.asarray(self.time_s),
                "trace_residual": np.asarray(self.residual)}


def _reason(reasons) -> str:
    """The block's reason: the first system's that did not converge, else the first one's."""
    reasons = [str(reason) for reason in np.ravel(reasons)]
    failed = [reason for reason in reasons if not reason.startswith("CONVERGED")]
    if failed:
        return f"{failed[0]} ({len(failed)} of {len(reasons)})"
    return reasons[0]


def _separate(solve: Callable, problem: Problem, rtol: float, maxiter: int,
              label: str) -> MethodRun:
    """``solve(b, callback) -> (x, iterations, reason)`` once per row of ``problem.b``."""
    B = problem.b
    k = B.shape[0]
    start = time.perf_counter()
    solved = [solve(B[j], None) for j in range(k)]
    solve_time = time.perf_counter() - start
    trace = _BlockTrace(problem, 0.0)
    for j in range(k):
        solve(B[j], trace.system(j))
    counts = [iterations for _, iterations, _ in solved]
    slowest = int(np.argmax(counts))
    note = (f"{label}, one call per system (k={k}); iterations: the largest single count "
            f"(sum {sum(counts)}); time: to all k solutions; plot: the calls one after another")
    return MethodRun(np.stack([x for x, _, _ in solved]), max(counts),
                     _reason([reason for _, _, reason in solved]),
                     np.asarray(trace.per_system[slowest]), 0.0, solve_time, note,
                     {"work_iterations": sum(counts), "iterations_per_system": counts},
                     **trace.arrays())


def scipy_cg_separate(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy's ``cg``, one call per right-hand side."""
    from scipy.sparse.linalg import cg

    note = _kind_note(problem, (SPD,), "scipy cg")
    if note:
        return _skipped(note)
    A = problem.A

    def solve(b, callback):
        counted = []

        def count(xk):
            counted.append(1)
            if callback is not None:
                callback(xk)
        x, info = cg(A, b, rtol=rtol, atol=0.0, maxiter=maxiter, callback=count)
        reason = "CONVERGED_RTOL" if info == 0 else ("DIVERGED_ITS" if info > 0
                                                     else "DIVERGED_BREAKDOWN")
        return x, len(counted), reason
    return _separate(solve, problem, rtol, maxiter, "scipy cg")


def pcg_separate(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """Our ``pcg``, one call per right-hand side."""
    from linsolve import pcg

    note = _kind_note(problem, (SPD,), "pcg")
    if note:
        return _skipped(note)
    A = problem.A
    pcg(A, problem.b[0], rtol=0.5, maxiter=10, check_symmetric=False)  # compile outside timing

    def solve(b, callback):
        result = pcg(A, b, rtol=rtol, maxiter=maxiter, callback=callback, check_symmetric=False)
        return result.x, int(result.iterations), result.reason
    return _separate(solve, problem, rtol, maxiter, "linsolve pcg")


def _together(solver: Callable, problem: Problem, rtol: float, maxiter: int, label: str,
              **options) -> MethodRun:
    """``solver(A, B, ...)`` returning a :class:`linsolve.BatchSolveResult`."""
    A, B = problem.A, problem.b
    k = B.shape[0]
    solver(A, B, rtol=0.5, maxiter=10, **options)  # compile outside the timing
    start = time.perf_counter()
    result = solver(A, B, rtol=rtol, maxiter=maxiter, **options)
    solve_time = time.perf_counter() - start
    trace = _BlockTrace(problem, 0.0)
    solver(A, B, rtol=rtol, maxiter=maxiter, callback=trace.block, **options)
    counts = [int(c) for c in np.ravel(result.iterations)]
    # the history is the trace's: the worst true residual over the systems
    # at each shared iteration (the timed run has no callback to record it)
    note = (f"{label}, k={k}; iterations: the largest per system (counts {min(counts)} to "
            f"{max(counts)}); time: to all k solutions")
    return MethodRun(np.asarray(result.x), max(counts), _reason(result.reason),
                     np.asarray(trace.residual), 0.0, solve_time, note,
                     {"iterations_per_system": counts}, **trace.arrays())


def pcg_batched(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """``pcg(A, B)``: the k systems iterate together, one product with A per iteration."""
    from linsolve import pcg

    note = _kind_note(problem, (SPD,), "pcg batched")
    if note:
        return _skipped(note)
    return _together(pcg, problem, rtol, maxiter, "linsolve pcg(A, B), batched",
                     check_symmetric=False)


def block_cg_run(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """``block_cg(A, B)``: one shared Krylov space for all right-hand sides."""
    from linsolve import block_cg

    note = _kind_note(problem, (SPD,), "block_cg")
    if note:
        return _skipped(note)
    return _together(block_cg, problem, rtol, maxiter, "linsolve block_cg(A, B)")


RHS_METHODS: dict[str, Callable[..., MethodRun]] = {
    "scipy-cg": scipy_cg_separate,
    "pcg": pcg_separate,
    "pcg-batched": pcg_batched,
    "block-cg": block_cg_run,
}
"""The methods of a ``--rhs`` table, in table order."""


def parse_rhs_methods(spec: str | None) -> list[str]:
    """Split ``"a,b"`` into names of :data:`RHS_METHODS` (None: all of them).

    Examples
    --------
    >>> parse_rhs_methods("pcg-batched, block-cg")
    ['pcg-batched', 'block-cg']
    """
    if spec is None:
        return list(RHS_METHODS)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in RHS_METHODS]
    if unknown or not names:
        raise ValueError(f"with --rhs, --methods takes a subset of {', '.join(RHS_METHODS)}; "
                         f"got {unknown or spec!r}")
    return names
