"""``pcg`` accepts what ``scipy.sparse.linalg.cg`` accepts, with its semantics.

Part (a) runs scipy's own ``cg`` tests (the installed
``scipy/sparse/linalg/_isolve/tests/test_iterative.py``, imported at test
time, none of it copied) with ``pcg`` in place of ``cg``.
"""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from linsolve import pcg
from linsolve.precond import chebyshev, ichol0, jacobi, ssor
from tests.linsolve.scipy_iterative import import_scipy_tests as _import_scipy_tests
from tests.linsolve.scipy_iterative import scipy_tests as _scipy_tests


def pcg_as_cg(A, b, *args, **kwargs):
    """``pcg`` with scipy's ``cg`` return value ``(x, info)``."""
    return tuple(pcg(A, b, *args, **kwargs))


# --- (a) scipy's own cg cases ----------------------------------------------

def _cg_cases():
    """scipy's Case list, the entries that scipy runs cg on, as pcg cases."""
    try:
        mod = _import_scipy_tests()
    except ImportError:
        return []
    return [mod.SingleTest(case.A, case.b, pcg_as_cg, case.name,
                           convergence=mod.cg not in case.nonconvergence)
            for case in mod.IterativeParams().cases if mod.cg not in case.skip]


_CASES = _cg_cases()
_CASE_TESTS = ["test_maxiter", "test_convergence", "test_precond_dummy", "test_x0_equals_Mb"]


@pytest.mark.parametrize("test_name", _CASE_TESTS)
@pytest.mark.parametrize("case", _CASES, ids=[case.name for case in _CASES])
def test_scipy_cg_case_tests(test_name, case):
    mod = _scipy_tests()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no symmetry warning on scipy's SPD cases
        getattr(mod, test_name)(case)


def test_scipy_cg_cases_were_found():
    mod = _scipy_tests()
    # poisson1d(-F), poisson2d(-F), rand-sym-pd(-F), rand-cmplx-sym-pd(-F)
    names = {case.name for case in _CASES}
    assert {f"{name}-pcg_as_cg" for name in ("poisson1d", "poisson2d-F", "rand-cmplx-sym-pd",
                                             "rand-cmplx-sym-pd-F")} <= names
    assert all(case.solver is pcg_as_cg for case in _CASES) and mod.cg is not pcg_as_cg


@pytest.mark.parametrize("name", ["poisson1d", "poisson2d"])
def test_scipy_precond_inverse(name, monkeypatch):
    mod = _scipy_tests()
    monkeypatch.setattr(mod, "_SOLVERS", [pcg_as_cg])
    case, = [c for c in mod.IterativeParams().cases if c.name == name]
    mod.test_precond_inverse(case)


_SOLVER_TESTS = ["test_atol", "test_zero_rhs", "test_x0_working", "test_x0_solves_problem_exactly",
                 "test_positional_error"]


@pytest.mark.parametrize("test_name", _SOLVER_TESTS)
def test_scipy_solver_tests(test_name):
    getattr(_scipy_tests(), test_name)(pcg_as_cg)


@pytest.mark.parametrize("atol", ["legacy", None, -1])
def test_scipy_invalid_atol(atol):
    _scipy_tests().test_invalid_atol(pcg_as_cg, atol)


# --- (b) pyamg's accel= ------------------------------------------------------

def test_pyamg_accel_path():
    """pyamg's first call ``accel(A, b, x0=, tol=, maxiter=, M=, callback=, residuals=)`` is taken."""
    pyamg = pytest.importorskip("pyamg")
    A = sp.csr_array(pyamg.gallery.poisson((20, 20), format="csr"))
    b = np.ones(A.shape[0])
    calls = []

    def spy(*args, **kwargs):
        calls.append(sorted(kwargs))
        return pcg(*args, **kwargs)

    ml = pyamg.smoothed_aggregation_solver(A)
    residuals = []
    x = ml.solve(b, accel=spy, tol=1e-10, residuals=residuals)
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
    assert len(calls) == 1 and {"tol", "residuals", "M"} <= set(calls[0])  # no fallback
    assert len(residuals) >= 2 and residuals[-1] <= 1e-10 * np.linalg.norm(b)
    with pytest.raises(TypeError, match="rtol"):  # tol= outside pyamg's call is still refused
        pcg(A, b, tol=1e-8)


# --- (c) monitor, chebyshev default, complex, symmetry probe, x0, inputs ----

def _poisson1d(n, dtype=np.float64):
    return sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1],
                    format="csr", dtype=dtype)


def test_monitor_callable_stream_and_log(caplog):
    A, b = _poisson1d(20), np.ones(20)
    seen = []
    result = pcg(A, b, rtol=1e-8, monitor=lambda k, rnorm: seen.append((k, rnorm)))
    assert [k for k, _ in seen] == list(range(result.iterations + 1))
    np.testing.assert_array_equal([rnorm for _, rnorm in seen], result.residual_norms)

    stream = io.StringIO()
    with caplog.at_level(logging.DEBUG, logger="linsolve"):
        pcg(A, b, rtol=1e-8, monitor=stream)
    lines = stream.getvalue().splitlines()
    assert lines == ["%3d KSP Residual norm %14.12e" % (k, r) for k, r in seen]
    assert [rec.getMessage() for rec in caplog.records if rec.name == "linsolve"] == lines

    for bad in (3, "yes", object()):
        with pytest.raises(TypeError, match="monitor"):
            pcg(A, b, monitor=bad)


def test_chebyshev_default_degree_and_positional_degree():
    A = _poisson1d(30)
    assert chebyshev(A).degree == 4
    assert chebyshev(A, 6).degree == 6
    assert pcg(A, np.ones(30), M=chebyshev(A), rtol=1e-10).converged


def _hermitian_pd(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    A = B @ B.conj().T / n + np.eye(n)
    b = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    return A.astype(dtype), b.astype(dtype)


def _hermitian_tridiagonal(n, dtype):
    off = np.full(n - 1, -1 + 0.5j)
    return sp.diags([off, np.full(n, 4.0 + 0j), off.conj()], [-1, 0, 1], format="csr",
                    dtype=dtype)


class _MatvecOnly:
    def __init__(self, A):
        self.A, self.shape = A, A.shape

    def matvec(self, v):
        return self.A @ v


_KINDS = {
    "dense": lambda A: A,
    "csr": lambda A: sp.csr_array(A),
    "dia_stencil": None,  # a tridiagonal Hermitian matrix, stored as DIA by pcg
    "linear_operator": lambda A: sla.aslinearoperator(A),
    "callable": lambda A: (lambda v: A @ v),
    "matvec_object": _MatvecOnly,
}


@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
@pytest.mark.parametrize("kind", list(_KINDS))
@pytest.mark.parametrize("precond", [None, "jacobi"])
def test_complex_hermitian_matches_dense_solve(kind, dtype, precond):
    n = 24
    if kind == "dia_stencil":
        A_sparse = _hermitian_tridiagonal(n, dtype)
        A_dense, A_in = A_sparse.toarray(), A_sparse
        b = (np.arange(n) + 1j * np.ones(n)).astype(dtype)
    else:
        A_dense, b = _hermitian_pd(n, dtype)
        A_in = _KINDS[kind](A_dense)
    M = None if precond is None else jacobi(A_dense)
    rtol = 1e-10 if dtype == np.complex128 else 1e-5
    result = pcg(A_in, b, M=M, rtol=rtol)
    assert result.converged, result.message
    assert result.x.dtype == dtype
    A64, b64 = A_dense.astype(np.complex128), b.astype(np.complex128)
    x_ref = np.linalg.solve(A64, b64)
    cond = np.linalg.cond(A64)
    eps = np.finfo(dtype).eps
    # forward error <= cond * relative residual; the residual meets rtol up to
    # the rounding of the residual computed in the working precision
    error = np.linalg.norm(result.x - x_ref) / np.linalg.norm(x_ref)
    assert error <= cond * (rtol + 10 * n * eps)


def test_complex_iterates_match_scipy_cg():
    A, b = _hermitian_pd(30, np.complex128, seed=3)
    ours, theirs = [], []
    pcg(A, b, rtol=1e-10, callback=lambda x: ours.append(x.copy()))
    sla.cg(A, b, rtol=1e-10, callback=lambda x: theirs.append(x.copy()))
    assert len(ours) == len(theirs)
    # scipy keeps alpha = rho / vdot(p, Ap) complex (its imaginary part is
    # rounding); pcg uses the real part. The two recurrences differ by
    # rounding each step, amplified by up to cond(A), and the differences add
    # up over the iterations: eps * cond(A) per iteration, with a factor 100.
    tol = 100 * np.finfo(float).eps * np.linalg.cond(A)
    for k, (xo, xs) in enumerate(zip(ours, theirs)):
        assert np.linalg.norm(xo - xs) <= (k + 1) * tol * np.linalg.norm(xs), k


def test_real_only_preconditioners_refuse_complex_clearly():
    A_c, b_c = _hermitian_pd(10, np.complex128)
    A_real = sp.csr_array(np.diag(np.arange(1.0, 11.0)) + np.eye(10, k=1) * 0.1
                          + np.eye(10, k=-1) * 0.1)
    for M in (ichol0(A_real), ssor(A_real)):
        with pytest.raises(TypeError, match="real preconditioner"):
            pcg(A_c, b_c, M=M)
    with pytest.raises(TypeError, match="complex"):
        chebyshev(A_c)
    with pytest.raises(TypeError, match="complex"):
        ichol0(sp.csr_array(A_c))
    # a real Jacobi scaling is the same map on complex vectors
    assert pcg(A_c, b_c, M=jacobi(A_c.real), rtol=1e-10).converged


def test_non_symmetric_warning_and_opt_out():
    n = 10
    A = np.eye(n) * 4 + np.eye(n, k=1)  # positive definite part, visibly non-symmetric
    b = np.ones(n)
    for A_in in (A, sp.csr_array(A)):
        with pytest.warns(UserWarning, match="symmetric"):
            pcg(A_in, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = pcg(A, b, check_symmetric=False)
        pcg(lambda v: A @ v, b)  # matrix-free: no probe
        symmetric = pcg(A + A.T, b)
        pcg(_hermitian_pd(n, np.complex128)[0], b)  # Hermitian, not symmetric
    assert symmetric.matvecs == pcg(A + A.T, b, check_symmetric=False).matvecs
    assert result.matvecs >= 1


def test_x0_Mb():
    A, b = _poisson1d(20), np.arange(20.0)
    d = A.diagonal()
    x0 = "Mb"
    first = []
    pcg(A, b, x0=x0, M=jacobi(A), maxiter=0, callback=first.append)
    assert x0 == "Mb"
    result = pcg(A, b, x0="Mb", M=jacobi(A), maxiter=0)
    np.testing.assert_array_equal(result.x, b / d)
    assert np.array_equal(pcg(A, b, x0="Mb", maxiter=0).x, b)
    assert pcg(A, b, x0="Mb", M=lambda v: v, rtol=1e-10).converged
    with pytest.raises(ValueError, match="'Mb'"):
        pcg(A, b, x0="bM")


def test_numpy_matrix_and_lists():
    n = 12
    A = _poisson1d(n).toarray()
    b = np.arange(1.0, n + 1)
    reference = pcg(A, b, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix itself
        A_matrix, b_matrix, x0_matrix = np.matrix(A), np.matrix(b).T, np.matrix(np.zeros(n)).T
    for A_in, b_in, x0 in ((A_matrix, b_matrix, None), (A_matrix, b, x0_matrix),
                           (A, b.tolist(), [0.0] * n), (A, tuple(b), None)):
        result = pcg(A_in, b_in, x0=x0, rtol=1e-12)
        assert type(result.x) is np.ndarray and result.x.shape == (n,)
        np.testing.assert_array_equal(result.x, reference.x)
    x, info = pcg(A, [1, 2, 3] + [0] * (n - 3), x0=[1] * n)
    assert info == 0 and x.dtype == np.float64
    assert not math.isnan(float(np.linalg.norm(x)))
