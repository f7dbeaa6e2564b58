"""minres: dense references on indefinite systems, scipy's own tests, the anchor failures, kernels.

scipy's tests are imported from the installed scipy at test time (never
copied): ``scipy/sparse/linalg/_isolve/tests/test_iterative.py`` with
ours in place of ``minres``, and ``test_minres.py`` with its ``minres``
name monkeypatched to ours.
"""

from __future__ import annotations

import importlib
import io
import math
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from cext import kernels_for, reference
from cext import numba as nbk
from linsolve import REASONS, SolveResult
from linsolve.krylov.minres import minres
from linsolve.precond import jacobi
from tests.cuda_stub import ptx_entries
from tests.linsolve.scipy_iterative import import_scipy_tests as _import_scipy_tests
from tests.linsolve.scipy_iterative import scipy_tests as _scipy_tests
from tests.problems import indefinite, poisson1d, poisson2d

# the module (linsolve.krylov re-exports the function under the same name)
minres_module = importlib.import_module("linsolve.krylov.minres")

DTYPES = [np.float32, np.float64]


# --- problems ------------------------------------------------------------------------

def shifted_laplacian(N: int, dtype=np.float64) -> sp.csr_matrix:
    """``poisson2d(N) - sigma I`` with ``sigma`` halfway between two eigenvalues near the middle
    of the spectrum: symmetric indefinite, condition number about ``8 / gap``."""
    theta = np.cos(np.arange(1, N + 1) * np.pi / (N + 1))
    eigenvalues = np.unique(np.round(4 - 2 * theta[:, None] - 2 * theta[None, :], 12))
    middle = len(eigenvalues) // 3
    sigma = (eigenvalues[middle] + eigenvalues[middle + 1]) / 2
    return (poisson2d(N) - sigma * sp.eye(N * N)).tocsr().astype(dtype)


def saddle_point(N: int = 6, m: int = 10, seed: int = 0):
    """``[[K, B'], [B, 0]]`` with ``K = poisson2d(N)`` (the velocity block) and a random full-rank
    ``B`` (m constraints): a small KKT system. Returns ``(A, K, B)``."""
    rng = np.random.default_rng(seed)
    K = poisson2d(N)
    B = sp.csr_matrix(rng.standard_normal((m, N * N)) * (rng.random((m, N * N)) < 0.3))
    A = sp.bmat([[K, B.T], [B, None]], format="csr")
    return A, K, B


def block_preconditioner(K, B, velocity):
    """The block-diagonal SPD preconditioner ``diag(velocity ~ K^{-1}, S^{-1})`` with ``S`` the
    Schur complement ``B diag(K)^{-1} B'`` (exact, it is small)."""
    S = (B @ sp.diags(1.0 / K.diagonal()) @ B.T).toarray()
    S_inverse = np.linalg.inv(S)
    nv = K.shape[0]

    def apply(r):
        return np.concatenate([velocity(r[:nv]), S_inverse @ r[nv:]])

    n = nv + B.shape[0]
    return sla.LinearOperator((n, n), matvec=apply, dtype=np.float64)


def eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def assert_matches_dense(A, b, result, rtol, dtype, shift=0.0):
    """Converged, the true residual meets ``rtol`` (up to the rounding of its evaluation in
    ``dtype``), and ``x`` is the dense solution to ``||A^{-1}||`` times that residual.

    ``result`` is a :class:`SolveResult` of any namespace (``x`` is read through DLPack)."""
    A64 = A.toarray() if sp.issparse(A) else np.asarray(A)
    A64 = A64.astype(np.complex128 if np.iscomplexobj(A64) else np.float64)
    A64 = A64 - shift * np.eye(A64.shape[0])
    b64 = np.asarray(b).astype(A64.dtype)
    assert result.converged, result.message
    x = result.x
    if not isinstance(x, np.ndarray):
        x = x.get() if type(x).__module__.startswith("cupy") else np.from_dlpack(x)
    x = x.astype(A64.dtype)
    n = b64.shape[0]
    row = int(max(np.count_nonzero(A64, axis=1).max(), 1)) + 1
    # Higham 3.11: evaluating b - A x in dtype errs by gamma_{row} (|b| + |A||x|)
    rounding = (row + n) * eps(dtype) * float(np.linalg.norm(abs(b64) + abs(A64) @ abs(x)))
    rtrue = float(np.linalg.norm(b64 - A64 @ x))
    tol = rtol * float(np.linalg.norm(b64))
    assert rtrue <= tol + rounding, f"||b - Ax|| = {rtrue:.3e} > {tol:.3e} + {rounding:.3e}"
    singular = np.linalg.svd(A64, compute_uv=False)
    x_ref = np.linalg.solve(A64, b64)
    # the LU reference is backward stable: within cond * n * eps64 of x*
    bound = (tol + rounding) / singular[-1] + singular[0] / singular[-1] * n * eps(np.float64) \
        * float(np.linalg.norm(x_ref))
    error = float(np.linalg.norm(x - x_ref))
    assert error <= bound, f"||x - x_dense|| = {error:.3e} > {bound:.3e}"


# --- 1. the dense reference: indefinite problems, preconditioners, dtypes ------------------

def _jacobi_abs(A):
    """Jacobi of |A|: ``diag(1 / |a_ii|)``, SPD for an indefinite A with a nonzero diagonal."""
    return sp.diags(1.0 / np.abs(A.diagonal())).tocsr()


PROBLEMS = {
    "shifted-laplacian": lambda: shifted_laplacian(7),
    "indefinite-diagonal": lambda: indefinite(20),
    "saddle-point": lambda: saddle_point()[0],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("precond", [None, "jacobi"])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_matches_dense_solve(problem, precond, dtype):
    A = PROBLEMS[problem]().astype(dtype)
    b = np.random.default_rng(1).standard_normal(A.shape[0]).astype(dtype)
    M = None
    if precond is not None and problem == "saddle-point":
        # the zero block has no diagonal to scale by: Jacobi on K, the Schur complement
        _, K, B = saddle_point()
        M = block_preconditioner(K, B, lambda r: r / K.diagonal())
    elif precond is not None:
        M = _jacobi_abs(A)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for A_in in (A, A.toarray(), sla.aslinearoperator(A)):
        result = minres(A_in, b, rtol=rtol, M=M)
        assert result.x.dtype == dtype and result.reason == "CONVERGED_RTOL"
        assert_matches_dense(A, b, result, rtol, dtype)
        assert len(result.residual_norms) == result.iterations + 1
        assert result.matvecs == result.iterations + 1 + result.extra["missed_checks"]
        assert result.psolves == (0 if M is None else result.iterations + 1)


def test_well_conditioned_float64_to_1e10_relative():
    A = indefinite(30)  # eigenvalues -1, 2, ..., 30: cond 30
    b = np.random.default_rng(2).standard_normal(30)
    x = minres(A, b, rtol=1e-13).x
    x_ref = np.linalg.solve(A.toarray(), b)
    assert np.linalg.norm(x - x_ref) <= 1e-10 * np.linalg.norm(x_ref)


def test_saddle_point_with_amg_block_preconditioner():
    pytest.importorskip("pyamg")
    from linsolve.precond import amg

    A, K, B = saddle_point(N=12, m=20)
    M = block_preconditioner(K, B, amg(K).matvec)
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    result = minres(A, b, M=M, rtol=1e-10)
    assert_matches_dense(A, b, result, 1e-10, np.float64)
    plain = minres(A, b, rtol=1e-10)
    assert plain.converged and result.iterations < plain.iterations / 2


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_complex_hermitian_indefinite(dtype):
    rng = np.random.default_rng(4)
    n = 16
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    A = (Q * np.linspace(-3.0, 5.0, n)) @ Q.conj().T
    A = ((A + A.conj().T) / 2).astype(dtype)
    b = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
    rtol = 1e-12 if dtype == np.complex128 else 1e-5
    for M in (None, np.eye(n) * 0.5, jacobi(np.diag(np.abs(np.diag(A))).astype(dtype))):
        result = minres(A, b, rtol=rtol, M=M)
        assert result.x.dtype == dtype
        assert_matches_dense(A, b, result, rtol, dtype)


def test_shift_solves_the_shifted_system():
    A = poisson2d(6)
    b = np.arange(36.0)
    for shift in (0.5, 3.3, -1.0):
        result = minres(A, b, shift=shift, rtol=1e-12)
        assert_matches_dense(A, b, result, 1e-12, np.float64, shift=shift)
        assert result.true_residual_norm == pytest.approx(
            np.linalg.norm(b - A @ result.x + shift * result.x), rel=1e-6, abs=1e-14)
    for bad in (float("nan"), float("inf"), "1", None, True):
        with pytest.raises(ValueError, match="shift"):
            minres(A, b, shift=bad)


def test_iterates_equal_scipys():
    """Same recurrence, same order: scipy's iterates to rounding, without and with M."""
    A = indefinite(20).toarray() + np.diag(np.full(19, 0.3), 1) + np.diag(np.full(19, 0.3), -1)
    b = np.random.default_rng(5).standard_normal(20)
    cond = np.linalg.cond(A)
    for M in (None, np.diag(1.0 / np.abs(np.diag(A)))):
        ours, theirs = [], []
        minres(A, b, rtol=1e-10, M=M, callback=lambda x, seen=ours: seen.append(x.copy()))
        sla.minres(A, b, rtol=1e-10, M=M, callback=lambda x, seen=theirs: seen.append(x.copy()))
        for k, (xo, xs) in enumerate(zip(ours, theirs)):
            # the rounding of each step, amplified by up to cond(A), added up over the steps
            bound = 100 * (k + 1) * eps(np.float64) * cond * np.linalg.norm(xs)
            assert np.linalg.norm(xo - xs) <= bound, k


# --- 2. every array library (dense reference path) ----------------------------------------

@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_namespaces(backend, dtype_name):
    from array_api_compat import array_namespace

    A_np = shifted_laplacian(4).toarray()
    b_np = np.random.default_rng(6).standard_normal(16)
    M_np = np.diag(1.0 / np.abs(np.diag(A_np)))
    A = backend.asarray(A_np, dtype_name)
    b = backend.asarray(b_np, dtype_name)
    rtol = 1e-10 if dtype_name == "float64" else 1e-5
    for M in (None, backend.asarray(M_np, dtype_name)):
        result = minres(A, b, rtol=rtol, M=M)
        assert array_namespace(result.x) is backend.xp
        assert result.x.dtype == backend.dtype(dtype_name)
        assert_matches_dense(A_np, b_np, result, rtol, np.dtype(dtype_name))
        same = minres(A_np.astype(dtype_name), b_np.astype(dtype_name), rtol=rtol,
                      M=None if M is None else M_np.astype(dtype_name))
        assert abs(result.iterations - same.iterations) <= 1
    zero = minres(A, backend.xp.zeros(16, dtype=backend.dtype(dtype_name)))
    assert zero.converged and zero.iterations == 0


def test_distributed_inner_product_path_equals_the_fused_one(monkeypatch):
    """A system whose dot is not the kernels' own (as over MPI) gets every dot from it."""
    from linsolve.core import setup

    real = setup.krylov_system
    calls = []

    def counting(*args, **kwargs):
        system = real(*args, **kwargs)
        kernel_dot = system.dot

        def dot(u, v):
            calls.append(1)
            return kernel_dot(u, v)

        return setup.KrylovSystem(system.xp, system.A, system.M, system.b, system.x, system.n,
                                  system.dtype, system.maxiter, dot)

    A = shifted_laplacian(6)
    b = np.random.default_rng(7).standard_normal(36)
    for M in (None, _jacobi_abs(A)):
        fused = minres(A, b, M=M, rtol=1e-10)
        monkeypatch.setattr(minres_module, "krylov_system", counting)
        calls.clear()
        plain = minres(A, b, M=M, rtol=1e-10)
        monkeypatch.undo()
        assert plain.converged and fused.converged
        assert abs(plain.iterations - fused.iterations) <= 1
        # every step's dots: alfa, beta^2, and ||r|| with M
        assert len(calls) >= plain.iterations * (2 if M is None else 3)


# --- 3. scipy's own tests, ours substituted ----------------------------------------------

def minres_as_scipy(A, b, *args, **kwargs):
    """``minres`` with scipy's return value ``(x, info)``."""
    return tuple(minres(A, b, *args, **kwargs))


minres_as_scipy.__name__ = "minres"


# scipy's Case list has the non-symmetric cases skip its sym_solvers (minres
# among them): MINRES does not apply to them, and they stay excluded here.
NON_SYMMETRIC = {"rand", "rand-F", "rand-cmplx", "rand-cmplx-F", "nonsymposdef", "nonsymposdef-F"}


def _minres_cases():
    """scipy's cases for minres, and those scipy skips for minres alone because its minres
    fails them (single precision, poisson2d) or is real-only (complex Hermitian)."""
    try:
        mod = _import_scipy_tests()
    except ImportError:
        return []
    cases = []
    for case in mod.IterativeParams().cases:
        if case.name in NON_SYMMETRIC:
            continue
        test = mod.SingleTest(case.A, case.b, minres_as_scipy, case.name,
                              convergence=mod.minres not in case.nonconvergence)
        test.scipy_runs_it = mod.minres not in case.skip
        cases.append(test)
    return cases


_CASES = _minres_cases()


@pytest.mark.parametrize("test_name", ["test_maxiter", "test_convergence", "test_precond_dummy",
                                       "test_x0_equals_Mb"])
@pytest.mark.parametrize("case", _CASES, ids=[case.name for case in _CASES])
def test_scipy_case_tests(test_name, case):
    mod = _scipy_tests()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no symmetry warning on scipy's symmetric cases
        getattr(mod, test_name)(case)


def test_scipy_cases_were_found():
    mod = _scipy_tests()
    names = {case.name.removesuffix("-minres") for case in _CASES if case.scipy_runs_it}
    scipy_runs = {case.name for case in mod.IterativeParams().cases if mod.minres not in case.skip}
    assert names == scipy_runs == {"poisson1d", "neg-poisson1d", "rand-diag", "rand-diag-F",
                                   "rand-sym", "rand-sym-F", "rand-sym-pd", "sym-nonpd"}
    extra = {case.name.removesuffix("-minres") for case in _CASES if not case.scipy_runs_it}
    assert {"poisson2d", "poisson2d-F", "poisson1d-F", "rand-sym-pd-F",
            "rand-cmplx-herm", "rand-cmplx-sym-pd-F"} <= extra


@pytest.mark.parametrize("name", ["poisson1d", "poisson2d"])
def test_scipy_precond_inverse(name, monkeypatch):
    mod = _scipy_tests()
    monkeypatch.setattr(mod, "_SOLVERS", [minres_as_scipy])
    case, = [c for c in mod.IterativeParams().cases if c.name == name]
    monkeypatch.setattr(case, "skip", [])  # scipy skips poisson2d for its minres
    mod.test_precond_inverse(case)


# test_atol and test_invalid_atol skip scipy's minres, which has no atol; ours
# has, and passes them. test_zero_rhs runs its minres branch (x0 = ones).
@pytest.mark.parametrize("test_name", ["test_atol", "test_zero_rhs", "test_x0_working",
                                       "test_x0_solves_problem_exactly", "test_positional_error"])
def test_scipy_solver_tests(test_name):
    getattr(_scipy_tests(), test_name)(minres_as_scipy)


@pytest.mark.parametrize("atol", ["legacy", None, -1])
def test_scipy_invalid_atol(atol):
    _scipy_tests().test_invalid_atol(minres_as_scipy, atol)


def _scipy_minres_test_names():
    try:
        mod = _import_scipy_tests("test_minres")
    except ImportError:
        return []
    return sorted(name for name in vars(mod) if name.startswith("test_"))


@pytest.mark.parametrize("test_name", _scipy_minres_test_names())
def test_scipy_test_minres(test_name, monkeypatch):
    mod = _scipy_tests("test_minres")
    monkeypatch.setattr(mod, "minres", minres_as_scipy)
    with warnings.catch_warnings():
        # test_singular zeroes a row of a symmetric matrix: ours warns that A is
        # no longer symmetric (and solves it, as scipy's does)
        warnings.filterwarnings("ignore", "A does not look symmetric", UserWarning)
        getattr(mod, test_name)()


def test_scipy_test_minres_were_found():
    assert {"test_singular", "test_x0_is_used_by", "test_shift", "test_asymmetric_fail",
            "test_minres_non_default_x0", "test_minres_precond_non_default_x0",
            "test_minres_precond_exact_x0"} <= set(_scipy_minres_test_names())


# --- 4. the anchor failures --------------------------------------------------------------

def test_anchor_scipy_minres_with_amg_stops_on_the_preconditioned_residual():
    """scipy's minres with an AMG V-cycle, asked for 1e-8, reports success at a true residual
    about 100x above it (it stops on ||r||_M against rtol ||A|| ||x||); ours converges with
    the true residual below the tolerance."""
    pytest.importorskip("pyamg")
    from linsolve.precond import amg

    A = poisson2d(64)
    b = np.random.default_rng(8).standard_normal(A.shape[0])
    M = amg(A)
    rtol = 1e-8
    x_scipy, info = sla.minres(A, b, rtol=rtol, M=M.aslinearoperator())
    scipy_residual = np.linalg.norm(b - A @ x_scipy) / np.linalg.norm(b)
    assert info == 0 and scipy_residual > 10 * rtol  # the failure, as scipy shows it
    result = minres(A, b, rtol=rtol, M=M)
    assert result.converged and result.reason == "CONVERGED_RTOL"
    assert np.linalg.norm(b - A @ result.x) <= rtol * np.linalg.norm(b)
    assert result.true_residual_norm <= rtol * np.linalg.norm(b)


def test_anchor_scipy_minres_stops_on_its_backward_error_test():
    """Without a preconditioner scipy's test ||r|| <= rtol ||A|| ||x|| also stops early on an
    indefinite system; ours meets ||r|| <= rtol ||b||."""
    A = shifted_laplacian(20)
    b = np.random.default_rng(9).standard_normal(A.shape[0])
    rtol = 1e-10
    x_scipy, info = sla.minres(A, b, rtol=rtol)
    assert info == 0 and np.linalg.norm(b - A @ x_scipy) > 10 * rtol * np.linalg.norm(b)
    result = minres(A, b, rtol=rtol)
    assert result.converged
    assert np.linalg.norm(b - A @ result.x) <= rtol * np.linalg.norm(b)


def test_anchor_scipy_least_squares_success_is_not_convergence():
    """On a singular system b is not consistent with, scipy's minres returns info = 0 with a
    least-squares solution; ours returns it with DIVERGED_BREAKDOWN and says why."""
    A = poisson2d(20) - 2.0 * sp.eye(400)  # 2 is an eigenvalue of the 20 x 20 Laplacian
    b = np.random.default_rng(0).standard_normal(400)
    x_scipy, info = sla.minres(A, b, rtol=1e-10)
    assert info == 0 and np.linalg.norm(b - A @ x_scipy) > 1e-2 * np.linalg.norm(b)
    result = minres(A, b, rtol=1e-10)
    assert not result.converged and result.reason == "DIVERGED_BREAKDOWN"
    assert "least-squares" in result.message
    x_ls = np.linalg.lstsq(A.toarray(), b, rcond=None)[0]
    least = np.linalg.norm(b - A @ x_ls)
    assert result.true_residual_norm == pytest.approx(least, rel=1e-6)
    assert result.iterations < 400


# --- 5. breakdowns, definiteness, symmetry, NaN -------------------------------------------

def test_invariant_subspace_is_verified_and_converges():
    # b is a combination of two eigenvectors: the Lanczos process ends after two steps
    A = np.diag([1.0, -2.0, 3.0, 4.0])
    b = np.array([1.0, 1.0, 0.0, 0.0])
    result = minres(A, b, rtol=1e-14)
    assert result.converged and result.iterations == 2
    np.testing.assert_allclose(result.x, [1.0, -0.5, 0.0, 0.0], rtol=1e-14)
    identity = minres(np.eye(5), np.arange(1.0, 6.0))  # beta_2 = 0 exactly
    assert identity.converged and identity.iterations == 1
    assert identity.true_residual_norm <= 4 * eps(np.float64) * np.linalg.norm(np.arange(1.0, 6.0))


def test_singular_consistent_system_converges():
    A = poisson2d(20) - 2.0 * sp.eye(400)
    b = A @ np.random.default_rng(1).standard_normal(400)  # in the range of A
    result = minres(A, b, rtol=1e-10)
    assert result.converged
    assert np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b)


@pytest.mark.parametrize("where", ["first", "later"])
def test_indefinite_preconditioner(where):
    A = shifted_laplacian(5)
    b = np.ones(25)
    if where == "first":
        M = -np.eye(25)  # r'Mr < 0 for the first vector
    else:
        d = np.ones(25)
        d[3] = -50.0  # positive on b = ones, negative on later Lanczos vectors
        M = np.diag(d)
    result = minres(A, b, M=M)
    assert not result.converged and result.reason == "DIVERGED_INDEFINITE_PC"
    assert "positive definite" in result.message
    x, info = result
    assert info < 0 and np.all(np.isfinite(x))
    singular = minres(A, b, M=np.zeros((25, 25)))  # r'Mr = 0 with r != 0
    assert singular.reason == "DIVERGED_INDEFINITE_PC"
    # singular on the second Lanczos vector only: beta_2 = 0 is no invariant subspace
    e = np.zeros(25)
    e[0] = 1.0
    A2 = np.diag(np.linspace(-2.0, 3.0, 25))
    M2 = np.outer(e, e)  # M r = r_0 e_0: positive on b = e_0 + ..., zero on vectors with r_0 = 0
    result = minres(A2, e + np.linspace(0.0, 1.0, 25) * (np.arange(25) > 0), M=M2)
    assert result.reason == "DIVERGED_INDEFINITE_PC" and result.iterations <= 1


def test_non_symmetric_A_warns_and_check_raises():
    n = 10
    A = np.diag(np.arange(-4.0, 6.0) + 0.5) + np.eye(n, k=1)
    b = np.ones(n)
    for A_in in (A, sp.csr_array(A)):
        with pytest.warns(UserWarning, match="A does not look symmetric.*MINRES"):
            minres(A_in, b)
        with pytest.raises(ValueError, match="A does not look symmetric"):
            minres(A_in, b, check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        minres(lambda v: A @ v, b)  # matrix-free: no probe unless check=True
        minres(A + A.T, b, check=True, M=np.eye(n))
    with pytest.raises(ValueError, match="A does not look symmetric"):
        minres(sla.aslinearoperator(A), b, check=True)
    M = np.eye(n) + np.eye(n, k=2)
    with pytest.raises(ValueError, match="M does not look symmetric"):
        minres(A + A.T, b, M=M, check=True)


def test_nan_and_inf_are_reported():
    A = shifted_laplacian(4)
    b = np.ones(16)
    b_nan = b.copy()
    b_nan[3] = np.nan
    assert minres(A, b_nan).reason == "DIVERGED_NANORINF"
    A_nan = A.toarray()
    A_nan[2, 2] = np.inf
    with np.errstate(invalid="ignore"):
        result = minres(A_nan, b)
    assert result.reason == "DIVERGED_NANORINF" and not result.converged
    broken = minres(A, b, M=lambda r: r * np.nan)
    assert broken.reason == "DIVERGED_NANORINF"
    late = {"calls": 0}

    def M_late(r):
        late["calls"] += 1
        return r * (np.nan if late["calls"] == 4 else 1.0)

    result = minres(A, b, M=M_late)
    assert result.reason == "DIVERGED_NANORINF" and np.all(np.isfinite(result.x))
    assert len(result.residual_norms) == result.iterations + 1
    x0 = np.zeros(16)
    x0[0] = np.nan
    assert minres(A, b, x0=x0).reason == "DIVERGED_NANORINF"


def test_stagnation_below_attainable_accuracy_is_breakdown_not_convergence():
    A = shifted_laplacian(12).astype(np.float32)
    b = np.random.default_rng(2).standard_normal(144).astype(np.float32)
    result = minres(A, b, rtol=1e-12)
    assert not result.converged and result.reason == "DIVERGED_BREAKDOWN"
    assert "stagnated" in result.message and result.extra["missed_checks"] >= 1
    rtrue = np.linalg.norm(b.astype(np.float64) - A.astype(np.float64) @ result.x)
    assert rtrue > 1e-12 * np.linalg.norm(b)
    assert result.residual_norms[-1] == pytest.approx(result.true_residual_norm, rel=1e-3)


def test_preconditioner_reusing_its_output_buffer_is_refused():
    A = shifted_laplacian(4)
    buffer = np.empty(16)

    def M(r):
        buffer[:] = r / 4.0
        return buffer

    with pytest.raises(ValueError, match="new array"):
        minres(A, np.ones(16), M=M, rtol=1e-10)


# --- 6. scipy's keywords, the result, monitor, show ---------------------------------------

def test_maxiter_default_info_and_counts():
    A = shifted_laplacian(5)
    b = np.ones(25)
    result = minres(A, b, rtol=1e-14, maxiter=3)
    assert result.reason == "DIVERGED_ITS" and result.iterations == 3
    assert tuple(result)[1] == 3  # scipy's info at the limit: maxiter
    assert isinstance(result, SolveResult) and result.reason in REASONS
    with pytest.raises(TypeError, match="rtol"):
        minres(A, b, tol=1e-6)
    with pytest.raises(ValueError, match="maxiter"):
        minres(A, b, maxiter=-1)
    with pytest.raises(ValueError, match="'Mb'"):
        minres(A, b, x0="bM")
    unbounded = minres(A, b, rtol=0.0)
    assert not unbounded.converged and unbounded.iterations <= 5 * 25


def test_x0_and_b_are_never_written_and_x0_Mb():
    A = shifted_laplacian(5)
    b = np.arange(25.0)
    x0 = np.ones(25)
    b_copy, x0_copy = b.copy(), x0.copy()
    b.flags.writeable = x0.flags.writeable = False
    result = minres(A, b, x0=x0, rtol=1e-10, M=_jacobi_abs(A))
    assert result.converged and np.array_equal(b, b_copy) and np.array_equal(x0, x0_copy)
    assert not np.shares_memory(result.x, x0)
    start = minres(A, b, x0="Mb", M=_jacobi_abs(A), maxiter=0)
    np.testing.assert_array_equal(start.x, _jacobi_abs(A) @ b)
    assert start.psolves == 1


def test_exact_x0_and_zero_b():
    A = shifted_laplacian(5)
    x_true = np.random.default_rng(3).standard_normal(25)
    b = A @ x_true
    result = minres(A, b, x0=x_true, rtol=1e-8)
    assert result.converged and result.iterations == 0 and result.matvecs == 1
    zero = minres(A, np.zeros(25), x0=x_true)
    assert zero.converged and zero.iterations == 0 and not np.any(zero.x)


def test_monitor_callback_and_show():
    A = shifted_laplacian(5)
    b = np.ones(25)
    seen, xs = [], []
    result = minres(A, b, rtol=1e-10, monitor=lambda k, r: seen.append((k, r)),
                    callback=lambda x: xs.append(x.copy()))
    assert [k for k, _ in seen] == list(range(result.iterations + 1))
    np.testing.assert_array_equal([r for _, r in seen], result.residual_norms)
    assert len(xs) == result.iterations and np.array_equal(xs[-1], result.x)
    assert result.residual_norms[0] == pytest.approx(np.linalg.norm(b))
    stream = io.StringIO()
    with redirect_stdout(stream):
        shown = minres(A, b, rtol=1e-10, show=True)
    text = stream.getvalue()
    assert text.startswith("Enter minres.") and "Exit  minres." in text
    assert "CONVERGED_RTOL" in text and np.array_equal(shown.x, result.x)


def test_residual_history_is_the_two_norm_with_a_preconditioner():
    """With M the history follows ||b - A x_k||, not phibar = ||r_k||_M."""
    A = shifted_laplacian(6)
    b = np.random.default_rng(4).standard_normal(36)
    M = sp.diags(np.linspace(0.01, 10.0, 36))  # SPD, far from a multiple of I
    xs = []
    result = minres(A, b, M=M, rtol=1e-10, callback=lambda x: xs.append(x.copy()))
    true = [np.linalg.norm(b - A @ x) for x in xs]
    np.testing.assert_allclose(result.residual_norms[1:], true, rtol=1e-6,
                               atol=1e-12 * np.linalg.norm(b))


# --- 7. the kernels: Numba against the reference, fused against unfused ---------------------

def _kernel_inputs(dtype, n=301, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(8)]


def _close(a, b, dtype, scale):
    np.testing.assert_allclose(a, b, rtol=0, atol=16 * eps(dtype) * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_kernels_match_reference(dtype):
    x, w1, w2, y, r, p, q, r1 = _kernel_inputs(dtype)
    args = {"sq": 0.7, "sy": -0.2, "sr": -1.3}
    outs = {}
    for name, module in (("numba", nbk), ("reference", reference)):
        c = [a.copy() for a in (x, w1, w2, y, r, p, q, r1)]
        X, W1, W2, Y, R, P, Q, R1 = c
        R1o, d1 = module.minres_lanczos(Q, Y, R1, args["sq"], args["sy"], args["sr"])
        Po, d2 = module.minres_orthogonalize(P, Y, 0.4)
        Xo, W1o = module.minres_update(X, W1, W2, Y, 0.5, -0.25, 0.125, 0.9)
        X2, W2b, Ro, d3 = module.minres_update_residual(X.copy(), W2.copy(), W1o.copy(), Y, 0.5,
                                                        -0.25, 0.125, 0.9, R, P, 0.36, -0.1)
        assert R1o is R1 and Po is P and Xo is X and W1o is W1 and Ro is R  # in place
        outs[name] = (R1o, d1, Po, d2, Xo, W1o, X2, W2b, Ro, d3)
    for a, b_ in zip(outs["numba"], outs["reference"]):
        if isinstance(a, float):
            assert a == pytest.approx(b_, rel=301 * 8 * eps(dtype))
        else:
            _close(a, b_, dtype, 4.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("matrix", ["csr", "dia"])
def test_fused_lanczos_kernels_match_product_then_combine(matrix, dtype):
    from cext import csr_to_dia

    A = (poisson2d(17) - 0.3 * sp.eye(289)).tocsr().astype(dtype) if matrix == "dia" else \
        (sp.random(289, 289, density=0.03, random_state=1) + sp.eye(289)).tocsr().astype(dtype)
    rng = np.random.default_rng(5)
    y = rng.standard_normal(289).astype(dtype)
    r1 = rng.standard_normal(289).astype(dtype)
    indptr, indices = A.indptr.astype(np.int32), A.indices.astype(np.int32)
    expected = reference.minres_lanczos((A.astype(np.float64) @ y).astype(dtype), y, r1.copy(),
                                        0.5, -0.1, -0.7)
    if matrix == "csr":
        fused = nbk.csr_minres_lanczos(indptr, indices, A.data, y, r1.copy(), 0.5, -0.1, -0.7)
        twin = reference.csr_minres_lanczos(indptr, indices, A.data, y, r1.copy(), 0.5, -0.1,
                                            -0.7)
    else:
        layout = csr_to_dia(indptr, indices, A.data, 289)
        assert layout is not None
        fused = nbk.dia_minres_lanczos(layout.offsets, layout.values, y, r1.copy(), 0.5, -0.1,
                                       -0.7)
        twin = reference.dia_minres_lanczos(layout.offsets, layout.values, y, r1.copy(), 0.5,
                                            -0.1, -0.7)
    scale = 4.0 * float(abs(A).max()) * 8
    for got in (fused, twin):
        _close(got[0], expected[0], dtype, scale)
        assert got[1] == pytest.approx(expected[1], rel=289 * 16 * eps(dtype), abs=1e-3)


def test_one_thread_twins_write_the_same_vector():
    import numba

    A = (sp.random(5000, 5000, density=0.002, random_state=2) + sp.eye(5000)).tocsr()
    y = np.random.default_rng(6).standard_normal(5000)
    r1 = np.random.default_rng(7).standard_normal(5000)
    indptr, indices = A.indptr.astype(np.int32), A.indices.astype(np.int32)
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            outs.append(nbk.csr_minres_lanczos(indptr, indices, A.data, y, r1.copy(), 1.0, 0.5,
                                               -0.5))
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(outs[0][0], outs[-1][0])
    assert outs[0][1] == pytest.approx(outs[-1][1], rel=1e-12)


def test_nan_survives_every_minres_dot():
    n = 40
    nan = np.ones(n)
    nan[7] = np.nan
    ones = np.ones(n)
    A = poisson1d(n)
    indptr, indices = A.indptr.astype(np.int32), A.indices.astype(np.int32)
    assert math.isnan(nbk.csr_minres_lanczos(indptr, indices, A.data, nan, ones.copy(), 1.0, 0.0,
                                             0.0)[1])
    assert math.isnan(nbk.minres_lanczos(nan, ones, ones.copy(), 1.0, 0.0, 0.0)[1])
    assert math.isnan(nbk.minres_orthogonalize(ones.copy(), nan, 1.0)[1])
    assert math.isnan(nbk.minres_update_residual(ones.copy(), ones.copy(), ones, ones, 1.0, 1.0,
                                                 1.0, 1.0, ones.copy(), nan, 1.0, 1.0)[3])


def test_solver_uses_the_fused_product_on_compiled_kernels(monkeypatch):
    compiled = kernels_for(np)
    calls = []
    for name in ("csr_minres_lanczos", "dia_minres_lanczos", "minres_lanczos"):
        kernel = getattr(compiled, name)
        monkeypatch.setattr(compiled, name,
                            lambda *args, _k=kernel, _n=name: calls.append(_n) or _k(*args))
    A = shifted_laplacian(6)  # a stencil: DIA
    minres(A, np.ones(36), rtol=1e-8)
    assert set(calls) == {"dia_minres_lanczos"}
    calls.clear()
    minres(sp.csr_matrix(_scatter(36)), np.ones(36), rtol=1e-8)
    assert set(calls) == {"csr_minres_lanczos"}
    calls.clear()
    minres(A.toarray(), np.ones(36), rtol=1e-8)
    assert set(calls) == {"minres_lanczos"}


def _scatter(n):
    """A symmetric matrix with many scattered diagonals (refused by the DIA layout)."""
    rng = np.random.default_rng(9)
    S = sp.random(n, n, density=0.3, random_state=rng).toarray() * 0.01
    return S + S.T + np.diag(np.linspace(-3.0, 5.0, n))


# --- 8. the CuPy twins: compiled with NVRTC here, run where a GPU is -----------------------

# PTX parameter kinds, in the order cext.cupy.minres's launchers pass them
CUDA_PARAMS = {
    "minres_lanczos": ["u64"] * 3 + ["f64"] * 3 + ["u64", "u64"],  # q, y, r1, sq, sy, sr, n, partials
    "minres_orthogonalize": ["u64", "u64", "f64", "u64", "u64"],  # p, r2, c, n, partials
    "minres_update": ["u64"] * 4 + ["f64"] * 4 + ["u64"],  # x, w1, w2, y, sv, s1, s2, phi, n
    # x, w1, w2, y, sv, s1, s2, phi, r, p, sr, sp, n, partials
    "minres_update_residual": ["u64"] * 4 + ["f64"] * 4 + ["u64", "u64", "f64", "f64", "u64",
                                                            "u64"],
    "sum_partials": ["u64", "u64", "u64"],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_source_compiles_with_nvrtc(dtype):

    from cext.cupy import _compile
    from cext.cupy import minres as cuda_minres
    from tests import nvrtc

    if nvrtc.find_library() is None:
        pytest.skip("libnvrtc.so not found (pip install nvidia-cuda-nvrtc-cu12)")
    expressions = cuda_minres.name_expressions(dtype)
    result = nvrtc.compile_source(cuda_minres.SOURCE,
                                  _compile.OPTIONS + ("--gpu-architecture=compute_80",),
                                  expressions, name="minres.cu")
    assert result.ok, result.log
    entries = ptx_entries(result.ptx)
    for expression in expressions:
        assert entries[result.lowered_names[expression]] == CUDA_PARAMS[expression.split("<")[0]]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_cupy_solve_matches_numpy(dtype):
    from cext.cupy.availability import unavailable_reason
    from tests.gpu import required

    reason = unavailable_reason()
    if reason is not None:
        if required():
            pytest.fail(reason)
        pytest.skip(reason)
    import cupy
    import cupyx.scipy.sparse as csp

    A = shifted_laplacian(20).astype(dtype)
    b = np.random.default_rng(10).standard_normal(A.shape[0]).astype(dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    d = (1.0 / np.abs(A.diagonal())).astype(dtype)
    for M_host, M_gpu in ((None, None), (sp.diags(d).tocsr(), csp.csr_matrix(sp.diags(d).tocsr()))):
        host = minres(A, b, M=M_host, rtol=rtol)
        gpu = minres(csp.csr_matrix(A), cupy.asarray(b), M=M_gpu, rtol=rtol)
        assert gpu.converged and gpu.x.dtype == dtype
        assert abs(gpu.iterations - host.iterations) <= max(2, host.iterations // 20)
        assert_matches_dense(A, b, gpu, rtol, dtype)
