"""The solvers a convergence table compares, each run the same way on one :class:`Problem`.

Every method is a function ``(problem, rtol, maxiter) -> MethodRun``. The
histories are relative residual norms ``||r_k|| / ||b||``, first entry at
``k = 0``. How they are obtained differs, and the timings are kept clean:

- our ``pcg`` returns its residual history in the timed solve itself (its
  recursive residual norms, replaced by true ones where it checked);
- scipy's ``cg`` has no history, so a *separate* run records
  ``||b - A x_k||`` in a callback; the reported time comes from a run
  without callback, so the extra SpMV per iteration is not charged.

The plot's curves come from one more source, the same for every method: a
run with a :class:`_Trace` callback, which stamps the time of each
iteration and then computes the true relative residual ``||b - A x_k|| /
||b||``; the time spent on that residual is subtracted from the later
stamps, so the time axis is the solver's own (setup included), measured
per iteration rather than interpolated as ``setup + k * mean``. Our pcg,
scipy's cg and pyamg's V-cycle under scipy's cg all go through it.

Setup (building the preconditioner or the AMG hierarchy) is timed apart from
the solve. Our solves are preceded by a two-iteration warm-up on the same
system so that Numba compilation (once per process) is not timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .problems import Problem


@dataclass(frozen=True)
class MethodRun:
    """What one method did on one problem.

    Attributes
    ----------
    x : numpy.ndarray or None
        Final iterate (None when the method was skipped).
    iterations : int
    reason : str
        PETSc reason name, or ``"SKIPPED"``.
    residual_history : numpy.ndarray
        Relative residual norms, length ``iterations + 1``.
    setup_time, solve_time : float
        Seconds.
    note : str
        How the numbers were obtained, or why the method was skipped.
    """

    x: np.ndarray | None
    iterations: int
    reason: str
    residual_history: np.ndarray
    setup_time: float
    solve_time: float
    note: str = ""
    extra: dict = field(default_factory=dict)
    trace_time_s: np.ndarray | None = None
    trace_residual: np.ndarray | None = None


class _Trace:
    """Solver callback: per-iteration timestamps and true relative residuals.

    ``time_s[k]`` is ``setup_time`` plus the solver's own time up to the
    end of iteration ``k``: the SpMV of the residual, computed here only
    for the plot, is timed and subtracted from every later stamp.
    ``residual[0]`` belongs to ``x0 = 0`` (all our runs start there).
    """

    def __init__(self, problem: Problem, setup_time: float):
        self.A, self.b = problem.A, problem.b
        norm_b = float(np.linalg.norm(self.b))
        self.norm_b = norm_b if norm_b > 0 else 1.0
        self.setup_time = setup_time
        self.time_s = [setup_time]
        self.residual = [norm_b / self.norm_b]
        self.excluded = 0.0
        self.start = time.perf_counter()

    def __call__(self, xk) -> None:
        now = time.perf_counter()
        self.time_s.append(self.setup_time + now - self.start - self.excluded)
        self.residual.append(float(np.linalg.norm(self.b - self.A @ xk)) / self.norm_b)
        self.excluded += time.perf_counter() - now

    def arrays(self) -> dict:
        return {"trace_time_s": np.asarray(self.time_s), "trace_residual": np.asarray(self.residual)}


def _skipped(note: str) -> MethodRun:
    return MethodRun(None, 0, "SKIPPED", np.zeros(0), 0.0, 0.0, note)


def _scipy_reason(info: int) -> str:
    # scipy's info: 0 converged (by its recursive residual), > 0 iteration
    # limit, < 0 breakdown; mapped to the PETSc names our pcg uses.
    if info == 0:
        return "CONVERGED_RTOL"
    return "DIVERGED_ITS" if info > 0 else "DIVERGED_BREAKDOWN"


def _scipy_cg_run(problem: Problem, rtol: float, maxiter: int, M=None, setup_time: float = 0.0,
                  label: str = "scipy cg") -> MethodRun:
    from scipy.sparse.linalg import cg

    A, b = problem.A, problem.b
    start = time.perf_counter()
    x, info = cg(A, b, rtol=rtol, atol=0.0, maxiter=maxiter, M=M)
    solve_time = time.perf_counter() - start

    # Second run only for the history and the plot's timestamps; its cost
    # (one extra SpMV per step) is not in solve_time nor in the stamps.
    trace = _Trace(problem, setup_time)
    cg(A, b, rtol=rtol, atol=0.0, maxiter=maxiter, M=M, callback=trace)
    history = np.asarray(trace.residual)
    note = f"{label}; history from a separate run with a callback computing ||b - A x_k||"
    return MethodRun(x, len(history) - 1, _scipy_reason(info), history, setup_time,
                     solve_time, note, **trace.arrays())


def scipy_cg(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy.sparse.linalg.cg without preconditioner (the reference)."""
    return _scipy_cg_run(problem, rtol, maxiter)


def pyamg_sa_cg(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """pyamg smoothed aggregation, one V-cycle as preconditioner of scipy's cg."""
    try:
        import pyamg
    except ImportError as error:
        return _skipped(f"pyamg not installed: {error}")
    start = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(problem.A)
    M = ml.aspreconditioner(cycle="V")
    setup_time = time.perf_counter() - start
    return _scipy_cg_run(problem, rtol, maxiter, M=M, setup_time=setup_time,
                         label=f"pyamg SA ({len(ml.levels)} levels) + scipy cg")


def _ours(make_preconditioner: Callable | None, label: str) -> Callable[..., MethodRun]:
    def run(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
        from linsolve import pcg

        A, b = problem.A, problem.b
        M = None
        setup_time = 0.0
        if make_preconditioner is not None:
            try:
                start = time.perf_counter()
                M = make_preconditioner(A)
                setup_time = time.perf_counter() - start
            except ImportError as error:
                return _skipped(f"{label}: preconditioner unavailable ({error})")
        # Warm-up on the same system so Numba compiles outside the timing; a
        # loose rtol makes it pass the convergence path too (true-residual
        # check), which compiles kernels a maxiter exit never touches.
        # check_symmetric=False: scipy's cg has no such probe, and the
        # gallery matrices are SPD; the timing compares the solves alone.
        pcg(A, b, M=M, rtol=rtol, maxiter=2, check_symmetric=False)
        pcg(A, b, M=M, rtol=0.5, maxiter=10, check_symmetric=False)
        start = time.perf_counter()
        result = pcg(A, b, M=M, rtol=rtol, maxiter=maxiter, check_symmetric=False)
        solve_time = time.perf_counter() - start
        history = np.asarray(result.residual_norms, dtype=np.float64) / float(np.linalg.norm(b))
        # Third run for the plot: the same iterates, stamped per iteration.
        trace = _Trace(problem, setup_time)
        pcg(A, b, M=M, rtol=rtol, maxiter=maxiter, callback=trace, check_symmetric=False)
        return MethodRun(result.x, result.iterations, result.reason, history, setup_time,
                         solve_time, label, {"converged": bool(result.converged),
                                             "matvecs": int(result.matvecs)}, **trace.arrays())
    run.__doc__ = f"linsolve.pcg: {label}."
    return run


def _jacobi(A):
    from linsolve.precond import jacobi
    return jacobi(A)


def _ssor(A):
    from linsolve.precond import ssor
    return ssor(A, omega=1.0)


def _ichol0(A):
    from linsolve.precond import ichol0
    return ichol0(A)


def _amg(A):
    from linsolve.precond import amg
    return amg(A)


CHEBYSHEV_DEGREE = 4


def _chebyshev(A):
    from linsolve.precond import chebyshev
    return chebyshev(A, CHEBYSHEV_DEGREE)


METHODS: dict[str, Callable[..., MethodRun]] = {
    "scipy-cg": scipy_cg,
    "pyamg-sa-cg": pyamg_sa_cg,
    "pcg": _ours(None, "pcg, no preconditioner"),
    "pcg-jacobi": _ours(_jacobi, "pcg + jacobi"),
    "pcg-ssor": _ours(_ssor, "pcg + ssor(omega=1)"),
    "pcg-ichol0": _ours(_ichol0, "pcg + ichol0"),
    "pcg-amg": _ours(_amg, "pcg + amg (pyamg SA V-cycle)"),
    "pcg-chebyshev": _ours(_chebyshev, f"pcg + chebyshev(degree={CHEBYSHEV_DEGREE})"),
}
"""Method name -> runner, in table order."""


def parse_methods(spec: str | None) -> list[str]:
    """Split ``"a,b,c"`` into method names, checking each; None means all.

    Examples
    --------
    >>> parse_methods("pcg, scipy-cg")
    ['pcg', 'scipy-cg']
    """
    if spec is None:
        return list(METHODS)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown or spec!r}; choose from {', '.join(METHODS)}")
    return names
