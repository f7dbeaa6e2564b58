"""Preconditioners against independent dense references, and inside pcg."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import chebyshev as npcheb

from linsolve import pcg, sor
from linsolve.precond import amg, chebyshev, ichol0, jacobi, lanczos_bounds, ssor

from tests.problems import indefinite, poisson1d, poisson2d, random_sparse_spd, random_spd

EPS64 = np.finfo(np.float64).eps


def dense_of(M, n, dtype=np.float64):
    """The matrix of ``M`` (columns M e_j)."""
    identity = np.eye(n, dtype=dtype)
    return np.column_stack([M.matvec(identity[:, j]) for j in range(n)])


def scaled_poisson(N=8, seed=0):
    """2-D Poisson with a badly scaled diagonal (Jacobi helps here; on plain Poisson it cannot)."""
    s = np.random.default_rng(seed).uniform(0.2, 5.0, N * N)
    S = sp.diags(s)
    return (S @ poisson2d(N) @ S).tocsr()


# --- dense references -------------------------------------------------------

def ssor_reference(A, omega):
    D = np.diag(np.diag(A))
    L, U = np.tril(A, -1), np.triu(A, 1)
    # Saad (4.16); SPEC's (D/w)^{-1} in the middle would scale M_A by w
    M_A = (D / omega + L) @ np.linalg.inv(D) @ (D / omega + U) * (omega / (2 - omega))
    return np.linalg.inv(M_A), np.linalg.cond(M_A)


def ic0_reference(A):
    """Right-looking dense IC(0): plain loops, updates dropped outside the pattern of tril(A)."""
    n = A.shape[0]
    pattern = np.tril(A) != 0
    L = np.tril(A).astype(np.float64)
    for k in range(n):
        L[k, k] = np.sqrt(L[k, k])
        for i in range(k + 1, n):
            if pattern[i, k]:
                L[i, k] /= L[k, k]
        for j in range(k + 1, n):
            for i in range(j, n):
                if pattern[i, j]:
                    L[i, j] -= L[i, k] * L[j, k]
    return L


def chebyshev_polynomial(eigenvalues, degree, lo, hi):
    """p(t) with 1 - t p(t) = T_{m}((theta - t)/delta) / T_{m}(theta/delta), m = degree + 1."""
    theta, delta = (hi + lo) / 2, (hi - lo) / 2
    coefficients = np.zeros(degree + 2)
    coefficients[-1] = 1.0
    residual = npcheb.chebval((theta - eigenvalues) / delta, coefficients) / \
        npcheb.chebval(theta / delta, coefficients)
    return (1 - residual) / eigenvalues


# --- one builder per preconditioner, for the shared invariants -----------------

BUILDERS = {
    "jacobi": lambda A: jacobi(A),
    "ssor": lambda A: ssor(A, omega=1.3),
    "ichol0": lambda A: ichol0(A),
    # the domain orderings through the same invariants
    "ssor-domains": lambda A: ssor(A, omega=1.3, ordering="domains"),
    "ichol0-domains": lambda A: ichol0(A, ordering="domains", num_domains=4),
    "amg": lambda A: amg(A),
    "chebyshev": lambda A: chebyshev(A, degree=5),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_symmetric_positive_definite(name):
    A = poisson2d(6) + sp.diags(np.linspace(0, 1, 36))  # not constant diagonal
    M = dense_of(BUILDERS[name](A), 36)
    rng = np.random.default_rng(3)
    u, v = rng.standard_normal(36), rng.standard_normal(36)
    scale = np.linalg.norm(u) * np.linalg.norm(M, 2) * np.linalg.norm(v)
    assert abs(u @ M @ v - v @ M @ u) <= 1e-12 * scale
    if name == "amg":  # a V-cycle is symmetric only to rounding of its own sweeps
        M = (M + M.T) / 2
    assert abs(M - M.T).max() <= 1e-12 * abs(M).max()
    assert np.linalg.eigvalsh((M + M.T) / 2).min() > 0


@pytest.mark.parametrize("name", BUILDERS)
def test_no_solve_attribute_and_operator_protocol(name):
    A = poisson2d(5)
    M = BUILDERS[name](A)
    assert not hasattr(M, "solve")  # pcg would treat it as a curvature object
    r = np.arange(25.0)
    z = M.matvec(r)
    assert M.shape == (25, 25) and z.shape == (25,) and z.dtype == np.float64
    np.testing.assert_array_equal(M @ r, z)
    np.testing.assert_array_equal(r, np.arange(25.0))  # input untouched
    np.testing.assert_array_equal(M.aslinearoperator() @ r, z)
    with pytest.raises(ValueError):
        M.matvec(np.ones(24))


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pcg_converges_to_dense_solution(name, dtype):
    A = random_sparse_spd(80, density=0.06, seed=2)
    b = np.random.default_rng(4).standard_normal(80)
    A_dense = A.toarray()
    expected = np.linalg.solve(A_dense, b)
    cond = np.linalg.cond(A_dense)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    M = BUILDERS[name](A.astype(dtype))
    assert M.dtype == dtype
    assert M.matvec(b.astype(dtype)).dtype == dtype  # float32 in, float32 out
    result = pcg(A.astype(dtype), b.astype(dtype), M=M, rtol=rtol)
    assert result.converged, result.reason
    assert result.x.dtype == dtype
    # ||x - x*|| / ||x*|| <= cond * ||r|| / ||b|| (+ rounding of the final true residual)
    bound = cond * (rtol + 10 * 80 * np.finfo(dtype).eps)
    assert np.linalg.norm(result.x - expected) <= bound * np.linalg.norm(expected)


@pytest.mark.parametrize("name", ["ssor", "ichol0", "ssor-domains", "ichol0-domains", "amg",
                                  "chebyshev"])
def test_fewer_iterations_than_cg_on_poisson2d(name):
    A = poisson2d(16)
    b = np.ones(256)
    plain = pcg(A, b, rtol=1e-8)
    preconditioned = pcg(A, b, M=BUILDERS[name](A), rtol=1e-8)
    assert preconditioned.converged and plain.converged
    assert preconditioned.iterations < plain.iterations


def test_jacobi_fewer_iterations_on_badly_scaled_poisson():
    A = scaled_poisson()
    b = np.ones(64)
    plain = pcg(A, b, rtol=1e-8)
    preconditioned = pcg(A, b, M=jacobi(A), rtol=1e-8)
    assert preconditioned.converged
    assert preconditioned.iterations < plain.iterations / 2


def test_scipy_cg_with_aslinearoperator():
    A = poisson2d(12)
    b = np.ones(144)
    x, info = spla.cg(A, b, M=ichol0(A).aslinearoperator(), rtol=1e-10)
    assert info == 0
    assert np.linalg.norm(A @ x - b) <= 1e-10 * np.linalg.norm(b)


# --- jacobi ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
def test_jacobi_is_inverse_diagonal(kind):
    A = scaled_poisson(5)
    A = {"dense": A.toarray(), "csr": A, "csc": A.tocsc()}[kind]
    M = jacobi(A)
    d = A.diagonal()
    np.testing.assert_allclose(dense_of(M, 25), np.diag(1 / d), rtol=EPS64, atol=0)


def test_jacobi_integer_matrix_gives_float64():
    M = jacobi(np.array([[2, 1], [1, 4]]))
    assert M.dtype == np.float64
    np.testing.assert_array_equal(M.matvec(np.array([1.0, 1.0])), [0.5, 0.25])


@pytest.mark.parametrize("bad", [0.0, np.nan, np.inf])
@pytest.mark.parametrize("kind", ["dense", "csr"])
def test_jacobi_bad_diagonal_names_the_row(bad, kind):
    A = poisson1d(6).toarray()
    A[4, 4] = bad
    with pytest.raises(ValueError, match=r"A\[4, 4\]"):
        jacobi(A if kind == "dense" else sp.csr_array(A))


def test_jacobi_missing_sparse_diagonal_names_the_row():
    A = sp.csr_array(poisson1d(6))
    A.data[A.indices == np.repeat(np.arange(6), np.diff(A.indptr))] = 0.0
    A.eliminate_zeros()
    with pytest.raises(ValueError, match=r"A\[0, 0\]"):
        jacobi(A)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_jacobi_under_array_api_strict(dtype_name):
    xp = pytest.importorskip("array_api_strict")
    A_np = scaled_poisson(4).toarray()
    A = xp.asarray(A_np, dtype=getattr(xp, dtype_name))
    b = xp.ones(16, dtype=getattr(xp, dtype_name))
    M = jacobi(A)
    assert M.dtype == getattr(xp, dtype_name)
    z = M.matvec(b)
    assert type(z).__module__.startswith("array_api_strict") and z.dtype == M.dtype
    np.testing.assert_allclose(np.asarray(z), 1 / np.diag(A_np), rtol=4 * np.finfo(dtype_name).eps)
    rtol = 1e-10 if dtype_name == "float64" else 1e-5
    result = pcg(A, b, M=M, rtol=rtol)
    assert result.converged
    expected = np.linalg.solve(A_np, np.ones(16))
    cond = np.linalg.cond(A_np)
    assert np.linalg.norm(np.asarray(result.x) - expected) <= \
        cond * (rtol + 100 * np.finfo(dtype_name).eps) * np.linalg.norm(expected)
    with pytest.raises(TypeError):
        M.matvec(np.ones(16))  # mixing backends


def test_jacobi_rejects_unsupported_input():
    with pytest.raises(TypeError):
        jacobi(lambda v: v)
    with pytest.raises(ValueError):
        jacobi(np.ones((2, 3)))


# --- ssor --------------------------------------------------------------------------

@pytest.mark.parametrize("omega", [0.5, 1.0, 1.5, 1.9])
def test_ssor_matches_dense_formula(omega):
    A = random_sparse_spd(30, density=0.15, seed=5)
    expected, cond = ssor_reference(A.toarray(), omega)
    actual = dense_of(ssor(A, omega), 30)
    tol = 10 * 30 * EPS64 * cond
    assert np.linalg.norm(actual - expected) <= tol * np.linalg.norm(expected)


@pytest.mark.parametrize("ordering", ["natural", "domains"])
@pytest.mark.parametrize("kind", ["nonsymmetric", "negative diagonal"])
def test_ssor_without_symmetry_stores_both_factors(kind, ordering):
    # U = L^T read from L needs A symmetric with D > 0; otherwise U is stored: same formula
    A = random_sparse_spd(30, density=0.15, seed=5).toarray()
    if kind == "nonsymmetric":
        A[np.triu_indices(30, 1)] *= np.random.default_rng(3).uniform(0.5, 1.5, 435)
    else:
        A = -A
    M = ssor(sp.csr_array(A), 1.3, ordering=ordering)
    assert M._arrays[3] is not None
    B = A[np.ix_(M.perm, M.perm)]
    expected_B, cond = ssor_reference(B, 1.3)
    expected = np.empty((30, 30))
    expected[np.ix_(M.perm, M.perm)] = expected_B
    actual = dense_of(M, 30)
    assert np.linalg.norm(actual - expected) <= 10 * 30 * EPS64 * cond * np.linalg.norm(expected)


@pytest.mark.parametrize("build", [lambda A: ichol0(A), lambda A: ssor(A, 1.3)],
                         ids=["ichol0", "ssor"])
def test_symmetric_factor_stored_once(build):
    # IC(0) and SSOR of a symmetric matrix keep L only: the backward sweep reads L^T from it
    A = random_sparse_spd(60, density=0.1, seed=4)
    M = build(A)
    assert M._arrays[3:6] == (None, None, None)
    stored = M._arrays[2].size
    assert stored <= 4 * (sp.tril(A, -1).nnz // 4 + 60)  # at most the padding beside tril


@pytest.mark.parametrize("omega", [0.6, 1.0, 1.7])
def test_ssor_application_equals_one_ssor_iteration(omega):
    A = random_sparse_spd(40, 0.1, seed=11)
    b = np.random.default_rng(12).standard_normal(40)
    one_sweep = sor(A, b, omega, symmetric=True, maxiter=1, rtol=0.0).x
    np.testing.assert_allclose(ssor(A, omega).matvec(b), one_sweep, rtol=1e-13,
                               atol=1e-13 * np.abs(one_sweep).max())


@pytest.mark.parametrize("omega", [0.0, 2.0, -0.5, 2.5, np.nan, "1"])
def test_ssor_rejects_omega(omega):
    with pytest.raises(ValueError, match="omega"):
        ssor(poisson1d(5), omega)


def test_ssor_zero_diagonal_raises():
    A = poisson1d(5).toarray()
    A[2, 2] = 0.0
    with pytest.raises(ValueError, match=r"A\[2, 2\]"):
        ssor(sp.csr_array(A))


def test_ssor_rejects_matrix_free_input():
    with pytest.raises(TypeError):
        ssor(spla.aslinearoperator(poisson1d(5)))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 25), omega=st.floats(0.05, 1.95), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_ssor_is_symmetric_positive_definite_property(n, omega, seed, dtype):
    A = random_spd(n, cond=50.0, seed=seed)
    M = ssor(A.astype(dtype), omega)
    assert M.dtype == dtype
    dense = dense_of(M, n, dtype).astype(np.float64)
    expected, cond = ssor_reference(A.astype(dtype).astype(np.float64), omega)
    tol = 10 * n * np.finfo(dtype).eps * cond
    assert np.linalg.norm(dense - expected) <= tol * np.linalg.norm(expected)
    assert np.linalg.norm(dense - dense.T) <= 2 * tol * np.linalg.norm(expected)
    assert np.linalg.eigvalsh(expected).min() > 0


# --- ichol0 ------------------------------------------------------------------------

def test_ichol0_tridiagonal_equals_cholesky():
    A = poisson1d(40) + sp.diags(np.linspace(0, 2, 40))
    M = ichol0(A)
    L = np.linalg.cholesky(A.toarray())
    np.testing.assert_allclose(M.L.toarray(), L, rtol=0, atol=50 * EPS64)
    # and then M is the exact inverse
    x = np.random.default_rng(0).standard_normal(40)
    cond = np.linalg.cond(A.toarray())
    assert np.linalg.norm(M @ (A @ x) - x) <= 10 * 40 * EPS64 * cond * np.linalg.norm(x)


def test_ichol0_random_pattern_matches_dense_loop():
    # A richer pattern than the 5-point stencil's, where rows i and k share
    # earlier columns and the update sum of IC(0) is not empty.
    A = random_sparse_spd(40, density=0.15, seed=9)
    L = ic0_reference(A.toarray())
    M = ichol0(A)
    np.testing.assert_allclose(M.L.toarray(), L, rtol=0, atol=100 * EPS64 * abs(L).max())
    assert abs(M.L.toarray() - np.linalg.cholesky(A.toarray())).max() > 1e-6


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ichol0_poisson2d_matches_dense_loop(shift):
    A = poisson2d(6)
    M = ichol0(A, shift=shift)
    shifted = A.toarray() + shift * np.diag(A.diagonal())
    L = ic0_reference(shifted)
    np.testing.assert_allclose(M.L.toarray(), L, rtol=0, atol=20 * EPS64 * abs(L).max())
    # IC(0) has fill off the pattern, so it is *not* the exact Cholesky here
    assert abs(M.L.toarray() - np.linalg.cholesky(shifted)).max() > 1e-3
    # LL^T = A on the pattern of A
    LLt = L @ L.T
    pattern = shifted != 0
    np.testing.assert_allclose(LLt[pattern], shifted[pattern], atol=20 * EPS64 * 4)
    expected = np.linalg.inv(LLt)
    actual = dense_of(M, 36)
    tol = 10 * 36 * EPS64 * np.linalg.cond(LLt)
    assert np.linalg.norm(actual - expected) <= tol * np.linalg.norm(expected)


def test_ichol0_breakdown_on_indefinite_suggests_shift():
    with pytest.raises(ValueError, match="shift="):
        ichol0(indefinite(20))


def test_ichol0_missing_diagonal_raises():
    A = poisson1d(5).toarray()
    A[3, 3] = 0.0
    with pytest.raises(ValueError, match="row 3"):
        ichol0(sp.csr_array(A))


def test_ichol0_negative_shift_rejected():
    with pytest.raises(ValueError, match="shift"):
        ichol0(poisson1d(4), shift=-1.0)


# --- ichol0 and ssor in the domain ordering -------------------------------------------

def _fem_or_grid(kind):
    """A small SPD matrix of each kind the orderings meet."""
    if kind == "grid":
        return sp.csr_array(poisson2d(14))
    if kind == "random":
        return sp.csr_array(random_sparse_spd(150, density=0.03, seed=21))
    fem = pytest.importorskip("bench.fem")
    pytest.importorskip("skfem")
    return sp.csr_array(fem.fem_matrix(kind, {"p1tri": 4, "p1tet": 3, "p2tet": 2,
                                              "elasticity3d": 2}[kind]))


@pytest.mark.parametrize("kind", ["grid", "random", "p1tri", "p1tet", "elasticity3d"])
@pytest.mark.parametrize("num_domains", [2, 4])
def test_ichol0_domains_factor_is_ic0_of_permuted_matrix(kind, num_domains):
    from linsolve.precond._ordering import check_independent

    A = _fem_or_grid(kind)
    n = A.shape[0]
    M = ichol0(A, ordering="domains", num_domains=num_domains)
    assert M.ordering == "domains" and M.num_domains == num_domains
    assert not np.array_equal(M.perm, np.arange(n))
    check_independent(A, M.domains)
    B = A[M.perm][:, M.perm].toarray()
    L = ic0_reference(B)
    np.testing.assert_allclose(M.L.toarray(), L, rtol=0, atol=100 * EPS64 * abs(L).max())
    # and the operator is P^T (L L^T)^{-1} P, by LAPACK on the factor
    r = np.random.default_rng(1).standard_normal(n)
    Ld = M.L.toarray()
    y = sla.solve_triangular(Ld, r[M.perm], lower=True)
    expected = np.empty(n)
    expected[M.perm] = sla.solve_triangular(Ld.T, y, lower=False)
    assert np.linalg.norm(M @ r - expected) <= 1e-13 * np.linalg.norm(expected)


@pytest.mark.parametrize("kind", ["grid", "random", "p1tri", "p2tet"])
@pytest.mark.parametrize("omega", [0.7, 1.0, 1.6])
def test_ssor_domains_is_ssor_of_permuted_matrix(kind, omega):
    A = _fem_or_grid(kind)
    n = A.shape[0]
    M = ssor(A, omega, ordering="domains")
    assert M.ordering == "domains" and M.num_domains == 2
    B = A[M.perm][:, M.perm].toarray()
    D, lower, upper = np.diag(np.diag(B)), np.tril(B, -1), np.triu(B, 1)
    r = np.random.default_rng(2).standard_normal(n)
    # Saad (4.16) by two LAPACK triangular solves on B
    y = sla.solve_triangular(D / omega + lower, r[M.perm], lower=True)
    z = sla.solve_triangular(D / omega + upper, D @ y, lower=False) * (2 - omega) / omega
    expected = np.empty(n)
    expected[M.perm] = z
    assert np.linalg.norm(M @ r - expected) <= 1e-13 * np.linalg.norm(expected)
    # one application from zero is one symmetric SOR sweep on the permuted system
    one_sweep = sor(sp.csr_array(B), r[M.perm], omega, symmetric=True, maxiter=1, rtol=0.0).x
    np.testing.assert_allclose((M @ r)[M.perm], one_sweep, rtol=1e-13,
                               atol=1e-13 * np.abs(one_sweep).max())


@pytest.mark.parametrize("build", [lambda A, o: ichol0(A, ordering=o),
                                   lambda A, o: ssor(A, 1.2, ordering=o)],
                         ids=["ichol0", "ssor"])
@pytest.mark.parametrize("kind", ["random", "p1tri", "p1tet", "p2tet", "elasticity3d"])
def test_pcg_with_domains_matches_direct_solve(build, kind):
    A = _fem_or_grid(kind)
    n = A.shape[0]
    b = np.random.default_rng(3).standard_normal(n)
    expected = spla.spsolve(sp.csc_array(A), b)
    cond = np.linalg.cond(A.toarray())
    iterations = {}
    for ordering in ("natural", "domains"):
        result = pcg(A, b, M=build(A, ordering), rtol=1e-10)
        assert result.converged, result.reason
        bound = cond * (1e-10 + 10 * n * EPS64)
        assert np.linalg.norm(result.x - expected) <= bound * np.linalg.norm(expected)
        iterations[ordering] = result.iterations
    # a different preconditioner, not a worse one (measured: fewer iterations on
    # scikit-fem's numbering, at most about 20 % more on lexicographic grids)
    assert iterations["domains"] <= 1.25 * iterations["natural"] + 2, iterations


@pytest.mark.parametrize("ordering", ["natural", "domains"])
@pytest.mark.parametrize("build", [lambda A, o: ichol0(A, ordering=o),
                                   lambda A, o: ssor(A, 1.1, ordering=o)],
                         ids=["ichol0", "ssor"])
def test_float32_factor_and_sweeps(build, ordering):
    A = sp.csr_array(random_sparse_spd(200, density=0.02, seed=8)).astype(np.float32)
    b = np.random.default_rng(9).standard_normal(200).astype(np.float32)
    M = build(A, ordering)
    assert M.dtype == np.float32
    # every value array the sweeps read is float32: no upcast in the hot loop
    values = [a.dtype for a in M._arrays if a is not None and a.dtype.kind == "f"]
    assert values == [np.float32] * 3  # the factor (U = L^T is read from it), two scalings
    z = M @ b
    assert z.dtype == np.float32
    # against the same operator built in float64: the rounding of the float32 factor
    # and of two triangular sweeps, c n eps32 cond(M)
    twin = build(A.astype(np.float64), ordering)
    expected = twin @ b.astype(np.float64)
    bound = 20 * 200 * np.finfo(np.float32).eps * np.linalg.cond(dense_of(twin, 200))
    assert np.linalg.norm(z - expected) <= bound * np.linalg.norm(expected)
    result = pcg(A, b, M=M, rtol=1e-5)
    assert result.converged and result.x.dtype == np.float32
    if hasattr(M, "L"):
        assert M.L.dtype == np.float32


def test_auto_ordering_by_size_not_by_machine():
    from cext.threads import num_threads

    small = poisson2d(20)  # n + nnz = 2 320
    assert ichol0(small).ordering == "natural" and ssor(small).ordering == "natural"
    np.testing.assert_array_equal(ichol0(small).perm, np.arange(400))
    large = sp.csr_array(poisson2d(150))  # n + nnz = 134 400: two threads would pay
    with num_threads(1):
        one = ichol0(large)
    two = ichol0(large)
    assert one.ordering == two.ordering == "domains" and ssor(large).ordering == "domains"
    np.testing.assert_array_equal(one.perm, two.perm)
    np.testing.assert_array_equal(one.L.data, two.L.data)
    r = np.random.default_rng(4).standard_normal(large.shape[0])
    with num_threads(1):
        z_one = one @ r
    np.testing.assert_array_equal(two @ r, z_one)  # the same operator on any thread count


@pytest.mark.parametrize("build", [ichol0, ssor])
def test_ordering_options_rejected(build):
    A = poisson1d(10)
    with pytest.raises(ValueError, match="ordering"):
        build(A, ordering="rcm")
    for bad in (0, 3, -2, 2.0, True):
        with pytest.raises(ValueError, match="num_domains"):
            build(A, ordering="domains", num_domains=bad)


def test_ichol0_domains_breakdown_names_the_original_row():
    A = poisson1d(30).toarray()
    A[17, 17] = -1.0
    with pytest.raises(ValueError, match="broke down at row 17"):
        ichol0(sp.csr_array(A), ordering="domains")


def test_ssor_domains_zero_diagonal_names_the_original_row():
    A = poisson1d(30).toarray()
    A[17, 17] = 0.0
    with pytest.raises(ValueError, match=r"A\[17, 17\]"):
        ssor(sp.csr_array(A), ordering="domains")


# --- chebyshev ---------------------------------------------------------------------

@pytest.mark.parametrize("degree", [1, 2, 5, 8])
def test_chebyshev_is_scalar_polynomial_of_A(degree):
    A = random_spd(30, cond=50.0, seed=1)
    eigenvalues, V = np.linalg.eigh(A)
    lo, hi = 0.8, 60.0
    expected = (V * chebyshev_polynomial(eigenvalues, degree, lo, hi)) @ V.T
    actual = dense_of(chebyshev(A, degree, bounds=(lo, hi)), 30)
    # the three-term recurrence is stable: error ~ degree * eps * ||A|| * ||p||
    tol = 50 * degree * EPS64 * hi / lo
    assert np.linalg.norm(actual - expected) <= tol * np.linalg.norm(expected)


def test_chebyshev_lanczos_bounds_enclose_the_top_of_the_spectrum():
    # n = 400 > 20 Lanczos steps: the largest Ritz value is strictly below
    # lambda_max (interlacing), so the |beta| margin is what makes hi safe
    A = poisson2d(20)
    eigenvalues = np.linalg.eigvalsh(A.toarray())
    M = chebyshev(A, degree=6)
    lo, hi = M.bounds
    assert hi >= eigenvalues[-1]
    assert eigenvalues[0] <= lo < hi
    assert hi <= 1.5 * eigenvalues[-1]  # an estimate, not a wild guess
    # p(A) > 0 with the estimated bounds, checked through eigh
    assert chebyshev_polynomial(eigenvalues, 6, lo, hi).min() > 0
    assert chebyshev(A, 6, seed=0).bounds == M.bounds  # seeded: reproducible
    assert lanczos_bounds(M._operator, seed=1) != M.bounds


def test_chebyshev_matrix_free_and_strict():
    A = random_spd(20, cond=10.0, seed=2)
    r = np.random.default_rng(0).standard_normal(20)
    reference = chebyshev(A, 4, bounds=(1.0, 10.0)).matvec(r)
    via_operator = chebyshev(spla.aslinearoperator(A), 4, bounds=(1.0, 10.0)).matvec(r)
    np.testing.assert_allclose(via_operator, reference, rtol=1e-13)
    xp = pytest.importorskip("array_api_strict")
    strict = chebyshev(xp.asarray(A), 4, bounds=(1.0, 10.0)).matvec(xp.asarray(r))
    np.testing.assert_allclose(np.asarray(strict), reference, rtol=1e-13)
    estimated = chebyshev(xp.asarray(A), 4)
    assert 0 < estimated.bounds[0] < estimated.bounds[1]


@pytest.mark.parametrize("degree", [0, -1, 2.5, True])
def test_chebyshev_rejects_degree(degree):
    with pytest.raises(ValueError, match="degree"):
        chebyshev(np.eye(3), degree)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (2.0, 1.0), (1.0, 1.0), (-1.0, 2.0),
                                    (1.0, np.inf), (1.0,)])
def test_chebyshev_rejects_bounds(bounds):
    with pytest.raises(ValueError, match="bounds"):
        chebyshev(np.eye(3), 2, bounds=bounds)


def test_chebyshev_indefinite_detected_by_lanczos():
    with pytest.raises(ValueError, match="positive definite"):
        chebyshev(indefinite(20), 3)


def test_chebyshev_identity_multiple():
    M = chebyshev(3.0 * np.eye(5), 2)
    np.testing.assert_allclose(M.matvec(np.ones(5)), np.ones(5) / 3, rtol=1e-10)


# --- amg ---------------------------------------------------------------------------

def test_amg_matches_pyamg_cg():
    pyamg = pytest.importorskip("pyamg")
    A = poisson2d(24)
    b = np.random.default_rng(7).standard_normal(A.shape[0])
    M = amg(A, max_coarse=10)
    result = pcg(A, b, M=M, rtol=1e-10)
    assert result.converged and result.iterations < 25
    ml = pyamg.smoothed_aggregation_solver(A, max_coarse=10)
    x_pyamg = ml.solve(b, tol=1e-10, accel="cg", maxiter=200)
    expected = np.linalg.solve(A.toarray(), b)
    cond = np.linalg.cond(A.toarray())
    for x in (result.x, x_pyamg):
        assert np.linalg.norm(x - expected) <= cond * 2e-10 * np.linalg.norm(expected)
    assert np.linalg.norm(result.x - x_pyamg) <= cond * 4e-10 * np.linalg.norm(expected)
    assert len(M.hierarchy.levels) > 1


def test_amg_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyamg", None)
    with pytest.raises(ImportError, match=r"pip install 'curvature-linsolve\[amg\]'"):
        amg(poisson1d(5))


def test_importing_precond_does_not_import_pyamg():
    import subprocess

    code = "import sys, linsolve.precond; print('pyamg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- IC(0), SSOR and ILU(0) on an (n, k) block: the factor read once for all columns ---

from linsolve.precond import ilu0  # noqa: E402


def _unsymmetric(A):
    A = A.toarray()
    n = A.shape[0]
    A[np.triu_indices(n, 1)] *= np.random.default_rng(6).uniform(0.5, 1.5, n * (n - 1) // 2)
    return sp.csr_array(A)


BLOCK_BUILDERS = {
    "ichol0": lambda A: ichol0(A),
    "ichol0-domains": lambda A: ichol0(A, ordering="domains"),
    "ssor": lambda A: ssor(A, 1.3),
    "ssor-domains": lambda A: ssor(A, ordering="domains"),
    "ssor-unsymmetric": lambda A: ssor(_unsymmetric(A), 1.3, ordering="domains"),  # U stored
    "ilu0": lambda A: ilu0(_unsymmetric(A)),
}


@pytest.mark.parametrize("name", sorted(BLOCK_BUILDERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_triangular_preconditioners_apply_a_block_as_their_columns(name, dtype):
    A = random_sparse_spd(40, density=0.12, seed=6).astype(dtype)
    M = BLOCK_BUILDERS[name](A)
    # NumPy: the compiled block solve, not the column loop
    assert M.dtype == dtype and M._solve_block is not None
    n = M.shape[0]
    dense = dense_of(M, n)
    rng = np.random.default_rng(1)
    for k in (1, 3, 8, 9):
        R = rng.standard_normal((n, k)).astype(dtype)
        before = R.copy()
        Z = M.matmat(R)
        assert Z.dtype == dtype and Z.shape == (n, k)
        np.testing.assert_array_equal(R, before)
        # bit for bit what matvec gives each column
        np.testing.assert_array_equal(Z, np.stack([M.matvec(R[:, j].copy()) for j in range(k)],
                                                  axis=1))
        expected = dense @ R.astype(np.float64)
        tol = 1e-12 if dtype == np.float64 else 1e-4
        assert np.linalg.norm(Z - expected) <= tol * np.linalg.norm(expected)
    # a Fortran-ordered float64 block on a float32 preconditioner: matvec's dtype rule
    R = np.asfortranarray(rng.standard_normal((n, 3)))
    Z = M.matmat(R)
    assert Z.dtype == np.float64
    np.testing.assert_array_equal(Z, np.stack([M.matvec(R[:, j].copy()) for j in range(3)],
                                              axis=1))


def test_triangular_block_refuses_what_matvec_refuses():
    M = ichol0(poisson2d(5))
    with pytest.raises(ValueError, match=r"shape \(25,\)"):
        M.matmat(np.ones((24, 2)))
    with pytest.raises(TypeError, match="complex"):
        M.matmat(np.ones((25, 2), dtype=complex))
    assert M.matmat(np.ones((25, 0))).shape == (25, 0)


@pytest.mark.parametrize("matrix", ["stencil", "scattered"])
def test_chebyshev_on_a_block_is_its_columns_and_batched_pcg_the_single_solves(matrix):
    # the block form: one product of A with the whole block per step (CSR and DIA)
    from array_api_compat import array_namespace

    from linsolve import as_operator

    A = poisson2d(12) if matrix == "stencil" else random_sparse_spd(150, seed=3)
    A = sp.csr_matrix(A)
    M = chebyshev(A, degree=3)
    assert M._operator.layout == ("dia" if matrix == "stencil" else "csr")
    R = np.random.default_rng(4).standard_normal((A.shape[0], 5))
    columns = np.stack([M.matvec(R[:, j].copy()) for j in range(5)], axis=1)
    np.testing.assert_allclose(M.matmat(R), columns, rtol=1e-13, atol=1e-13 * np.abs(columns).max())
    product = as_operator(A, array_namespace(R), np.float64, A.shape[0]).matmat(R)
    np.testing.assert_allclose(product, A @ R, rtol=1e-13, atol=1e-13 * np.abs(A @ R).max())
    B = R.T.copy()
    batch = pcg(A, B, M=M, rtol=1e-10)
    for j in range(5):
        single = pcg(A, B[j], M=M, rtol=1e-10)
        assert int(batch.iterations[j]) == single.iterations and batch[j].converged
        np.testing.assert_allclose(batch.x[j], single.x, rtol=1e-12,
                                   atol=1e-12 * np.linalg.norm(single.x))
