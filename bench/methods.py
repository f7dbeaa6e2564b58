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
per iteration rather than interpolated as ``setup + k * mean``. Our
solvers, scipy's cg, minres and bicgstab and pyamg's gmres and bicgstab all
go through it. The GMRES solvers are the exception: scipy's and ours hand
their callback no iterate inside a restart cycle, only the Arnoldi
residual estimate, so their curves (and scipy's history) are those
estimates (:class:`_NormTrace`): ``||r_k|| / ||b||``, the true residual in
exact arithmetic, for ours (right preconditioning) and for scipy's without
a preconditioner; ``||M r_k|| / ||M b||`` for scipy's with one (left
preconditioning). pyamg's gmres does pass iterates.

Where a method does not apply to a problem's ``kind``
(:data:`bench.problems.KINDS`: CG needs an SPD matrix, MINRES a symmetric
one, the block-diagonal preconditioner a saddle point) its row is SKIPPED
with the reason, and so is a method whose module is missing (our Krylov
solvers are imported when they run). ``gmres`` counts ``maxiter`` in
restart cycles, as scipy does: every GMRES entry is given
``ceil(maxiter / RESTART)`` cycles, so its inner iterations are bounded as
the others' iterations are.

Setup (building the preconditioner or the AMG hierarchy) is timed apart from
the solve; the two add up to the table's headline, the time to solution.
Our solves are preceded by a short warm-up on the same system so that Numba
compilation (once per process) is not timed, and our preconditioners (and
the Stokes one, for pyamg's import) are built once untimed on a copy of the
matrix first (:func:`_warm_up`), for the same reason.
"""

from __future__ import annotations

import functools
import importlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .problems import KINDS, NONSYMMETRIC, SPD, SYMMETRIC_INDEFINITE, Problem

RESTART = 30
"""Krylov subspace dimension of every GMRES entry (scipy's default is 20)."""

SYMMETRIC = (SPD, SYMMETRIC_INDEFINITE)


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

    def finish(self, x) -> None:
        """Stamp the returned iterate if the solver returned without calling back on it.

        scipy's bicgstab does so when the half step's residual already meets
        the tolerance; the last point must be the returned iterate's. An
        iterate the callback saw gives the same residual to the bit.
        """
        now = time.perf_counter()
        residual = float(np.linalg.norm(self.b - self.A @ x)) / self.norm_b
        if residual != self.residual[-1]:
            self.time_s.append(self.setup_time + now - self.start - self.excluded)
            self.residual.append(residual)

    def arrays(self) -> dict:
        return {"trace_time_s": np.asarray(self.time_s), "trace_residual": np.asarray(self.residual)}


class _NormTrace(_Trace):
    """GMRES's ``callback_type="pr_norm"``: stamps and the solver's own residual estimate.

    scipy passes ``||M r_k|| / ||b||``; ``scale = ||b|| / ||M b||`` turns
    it into ``||M r_k|| / ||M b||``, 1 at ``k = 0``. No SpMV is spent here.
    """

    def __init__(self, problem: Problem, setup_time: float, scale: float = 1.0):
        super().__init__(problem, setup_time)
        self.residual = [1.0 if self.residual[0] > 0 else 0.0]
        self.scale = scale

    def __call__(self, relative_norm) -> None:
        self.time_s.append(self.setup_time + time.perf_counter() - self.start)
        self.residual.append(float(relative_norm) * self.scale)


def _skipped(note: str) -> MethodRun:
    return MethodRun(None, 0, "SKIPPED", np.zeros(0), 0.0, 0.0, note)


def _kind_note(problem: Problem, kinds: tuple[str, ...], label: str) -> str | None:
    """Why ``label`` does not apply to ``problem`` (None if it does)."""
    if problem.kind in kinds:
        return None
    wanted = " or ".join(kinds)
    return f"{label} needs a {wanted} matrix; {problem.name} is {problem.kind}"


def _for_kinds(kinds: tuple[str, ...], label: str):
    """Decorator: the runner returns a SKIPPED row on a problem of another kind."""
    def wrap(run: Callable[..., MethodRun]) -> Callable[..., MethodRun]:
        @functools.wraps(run)
        def checked(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
            note = _kind_note(problem, kinds, label)
            return _skipped(note) if note else run(problem, rtol, maxiter)
        checked.kinds = kinds
        return checked
    return wrap


def _cycles(maxiter: int) -> int:
    """Restart cycles that allow ``maxiter`` inner iterations (at least one)."""
    return max(1, math.ceil(maxiter / RESTART))


def _scipy_reason(info: int) -> str:
    # scipy's info: 0 converged (by its recursive residual), > 0 iteration
    # limit, < 0 breakdown; mapped to the PETSc names our pcg uses.
    if info == 0:
        return "CONVERGED_RTOL"
    return "DIVERGED_ITS" if info > 0 else "DIVERGED_BREAKDOWN"


def _scipy_run(solve: Callable, problem: Problem, rtol: float, maxiter: int, M=None,
               setup_time: float = 0.0, label: str = "scipy cg", **options) -> MethodRun:
    """A scipy (or pyamg) solver ``solve(A, b, rtol=, maxiter=, M=, callback=, **options)``.

    The timed solve runs without callback; a second run gives the history
    and the plot's stamps (its extra SpMV per step is in neither).
    """
    A, b = problem.A, problem.b
    start = time.perf_counter()
    x, info = solve(A, b, rtol=rtol, maxiter=maxiter, M=M, **options)
    solve_time = time.perf_counter() - start

    trace = _Trace(problem, setup_time)
    x_traced, _ = solve(A, b, rtol=rtol, maxiter=maxiter, M=M, callback=trace, **options)
    trace.finish(x_traced)
    history = np.asarray(trace.residual)
    note = f"{label}; history from a separate run with a callback computing ||b - A x_k||"
    return MethodRun(x, len(history) - 1, _scipy_reason(info), history, setup_time,
                     solve_time, note, **trace.arrays())


def _scipy_cg_run(problem: Problem, rtol: float, maxiter: int, M=None, setup_time: float = 0.0,
                  label: str = "scipy cg") -> MethodRun:
    from scipy.sparse.linalg import cg

    return _scipy_run(cg, problem, rtol, maxiter, M, setup_time, label, atol=0.0)


@_for_kinds((SPD,), "scipy cg")
def scipy_cg(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy.sparse.linalg.cg without preconditioner (the reference)."""
    return _scipy_cg_run(problem, rtol, maxiter)


@_for_kinds((SPD,), "pyamg SA + scipy cg")
def pyamg_sa_cg(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """pyamg smoothed aggregation, one V-cycle as preconditioner of scipy's cg."""
    try:
        import pyamg
    except ImportError as error:
        return _skipped(f"pyamg not installed: {error}")
    # imported above, outside the timing, as _warm_up does for ours
    start = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(problem.A)
    M = ml.aspreconditioner(cycle="V")
    setup_time = time.perf_counter() - start
    return _scipy_cg_run(problem, rtol, maxiter, M=M, setup_time=setup_time,
                         label=f"pyamg SA ({len(ml.levels)} levels) + scipy cg")


def _scipy_gmres_run(problem: Problem, rtol: float, maxiter: int, M=None,
                     setup_time: float = 0.0, label: str = "scipy gmres") -> MethodRun:
    from scipy.sparse.linalg import aslinearoperator, gmres

    A, b = problem.A, problem.b
    cycles = _cycles(maxiter)
    start = time.perf_counter()
    x, info = gmres(A, b, rtol=rtol, atol=0.0, restart=RESTART, maxiter=cycles, M=M)
    solve_time = time.perf_counter() - start

    norm_b = float(np.linalg.norm(b))
    norm_Mb = norm_b if M is None else float(np.linalg.norm(aslinearoperator(M).matvec(b)))
    trace = _NormTrace(problem, setup_time, norm_b / norm_Mb if norm_Mb > 0 else 1.0)
    gmres(A, b, rtol=rtol, atol=0.0, restart=RESTART, maxiter=cycles, M=M, callback=trace,
          callback_type="pr_norm")
    history = np.asarray(trace.residual)
    estimate = "||r_k|| / ||b||" if M is None else "||M r_k|| / ||M b|| (left-preconditioned)"
    note = (f"{label} (restart={RESTART}, {cycles} cycles at most); history: its Arnoldi "
            f"estimate {estimate} from a separate run, no iterate inside a cycle")
    return MethodRun(x, len(history) - 1, _scipy_reason(info), history, setup_time,
                     solve_time, note, {"cycles_allowed": cycles}, **trace.arrays())


def scipy_gmres(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy.sparse.linalg.gmres(restart=30) without preconditioner."""
    return _scipy_gmres_run(problem, rtol, maxiter)


def scipy_gmres_spilu(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy gmres(restart=30) with SuperLU's incomplete LU, ``spilu(drop_tol=0, fill_factor=1)``.

    Not ILU(0): SuperLU permutes columns (COLAMD), pivots, and keeps at most
    ``fill_factor * nnz(A)`` entries by its area rule. On convdiff2d (N = 64,
    Pe = 1) GMRES(30) needed 198 iterations with it, 26 with textbook ILU(0)
    and 308 with none.
    """
    from scipy.sparse.linalg import LinearOperator, spilu

    start = time.perf_counter()
    try:
        factor = spilu(problem.A.tocsc(), drop_tol=0.0, fill_factor=1)
    except RuntimeError as error:  # SuperLU: "Factor is exactly singular" (a zero pivot)
        return _skipped(f"spilu(drop_tol=0, fill_factor=1) failed on {problem.name}: {error}")
    M = LinearOperator(problem.A.shape, matvec=factor.solve, dtype=np.float64)
    setup_time = time.perf_counter() - start
    return _scipy_gmres_run(problem, rtol, maxiter, M, setup_time,
                            label="scipy gmres + spilu(drop_tol=0, fill_factor=1)")


def scipy_bicgstab(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy.sparse.linalg.bicgstab without preconditioner."""
    from scipy.sparse.linalg import bicgstab

    return _scipy_run(bicgstab, problem, rtol, maxiter, label="scipy bicgstab", atol=0.0)


_SCIPY_MINRES_NOTE = ("; it stops at ||r||_M / (||A|| ||x||) <= rtol, a backward error, so its "
                      "true ||r|| / ||b|| may stay above rtol")


@_for_kinds(SYMMETRIC, "minres")
def scipy_minres(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy.sparse.linalg.minres without preconditioner."""
    from scipy.sparse.linalg import minres

    return _scipy_run(minres, problem, rtol, maxiter, label="scipy minres" + _SCIPY_MINRES_NOTE)


def _saddle_point_note(problem: Problem, label: str) -> str | None:
    if problem.blocks is None:
        return (f"{label} needs a saddle-point problem with its block structure (stokes); "
                f"{problem.name} has none")
    return None


def _block_preconditioner(problem: Problem):
    from .stokes import block_preconditioner

    return block_preconditioner(problem.A, problem.blocks)


@_for_kinds((SYMMETRIC_INDEFINITE,), "scipy minres + block-diagonal")
def scipy_minres_blockdiag(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """scipy minres with the Stokes block-diagonal preconditioner (:mod:`bench.stokes`)."""
    label = "scipy minres + block-diagonal (AMG velocity, diag(Q)^-1 pressure)"
    note = _saddle_point_note(problem, label)
    if note:
        return _skipped(note)
    from scipy.sparse.linalg import minres

    _warm_up(_block_preconditioner, problem)  # pyamg's import, once per process
    start = time.perf_counter()
    M = _block_preconditioner(problem)
    setup_time = time.perf_counter() - start
    return _scipy_run(minres, problem, rtol, maxiter, M, setup_time,
                      label=label + _SCIPY_MINRES_NOTE)


def _pyamg_krylov(name: str):
    """``pyamg.krylov.<name>`` and a note; (None, why) where pyamg or the method is missing."""
    try:
        import pyamg.krylov
    except ImportError as error:
        return None, f"pyamg not installed: {error}"
    solver = getattr(pyamg.krylov, name, None)
    if solver is None:
        offered = ", ".join(sorted(n for n in dir(pyamg.krylov) if not n.startswith("_")))
        return None, (f"pyamg {pyamg.__version__} has no pyamg.krylov.{name} "
                      f"(it offers {offered})")
    return solver, ""


def _pyamg_solve(solver):
    """pyamg's keywords (``tol`` is its relative tolerance) under scipy's names."""
    def solve(A, b, *, rtol, maxiter, M=None, callback=None, **options):
        return solver(A, b, tol=rtol, maxiter=maxiter, M=M, callback=callback, **options)
    return solve


def pyamg_gmres(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """pyamg.krylov.gmres (Householder, restart=30) without preconditioner."""
    solver, note = _pyamg_krylov("gmres")
    if solver is None:
        return _skipped(note)
    restart = min(RESTART, problem.n)  # pyamg warns and clips a restart above n
    return _scipy_run(_pyamg_solve(solver), problem, rtol, _cycles(maxiter),
                      label=f"pyamg gmres (Householder, restart={restart})", restart=restart)


def pyamg_bicgstab(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """pyamg.krylov.bicgstab without preconditioner (stops at ||r|| < rtol ||b||)."""
    solver, note = _pyamg_krylov("bicgstab")
    if solver is None:
        return _skipped(note)
    return _scipy_run(_pyamg_solve(solver), problem, rtol, maxiter, label="pyamg bicgstab")


@_for_kinds(SYMMETRIC, "minres")
def pyamg_minres(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
    """pyamg.krylov.minres, where pyamg has one (5.4 does not)."""
    solver, note = _pyamg_krylov("minres")
    if solver is None:
        return _skipped(note)
    return _scipy_run(_pyamg_solve(solver), problem, rtol, maxiter, label="pyamg minres")


def _normalised(residual_norms, norm_b: float) -> np.ndarray:
    """A solver's residual history relative to its first entry (``||b||`` in its own norm).

    x0 = 0, so ``residual_norms[0]`` is ``||b||`` in whatever norm the solver
    records (Euclidean for pcg, possibly M-weighted for a preconditioned
    MINRES); dividing by it keeps the history starting at 1 either way.
    """
    history = np.asarray(residual_norms, dtype=np.float64)
    first = history[0] if len(history) and history[0] > 0 else norm_b
    return history / first if first > 0 else history


def _our_solver(module: str, function: str, label: str,
                make_preconditioner: Callable[[Problem], object] | None = None,
                kinds: tuple[str, ...] = KINDS, restarted: bool = False,
                solver_options: dict | None = None) -> Callable[..., MethodRun]:
    """Runner of our ``<module>.<function>`` with a preconditioner built from the problem.

    The solver is imported when the runner runs: a missing module is a
    SKIPPED row with the import error, so the table works while methods are
    being written. A preconditioner factory raising ImportError (pyamg) or
    ValueError (its gate refuses the matrix: a zero pivot, a non-positive
    diagonal) skips the row with that message. ``restarted`` solvers count
    ``maxiter`` in cycles of :data:`RESTART`, as scipy's gmres does.
    """
    options = dict(solver_options or {})

    def run(problem: Problem, rtol: float, maxiter: int) -> MethodRun:
        note = _kind_note(problem, kinds, label)
        if note:
            return _skipped(note)
        try:
            solver = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as error:
            return _skipped(f"{label}: {module}.{function} unavailable ({error})")
        A, b = problem.A, problem.b
        M = None
        setup_time = 0.0
        if make_preconditioner is not None:
            try:
                _warm_up(make_preconditioner, problem)
                start = time.perf_counter()
                M = make_preconditioner(problem)
                setup_time = time.perf_counter() - start
            except ImportError as error:
                return _skipped(f"{label}: preconditioner unavailable ({error})")
            except _NotApplicable as error:
                return _skipped(f"{label}: {error}")
            except ValueError as error:
                return _skipped(f"{label}: the preconditioner refused {problem.name} ({error})")
        limit = maxiter
        kwargs = dict(options)
        if restarted:
            limit = _cycles(maxiter)
            kwargs["restart"] = RESTART
        # Warm-up on the same system so Numba compiles outside the timing; a
        # loose rtol makes it pass the convergence path too (true-residual
        # check), which compiles kernels a maxiter exit never touches.
        solver(A, b, M=M, rtol=rtol, maxiter=1 if restarted else 2, **kwargs)
        solver(A, b, M=M, rtol=0.5, maxiter=1 if restarted else 10, **kwargs)
        start = time.perf_counter()
        result = solver(A, b, M=M, rtol=rtol, maxiter=limit, **kwargs)
        solve_time = time.perf_counter() - start
        history = _normalised(result.residual_norms, float(np.linalg.norm(b)))
        # Third run for the plot: the same iterates, stamped per iteration.
        # Our gmres, like scipy's, shows no iterate inside a restart cycle:
        # its per-iteration callback gets the rotations' residual estimate,
        # the true residual's norm in exact arithmetic (right preconditioning).
        if restarted:
            trace = _NormTrace(problem, setup_time)
            solver(A, b, M=M, rtol=rtol, maxiter=limit, callback=trace,
                   callback_type="pr_norm", **kwargs)
        else:
            trace = _Trace(problem, setup_time)
            solver(A, b, M=M, rtol=rtol, maxiter=limit, callback=trace, **kwargs)
        extra = {"converged": bool(result.converged), "matvecs": int(result.matvecs)}
        text = label
        if restarted:
            extra["cycles_allowed"] = limit
            text = (f"{label} (restart={RESTART}, {limit} cycles at most); plot: its residual "
                    "estimate ||r_k|| / ||b|| per inner iteration")
        return MethodRun(result.x, result.iterations, result.reason, history, setup_time,
                         solve_time, text, extra, **trace.arrays())
    run.__doc__ = f"{module}.{function}: {label}."
    run.kinds = kinds
    return run


def _warm_up(make_preconditioner: Callable[[Problem], object], problem: Problem) -> None:
    """Build the preconditioner once, untimed, on a copy of the matrix.

    The set-up time is a headline figure (time to solution): the first
    call's imports (pyamg) and loads of compiled kernels are once per
    process, not part of it. A copy with arrays of its own, so a
    preconditioner that reuses the set-up of a matrix whose pattern it has
    seen cannot reuse this one for the timed build.
    """
    copy = replace(problem, A=problem.A.copy())
    try:
        make_preconditioner(copy)
    except Exception:  # noqa: BLE001  (the timed build below reports it)
        pass


class _NotApplicable(Exception):
    """A preconditioner that does not apply to the problem (a SKIPPED row, with the reason)."""


def _ours(make_preconditioner: Callable | None, label: str) -> Callable[..., MethodRun]:
    # check_symmetric=False: scipy's cg has no such probe, and the gallery
    # matrices it runs on are SPD; the timing compares the solves alone.
    return _our_solver("linsolve", "pcg", label, make_preconditioner, kinds=(SPD,),
                       solver_options={"check_symmetric": False})


def _jacobi(problem: Problem):
    from linsolve.precond import jacobi
    return jacobi(problem.A)


def _ssor(problem: Problem):
    from linsolve.precond import ssor
    return ssor(problem.A, omega=1.0)


def _ichol0(problem: Problem):
    from linsolve.precond import ichol0
    return ichol0(problem.A)


def _amg(problem: Problem):
    from linsolve.precond import amg
    return amg(problem.A)


CHEBYSHEV_DEGREE = 4


def _chebyshev(problem: Problem):
    from linsolve.precond import chebyshev
    return chebyshev(problem.A, CHEBYSHEV_DEGREE)


def _ilu0(problem: Problem):
    from linsolve.precond.ilu0 import ilu0
    return ilu0(problem.A)


def _amg_any(problem: Problem):
    """One SA V-cycle of the whole matrix, pyamg's non-symmetric variant where A is."""
    if problem.blocks is not None:
        raise _NotApplicable("one V-cycle of the whole saddle-point matrix does not apply "
                             "(zero pressure block); minres+blockdiag is stokes's preconditioner")
    from linsolve.precond import amg
    options = {"symmetry": "nonsymmetric"} if problem.kind == NONSYMMETRIC else {}
    return amg(problem.A, **options)


def _blockdiag(problem: Problem):
    note = _saddle_point_note(problem, "minres+blockdiag")
    if note:
        raise _NotApplicable(note)
    return _block_preconditioner(problem)


METHODS: dict[str, Callable[..., MethodRun]] = {
    "scipy-cg": scipy_cg,
    "pyamg-sa-cg": pyamg_sa_cg,
    "pcg": _ours(None, "pcg, no preconditioner"),
    "pcg-jacobi": _ours(_jacobi, "pcg + jacobi"),
    "pcg-ssor": _ours(_ssor, "pcg + ssor(omega=1)"),
    "pcg-ichol0": _ours(_ichol0, "pcg + ichol0"),
    "pcg-amg": _ours(_amg, "pcg + amg (pyamg SA V-cycle)"),
    "pcg-chebyshev": _ours(_chebyshev, f"pcg + chebyshev(degree={CHEBYSHEV_DEGREE})"),
    "scipy-gmres": scipy_gmres,
    "scipy-gmres+spilu": scipy_gmres_spilu,
    "scipy-bicgstab": scipy_bicgstab,
    "scipy-minres": scipy_minres,
    "scipy-minres+blockdiag": scipy_minres_blockdiag,
    "pyamg-gmres": pyamg_gmres,
    "pyamg-bicgstab": pyamg_bicgstab,
    "pyamg-minres": pyamg_minres,
    "gmres": _our_solver("linsolve.krylov.gmres", "gmres", "gmres, no preconditioner",
                         restarted=True),
    "gmres+ilu0": _our_solver("linsolve.krylov.gmres", "gmres", "gmres + ilu0", _ilu0,
                              restarted=True),
    "fgmres+amg": _our_solver("linsolve.krylov.gmres", "fgmres",
                              "fgmres + amg (pyamg SA V-cycle)", _amg_any, restarted=True),
    "bicgstab": _our_solver("linsolve.krylov.bicgstab", "bicgstab",
                            "bicgstab, no preconditioner"),
    "bicgstab+ilu0": _our_solver("linsolve.krylov.bicgstab", "bicgstab", "bicgstab + ilu0",
                                 _ilu0),
    "minres": _our_solver("linsolve.krylov.minres", "minres", "minres, no preconditioner",
                          kinds=SYMMETRIC),
    "minres+blockdiag": _our_solver("linsolve.krylov.minres", "minres",
                                    "minres + block-diagonal (AMG velocity, diag(Q)^-1 "
                                    "pressure)", _blockdiag, kinds=(SYMMETRIC_INDEFINITE,)),
}
"""Method name -> runner, in table order."""


def method_kinds(name: str) -> tuple[str, ...]:
    """The problem kinds method ``name`` applies to.

    Examples
    --------
    >>> method_kinds("pcg"), method_kinds("minres"), len(method_kinds("gmres"))
    (('spd',), ('spd', 'symmetric-indefinite'), 3)
    """
    return getattr(METHODS[name], "kinds", KINDS)


def default_methods(kind: str) -> list[str]:
    """The methods a table on a problem of ``kind`` runs when none are named.

    On an SPD problem, the CG family: the table the default job has always
    printed, and a quick one (restarted GMRES takes thousands of iterations
    on 2-D Poisson at N = 256). On the others, every method that applies to
    the kind; those needing a block structure say SKIPPED where it is absent.

    Examples
    --------
    >>> default_methods("spd")[:2], "scipy-cg" in default_methods("nonsymmetric")
    (['scipy-cg', 'pyamg-sa-cg'], False)
    >>> "minres" in default_methods("symmetric-indefinite")
    True
    >>> "minres" in default_methods("nonsymmetric")
    False
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == SPD:
        return [name for name in METHODS if method_kinds(name) == (SPD,)]
    return [name for name in METHODS if kind in method_kinds(name)]


def parse_methods(spec: str | None, kind: str | None = None) -> list[str]:
    """Split ``"a,b,c"`` into method names, checking each.

    None means all methods, or with ``kind`` those of :func:`default_methods`.

    Examples
    --------
    >>> parse_methods("pcg, scipy-cg")
    ['pcg', 'scipy-cg']
    >>> parse_methods(None, "nonsymmetric")[:3]
    ['scipy-gmres', 'scipy-gmres+spilu', 'scipy-bicgstab']
    """
    if spec is None:
        return list(METHODS) if kind is None else default_methods(kind)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise ValueError(f"unknown method(s) {unknown or spec!r}; choose from {', '.join(METHODS)}")
    return names
