"""bicgstab: dense reference, backends, preconditioners, scipy's own cases, anchors, kernels.

Tolerances are derived, not guessed: a converged solve has a true residual
at most ``tol`` plus the rounding of one residual evaluation in the working
precision (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd
ed., eq. 3.11), and its forward error is at most ``||A^{-1}||_2`` times that
residual (ch. 7); iterates compared with scipy's differ by rounding that
BiCGStab amplifies, about ``eps * cond(A)`` per step.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from array_api_compat import array_namespace

import cext.numba as nbk
from cext import reference
from cext.cupy import _compile
from cext.cupy import bicgstab as cupy_bicgstab
from cext.layouts import csr_to_dia
from cext.threads import kernel_threads
from linsolve import REASONS, SolveResult
from linsolve.core.record import SolveRecord
from linsolve.core.setup import krylov_system, settings
from linsolve.krylov.bicgstab import _BiCGStab, bicgstab
from linsolve.precond import amg, jacobi, ssor
from tests import nvrtc
from tests.cuda_stub import fake_cupy, ptx_entries
from tests.linsolve.scipy_iterative import import_scipy_tests as _import_scipy_tests
from tests.linsolve.scipy_iterative import scipy_tests as _scipy_tests
from tests.problems import convection_diffusion, random_sparse_spd, to_numpy

DTYPES = [np.float32, np.float64]


# --- problems ---------------------------------------------------------------------

def random_nonsymmetric(n: int, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """``I + G / (2 sqrt(n))``, G Gaussian: eigenvalues in a disc of radius about 1/2 around 1."""
    G = np.random.default_rng(seed).standard_normal((n, n))
    return (np.eye(n) + G / (2 * math.sqrt(n))).astype(dtype)


def irregular_nonsymmetric(n: int, seed: int = 0, dtype=np.float64) -> sp.csr_matrix:
    """A scattered sparse non-symmetric matrix (no stencil: the CSR kernels, not DIA)."""
    S = random_sparse_spd(n, density=0.08, seed=seed)
    skew = sp.random(n, n, density=0.05, random_state=seed + 1, format="csr")
    return (S + skew - skew.T).tocsr().astype(dtype)


PROBLEMS = {
    "cd-pe0.1": lambda dtype: convection_diffusion(9, 0.1, dtype),
    "cd-pe1": lambda dtype: convection_diffusion(9, 1.0, dtype),
    "cd-pe10": lambda dtype: convection_diffusion(9, 10.0, dtype),
    "cd-pe100": lambda dtype: convection_diffusion(9, 100.0, dtype),
    "irregular": lambda dtype: irregular_nonsymmetric(60, dtype=dtype),
    "random-dense": lambda dtype: random_nonsymmetric(40, dtype=dtype),
}


def _rhs(n, dtype=np.float64, seed=1):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


def _dense(A):
    dense = A.toarray() if sp.issparse(A) else np.asarray(A)
    return dense.astype(np.complex128 if np.iscomplexobj(dense) else np.float64)


def _rtol(dtype) -> float:
    return 1e-10 if np.dtype(dtype) in (np.float64, np.complex128) else 1e-4


def residual_rounding(A, x, b, dtype) -> float:
    """Bound on the rounding of one evaluation of ``||b - A x||`` in ``dtype`` (Higham 3.11):
    ``gamma_{k+1} || |b| + |A| |x| ||`` plus the norm's own ``gamma_{n+2}``, ``k`` the widest
    row."""
    A = _dense(A)
    u = float(np.finfo(dtype).eps) / 2
    k = int((A != 0).sum(axis=1).max())
    n = b.shape[0]
    gamma = lambda m: m * u / (1 - m * u)
    scale = float(np.linalg.norm(np.abs(b) + np.abs(A) @ np.abs(x)))
    return (gamma(k + 1) + gamma(n + 2)) * scale


def assert_solves(result, A, b, rtol, dtype, atol=0.0):
    """Converged, the true residual within the tolerance (plus one evaluation's rounding),
    the forward error within ``||A^{-1}||`` times it."""
    assert isinstance(result, SolveResult) and result.reason in REASONS
    assert result.converged, result.message
    A64, b64 = _dense(A), np.asarray(b, dtype=np.complex128 if np.iscomplexobj(b) else np.float64)
    x = np.asarray(to_numpy(result.x))
    tol = max(rtol * np.linalg.norm(b64), atol)
    slack = residual_rounding(A64, x, b64, dtype)
    residual = np.linalg.norm(b64 - A64 @ x)
    assert residual <= tol + slack, (residual, tol, slack)
    inverse_norm = 1.0 / np.linalg.svd(A64, compute_uv=False)[-1]
    error = np.linalg.norm(x - np.linalg.solve(A64, b64))
    assert error <= inverse_norm * (tol + slack) * (1 + 1e-8), (error, inverse_norm, tol)


# --- the dense reference -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_matches_dense_solve(name, dtype):
    A = PROBLEMS[name](dtype)
    b = _rhs(A.shape[0], dtype)
    rtol = _rtol(dtype)
    result = bicgstab(A, b, rtol=rtol, maxiter=2000)
    assert result.x.dtype == dtype and result.x.shape == b.shape
    assert_solves(result, A, b, rtol, dtype)
    # the reported true residual is ||b - A x|| evaluated in the working precision
    x64, b64 = result.x.astype(np.float64), b.astype(np.float64)
    exact = np.linalg.norm(b64 - _dense(A) @ x64)
    assert abs(result.true_residual_norm - exact) <= residual_rounding(A, x64, b64, dtype)
    assert len(result.residual_norms) == result.iterations + 1


@pytest.mark.parametrize("kind", ["csr-dia", "csr", "dense", "linear_operator", "callable"])
def test_float64_equals_dense_solve_to_1e_10(kind):
    # well conditioned (cond about 5 and 30): rtol 1e-13 leaves the solution 1e-10 exact
    for A in (convection_diffusion(8, 1.0), sp.csr_matrix(random_nonsymmetric(50, seed=2))):
        dense = A.toarray()
        A_in = {"csr-dia": A, "csr": A, "dense": dense, "linear_operator": sla.aslinearoperator(A),
                "callable": lambda v, A=A: A @ v}[kind]
        b = _rhs(A.shape[0])
        result = bicgstab(A_in, b, rtol=1e-13)
        assert result.converged, result.message
        reference_x = np.linalg.solve(dense, b)
        assert np.linalg.norm(result.x - reference_x) <= 1e-10 * np.linalg.norm(reference_x)


def test_layouts_take_their_fused_paths():
    # the stencil goes to DIA, the scattered matrix to CSR: both fused kernels run
    from linsolve.core.operators import as_operator

    xp = array_namespace(np.ones(1))
    assert as_operator(convection_diffusion(6, 1.0), xp, np.float64, 36).layout == "dia"
    assert as_operator(irregular_nonsymmetric(60), xp, np.float64, 60).layout == "csr"


@pytest.mark.parametrize("precond", [None, "jacobi"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_match_dense_solve(backend, dtype, precond):
    A = convection_diffusion(5, 2.0).toarray()
    b = _rhs(25)
    A_in, b_in = backend.asarray(A, dtype), backend.asarray(b, dtype)
    M = None if precond is None else jacobi(A_in)
    rtol = _rtol(np.dtype(dtype))
    result = bicgstab(A_in, b_in, rtol=rtol, M=M)
    assert array_namespace(result.x) is backend.xp
    assert result.x.dtype == backend.dtype(dtype)
    x = backend.to_numpy(result.x)
    assert_solves(replace(result, x=x), A.astype(dtype), b.astype(dtype), rtol, np.dtype(dtype))
    # two applications of M a step, one in a step that ends at its half
    assert result.psolves in ((0,) if M is None else (2 * result.iterations,
                                                      2 * result.iterations - 1))


# --- scipy's iterates ----------------------------------------------------------------

def _iterates(solver, A, b, steps, **kwargs):
    seen = []
    solver(A, b, rtol=1e-14, maxiter=steps, callback=lambda x: seen.append(np.array(x)),
           **kwargs)
    return seen


@pytest.mark.parametrize("case", ["dia", "csr", "dense", "jacobi", "complex"])
def test_iterates_equal_scipy_to_rounding(case):
    A = convection_diffusion(8, 3.0) if case in ("dia", "jacobi") else irregular_nonsymmetric(60)
    if case == "dense":
        A = A.toarray()
    b = _rhs(A.shape[0])
    ours_M = theirs_M = None
    if case == "jacobi":
        ours_M, theirs_M = jacobi(A), sp.diags(1.0 / A.diagonal()).tocsr()
    if case == "complex":
        A = A.toarray() + 0.3j * np.diag(np.linspace(-1, 1, A.shape[0]))
        b = b + 0.5j * _rhs(A.shape[0], seed=3)
    steps = 12
    ours = _iterates(bicgstab, A, b, steps, M=ours_M)
    theirs = _iterates(sla.bicgstab, A, b, steps, M=theirs_M)
    assert len(ours) == len(theirs) == steps
    growth = 100 * np.finfo(float).eps * np.linalg.cond(_dense(A) if case != "complex" else A)
    for k, (xo, xs) in enumerate(zip(ours, theirs)):
        assert np.linalg.norm(xo - xs) <= (k + 1) * growth * np.linalg.norm(xs), k


# --- preconditioners -------------------------------------------------------------------
# Those of linsolve.precond that make sense for a non-symmetric A: jacobi (fused into the
# updates on the compiled kernels), ssor (its non-symmetric form, two triangular sweeps)
# and amg (pyamg's non-symmetric smoothed aggregation). Not chebyshev (its bounds come
# from Lanczos, which needs a symmetric A, and a real positive spectrum) nor ichol0 (an
# incomplete Cholesky factor of a symmetric A).

@pytest.mark.parametrize("layout", ["dia", "csr"])
def test_jacobi_folded_equals_jacobi_as_an_operator(layout):
    # on a sparse A, Jacobi is folded into the columns of A (A M computed once)
    A = convection_diffusion(12, 2.0) if layout == "dia" else irregular_nonsymmetric(100)
    b = _rhs(A.shape[0])
    fused = bicgstab(A, b, M=jacobi(A), rtol=1e-10)
    plain = bicgstab(A, b, M=sla.aslinearoperator(sp.diags(1.0 / A.diagonal())), rtol=1e-10)
    assert fused.converged and plain.converged
    assert fused.iterations == plain.iterations and fused.psolves == plain.psolves
    # Jacobi folded into the columns of A rounds (a_ij / d_j) p_j, scipy's a_ij (p_j / d_j):
    # the histories agree to rounding, eps ||b|| times the amplification cond(A) allows
    eps = np.finfo(float).eps
    np.testing.assert_allclose(fused.residual_norms, plain.residual_norms, rtol=1e-6,
                               atol=eps * np.linalg.cond(A.toarray()) * plain.residual_norms[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["jacobi", "ssor", "amg"])
def test_preconditioners_for_nonsymmetric_matrices(name, dtype):
    A = convection_diffusion(16, 1.0, dtype)
    b = _rhs(A.shape[0], dtype)
    if name == "amg":
        pytest.importorskip("pyamg")
        M = amg(A, symmetry="nonsymmetric")
    else:
        M = {"jacobi": jacobi, "ssor": ssor}[name](A)
    rtol = _rtol(dtype)
    plain = bicgstab(A, b, rtol=rtol)
    result = bicgstab(A, b, M=M, rtol=rtol)
    assert_solves(result, A, b, rtol, dtype)
    assert result.psolves >= result.iterations
    if name != "jacobi":  # jacobi is a scaling here (constant diagonal)
        assert result.iterations < plain.iterations


@pytest.mark.parametrize("layout", ["dia", "csr"])
def test_jacobi_of_a_diagonal_matrix_converges_at_the_first_half_step(layout):
    # A M = I: alpha = 1, s = 0, and the half step x = alpha M p = b / d is exact
    d = np.linspace(1.0, 4.0, 40)
    A = sp.diags(d, format="csr")
    if layout == "csr":  # one stored far entry (tiny): two scattered diagonals, no DIA
        indptr = np.concatenate([[0], np.arange(2, 42)])
        indices = np.concatenate([[0, 39], np.arange(1, 40)])
        A = sp.csr_matrix((np.concatenate([[d[0], 1e-300], d[1:]]), indices, indptr),
                          shape=(40, 40))
    b = _rhs(40)
    result = bicgstab(A, b, M=jacobi(A), rtol=1e-12)
    assert result.converged and result.iterations == 1
    assert result.matvecs == 2 and result.psolves == 1
    np.testing.assert_allclose(result.x, b / d, rtol=4 * np.finfo(float).eps)


def test_identity_M_equals_no_M():
    A = irregular_nonsymmetric(60)
    b = _rhs(60)
    applied = [0]

    def identity_M(v):
        applied[0] += 1
        return v.copy()

    plain = bicgstab(A, b, rtol=1e-10)
    identity = bicgstab(A, b, M=identity_M, rtol=1e-10)
    np.testing.assert_array_equal(plain.residual_norms, identity.residual_norms)
    np.testing.assert_array_equal(plain.x, identity.x)
    assert plain.psolves == 0 and identity.psolves == applied[0] > 0


class _CurvatureLike:
    """A curvature object: ``solve`` applies the inverse (used as ``M``)."""

    def __init__(self, A):
        self._inverse = np.linalg.inv(_dense(A))
        self.shape = A.shape

    def matvec(self, v):  # pragma: no cover - must not be used as M
        raise AssertionError("bicgstab must use .solve of a curvature object")

    def solve(self, v):
        return self._inverse @ v


def test_exact_inverse_converges_at_the_first_half_step():
    A = convection_diffusion(6, 5.0)
    b = _rhs(36)
    calls = []
    result = bicgstab(A, b, M=_CurvatureLike(A), rtol=1e-10, callback=calls.append)
    # one product for v, one for the true residual of the half-step candidate x + alpha p_hat
    assert result.converged and result.iterations == 1 and len(calls) == 1
    assert result.matvecs == 2 and result.psolves == 1
    assert result.true_residual_norm == pytest.approx(np.linalg.norm(b - A @ result.x), abs=1e-14)


def test_half_step_candidate_is_checked_on_its_true_residual():
    # The first product reports A M p = r, as if M were exact: s = 0 meets the tolerance,
    # but the candidate x + alpha p_hat (p_hat = M b, M a rough Jacobi) is far from the
    # solution. Its recomputed residual refuses it and the solve continues from there.
    A = convection_diffusion(6, 1.0)
    b = _rhs(36)
    M = jacobi(A)
    calls = [0]

    def lying(v):
        calls[0] += 1
        return b.copy() if calls[0] == 1 else A @ v

    result = bicgstab(lying, b, M=M, rtol=1e-8)
    assert result.converged, result.message
    assert result.extra["residual_replacements"] >= 1 and result.iterations > 1
    assert np.linalg.norm(b - A @ result.x) <= 1e-8 * np.linalg.norm(b)
    # the history holds the true norm where it was replaced
    x_half = M.matvec(b)
    assert result.residual_norms[1] == pytest.approx(np.linalg.norm(b - A @ x_half), rel=1e-12)


def test_unattainable_tolerance_stagnates_instead_of_converging():
    A = convection_diffusion(10, 10.0, np.float32)
    b = _rhs(100, np.float32)
    result = bicgstab(A, b, rtol=1e-12, maxiter=5000)
    assert not result.converged and result.reason == "DIVERGED_BREAKDOWN"
    assert "stagnated" in result.message and result.iterations < 5000
    assert result.true_residual_norm > 1e-12 * np.linalg.norm(b)


# --- scipy's own cases (test_iterative.py, imported, not copied) ----------------------

def bicgstab_as_scipy(A, b, *args, **kwargs):
    """``bicgstab`` with scipy's return value ``(x, info)``."""
    return tuple(bicgstab(A, b, *args, **kwargs))


def _scipy_cases():
    """scipy's Case list, the entries scipy runs bicgstab on (all of them), as ours."""
    try:
        mod = _import_scipy_tests()
    except ImportError:
        return []
    return [mod.SingleTest(case.A, case.b, bicgstab_as_scipy, case.name,
                           convergence=mod.bicgstab not in case.nonconvergence)
            for case in mod.IterativeParams().cases if mod.bicgstab not in case.skip]


_CASES = _scipy_cases()
# Every per-case test of scipy's that bicgstab runs. Nothing excluded. scipy's own skips
# stay: test_maxiter and test_precond_dummy skip the sym-nonpd breakdown case (ours breaks
# down there too, at the first step: r0'A r0 = 0). test_x0_equals_Mb's skip of
# nonsymposdef for scipy's bicgstab (numerical noise, gh-15533) does not apply to ours,
# which passes it. test_maxiter_worsening (xfail in scipy) and test_show run only gmres,
# lgmres, qmr and tfqmr.
_CASE_TESTS = ["test_maxiter", "test_convergence", "test_precond_dummy", "test_x0_equals_Mb"]


@pytest.mark.parametrize("test_name", _CASE_TESTS)
@pytest.mark.parametrize("case", _CASES, ids=[case.name for case in _CASES])
def test_scipy_case_tests(test_name, case):
    getattr(_scipy_tests(), test_name)(case)


def test_scipy_cases_were_found():
    mod = _scipy_tests()
    names = {case.name for case in _CASES}
    assert len(_CASES) == len(mod.IterativeParams().cases)  # scipy skips none for bicgstab
    assert {f"{name}-bicgstab_as_scipy" for name in ("nonsymposdef", "rand-cmplx-F",
                                                     "sym-nonpd", "poisson2d-F")} <= names
    assert [case.convergence for case in _CASES].count(False) == 1  # sym-nonpd


@pytest.mark.parametrize("name", ["poisson1d", "poisson2d"])
def test_scipy_precond_inverse(name, monkeypatch):
    mod = _scipy_tests()
    monkeypatch.setattr(mod, "_SOLVERS", [bicgstab_as_scipy])
    case, = [c for c in mod.IterativeParams().cases if c.name == name]
    mod.test_precond_inverse(case)


@pytest.mark.parametrize("test_name", ["test_atol", "test_zero_rhs", "test_x0_working",
                                       "test_x0_solves_problem_exactly",
                                       "test_positional_error"])
def test_scipy_solver_tests(test_name):
    getattr(_scipy_tests(), test_name)(bicgstab_as_scipy)


@pytest.mark.parametrize("atol", ["legacy", None, -1])
def test_scipy_invalid_atol(atol):
    _scipy_tests().test_invalid_atol(bicgstab_as_scipy, atol)


# --- the anchors --------------------------------------------------------------------

def test_nearly_exact_x0_converges_where_scipy_breaks_down():
    # scipy's rho test is absolute (|rho| < eps**2): with b of size 1e-10 and an x0 a
    # relative 1e-9 from the solution, rho = ||r||^2 is about 1e-38 and scipy's
    # bicgstab (1.17) returns info = -10 at once. Ours tests rho against eps ||r0_hat|| ||r||.
    rng = np.random.default_rng(0)
    A = random_nonsymmetric(50, seed=4) * 4
    x_star = rng.standard_normal(50)
    b = 1e-10 * (A @ x_star)
    x0 = 1e-10 * x_star * (1 + 1e-9 * rng.standard_normal(50))
    result = bicgstab(A, b, x0=x0, rtol=1e-12)
    assert result.converged and result.reason == "CONVERGED_RTOL", result.message
    assert np.linalg.norm(b - A @ result.x) <= 1e-12 * np.linalg.norm(b)
    assert result.iterations <= 10


@pytest.mark.parametrize("tolerances", [dict(rtol=1e-8), dict(rtol=0.0, atol=0.0)])
def test_exact_x0_costs_no_iteration(tolerances):
    A = np.eye(4) * 3 + np.eye(4, k=1)
    x_star = np.array([1.0, -2.0, 0.5, 4.0])
    result = bicgstab(A, A @ x_star, x0=x_star, **tolerances)
    assert result.converged and result.iterations == 0 and result.matvecs == 1
    np.testing.assert_array_equal(result.x, x_star)


# Breakdowns built in exact binary arithmetic (small integers; alpha, omega = -1, -1/2):
# each is named, DIVERGED_BREAKDOWN, within its step, never a loop and never a NaN.
BREAKDOWNS = {
    # A s is orthogonal to s: omega = 0 (scipy: omega = 0, then rho = 0, info -10)
    "omega": (np.diag([1.0, 1.0, -2.0]), [1.0, 1.0, 2.0], "omega = t's/t't vanished in step 1"),
    # rho_1 = r0'r1 = 0 with ||r1|| > ||r0||: no progress, so no restart
    "rho": (np.array([[-1.0, -1, 0], [0, 0, 1], [-1, 0, -1]]), [2.0, 2, 2],
            "rho = r0_hat'r vanished in step 2"),
    # t = A s = 0 for s != 0 (A singular, b outside its range). scipy divides 0/0 and
    # iterates on NaN to maxiter, returning info = 20 (a silent loop)
    "t't": (np.array([[1.0, 1.0], [0.0, 0.0]]), [1.0, 1.0], "t't = 0 in step 1"),
    # skew-symmetric: r'A r = 0 for every r (scipy: info -11)
    "r0_hat'v": (np.array([[0.0, 1.0], [-1.0, 0.0]]), [1.0, 1.0], "r0_hat'v vanished in step 1"),
}


@pytest.mark.parametrize("name", list(BREAKDOWNS))
@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_breakdowns_are_named(name, kind):
    A, b, message = BREAKDOWNS[name]
    A_in = sp.csr_matrix(A) if kind == "csr" else A
    result = bicgstab(A_in, np.array(b), rtol=1e-12)
    assert result.reason == "DIVERGED_BREAKDOWN" and not result.converged
    assert message in result.message, result.message
    x, info = result
    assert info < 0 and np.all(np.isfinite(x)) and result.iterations <= 2
    assert result.true_residual_norm == pytest.approx(np.linalg.norm(b - A @ x))


def test_lanczos_breakdown_after_progress_restarts():
    # rho_1 = r0'r1 = 0 exactly, with ||r1|| < ||r0||: restart from x_1 with r0_hat = r1
    A = np.array([[-1.0, 0, 0], [-1, -1, 2], [0, -1, -2]])
    b = np.array([2.0, 0, 0])
    result = bicgstab(A, b, rtol=1e-12)
    assert result.converged and result.extra["restarts"] == 1
    assert sla.bicgstab(A, b, rtol=1e-12)[1] == -10  # scipy gives up here


def test_breaking_down_every_time_never_loops():
    # deal.II's BiCGStab restarted after every breakdown and looped forever on a matrix
    # that always breaks down. A real skew-symmetric A breaks down at every start
    # (r'A r = 0); ours reports it at once, whatever x0, without another product.
    rng = np.random.default_rng(3)
    G = rng.standard_normal((30, 30))
    A = G - G.T
    products = [0]

    def counted(v):
        products[0] += 1
        return A @ v

    for x0 in (None, rng.standard_normal(30)):
        products[0] = 0
        result = bicgstab(counted, rng.standard_normal(30), x0=x0, maxiter=10**6)
        assert result.reason == "DIVERGED_BREAKDOWN" and "r0_hat'v" in result.message
        assert result.iterations == 0 and products[0] <= 3


def test_random_matrices_never_fail_silently():
    # LinearSolve.jl / IterativeSolvers.jl: BiCGStab on Gaussian matrices with cond < 1000
    # returned garbage as a success. Ours: converged only with a verified true residual,
    # otherwise a named reason, a finite x, and well inside maxiter.
    rng = np.random.default_rng(0)
    outcomes = set()
    for n, count in ((25, 8), (100, 4)):
        for _ in range(count):
            while True:
                A = rng.standard_normal((n, n))
                if np.linalg.cond(A) < 1000:
                    break
            b = A @ rng.standard_normal(n)
            result = bicgstab(A, b)
            true = np.linalg.norm(b - A @ result.x)
            assert result.converged == (true <= 1e-5 * np.linalg.norm(b)), result.message
            assert result.true_residual_norm == pytest.approx(true, rel=1e-10)
            if not result.converged:
                assert result.reason in ("DIVERGED_BREAKDOWN", "DIVERGED_ITS") and result.message
                assert np.all(np.isfinite(result.x)) and result.iterations < 10 * n
            outcomes.add(result.reason)
    assert "CONVERGED_RTOL" in outcomes and "DIVERGED_BREAKDOWN" in outcomes


def test_false_convergence_is_refused():
    # 1-D convection with central differences (cell Peclet 1.2 > 1): BiCGStab's residual
    # grows to 1e11 before the recursion turns; scipy 1.17 then reports info = 0 with a
    # true relative residual of 0.7 at rtol 1e-10. Ours never calls that converged.
    n = 100
    A = sp.diags([-1.6, 2.0, -0.4], [-1, 0, 1], shape=(n, n), format="csr")
    b = np.ones(n)
    result = bicgstab(A, b, rtol=1e-10, maxiter=2000)
    true = np.linalg.norm(b - A @ result.x)
    assert not result.converged and result.reason == "DIVERGED_BREAKDOWN", result.message
    assert result.true_residual_norm == pytest.approx(true, rel=1e-6)
    assert np.all(np.isfinite(result.x)) and result.iterations < 2000


@pytest.mark.parametrize("where", ["A", "M", "b", "inf-A"])
def test_nan_and_inf_are_reported_as_such(where):
    A = convection_diffusion(5, 1.0)
    b = _rhs(25)
    M = None
    if where in ("A", "inf-A"):
        A = A.copy()
        A.data[7] = np.nan if where == "A" else np.inf
    elif where == "M":
        M = lambda v: v * np.where(np.arange(25) == 3, np.nan, 1.0)
    else:
        b[4] = np.nan
    result = bicgstab(A, b, M=M)
    assert result.reason == "DIVERGED_NANORINF" and result.info == -1
    assert result.iterations <= 1


# --- the contract -------------------------------------------------------------------

def test_arguments_and_counters():
    A = convection_diffusion(6, 2.0)
    b = _rhs(36)
    x0 = np.full(36, 0.5)
    x0_copy, A_copy, b_copy = x0.copy(), A.copy(), b.copy()
    seen, lines = [], io.StringIO()
    result = bicgstab(A, b, x0=x0, rtol=1e-9, monitor=lines, callback=lambda x: seen.append(1))
    np.testing.assert_array_equal(x0, x0_copy)
    np.testing.assert_array_equal(b, b_copy)
    assert (A != A_copy).nnz == 0
    assert len(seen) == result.iterations
    assert lines.getvalue().splitlines() == [
        "%3d KSP Residual norm %14.12e" % (k, r) for k, r in enumerate(result.residual_norms)]
    # matvecs and psolves are the products actually spent (counted by the operators)
    products, applications = [0], [0]

    def counted_A(v):
        products[0] += 1
        return A @ v

    def counted_M(v):
        applications[0] += 1
        return v / A.diagonal()

    counted = bicgstab(counted_A, b, x0=x0, M=counted_M, rtol=1e-9)
    assert counted.converged
    assert counted.matvecs == products[0] and counted.psolves == applications[0]
    # the initial residual, at most two a step, the exit check
    assert counted.matvecs <= 2 * counted.iterations + 2

    with pytest.raises(TypeError, match="rtol"):
        bicgstab(A, b, tol=1e-8)
    with pytest.raises(ValueError, match="'Mb'"):
        bicgstab(A, b, x0="bM")
    with pytest.raises(ValueError, match="maxiter"):
        bicgstab(A, b, maxiter=-1)
    with pytest.raises(ValueError, match="shape"):
        bicgstab(A, b[:-1])


def test_maxiter_counts_steps_and_info_is_scipys():
    A = convection_diffusion(8, 1.0)
    b = _rhs(64)
    result = bicgstab(A, b, rtol=1e-12, maxiter=3)
    assert result.reason == "DIVERGED_ITS" and result.iterations == 3
    assert result.matvecs == 2 * 3 + 1 and result.info == 3
    x, info = result
    assert info == 3


def test_zero_rhs_integer_rhs_and_dtypes():
    A = convection_diffusion(4, 1.0, np.float32)
    result = bicgstab(A, np.zeros(16, np.float32), x0=np.ones(16, np.float32))
    assert result.converged and result.iterations == 0 and not np.any(result.x)
    assert result.x.dtype == np.float32
    integer = bicgstab(convection_diffusion(4, 1.0), np.arange(16))
    assert integer.converged and integer.x.dtype == np.float64
    Mb = bicgstab(A, np.ones(16, np.float32), x0="Mb", M=jacobi(A), maxiter=0)
    np.testing.assert_allclose(Mb.x, 1.0 / A.diagonal(), rtol=1e-7)
    assert Mb.psolves == 1


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("kind", ["dense", "csr", "linear_operator"])
def test_complex_systems_match_dense_solve(kind, dtype):
    # A shifted, complex convection-diffusion operator (Helmholtz-like, damped)
    A = (convection_diffusion(6, 1.0) - (0.5 - 0.4j) * sp.eye(36)).astype(dtype)
    b = (_rhs(36) + 1j * _rhs(36, seed=5)).astype(dtype)
    A_in = {"dense": A.toarray(), "csr": A, "linear_operator": sla.aslinearoperator(A)}[kind]
    rtol = _rtol(dtype)
    result = bicgstab(A_in, b, rtol=rtol, M=jacobi(A.real.tocsr()))
    assert result.x.dtype == dtype
    assert_solves(result, A, b, rtol, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_reducing_dot_turns_fusion_off_and_sees_every_inner_product(dtype):
    # Under MPI the system's dot is a reduction over ranks: the fused kernels, whose dots
    # are local, must then stay off, and every inner product go through system.dot
    # (complex ones as two real parts).
    A = convection_diffusion(8, 2.0).astype(dtype)
    b = _rhs(64).astype(dtype)
    if dtype == np.complex128:
        A = A + 0.2j * sp.eye(64)
        b = b + 0.5j
    calls = [0]
    common = settings("bicgstab", {}, rtol=1e-10, atol=0.0, monitor=False, label="KSP")
    system = krylov_system(A, b, None, None, None, allow_complex=True)
    plain_dot = system.dot

    def reducing(u, v):
        calls[0] += 1
        return plain_dot(u, v)

    with kernel_threads(64) as threads:
        solver = _BiCGStab(replace(system, dot=reducing), common,
                           SolveRecord(common.monitor), None)
        assert not solver.fused
        result = solver.run(threads)
    fused = bicgstab(A, b, rtol=1e-10)
    assert result.converged and result.iterations == fused.iterations
    np.testing.assert_allclose(result.x, fused.x, rtol=1e-9)
    # per step: r0_hat'v, v'v, s's, t's, t't, r'r, r0_hat'r (the complex ones twice)
    per_step = 7 if dtype == np.float64 else 10
    assert calls[0] >= per_step * (result.iterations - 1)  # the last may end at its half


# --- kernels: compiled against the reference ---------------------------------------------

def _csr(dtype, index_dtype, n=301, seed=0):
    A = irregular_nonsymmetric(n, seed=seed, dtype=dtype)
    return A.indptr.astype(index_dtype), A.indices.astype(index_dtype), A.data, A


def _vectors(n, dtype, count, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n).astype(dtype) for _ in range(count)]


# int64 indices (past 2**31 entries) compile the kernels again: make test-slow
@pytest.mark.parametrize("index_dtype", [np.int32, pytest.param(np.int64, marks=pytest.mark.slow)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_spmv_dots_match_reference_and_the_plain_product(dtype, index_dtype):
    import numba

    indptr, indices, data, A = _csr(dtype, index_dtype)
    p, w = _vectors(A.shape[0], dtype, 2)
    eps = float(np.finfo(dtype).eps)
    cd = convection_diffusion(17, 3.0, dtype)
    dia = csr_to_dia(cd.indptr, cd.indices, cd.data, cd.shape[0])
    p_cd, w_cd = _vectors(cd.shape[0], dtype, 2, seed=4)
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            for kernel, args, plain, vectors in (
                    ("csr", (indptr, indices, data), nbk.csr_spmv, (p, w)),
                    ("dia", (dia.offsets, dia.values), nbk.dia_spmv, (p_cd, w_cd))):
                pv, wv = vectors
                q = np.empty_like(pv)
                compiled = getattr(nbk, f"bicgstab_{kernel}_spmv_dots")
                wq, qq = compiled(*args, pv, q, wv)
                # q has the bits of the plain product; the dots equal the reference's
                expected = np.empty_like(pv)
                plain(*args, pv, expected)
                np.testing.assert_array_equal(q, expected)
                q_ref = np.empty_like(pv)
                ref = getattr(reference, f"bicgstab_{kernel}_spmv_dots")(*args, pv, q_ref, wv)
                np.testing.assert_allclose(q, q_ref, rtol=10 * eps, atol=10 * eps)
                scale = np.linalg.norm(wv.astype(float)) * np.linalg.norm(q.astype(float))
                # the reference sums in the working precision, the kernel in float64
                assert abs(wq - ref[0]) <= 4 * pv.shape[0] * eps * scale
                assert qq == pytest.approx(ref[1], rel=4 * pv.shape[0] * eps)
                # w may be p itself (t = A s with t's)
                same = compiled(*args, pv, q, pv)
                assert same[0] == pytest.approx(float(pv.astype(float) @ q.astype(float)),
                                                rel=1e-12)
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_updates_match_reference(dtype):
    n = 1001
    eps = float(np.finfo(dtype).eps)
    x, r, p, v, t, rhat, scale = _vectors(n, dtype, 7, seed=7)
    alpha, beta, omega = 0.7, -1.3, 0.4

    # p = r + beta (p - omega v)
    ours, theirs = p.copy(), p.copy()
    nbk.bicgstab_update_p(ours, r, v, beta, omega)
    reference.bicgstab_update_p(theirs, r, v, beta, omega)
    np.testing.assert_allclose(ours, theirs, rtol=8 * eps, atol=8 * eps * 3)
    # s = r - alpha v, ||s||^2
    ours, theirs = r.copy(), r.copy()
    ss = nbk.bicgstab_update_s(ours, v, alpha)
    ss_ref = reference.bicgstab_update_s(theirs, v, alpha)
    np.testing.assert_allclose(ours, theirs, rtol=8 * eps, atol=8 * eps)
    assert ss == pytest.approx(ss_ref, rel=1e-12 if dtype == np.float64 else 1e-6)
    # x += alpha p_hat + omega s_hat; r -= omega t, with s_hat = r (aliased) and apart
    for aliased in (True, False):
        xo, ro, xr, rr_ = x.copy(), r.copy(), x.copy(), r.copy()
        s_hat_o = ro if aliased else scale.copy()
        s_hat_r = rr_ if aliased else scale.copy()
        dots = nbk.bicgstab_update_xr(xo, ro, p, s_hat_o, t, rhat, alpha, omega)
        dots_ref = reference.bicgstab_update_xr(xr, rr_, p, s_hat_r, t, rhat, alpha, omega)
        np.testing.assert_allclose(xo, xr, rtol=8 * eps, atol=8 * eps * 3)
        np.testing.assert_allclose(ro, rr_, rtol=8 * eps, atol=8 * eps * 3)
        expected_x = x.astype(float) + (alpha * p.astype(float)
                                        + omega * (r if aliased else scale).astype(float))
        np.testing.assert_allclose(xo, expected_x, rtol=8 * eps, atol=8 * eps * 3)
        assert dots[0] == pytest.approx(dots_ref[0], rel=1e-12 if dtype == np.float64 else 1e-6)
        tolerance = 4 * n * eps * np.linalg.norm(rhat) * np.linalg.norm(ro)
        assert abs(dots[1] - dots_ref[1]) <= tolerance
        # the Jacobi step folded into A M: x += scale (alpha p + omega s)
        xo, ro, xr, rr_ = x.copy(), r.copy(), x.copy(), r.copy()
        dots = nbk.bicgstab_update_xr_scaled(xo, ro, p, ro if aliased else t, t, rhat, alpha,
                                             omega, scale)
        dots_ref = reference.bicgstab_update_xr_scaled(xr, rr_, p, rr_ if aliased else t, t,
                                                       rhat, alpha, omega, scale)
        np.testing.assert_allclose(xo, xr, rtol=8 * eps, atol=8 * eps * 10)
        np.testing.assert_allclose(ro, rr_, rtol=8 * eps, atol=8 * eps * 3)
        s_used = (r if aliased else t).astype(float)
        expected_x = x.astype(float) + scale.astype(float) * (alpha * p.astype(float)
                                                              + omega * s_used)
        np.testing.assert_allclose(xo, expected_x, rtol=8 * eps, atol=8 * eps * 10)
        assert abs(dots[1] - dots_ref[1]) <= tolerance


def test_nan_reaches_every_returned_dot():
    n = 64
    cd = convection_diffusion(8, 1.0)
    dia = csr_to_dia(cd.indptr, cd.indices, cd.data, n)
    p, w, v, t, rhat = _vectors(n, np.float64, 5)
    p[5] = np.nan
    assert all(math.isnan(d) for d in
               nbk.bicgstab_csr_spmv_dots(cd.indptr, cd.indices, cd.data, p, np.empty(n), w))
    assert all(math.isnan(d) for d in
               nbk.bicgstab_dia_spmv_dots(dia.offsets, dia.values, p, np.empty(n), w))
    assert math.isnan(nbk.bicgstab_update_s(p.copy(), v, 0.5))
    assert all(math.isnan(d) for d in
               nbk.bicgstab_update_xr(np.zeros(n), p.copy(), v, v, t, rhat, 0.5, 0.5))


def test_reference_kernels_run_under_array_api_strict_and_complex():
    xp = pytest.importorskip("array_api_strict")
    cd = convection_diffusion(4, 1.0)
    args = (xp.asarray(cd.indptr.astype(np.int64)), xp.asarray(cd.indices.astype(np.int64)),
            xp.asarray(cd.data))
    p = np.arange(16.0)
    q = xp.zeros(16, dtype=xp.float64)
    wq, qq = reference.bicgstab_csr_spmv_dots(*args, xp.asarray(p), q, xp.asarray(p))
    np.testing.assert_allclose(np.asarray(q), cd @ p)
    assert wq == pytest.approx(float(p @ (cd @ p))) and qq == pytest.approx(
        float(np.sum((cd @ p) ** 2)))
    # complex: the dots are the full u^H v (conjugating the first argument)
    u = np.array([1 + 2j, 3 - 1j])
    v = np.array([2 - 1j, 1j])
    r = v.copy()
    rr, rhat_r = reference.bicgstab_update_xr(np.zeros(2, complex), r, u, u, np.zeros(2, complex),
                                              u, 1.0, 0.0)
    assert rhat_r == pytest.approx(np.vdot(u, v)) and isinstance(rhat_r, complex)
    assert rr == pytest.approx(float(np.vdot(v, v).real))


# --- CuPy twins: the CUDA source compiles, the launchers pass what the PTX expects -------

# PTX parameter kinds, in the order the launchers pass them (pointers and np.int64: u64,
# np.int32: u32, np.float64: f64)
PTX_PARAMS = {
    "bicgstab_csr_spmv_dots": ["u64"] * 7 + ["u32", "u64"],  # ..., w, n, lanes, partials
    "bicgstab_dia_spmv_dots": ["u64", "u32"] + ["u64"] * 6,  # offsets, ndiag, ..., n, partials
    "bicgstab_update_p": ["u64"] * 3 + ["f64", "f64", "u64"],
    "bicgstab_update_s": ["u64", "u64", "f64", "u64", "u64"],
    "bicgstab_update_xr": ["u64"] * 6 + ["f64", "f64", "u64", "u64"],
    "bicgstab_update_xr_scaled": ["u64"] * 6 + ["f64", "f64"] + ["u64"] * 3,
    "sum_partials": ["u64"] * 3,
    "sum_partials_pair": ["u64"] * 3,
}


def _needs_nvrtc():
    if nvrtc.find_library() is None:
        pytest.skip("libnvrtc.so not found (pip install nvidia-cuda-nvrtc-cu12)")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_source_compiles_for_every_instantiation(dtype):
    _needs_nvrtc()
    expressions = cupy_bicgstab.name_expressions(dtype)
    arch = "compute_75" if nvrtc.version()[0] >= 13 else "compute_70"
    for options in ((f"--gpu-architecture={arch}",), ("--gpu-architecture=compute_90",),
                    ("--gpu-architecture=compute_80", "--std=c++17")):
        result = nvrtc.compile_source(cupy_bicgstab.SOURCE, _compile.OPTIONS + options,
                                      expressions, name=f"bicgstab-{dtype}.cu")
        assert result.ok, result.log
        entries = ptx_entries(result.ptx)
        for expression in expressions:
            lowered = result.lowered_names[expression]
            assert entries[lowered] == PTX_PARAMS[expression.split("<")[0]], expression
    width = {"float32": "f32", "float64": "f64"}[dtype]
    assert f"ld.global.nc.{width}" in result.ptx or f"ld.global.{width}" in result.ptx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_launchers_pass_what_the_ptx_expects(monkeypatch, dtype):
    calls = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls, options=_compile.OPTIONS))
    caches = (_compile._module, _compile.get_kernel, cupy_bicgstab._device_offsets)
    for cache in caches:
        cache.cache_clear()
    try:
        n = 300
        x, r, p, v, t, rhat, scale = (np.ones(n, dtype=dtype) for _ in range(7))
        indptr, indices = np.arange(n + 1, dtype=np.int32), np.arange(n, dtype=np.int32)
        K = cupy_bicgstab
        assert K.bicgstab_csr_spmv_dots(indptr, indices, p, p, v, r) == (0.0, 0.0)
        values = np.ones((3, n), dtype=dtype)
        assert K.bicgstab_dia_spmv_dots((-1, 0, 1), values, p, v, r) == (0.0, 0.0)
        K.bicgstab_update_p(p, r, v, 0.5, 0.25)
        assert K.bicgstab_update_s(r, v, 0.5) == 0.0
        assert K.bicgstab_update_xr(x, r, p, r, t, rhat, 0.5, 0.25) == (0.0, 0.0)
        assert K.bicgstab_update_xr_scaled(x, r, p, r, t, rhat, 0.5, 0.25, scale) == (0.0, 0.0)
        with pytest.raises(TypeError):
            K.bicgstab_update_s(r, v.astype(np.float16), 0.5)
    finally:
        for cache in caches:
            cache.cache_clear()
    assert {name for name, *_ in calls} == set(PTX_PARAMS)
    for name, grid, block, kinds in calls:
        assert kinds == PTX_PARAMS[name], (name, kinds)
        assert block == (_compile.BLOCK,) and len(grid) == 1 and grid[0] >= 1
