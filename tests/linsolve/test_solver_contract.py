"""The contract every linear solver keeps, checked once for the whole family.

In the manner of scipy's ``_SOLVERS`` case list
(``scipy/sparse/linalg/_isolve/tests/test_iterative.py``): :data:`SOLVERS`
holds one :class:`SolverCase` per solver configuration, and every test
below runs each entry through the same invariant (SPEC sections 2, 3, 9):

1. a :class:`linsolve.SolveResult` with a reason from :data:`linsolve.REASONS`
   and scipy's ``x, info = result``;
2. ``converged`` only if the recomputed ``||b - A x||`` meets the tolerance,
   and then ``x`` is the dense solution to ``cond * tol``;
3. every monitor form (True, a stream, a callable, the ``linsolve`` logger)
   sees one PETSc line per iteration, equal to ``residual_norms``;
4. misuse raises at once, naming the argument;
5. the caller's ``A``, ``b`` and ``x0`` are never written (read-only ones work);
6. ``b = 0`` gives zeros at once, whatever ``x0`` is;
7. an exact ``x0`` costs no iteration;
8. ``maxiter`` is respected, in the solver's own unit;
9. float32 stays float32, float64 float64, an integer ``b`` is solved in float64;
10. a callback sees every iteration.

Adding a solver (GMRES, MINRES, BiCGStab, batched CG) is one entry in
:data:`SOLVERS`: the function, ``prepare`` if it takes ``A`` in another form
than a scipy CSR matrix, the options that select the method, its monitor
label, the unit its ``maxiter`` counts, the problems and dtypes it accepts,
and which optional capabilities it has (``monitor_forms``, ``callback``,
``stationary``, how it answers a NaN in ``b``). Tests are generated from the
entries at collection time (:func:`pytest_generate_tests`), so combinations
an entry does not declare are never generated, and a plugin may append
entries to :data:`SOLVERS` before collection (that is how deliberately
broken solvers are checked to fail).

Tolerances are derived from the working precision's unit roundoff and the
problem's condition number (Higham, "Accuracy and Stability of Numerical
Algorithms", 2nd ed.: ch. 3 for the rounding of sums and matrix-vector
products, ch. 7 for the forward error a residual allows), never guessed.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pytest
import scipy.sparse as sp

import linsolve
from linsolve import REASONS, SolveResult, mpi
from tests.problems import poisson2d, random_sparse_spd

MONITOR_FORMS = ("stdout", "stream", "callable", "logger")


def _same(A):
    return A


def _distributed(A):
    """The whole matrix as a one-rank :class:`linsolve.mpi.DistCSR` (its dtype is ``A``'s)."""
    return mpi.DistCSR.from_global(A, comm=mpi.SerialComm())


@dataclass(frozen=True)
class SolverCase:
    """One solver configuration of the family, and what it promises.

    Attributes
    ----------
    name : str
        Test id.
    solver : callable
        ``solver(operator, b, x0=..., rtol=..., ...) -> SolveResult``.
    label : str
        The word in its monitor line, ``"%3d <label> Residual norm %14.12e"``.
    maxiter_unit : str
        What one unit of ``maxiter`` (and of ``iterations``) is, as its
        docstring says; shown in failure messages.
    prepare : callable
        Turns the scipy CSR test matrix into what the solver takes (itself,
        or a one-rank ``DistCSR``).
    options : mapping
        Keywords selecting the method (ordering, variant, seed, ...); a test's
        own keywords override them.
    problems, dtypes : tuple
        The :data:`PROBLEMS` it solves and the precisions it supports.
    monitor_forms : tuple
        The forms of ``monitor=`` it accepts (:data:`MONITOR_FORMS`).
    nan_b : {"result", "raises"}
        A NaN in ``b`` comes back as ``DIVERGED_NANORINF``, or raises ValueError.
    callback : bool
        Takes ``callback(x)``, called once per iteration.
    stationary : bool
        ``x_{k+1}`` depends on ``x_k`` alone (SOR), so ``maxiter=3`` equals
        three chained solves with ``maxiter=1``: this pins ``maxiter``'s unit.
    """

    name: str
    solver: Callable[..., SolveResult]
    label: str
    maxiter_unit: str
    prepare: Callable[[sp.csr_matrix], Any] = _same
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    problems: tuple[str, ...] = ("poisson2d", "random_sparse_spd")
    dtypes: tuple[str, ...] = ("float32", "float64")
    monitor_forms: tuple[str, ...] = MONITOR_FORMS
    nan_b: Literal["result", "raises"] = "result"
    callback: bool = True
    stationary: bool = False

    def run(self, operator, b, **kwargs) -> SolveResult:
        """Call the solver on an already prepared operator."""
        return self.solver(operator, b, **{**self.options, **kwargs})

    def solve(self, A: sp.csr_matrix, b, **kwargs) -> SolveResult:
        """Call the solver on the scipy matrix ``A``, prepared as it takes it."""
        return self.run(self.prepare(A), b, **kwargs)


def _options(**kwargs) -> Mapping[str, Any]:
    return MappingProxyType(kwargs)


def _ilu0(A):
    """ILU(0) of the test matrix, or None where ``A`` is no matrix the factorisation takes
    (the misuse tests hand the solver bad input, which the solver itself must refuse)."""
    try:
        return linsolve.precond.ilu0(A)
    except (TypeError, ValueError):
        return None


SOLVERS: list[SolverCase] = [
    SolverCase("pcg", linsolve.pcg, "KSP", "CG iteration"),
    SolverCase("sor", linsolve.sor, "SOR", "sweep", options=_options(omega=1.3),
               stationary=True),
    SolverCase("ssor", linsolve.sor, "SOR", "forward and backward sweep",
               options=_options(omega=1.3, symmetric=True), stationary=True),
    SolverCase("sor-multicolor", linsolve.sor, "SOR", "sweep",
               options=_options(omega=1.3, ordering="multicolor"), stationary=True),
    *[SolverCase(f"mpi.pcg-{variant}", mpi.pcg, "KSP", "CG iteration", prepare=_distributed,
                 options=_options(variant=variant)) for variant in mpi.VARIANTS],
    SolverCase("mpi.sor", mpi.sor, "SOR", "ghost exchange and sweep", prepare=_distributed,
               options=_options(omega=1.3), stationary=True),
    # Kaczmarz contracts by about 1 - lambda_min^2 / ||A||_F^2 per row step:
    # 1e4 (random_sparse_spd) to 6e4 (poisson2d) steps to 1e-8 here, above the
    # default budget of 100 m steps, which is sized for better-conditioned rows.
    SolverCase("sketch_solve", linsolve.sketch_solve, "SKETCH", "row step",
               options=_options(seed=0, maxiter=200_000), nan_b="raises"),
    SolverCase("minres", linsolve.minres, "KSP", "Lanczos step"),
    SolverCase("bicgstab", linsolve.bicgstab, "KSP", "BiCGStab step"),
    # maxiter counts restart cycles (scipy); restart=1 makes a cycle one inner iteration,
    # so "iterations == maxiter" and "a callback per iteration" ('x': once per cycle) hold
    *[SolverCase(name, solver, "KSP", "restart cycle (restart=1: one inner iteration)",
                 options=_options(restart=1, callback_type="x"))
      for name, solver in (("gmres", linsolve.gmres), ("fgmres", linsolve.fgmres))],
    SolverCase("gmres+ilu0", lambda A, b, **kw: linsolve.gmres(A, b, M=_ilu0(A), **kw), "KSP",
               "restart cycle (restart=1: one inner iteration)",
               options=_options(restart=1, callback_type="x")),
    # float64 only: in float32 ILU(0) brings these small SPD systems to float32's
    # tolerance in fewer than the three steps the maxiter invariant needs
    SolverCase("bicgstab+ilu0", lambda A, b, **kw: linsolve.bicgstab(A, b, M=_ilu0(A), **kw),
               "KSP", "BiCGStab step", dtypes=("float64",)),
]
"""The solver family; append an entry to put a new solver under the contract."""


# --- problems ---------------------------------------------------------------------

PROBLEMS: dict[str, Callable[[], sp.csr_matrix]] = {
    "poisson2d": lambda: poisson2d(6),                   # stencil, cond 19, n = 36
    "random_sparse_spd": lambda: random_sparse_spd(60),  # irregular CSR, cond 10, n = 60
}


def make_problem(name: str, dtype: str = "float64", seed: int = 0):
    """``(A, b)``: a fresh copy of the matrix in ``dtype`` and a seeded normal ``b``."""
    A = PROBLEMS[name]().astype(dtype)
    b = np.random.default_rng(seed).standard_normal(A.shape[0]).astype(dtype)
    return A, b


def rtol_for(dtype) -> float:
    """``sqrt(eps)``: half the digits, far above the attainable ``eps * cond`` (cond <= 20)."""
    return math.sqrt(float(np.finfo(dtype).eps))


# --- rounding bounds (Higham) -------------------------------------------------------

def gamma(m: int, dtype) -> float:
    """``gamma_m = m u / (1 - m u)``, ``u`` the unit roundoff (Higham eq. 3.4)."""
    u = float(np.finfo(dtype).eps) / 2
    return m * u / (1 - m * u)


def residual_rounding(A, x, b, dtype) -> float:
    """Bound on the error of one evaluation of ``||b - A x||`` in ``dtype``.

    Componentwise ``|fl(b - A x) - (b - A x)| <= gamma_{k+1} (|b| + |A||x|)``,
    ``k`` the most entries of a row (Higham eq. 3.11), and the norm's own sum
    of ``n`` squares adds ``gamma_{n+2}`` of the same scale. ``A``, ``x`` and
    ``b`` hold the exact values (float64 copies of the solver's data).
    """
    n = b.shape[0]
    k = int(np.diff(A.indptr).max())
    scale = float(np.linalg.norm(abs(b) + abs(A) @ abs(x)))
    return (gamma(k + 1, dtype) + gamma(n + 2, dtype)) * scale


def spectral_solve(A, b) -> tuple[np.ndarray, float, float]:
    """``(x, lambda_min, lambda_max)``: the float64 reference solution by ``eigh`` (house style)."""
    eigenvalues, vectors = np.linalg.eigh(A.toarray())
    return vectors @ ((vectors.T @ b) / eigenvalues), float(eigenvalues[0]), float(eigenvalues[-1])


def residual64(A, x, b) -> float:
    """``||b - A x||`` recomputed in float64 from the returned ``x``."""
    return float(np.linalg.norm(b - A @ x))


def as64(A, x, b):
    """Float64 copies (exact: every float32 is a float64)."""
    return (A.astype(np.float64), np.asarray(x, dtype=np.float64),
            np.asarray(b, dtype=np.float64))


def allowed_residual(A64, x64, b64, dtype, rtol: float, atol: float = 0.0) -> float:
    """The most ``||b - A x||`` (float64 recomputation) of a solve that may call itself converged.

    The solver judges ``||b - A x||`` and ``||b||`` in its working precision
    ``dtype``: its tolerance ``max(rtol ||b||, atol)`` is ``||b||``'s rounding
    (``gamma_{n+2}``) off, and its residual one :func:`residual_rounding` of
    ``dtype`` off the exact one, which is ours in float64 off ours.
    """
    n = b64.shape[0]
    tol = max(rtol * float(np.linalg.norm(b64)) * (1 + gamma(n + 2, dtype)), atol)
    return (tol + residual_rounding(A64, x64, b64, dtype)
            + residual_rounding(A64, x64, b64, np.float64))


# --- test generation ----------------------------------------------------------------

def only(predicate: Callable[[SolverCase], bool]):
    """Decorator: generate the test for the entries ``predicate`` accepts only."""
    def mark(test):
        test.case_filter = predicate
        return test
    return mark


def pytest_generate_tests(metafunc):
    """Parametrize ``case`` (and ``problem``, ``dtype``, ``form``) from :data:`SOLVERS`.

    Read at collection time, so a plugin can append entries; each entry
    yields only the problems, dtypes and monitor forms it declares.
    """
    if "case" not in metafunc.fixturenames:
        return
    accepts = getattr(metafunc.function, "case_filter", lambda case: True)
    axes = [a for a in ("case", "problem", "dtype", "form") if a in metafunc.fixturenames]
    rows, ids = [], []
    for case in SOLVERS:
        if not accepts(case):
            continue
        choices = {"case": [case], "problem": case.problems, "dtype": case.dtypes,
                   "form": case.monitor_forms}
        for row in itertools.product(*(choices[axis] for axis in axes)):
            rows.append(row)
            ids.append("-".join(case.name if axis == "case" else str(value)
                                for axis, value in zip(axes, row)))
    metafunc.parametrize(axes, rows, ids=ids)


# --- 1. result type, reasons, scipy's info --------------------------------------------

def test_result_type_reasons_and_info(case, problem):
    A, b = make_problem(problem)
    rtol = rtol_for(np.float64)
    # a converged solve, and one cut short by its iteration budget
    for maxiter in (None, 2):
        budget = {} if maxiter is None else {"maxiter": maxiter}  # None: the entry's own
        result = case.solve(A, b, rtol=rtol, **budget)
        assert isinstance(result, SolveResult), f"{case.name} returned {type(result).__name__}"
        assert result.reason in REASONS, f"unknown reason {result.reason!r}"
        assert result.converged == result.reason.startswith("CONVERGED"), \
            f"converged={result.converged} but reason={result.reason}"
        norms = result.residual_norms
        assert isinstance(norms, np.ndarray) and norms.dtype == np.float64 and norms.ndim == 1
        assert len(norms) == result.iterations + 1, \
            f"{len(norms)} residual norms for {result.iterations} iterations"
        x, info = result
        assert x is result.x
        if result.converged:
            assert info == 0, f"info={info} for a converged solve"
        elif result.reason == "DIVERGED_ITS":
            assert info > 0, f"info={info} at the iteration limit (scipy: > 0)"
        else:
            assert info < 0, f"info={info} for {result.reason} (scipy: < 0 on breakdown)"
        if maxiter is None:
            assert result.converged, f"{case.name} did not solve {problem}: {result.message}"
    # scipy's info at the limit is the iteration count
    assert result.reason == "DIVERGED_ITS" and info == result.iterations == 2, \
        f"maxiter=2: {result.reason}, info={info}, iterations={result.iterations}"


# --- 2. the true-residual guarantee, and the dense solution ---------------------------

def test_converged_means_true_residual_meets_tolerance(case, problem, dtype):
    A, b = make_problem(problem, dtype)
    rtol = rtol_for(dtype)
    result = case.solve(A, b, rtol=rtol)
    assert result.converged, f"{case.name} did not solve {problem} in {dtype}: {result.message}"
    A64, x64, b64 = as64(A, result.x, b)
    rtrue = residual64(A64, x64, b64)
    allowed = allowed_residual(A64, x64, b64, dtype, rtol)
    assert rtrue <= allowed, \
        f"converged, but ||b - A x|| = {rtrue:.3e} > {allowed:.3e} = rtol ||b|| + rounding"
    # the reported true residual is an evaluation of the same quantity
    rounding = (residual_rounding(A64, x64, b64, dtype)
                + residual_rounding(A64, x64, b64, np.float64))
    assert abs(result.true_residual_norm - rtrue) <= rounding, \
        f"true_residual_norm = {result.true_residual_norm:.6e}, recomputed {rtrue:.6e}"
    # ||x - x*|| <= ||A^{-1}|| ||b - A x|| (cond * rtol relative to ||x*||); the
    # eigh reference, backward stable, is within cond * gamma_{3n} of x* itself
    x_ref, lambda_min, lambda_max = spectral_solve(A64, b64)
    n = b64.shape[0]
    bound = (allowed / lambda_min
             + lambda_max / lambda_min * gamma(3 * n, np.float64) * np.linalg.norm(x_ref))
    error = float(np.linalg.norm(x64 - x_ref))
    assert error <= bound, f"||x - x_dense|| = {error:.3e} > {bound:.3e} (cond * tol)"


# --- 3. every monitor form ------------------------------------------------------------

def _monitor_lines(case: SolverCase, norms) -> list[str]:
    line = f"%3d {case.label} Residual norm %14.12e"
    return [line % (k, rnorm) for k, rnorm in enumerate(norms)]


def test_monitor_forms_report_each_iteration(case, form, capsys, caplog):
    A, b = make_problem("poisson2d")
    # capped: some entries converge first (pcg: 19), others stop at the cap
    # (sor: 39 sweeps, Kaczmarz: 6e4 row steps); the contract holds for both
    rtol, maxiter = rtol_for(np.float64), 30
    stream = io.StringIO()
    calls: list[tuple[int, float]] = []
    monitor = {"stdout": True, "stream": stream, "callable": lambda k, r: calls.append((k, r)),
               "logger": False}[form]
    caplog.set_level(logging.DEBUG, logger="linsolve")
    capsys.readouterr()
    result = case.solve(A, b, rtol=rtol, maxiter=maxiter, monitor=monitor)
    printed = capsys.readouterr().out.splitlines()
    expected = _monitor_lines(case, result.residual_norms)
    assert result.iterations > 1  # several lines, so order and count are tested
    if form == "stdout":
        assert printed == expected, "monitor=True: stdout differs from the PETSc lines"
        return
    # every other form prints nothing
    assert printed == [], f"monitor={form}: {len(printed)} lines on stdout, expected none"
    if form == "stream":
        assert stream.getvalue().splitlines() == expected, "the stream got other lines"
    elif form == "callable":
        ks = [k for k, _ in calls]
        assert ks == list(range(result.iterations + 1)), f"monitor called with k = {ks}"
        assert np.array_equal([r for _, r in calls], result.residual_norms), \
            "monitor(k, rnorm) values differ from residual_norms"
    else:
        pattern = re.compile(rf"^\s*\d+ {case.label} Residual norm ")
        logged = [record.getMessage() for record in caplog.records
                  if record.name.split(".")[0] == "linsolve" and record.levelno == logging.DEBUG
                  and pattern.match(record.getMessage())]
        assert logged == expected, \
            f"the 'linsolve' logger got {len(logged)} monitor lines, expected {len(expected)}"


# --- 4. misuse raises, naming the argument --------------------------------------------

MISUSE = {
    "tol": ({"tol": 1e-6}, TypeError, r"\brtol\b"),
    "negative-rtol": ({"rtol": -1.0}, ValueError, r"\brtol\b"),
    "negative-maxiter": ({"maxiter": -1}, ValueError, r"\bmaxiter\b"),
    "fractional-maxiter": ({"maxiter": 2.5}, ValueError, r"\bmaxiter\b"),
    "b-too-long": ({}, ValueError, r"\bb\b"),
}


@pytest.mark.parametrize("misuse", MISUSE)
def test_misuse_raises_naming_the_argument(case, misuse):
    A, b = make_problem("poisson2d")
    kwargs, error, names = MISUSE[misuse]
    if misuse == "b-too-long":
        b = np.ones(A.shape[0] + 1)
    with pytest.raises(error, match=names):
        case.solve(A, b, **kwargs)


def test_nan_in_b_is_reported(case):
    A, b = make_problem("poisson2d")
    b[5] = np.nan
    if case.nan_b == "raises":
        with pytest.raises(ValueError, match=r"\bb\b"):
            case.solve(A, b)
        return
    result = case.solve(A, b)
    assert not result.converged and result.reason == "DIVERGED_NANORINF", \
        f"NaN in b: converged={result.converged}, reason={result.reason}"


# --- 5. the caller's arrays are never written -----------------------------------------

def _unsorted_rows(A: sp.csr_matrix) -> sp.csr_matrix:
    """``A`` with each row's column indices reversed: valid CSR that canonicalising rewrites."""
    order = np.concatenate([np.arange(s, e)[::-1] for s, e in zip(A.indptr[:-1], A.indptr[1:])])
    out = sp.csr_matrix((A.data[order], A.indices[order], A.indptr.copy()), shape=A.shape)
    out.has_sorted_indices = False
    return out


def _arrays_of(operator) -> dict[str, np.ndarray]:
    """The matrix arrays a caller owns: a sparse matrix's own, or those of the sparse
    matrices it holds (a DistCSR's blocks). Plain array attributes may be scratch
    buffers (``DistCSR.ghosts`` is written by every product) and are left out."""
    if sp.issparse(operator):
        return {part: getattr(operator, part) for part in ("data", "indices", "indptr")}
    if isinstance(operator, np.ndarray):
        return {"dense": operator}
    return {f"{name}.{part}": array for name, value in getattr(operator, "__dict__", {}).items()
            if sp.issparse(value) for part, array in _arrays_of(value).items()}


def _snapshot(arrays: dict[str, np.ndarray]) -> dict[str, tuple]:
    return {name: (a.dtype, a.shape, a.tobytes()) for name, a in arrays.items()}


@pytest.mark.parametrize("read_only", [False, True], ids=["writeable", "read-only"])
def test_caller_arrays_untouched(case, read_only):
    A, b = make_problem("random_sparse_spd")
    A = _unsorted_rows(A)
    x0 = np.random.default_rng(1).standard_normal(A.shape[0])
    operator = case.prepare(A)
    arrays = {"b": b, "x0": x0, **{f"A.{k}": v for k, v in _arrays_of(A).items()},
              **({} if operator is A else
                 {f"operator.{k}": v for k, v in _arrays_of(operator).items()})}
    before = _snapshot(arrays)
    if read_only:
        b.flags.writeable = x0.flags.writeable = False
    result = case.run(operator, b, x0=x0, rtol=rtol_for(np.float64))
    assert result.converged
    changed = [name for name, state in _snapshot(arrays).items() if state != before[name]]
    assert not changed, f"the solver wrote into the caller's {changed}"
    assert not np.shares_memory(result.x, x0) and not np.shares_memory(result.x, b)


# --- 6. b = 0 ---------------------------------------------------------------------

@pytest.mark.parametrize("start", ["x0=None", "x0=random"])
def test_zero_rhs_returns_zeros_at_once(case, start):
    A, b = make_problem("poisson2d")
    b = np.zeros_like(b)
    x0 = None if start == "x0=None" else np.random.default_rng(2).standard_normal(A.shape[0])
    result = case.solve(A, b, x0=x0)
    at_once = result.converged and result.iterations == 0
    assert at_once, f"b = 0: {result.reason} after {result.iterations} iterations"
    assert not np.any(result.x), f"b = 0: max |x| = {np.max(np.abs(result.x)):.3e}, not zeros"


# --- 7. an exact x0 ---------------------------------------------------------------

def test_exact_initial_guess_costs_no_iteration(case, dtype):
    A, b = make_problem("random_sparse_spd", dtype)
    A64, _, b64 = as64(A, b, b)
    x0 = spectral_solve(A64, b64)[0].astype(dtype)
    rtol = rtol_for(dtype)
    # the problem is fit for the test: the rounded solution meets the tolerance
    # whatever rounding the solver's own evaluation adds
    margin = 2 * (residual_rounding(A64, x0.astype(np.float64), b64, dtype)
                  + residual_rounding(A64, x0.astype(np.float64), b64, np.float64))
    assert residual64(A64, x0.astype(np.float64), b64) + margin <= rtol * np.linalg.norm(b64)
    result = case.solve(A, b, x0=x0, rtol=rtol)
    at_once = result.converged and result.iterations == 0
    assert at_once, f"exact x0: {result.reason} after {result.iterations} iterations"
    assert np.array_equal(result.x, x0), "exact x0 came back changed"


# --- 8. maxiter, in the solver's unit ---------------------------------------------

def test_maxiter_is_respected(case, dtype):
    A, b = make_problem("poisson2d", dtype)
    rtol, maxiter = rtol_for(dtype), 3
    result = case.solve(A, b, rtol=rtol, maxiter=maxiter)
    stopped = result.reason == "DIVERGED_ITS" and not result.converged
    assert stopped, f"maxiter={maxiter} ({case.maxiter_unit}s): {result.reason}"
    assert result.iterations == maxiter, \
        f"maxiter={maxiter} {case.maxiter_unit}s, iterations={result.iterations}"
    x, info = result
    assert info > 0, f"info={info} at the iteration limit"
    # not converged is a fact about x, not only a label
    A64, x64, b64 = as64(A, x, b)
    assert residual64(A64, x64, b64) > rtol * np.linalg.norm(b64) - residual_rounding(
        A64, x64, b64, dtype), "DIVERGED_ITS, but x meets the tolerance"
    if case.stationary:
        # maxiter counts the map x_k -> x_{k+1}: three chained single iterations
        x_chain = None
        for _ in range(maxiter):
            x_chain = case.solve(A, b, x0=x_chain, rtol=rtol, maxiter=1).x
        assert np.array_equal(x, x_chain), \
            f"maxiter={maxiter} is not {maxiter} times maxiter=1 (one {case.maxiter_unit})"


# --- 9. dtype kept --------------------------------------------------------------

def test_dtype_kept(case, dtype):
    A, b = make_problem("random_sparse_spd", dtype)
    result = case.solve(A, b, rtol=rtol_for(dtype))
    assert isinstance(result.x, np.ndarray) and result.x.shape == b.shape
    assert result.x.dtype == np.dtype(dtype), f"{dtype} in, {result.x.dtype} out"


def test_integer_b_is_solved_in_float64(case):
    A, _ = make_problem("random_sparse_spd")
    b = np.arange(A.shape[0]) % 5 - 2  # integers, not all zero
    result = case.solve(A, b, rtol=rtol_for(np.float64))
    assert result.converged
    assert result.x.dtype == np.float64, f"integer b gave {result.x.dtype}"


# --- 10. callback -------------------------------------------------------------------

@only(lambda case: case.callback)
def test_callback_sees_every_iteration(case, dtype):
    A, b = make_problem("random_sparse_spd", dtype)
    seen: list[np.ndarray] = []
    result = case.solve(A, b, rtol=rtol_for(dtype), callback=lambda x: seen.append(np.copy(x)))
    assert result.converged
    assert len(seen) == result.iterations, \
        f"callback called {len(seen)} times in {result.iterations} iterations"
    assert all(x.shape == b.shape and x.dtype == np.dtype(dtype) for x in seen), \
        f"callback got {sorted({(x.shape, str(x.dtype)) for x in seen})}"
    assert np.array_equal(seen[-1], result.x), "the last callback did not see the returned x"
