"""Misuse of the public entry points raises at once, naming the argument and the fix.

Each family below used to end in an error from deep inside NumPy, scipy or
pyamg (or, worse, in a silent result); the messages are matched on the
argument's name and on the remedy they state.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from bench.__main__ import main
from linsolve import pcg, precond, sor
from linsolve.sketch.constrained import constrained_problem
from linsolve.mpi import DistCSR, SerialComm
from linsolve.mpi import pcg as dist_pcg
from linsolve.mpi import sor as dist_sor
from linsolve.mpi import tuned_solve
from linsolve.mpi.comm import check_same_settings
from linsolve.sketch import sketch_solve
from linsolve.sketch.newton import sketched_newton
from tests.problems import poisson1d, poisson2d

N = 6
A = poisson1d(N)


def _dist(matrix=A):
    return DistCSR.from_global(matrix, SerialComm())


SOLVERS = {
    "pcg": lambda b: pcg(A, b),
    "sor": lambda b: sor(A, b),
    "sketch_solve": lambda b: sketch_solve(A.toarray(), b, seed=0),
    "mpi.pcg": lambda b: dist_pcg(_dist(), b),
    "mpi.sor": lambda b: dist_sor(_dist(), b),
}

NON_NUMERIC_B = {
    "object array": np.array([1.0] * N, dtype=object),
    "string": "123456",
    "string array": np.array(["1"] * N),
    "bytes": b"123456",
}


@pytest.mark.parametrize("kind", NON_NUMERIC_B)
@pytest.mark.parametrize("solver", SOLVERS)
def test_non_numeric_b_is_refused_naming_b(solver, kind):
    with pytest.raises(TypeError, match=r"^b (has dtype|must be a numeric array)"):
        SOLVERS[solver](NON_NUMERIC_B[kind])


@pytest.mark.parametrize("build", ["sor", "SorMatrix", "precond.ssor", "precond.jacobi",
                                   "mpi.from_global"])
def test_non_numeric_A_is_refused_naming_A(build):
    from linsolve.stationary.sor import SorMatrix

    bad = A.toarray().astype(object)
    calls = {"sor": lambda: sor(bad, np.ones(N)), "SorMatrix": lambda: SorMatrix(bad),
             "precond.ssor": lambda: precond.ssor(bad),
             "precond.jacobi": lambda: precond.jacobi(bad),
             "mpi.from_global": lambda: DistCSR.from_global(bad, SerialComm())}
    with pytest.raises(TypeError, match=r"A has dtype object.*numpy.asarray\(A, dtype=float\)"):
        calls[build]()


# Decision: a boolean A is its 0/1 values in float64 everywhere, as pcg (and
# scipy's solvers) already did; sor used to fail inside scipy.
@pytest.mark.parametrize("layout", ["sparse", "dense"])
@pytest.mark.parametrize("solver", ["pcg", "sor", "mpi.pcg"])
def test_boolean_A_is_solved_as_zero_one_float64(solver, layout):
    # the only SPD 0/1 matrix is I (an edge of the off-diagonal pattern has
    # eigenvalues +-1); sor also gets a subdiagonal, which one sweep solves
    spd = sp.eye(N, dtype=bool, format="csr")
    if solver == "sor":
        spd = (spd + sp.eye(N, k=-1, dtype=bool, format="csr")).tocsr()
    boolean = spd if layout == "sparse" else spd.toarray()
    b = np.arange(1.0, N + 1)
    run = {"pcg": lambda M: pcg(M, b, rtol=1e-12),
           "sor": lambda M: sor(M, b, rtol=1e-12, maxiter=10_000),
           "mpi.pcg": lambda M: dist_pcg(DistCSR.from_global(M, SerialComm()), b,
                                         rtol=1e-12)}[solver]
    got, expected = run(boolean), run(spd.astype(np.float64))
    assert got.converged and got.x.dtype == np.float64
    np.testing.assert_array_equal(got.x, expected.x)


# Decision: float16 is promoted to float64, as pcg does (working_dtype), in
# sor and in every preconditioner (scipy.sparse cannot hold float16).
PRECONDITIONERS = {
    "jacobi": precond.jacobi,
    "ssor": precond.ssor,
    "ichol0": precond.ichol0,
    "amg": precond.amg,
    "chebyshev": lambda M: precond.chebyshev(M, degree=3, bounds=(0.05, 4.5)),
}


@pytest.mark.parametrize("name", PRECONDITIONERS)
def test_float16_preconditioners_promote_to_float64(name):
    if name == "amg":
        pytest.importorskip("pyamg")
    dense = poisson1d(N).toarray()
    half, full = PRECONDITIONERS[name](dense.astype(np.float16)), PRECONDITIONERS[name](dense)
    assert np.dtype(half.dtype) == np.float64
    r = np.linspace(1.0, 2.0, N)
    np.testing.assert_array_equal(half @ r, full @ r)  # the float16 entries are exact here


@pytest.mark.parametrize("solver", ["pcg", "sor"])
def test_float16_solvers_promote_to_float64(solver):
    dense, b = poisson1d(N).toarray(), np.arange(1.0, N + 1)  # exact in float16
    run = {"pcg": pcg, "sor": lambda M, v: sor(M, v, maxiter=10_000)}[solver]
    half, full = run(dense.astype(np.float16), b.astype(np.float16)), run(dense, b)
    assert half.x.dtype == np.float64 and half.converged
    np.testing.assert_array_equal(half.x, full.x)


def _with(matrix, row, col, value):
    changed = sp.lil_matrix(matrix)
    changed[row, col] = value
    return changed.tocsr()


@pytest.mark.parametrize("value, match", [(np.nan, "NaN or Inf entry in row 2"),
                                          (np.inf, "NaN or Inf entry in row 2"),
                                          (0.0, r"A\[2, 2\] = 0.0: amg\(\) needs every diagonal"),
                                          (-1.0, r"A\[2, 2\] = -1.0: amg\(\) needs every")])
def test_amg_refuses_nonfinite_entries_and_nonpositive_diagonal(value, match):
    pytest.importorskip("pyamg")
    with pytest.raises(ValueError, match=match):
        precond.amg(_with(poisson2d(4), 2, 2, value))


@pytest.mark.parametrize("name", ["jacobi", "ssor", "ichol0", "amg", "chebyshev"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_preconditioners_refuse_nonfinite_A(name, value):
    if name == "amg":
        pytest.importorskip("pyamg")
    build = {**PRECONDITIONERS, "chebyshev": lambda M: precond.chebyshev(M, degree=3)}[name]
    with pytest.raises(ValueError, match="finite|not finite|non-finite"):
        build(_with(A, 0, 0, value))


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("solver", ["pcg", "sor", "mpi.pcg", "mpi.sor"])
def test_nonfinite_A_is_a_reason_not_a_crash(solver, value):
    bad = _with(A, 1, 2, value)
    run = {"pcg": lambda: pcg(bad, np.ones(N)), "sor": lambda: sor(bad, np.ones(N)),
           "mpi.pcg": lambda: dist_pcg(_dist(bad), np.ones(N)),
           "mpi.sor": lambda: dist_sor(_dist(bad), np.ones(N))}[solver]
    result = run()
    assert not result.converged and result.reason == "DIVERGED_NANORINF"


def test_chebyshev_of_an_empty_matrix_asks_for_bounds():
    empty = sp.csr_matrix((0, 0))
    with pytest.raises(ValueError, match=r"0 x 0.*bounds=\(lo, hi\)"):
        precond.chebyshev(empty, degree=3)
    M = precond.chebyshev(empty, degree=3, bounds=(1.0, 2.0))
    assert (M @ np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("call", ["sketch_solve", "sketched_newton"])
def test_negative_seed_names_seed(call):
    problem = constrained_problem(lambda x: x @ x, lambda x: np.array([x.sum() - 1.0]))
    run = {"sketch_solve": lambda: sketch_solve(A.toarray(), np.ones(N), seed=-1),
           "sketched_newton": lambda: sketched_newton(problem, np.ones(3), seed=-1)}[call]
    with pytest.raises(ValueError, match=r"seed must be an int >= 0"):
        run()


def test_sketched_newton_constraints_changing_shape_names_the_rule():
    calls = []

    def cons(x):
        calls.append(1)
        return np.array([x.sum() - 1.0]) if len(calls) < 3 else np.array([x.sum() - 1.0, x[0]])

    def jac(x):
        return np.ones((1, 3)) if len(calls) < 3 else np.vstack([np.ones(3), np.eye(3)[0]])

    problem = constrained_problem(lambda x: x @ x, cons, jac=jac)
    with pytest.raises(ValueError, match=r"returned shapes \(2,\)/\(2, 3\), expected \(1,\)/"
                                         r"\(1, 3\).*must not change"):
        sketched_newton(problem, 5 * np.ones(3), seed=0)


@pytest.mark.parametrize("fmt", ["dok", "lil", "coo", "csc", "dia"])
@pytest.mark.parametrize("build", ["from_global", "from_rows"])
def test_distcsr_accepts_every_scipy_format(build, fmt):
    matrix = poisson2d(3).asformat(fmt)
    D = getattr(DistCSR, build)(matrix, SerialComm())
    expected = dist_pcg(_dist(poisson2d(3)), np.ones(9), rtol=1e-10)
    got = dist_pcg(D, np.ones(9), rtol=1e-10)
    assert got.converged
    np.testing.assert_array_equal(got.x, expected.x)


# -- the settings every rank must share (the two-rank run is in tests/linsolve/test_mpi.py)

class _TwoRanks(SerialComm):
    """Rank 0 of 2, where rank 1's report of its settings is ``other(own report)``."""

    size = 2

    def __init__(self, other):
        self.other = other

    def allgather(self, obj):
        return [obj, self.other(obj)]


def _changed(**values):
    def other(report):
        kind, settings = report
        return (kind, {**settings, **values}) if kind == "settings" else report
    return other


def test_check_same_settings_names_the_setting_and_every_rank():
    comm = _TwoRanks(_changed(rtol=1e-6))
    check_same_settings(_TwoRanks(_changed()), {"rtol": 1e-8})
    with pytest.raises(ValueError, match=r"ranks passed different rtol: 1e-08 on rank 0, "
                                         r"1e-06 on rank 1; every rank must call"):
        check_same_settings(comm, {"rtol": 1e-8, "maxiter": 5})
    failed = _TwoRanks(lambda report: ("ValueError", "rtol must be a real number >= 0"))
    with pytest.raises(ValueError, match="another rank had invalid input: rank 1: ValueError: "
                                         "rtol must be"):
        check_same_settings(failed, {"rtol": 1e-8})


@pytest.mark.parametrize("call, setting", [
    (lambda D: dist_pcg(D, np.ones(9)), "rtol"),
    (lambda D: dist_pcg(D, np.ones(9), variant="pipelined"), "variant"),
    (lambda D: dist_sor(D, np.ones(9), 1.5), "omega"),
    (lambda D: dist_sor(D, np.ones(9), 1.5), "symmetric"),
    (lambda D: tuned_solve(None, D, np.ones(9)), "maxiter"),
])
def test_distributed_solvers_check_settings_before_iterating(call, setting):
    D = _dist(poisson2d(3))
    changed = {"rtol": 0.5, "variant": "standard", "omega": 1.0, "symmetric": True,
               "maxiter": 7}[setting]
    D.comm = _TwoRanks(_changed(**{setting: changed}))
    with pytest.raises(ValueError, match=f"ranks passed different {setting}: "):
        call(D)


# -- the bench command line ----------------------------------------------------

@pytest.mark.parametrize("args, match", [
    (["--rtol", "nan"], "--rtol must be a finite number > 0"),
    (["--rtol", "inf"], "--rtol must be a finite number > 0"),
    (["--rtol", "0"], "--rtol must be a finite number > 0"),
    (["--rtol=-1e-3"], "--rtol must be a finite number > 0"),
    (["--maxiter=-1"], "--maxiter must be >= 0"),
    (["--max-nnz", "0"], "--max-nnz must be >= 1"),
])
@pytest.mark.parametrize("command", [["linear"], []])
def test_cli_rejects_bad_numbers_with_one_error_line(tmp_path, capsys, command, args, match):
    out = tmp_path / "out"
    status = main([*command, "--size", "4", "--methods", "pcg", "--out", str(out),
                   "--no-progress", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert match in lines[0]
    assert not out.exists()  # refused before anything ran or was written


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_cli_rejects_an_unwritable_out(tmp_path, capsys, where):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    out = blocker / "results" if where == "under a file" else blocker
    status = main(["linear", "--size", "4", "--methods", "pcg", "--out", str(out),
                   "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: --out") and "writable folder" in lines[0]


@pytest.mark.parametrize("symmetry, limit, ok", [("general", 28, True), ("general", 27, False),
                                                 ("symmetric", 34, True),
                                                 ("symmetric", 33, False)])
def test_cli_checks_the_matrix_market_header_against_max_nnz(tmp_path, capsys, symmetry, limit,
                                                            ok):
    path = tmp_path / "p.mtx"
    matrix = poisson1d(10)  # 28 entries; its lower triangle 19, counted twice: 38 > 34
    scipy.io.mmwrite(str(path), matrix if symmetry == "general" else sp.tril(matrix),
                     symmetry=symmetry)
    stored = scipy.io.mminfo(str(path))[2]
    limit = limit if symmetry == "general" else 2 * stored - (0 if ok else 1)
    status = main(["linear", "--matrix", str(path), "--methods", "pcg", "--max-nnz", str(limit),
                   "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    if ok:
        assert status == 0, err
    else:
        assert status == 2 and err.startswith("error: ") and "--max-nnz" in err, err
