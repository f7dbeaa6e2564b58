"""ILU(0) against a dense loop reference, LAPACK triangular solves, scipy's spilu, and in GMRES."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cext import numba as nbk
from cext import reference
from linsolve.precond import ichol0
from linsolve.precond._ordering import check_independent
from linsolve.precond._triangular import choose_ordering
from linsolve.precond.ilu0 import ILU0, ilu0
from tests.problems import poisson2d

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


# --- problems and references --------------------------------------------------

def convection_diffusion(N: int, peclet: float, dtype=np.float64) -> sp.csr_array:
    """``-Laplace(u) + peclet (u_x + u_y)`` on an N x N grid, first-order upwind, times h^2.

    Non-symmetric for ``peclet > 0`` (an M-matrix at any Peclet number).
    """
    c = peclet / (N + 1)
    e = np.ones(N)
    T = sp.diags([-(1 + c) * e[:-1], (2 + c) * e, -e[:-1]], [-1, 0, 1])
    I = sp.eye(N)
    return sp.csr_array(sp.kron(I, T) + sp.kron(T, I)).astype(dtype)


def random_nonsymmetric(n: int, density: float, seed: int, dtype=np.float64) -> sp.csr_array:
    """Random sparse pattern (rows sharing earlier columns: the IKJ update sums are not
    empty), strictly diagonally dominant by rows, no stored zeros."""
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=density, random_state=rng, format="csr",
                  data_rvs=lambda k: rng.uniform(-1, 1, k))
    B.setdiag(0)
    B.eliminate_zeros()
    d = np.asarray(abs(B).sum(axis=1)).ravel() + rng.uniform(0.2, 1.0, n)
    return sp.csr_array(B + sp.diags(d)).astype(dtype)


def ilu0_reference(A: np.ndarray, pattern: np.ndarray | None = None):
    """Dense ILU(0) by Saad's Alg. 10.4 (IKJ), plain loops in float64: (L, U)."""
    n = A.shape[0]
    pattern = (A != 0) if pattern is None else pattern
    W = np.array(A, dtype=np.float64)
    for i in range(1, n):
        for k in np.flatnonzero(pattern[i, :i]):
            W[i, k] /= W[k, k]
            for j in k + 1 + np.flatnonzero(pattern[i, k + 1:]):
                W[i, j] -= W[i, k] * W[k, j]
    return np.tril(W, -1) + np.eye(n), np.triu(W)


def dense_of(M, n, dtype=np.float64):
    identity = np.eye(n, dtype=dtype)
    return np.column_stack([M.matvec(identity[:, j]) for j in range(n)])


def gmres_iterations(A, b, M, rtol=1e-10):
    """scipy gmres(restart=30) inner iterations to ``rtol``; asserts the true residual."""
    count = [0]

    def tick(_):
        count[0] += 1

    x, info = spla.gmres(A, b, M=M, rtol=rtol, restart=30, maxiter=100, callback=tick,
                         callback_type="pr_norm")
    assert info == 0
    assert np.linalg.norm(b - A @ x) <= 1.01 * rtol * np.linalg.norm(b)
    return count[0], x


# --- the factor -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda dt: random_nonsymmetric(60, 0.12, 3, dt),
                                  lambda dt: convection_diffusion(7, 30.0, dt)],
                         ids=["random", "convection"])
def test_factor_matches_dense_loop_reference(make, dtype):
    A = make(dtype)
    n = A.shape[0]
    M = ilu0(A, ordering="natural")
    assert isinstance(M, ILU0) and M.ordering == "natural" and M.dtype == dtype
    L, U = M.L.toarray(), M.U.toarray()
    assert L.dtype == U.dtype == dtype
    A64 = A.toarray().astype(np.float64)
    L_ref, U_ref = ilu0_reference(A64)
    # the patterns: L on the strict lower triangle of A (unit diagonal), U on the upper one
    pattern = A64 != 0
    assert np.array_equal((L != 0) & ~np.eye(n, dtype=bool), np.tril(pattern, -1))
    assert np.array_equal(U != 0, np.triu(pattern))
    np.testing.assert_array_equal(np.diag(L), np.ones(n))
    # each computed entry is a short sum: error c * width * eps * (|L| |U|) entrywise
    width = int(np.diff(A.indptr).max())
    scale = np.abs(L_ref) @ np.abs(U_ref)
    bound = 4 * width * EPS[dtype] * scale
    # L U = A on A's pattern to rounding (the backward error of an LU factorisation,
    # Higham Thm 9.3, for the entries computed), and not off it: the dropped fill
    LU = L.astype(np.float64) @ U.astype(np.float64)
    assert np.all(np.abs(LU - A64)[pattern] <= bound[pattern])
    assert np.abs(LU - A64)[~pattern].max() > 1e-3 * np.abs(A64).max()
    # the factors themselves (diagonally dominant, so well conditioned)
    tol = 10 * width * EPS[dtype]
    np.testing.assert_allclose(L, L_ref, rtol=0, atol=tol * np.abs(L_ref).max())
    np.testing.assert_allclose(U, U_ref, rtol=0, atol=tol * np.abs(U_ref).max())


def test_exact_lu_where_there_is_no_fill():
    # tridiagonal in the natural ordering: ILU(0) is LU without pivoting, M = A^{-1}
    n = 50
    rng = np.random.default_rng(1)
    A = sp.csr_array(sp.diags([rng.uniform(-1, 0, n - 1), rng.uniform(2.5, 3, n),
                               rng.uniform(-1.5, 0, n - 1)], [-1, 0, 1]))
    M = ilu0(A)
    P, L, U = sla.lu(A.toarray())
    assert np.array_equal(P, np.eye(n))  # diagonally dominant: no row exchange
    np.testing.assert_allclose(M.L.toarray(), L, rtol=0, atol=20 * EPS[np.float64])
    np.testing.assert_allclose(M.U.toarray(), U, rtol=0, atol=20 * EPS[np.float64] * 3)
    x = rng.standard_normal(n)
    cond = np.linalg.cond(A.toarray())
    assert np.linalg.norm(M @ (A @ x) - x) <= 10 * n * EPS[np.float64] * cond * np.linalg.norm(x)


def test_symmetric_matrix_gives_the_ichol0_operator():
    # symmetric A: ILU(0) has U = D L^T with the IC(0) factor L D^{1/2}, the same M
    A = sp.csr_array(poisson2d(7)) + sp.diags_array(np.linspace(0, 1, 49))
    A = sp.csr_array(A)
    M, C = ilu0(A, ordering="natural"), ichol0(A, ordering="natural")
    D = np.diag(M.U.diagonal())
    np.testing.assert_allclose(M.U.toarray(), D @ M.L.toarray().T, atol=50 * EPS[np.float64])
    dense_ilu, dense_ic = dense_of(M, 49), dense_of(C, 49)
    assert np.linalg.norm(dense_ilu - dense_ic) <= 1e-13 * np.linalg.norm(dense_ic)


@pytest.mark.parametrize("shift", [0.0, 0.25])
def test_shift_factors_the_shifted_matrix(shift):
    A = random_nonsymmetric(40, 0.15, 7)
    M = ilu0(A, shift=shift, ordering="natural")
    assert M.shift == shift
    shifted = A.toarray() + shift * np.diag(A.diagonal())
    L_ref, U_ref = ilu0_reference(shifted)
    tol = 100 * EPS[np.float64] * np.abs(U_ref).max()
    np.testing.assert_allclose(M.L.toarray(), L_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(M.U.toarray(), U_ref, rtol=0, atol=tol)


# --- the operator, each ordering ----------------------------------------------------

def _lapack_apply(M, r):
    """``P^T U^{-1} L^{-1} P r`` (and its transpose) by LAPACK on the dense factors."""
    L, U = M.L.toarray().astype(np.float64), M.U.toarray().astype(np.float64)
    forward = np.empty_like(r)
    forward[M.perm] = sla.solve_triangular(U, sla.solve_triangular(L, r[M.perm], lower=True,
                                                                    unit_diagonal=True))
    transposed = np.empty_like(r)
    transposed[M.perm] = sla.solve_triangular(
        L.T, sla.solve_triangular(U.T, r[M.perm], lower=True), lower=False, unit_diagonal=True)
    return forward, transposed, np.linalg.cond(L @ U)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ordering,num_domains", [("natural", 2), ("domains", 1),
                                                  ("domains", 2), ("domains", 4)])
def test_operator_is_the_permuted_factorisation(ordering, num_domains, dtype):
    A = convection_diffusion(14, 50.0, dtype)
    n = A.shape[0]
    M = ilu0(A, ordering=ordering, num_domains=num_domains)
    assert M.ordering == ordering and M.symmetric is False
    if ordering == "domains":
        assert M.num_domains == num_domains
        check_independent(A, M.domains)
        if num_domains > 1:
            assert not np.array_equal(M.perm, np.arange(n))
    # the factor is ILU(0) of P A P^T
    B = A[M.perm][:, M.perm].toarray().astype(np.float64)
    L_ref, U_ref = ilu0_reference(B)
    tol = 50 * EPS[dtype] * np.abs(U_ref).max()
    np.testing.assert_allclose(M.U.toarray(), U_ref, rtol=0, atol=tol)
    np.testing.assert_allclose(M.L.toarray(), L_ref, rtol=0, atol=tol)
    # every array the sweeps read keeps the dtype
    assert all(a.dtype == dtype for a in M._arrays if a is not None and a.dtype.kind == "f")
    r = np.random.default_rng(2).standard_normal(n).astype(dtype)
    expected, expected_t, cond = _lapack_apply(M, r.astype(np.float64))
    z, z_t = M @ r, M.rmatvec(r)
    assert z.dtype == z_t.dtype == dtype
    bound = 10 * n * EPS[dtype] * cond
    assert np.linalg.norm(z - expected) <= bound * np.linalg.norm(expected)
    assert np.linalg.norm(z_t - expected_t) <= bound * np.linalg.norm(expected_t)


def test_linear_operator_applies_m_and_its_transpose():
    A = random_nonsymmetric(30, 0.2, 5)
    M = ilu0(A)
    op = M.aslinearoperator()
    dense = dense_of(M, 30)
    assert np.linalg.norm(dense - dense.T) > 1e-3 * np.linalg.norm(dense)  # not symmetric
    r = np.random.default_rng(0).standard_normal(30)
    np.testing.assert_array_equal(op @ r, M @ r)
    np.testing.assert_allclose(op.rmatvec(r), dense.T @ r, rtol=1e-12,
                               atol=1e-13 * np.abs(dense.T @ r).max())
    np.testing.assert_allclose(op.H @ r, dense.T @ r, rtol=1e-12,
                               atol=1e-13 * np.abs(dense.T @ r).max())
    assert not hasattr(M, "solve")
    with pytest.raises(ValueError):
        M.matvec(np.ones(29))


def test_orderings_give_the_same_solve_quality():
    A = convection_diffusion(24, 100.0)
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    expected = spla.spsolve(sp.csc_array(A), b)
    cond = np.linalg.cond(A.toarray())
    iterations = {}
    for ordering in ("natural", "domains"):
        count, x = gmres_iterations(A, b, ilu0(A, ordering=ordering).aslinearoperator())
        bound = cond * (1e-10 + 10 * A.shape[0] * EPS[np.float64])
        assert np.linalg.norm(x - expected) <= bound * np.linalg.norm(expected)
        iterations[ordering] = count
    # a different preconditioner, not a worse one (measured 14 / 15 here)
    assert iterations["domains"] <= 1.25 * iterations["natural"] + 2, iterations


def test_auto_ordering_by_size():
    small, large = convection_diffusion(20, 10.0), convection_diffusion(150, 10.0)
    assert ilu0(small).ordering == "natural"
    M = ilu0(large)
    assert M.ordering == "domains" and M.num_domains == 2


# --- in GMRES, and against scipy's spilu ---------------------------------------------

@pytest.mark.parametrize("peclet", [10.0, 100.0, 1000.0])
def test_gmres_far_fewer_iterations_than_unpreconditioned(peclet):
    A = convection_diffusion(24, peclet)
    b = np.random.default_rng(4).standard_normal(A.shape[0])
    plain, _ = gmres_iterations(A, b, None)
    preconditioned, _ = gmres_iterations(A, b, ilu0(A).aslinearoperator())
    spilu = spla.spilu(sp.csc_array(A), drop_tol=0, fill_factor=1)
    with_spilu, _ = gmres_iterations(A, b, spla.LinearOperator(A.shape, spilu.solve))
    # measured: 143 / 137 / 148 unpreconditioned, 28 / 14 / 8 with ILU(0), 87 / 59 / 59
    # with spilu(drop_tol=0, fill_factor=1), which keeps about as many entries as ILU(0)
    # but chosen by SuperLU's magnitude and column-area rules after a COLAMD column
    # ordering and threshold pivoting, not the pattern of A
    assert preconditioned <= plain / 4
    assert preconditioned <= with_spilu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_spilu_where_neither_drops_anything(dtype):
    # spilu (SuperLU's ILUTP: a COLAMD column ordering, threshold partial pivoting,
    # entries dropped by magnitude and, with fill_factor, to keep nnz(L) + nnz(U) near
    # fill_factor * nnz(A)) and ILU(0) (no pivoting, A's pattern) are different
    # factorisations. Where the exact LU has no fill (tridiagonal) ILU(0) is A^{-1}, and
    # so is spilu with the fill rule off; spilu(drop_tol=0, fill_factor=1) is not even
    # there: its L stores the unit diagonal, so the exact factors exceed nnz(A) and
    # the "area" rule drops entries
    n = 40
    rng = np.random.default_rng(6)
    A = sp.csr_array(sp.diags([rng.uniform(-1, 0, n - 1), rng.uniform(2.5, 3, n),
                               rng.uniform(-1.5, 0, n - 1)], [-1, 0, 1])).astype(dtype)
    r = rng.standard_normal(n).astype(dtype)
    cond = np.linalg.cond(A.toarray().astype(np.float64))
    expected = np.linalg.solve(A.toarray().astype(np.float64), r.astype(np.float64))
    bound = 10 * n * EPS[dtype] * cond * np.linalg.norm(expected)
    exact = spla.spilu(sp.csc_array(A), drop_tol=0, drop_rule="basic")
    for z in (ilu0(A) @ r, exact.solve(r)):
        assert np.linalg.norm(z - expected) <= bound
    fill_limited = spla.spilu(sp.csc_array(A), drop_tol=0, fill_factor=1)
    assert np.linalg.norm(fill_limited.solve(r) - expected) > 1e-3 * np.linalg.norm(expected)


def _scipy_cases():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
            mod = importlib.import_module("scipy.sparse.linalg._isolve.tests.test_iterative")
    except ImportError:
        return []
    return [case for case in mod.IterativeParams().cases
            if np.dtype(case.A.dtype).kind == "f"]  # ILU(0) is real: complex is refused


_SCIPY_CASES = _scipy_cases()


@pytest.mark.parametrize("case", _SCIPY_CASES, ids=[case.name for case in _SCIPY_CASES])
def test_scipy_case_matrices_in_gmres(case):
    # the real matrices of scipy's own iterative-solver cases: ILU(0) builds, gmres +
    # ILU(0) converges, and on the dense cases (the full pattern, so no fill is dropped)
    # ILU(0) is LU without pivoting: one iteration in float64, two in float32 (the
    # float32 factor is A^{-1} to eps32 * cond(A), above rtol = 1e-5 for rand-sym-pd-F).
    # Except sym-nonpd, a saddle-point matrix whose first six diagonal entries are
    # zero: ILU(0) without pivoting cannot factor it, and says which row.
    A = case.A
    n = A.shape[0]
    if case.name == "sym-nonpd":
        with pytest.raises(ValueError, match=r"A\[0, 0\]"):
            ilu0(A)
        return
    M = ilu0(A)
    assert M.dtype == A.dtype
    b = np.random.default_rng(7).standard_normal(n)
    rtol = 1e-5 if A.dtype == np.float32 else 1e-10
    count, _ = gmres_iterations(A.astype(np.float64), b, M.aslinearoperator(), rtol=rtol)
    if isinstance(A, np.ndarray):
        assert count <= (1 if A.dtype == np.float64 else 2), count


def test_scipy_cases_were_found():
    names = {case.name for case in _SCIPY_CASES}
    assert {"poisson2d", "nonsymposdef", "sym-nonpd", "rand", "rand-F"} <= names


# --- misuse, and the caller's matrix ---------------------------------------------------

def test_zero_pivot_names_the_row_and_suggests_a_shift():
    A = sp.csr_array(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 3.0]]))
    with pytest.raises(ValueError, match=r"row 1.*shift=.*another ordering"):
        ilu0(A)
    M = ilu0(A, shift=0.1)  # u_11 = 1.1 - 1/1.1
    _, U_ref = ilu0_reference(A.toarray() + 0.1 * np.diag(A.diagonal()))
    np.testing.assert_allclose(M.U.toarray(), U_ref, rtol=1e-14)


def test_zero_pivot_in_domain_ordering_names_the_original_row():
    A = convection_diffusion(8, 10.0).tolil()
    # a singular 2 x 2 block on rows 20 and 43, coupled to nothing else
    for r in (20, 43):
        A[r, :] = 0.0
        A[:, r] = 0.0
    A[20, 20] = A[20, 43] = A[43, 20] = A[43, 43] = 1.0
    A = sp.csr_array(A)
    _, domains = choose_ordering(A, "domains", 2)
    position = np.argsort(domains.perm)
    later = 20 if position[20] > position[43] else 43  # the second pivot of the block fails
    with pytest.raises(ValueError, match=rf"broke down at row {later}\b"):
        ilu0(A, ordering="domains")


def test_zero_diagonal_entry_is_not_cured_by_shift():
    A = np.array([[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"A\[0, 0\] is not"):
        ilu0(A)  # a dense zero is not stored
    stored = sp.csr_array((np.array([0.0, 1.0, 1.0, 1.0]), np.array([0, 1, 0, 1]),
                           np.array([0, 2, 4])), shape=(2, 2))
    with pytest.raises(ValueError, match=r"row 0.*cannot change"):
        ilu0(stored, shift=1.0)


def test_overflowing_multiplier_is_caught():
    # u_00 = 1e-300 makes l_10 = 1e10 / 1e-300 overflow; no later pivot sees it
    A = sp.csr_array(np.array([[1e-300, 0.0], [1e10, 1.0]]))
    with pytest.raises(ValueError, match="row 1"):
        ilu0(A)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_entries_refused(bad):
    A = convection_diffusion(4, 1.0).toarray()
    A[5, 9] = bad
    with pytest.raises(ValueError, match=r"A\[5, 9\].*finite"):
        ilu0(sp.csr_array(A))


def test_input_checks():
    A = convection_diffusion(4, 1.0)
    with pytest.raises(ValueError, match="square"):
        ilu0(sp.csr_array(np.ones((3, 4))))
    with pytest.raises(TypeError, match="complex"):
        ilu0(A.astype(np.complex128))
    with pytest.raises(TypeError, match="scipy sparse"):
        ilu0([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="shift"):
        ilu0(A, shift=-0.5)
    with pytest.raises(ValueError, match="shift"):
        ilu0(A, shift=float("nan"))
    with pytest.raises(ValueError, match="ordering"):
        ilu0(A, ordering="rcm")
    with pytest.raises(ValueError, match="num_domains"):
        ilu0(A, ordering="domains", num_domains=3)
    assert ilu0(np.array([[2.0]])) @ np.array([4.0]) == 2.0
    assert ilu0(sp.csr_array((0, 0))).matvec(np.zeros(0)).shape == (0,)


def test_other_array_libraries_get_a_clear_error():
    xp = pytest.importorskip("array_api_strict")
    M = ilu0(convection_diffusion(4, 1.0))
    with pytest.raises(TypeError, match="numpy arrays"):
        M.matvec(xp.ones(16, dtype=xp.float64))


@pytest.mark.parametrize("ordering", ["natural", "domains"])
def test_callers_matrix_untouched(ordering):
    # non-canonical CSR (columns descending in each row, a duplicate (24, 24) appended),
    # which canonicalising in place would rewrite
    A = convection_diffusion(5, 20.0)
    rows = np.repeat(np.arange(25), np.diff(A.indptr))
    order = np.lexsort((-A.indices, rows))
    indptr = A.indptr.copy()
    indptr[-1] += 1
    messy = sp.csr_array((np.append(A.data[order], 0.5), np.append(A.indices[order], 24),
                          indptr), shape=(25, 25))
    assert not messy.has_canonical_format
    snapshot = [a.copy() for a in (messy.data, messy.indices, messy.indptr)]
    M = ilu0(messy, ordering=ordering)
    for before, after in zip(snapshot, (messy.data, messy.indices, messy.indptr)):
        np.testing.assert_array_equal(before, after)
    assert not messy.has_canonical_format
    # the factor is of the summed matrix
    summed = A.toarray()
    summed[24, 24] += 0.5
    B = summed[np.ix_(M.perm, M.perm)]
    LU = (M.L @ M.U).toarray()
    np.testing.assert_allclose(LU[B != 0], B[B != 0], rtol=1e-14)
    dense = convection_diffusion(5, 20.0).toarray()
    copy = dense.copy()
    ilu0(dense, ordering=ordering)
    np.testing.assert_array_equal(dense, copy)


# --- the kernel and its reference twin ----------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, pytest.param(np.int64, marks=pytest.mark.slow)])
def test_kernel_matches_reference_bit_for_bit(dtype, index_dtype):
    A = random_nonsymmetric(50, 0.15, 11, dtype)
    indptr, indices = A.indptr.astype(index_dtype), A.indices.astype(index_dtype)
    compiled, twin = A.data.copy(), A.data.copy()
    assert nbk.csr_ilu0(indptr, indices, compiled) == -1
    assert reference.csr_ilu0(indptr, indices, twin) == -1
    assert compiled.dtype == twin.dtype == dtype
    np.testing.assert_array_equal(compiled, twin)
    # and both report the same failed row
    bad = sp.csr_array(np.array([[1.0, 2.0], [3.0, 6.0]])).astype(dtype)
    for kernel in (nbk.csr_ilu0, reference.csr_ilu0):
        assert kernel(bad.indptr, bad.indices, bad.data.copy()) == 1
    missing = sp.csr_array(np.array([[1.0, 2.0], [3.0, 0.0]])).astype(dtype)
    for kernel in (nbk.csr_ilu0, reference.csr_ilu0):
        assert kernel(missing.indptr, missing.indices, missing.data.copy()) == 1


def test_reference_kernel_under_array_api_strict():
    # the twin is written against the standard; the factorisation writes in place, so
    # it needs a mutable namespace (JAX's immutable arrays cannot hold it: the
    # factorisation runs on the host, from scipy input, in every case)
    xp = pytest.importorskip("array_api_strict")
    A = random_nonsymmetric(20, 0.2, 12)
    data = xp.asarray(A.data.copy())
    assert reference.csr_ilu0(xp.asarray(A.indptr), xp.asarray(A.indices), data) == -1
    expected = A.data.copy()
    nbk.csr_ilu0(A.indptr, A.indices, expected)
    np.testing.assert_array_equal(np.asarray(data), expected)
