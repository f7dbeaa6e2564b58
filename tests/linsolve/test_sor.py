"""SOR/SSOR: theory on 2-D Poisson, sweeps as triangular solves, kernels vs reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from cext import numba as nbk
from cext import reference
from linsolve import SorMatrix, sor

from tests.problems import anisotropic2d, poisson2d, random_sparse_spd, rows_by_colour

N = 16
H = 1.0 / (N + 1)
OMEGA_OPT = 2.0 / (1.0 + np.sin(np.pi * H))


def _tail_factor(result) -> float:
    """Geometric mean residual reduction over the second half of the run."""
    norms, k = result.residual_norms, result.iterations
    return float((norms[k] / norms[k // 2]) ** (1.0 / (k - k // 2)))


@pytest.fixture(scope="module")
def poisson():
    A = poisson2d(N)
    b = np.random.default_rng(0).standard_normal(N * N)
    return A, b


@pytest.mark.parametrize("ordering", ["natural", "redblack", "multicolor"])
def test_gauss_seidel_tail_factor_is_cos_squared(poisson, ordering):
    A, b = poisson
    result = sor(A, b, 1.0, rtol=1e-13, ordering=ordering)
    assert result.converged
    expected = np.cos(np.pi * H) ** 2
    assert abs(_tail_factor(result) - expected) <= 0.01 * expected


@pytest.mark.parametrize("ordering", ["natural", "redblack", "multicolor"])
def test_optimal_omega_tail_factor_is_omega_minus_one(poisson, ordering):
    A, b = poisson
    result = sor(A, b, OMEGA_OPT, rtol=1e-13, ordering=ordering)
    assert result.converged
    assert abs(_tail_factor(result) - (OMEGA_OPT - 1)) <= 0.02 * (OMEGA_OPT - 1)
    # and over-relaxation pays: far fewer sweeps than Gauss-Seidel
    assert result.iterations < sor(A, b, 1.0, rtol=1e-13, ordering=ordering).iterations / 5


def test_orderings_share_tail_factors(poisson):
    A, b = poisson
    for omega in (1.0, 1.5, OMEGA_OPT):
        factors = [_tail_factor(sor(A, b, omega, rtol=1e-13, ordering=o))
                   for o in ("natural", "redblack", "multicolor")]
        assert max(factors) - min(factors) <= 0.01 * max(factors)


@pytest.mark.parametrize("omega", [0.7, 1.0, 1.6])
def test_forward_sweep_is_a_triangular_solve(omega):
    A = random_sparse_spd(60, 0.1, seed=2)
    b = np.random.default_rng(3).standard_normal(60)
    x = np.random.default_rng(4).standard_normal(60)
    S = SorMatrix(A)
    swept = x.copy()
    S.sweep(b, swept, omega)
    D = sp.diags(A.diagonal())
    lower = (D / omega + sp.tril(A, k=-1)).tocsr()
    expected = x + sla.spsolve_triangular(lower, b - A @ x, lower=True)
    np.testing.assert_allclose(swept, expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    back = x.copy()
    S.sweep(b, back, omega, backward=True)
    upper = (D / omega + sp.triu(A, k=1)).tocsr()
    expected = x + sla.spsolve_triangular(upper, b - A @ x, lower=False)
    np.testing.assert_allclose(back, expected, rtol=0, atol=1e-13 * np.abs(expected).max())


def test_ssor_iteration_matches_the_ssor_matrix():
    A = poisson2d(6)
    b = np.ones(36)
    omega = 1.3
    one_step = sor(A, b, omega, symmetric=True, maxiter=1, rtol=0.0)
    D = np.diag(A.diagonal())
    L, U = np.tril(A.toarray(), -1), np.triu(A.toarray(), 1)
    # Saad (4.16): M = (D + wL) D^{-1} (D + wU) / (w (2 - w)). SPEC section 3
    # writes (D/w)^{-1} in the middle, which is w times this: a scaling that
    # leaves PCG's iterates unchanged but not the stationary iteration's.
    M = (D + omega * L) @ np.linalg.inv(D) @ (D + omega * U) / (omega * (2 - omega))
    np.testing.assert_allclose(one_step.x, np.linalg.solve(M, b), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ordering", ["natural", "redblack", "multicolor"])
def test_converges_to_dense_solution(dtype, ordering):
    A = anisotropic2d(10, 0.3, dtype=dtype)
    b = np.random.default_rng(5).standard_normal(100).astype(dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    result = sor(A, b, 1.5, rtol=rtol, ordering=ordering, symmetric=ordering == "natural")
    assert result.converged and result.x.dtype == dtype
    assert result.residual_norms.shape == (result.iterations + 1,)
    x_dense = np.linalg.solve(A.toarray().astype(np.float64), b.astype(np.float64))
    cond = np.linalg.cond(A.toarray().astype(np.float64))
    assert np.linalg.norm(result.x - x_dense) <= cond * rtol * 2 * np.linalg.norm(x_dense)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_sweeps_equal_reference(dtype):
    S = SorMatrix(random_sparse_spd(40, 0.15, seed=6, dtype=dtype), dtype=dtype,
                  ordering="multicolor")
    b = np.random.default_rng(7).standard_normal(40).astype(dtype)
    indptr, indices, data, diag, color_ptr, color_rows = rows_by_colour(S)
    args = (indptr, indices, data, diag, b)
    eps = np.finfo(dtype).eps
    for name in ("sor_sweep_forward", "sor_sweep_backward"):
        x1, x2 = np.ones(40, dtype), np.ones(40, dtype)
        getattr(nbk, name)(*args, x1, 1.4)
        getattr(reference, name)(*args, x2, 1.4)
        np.testing.assert_allclose(x1, x2, rtol=40 * eps, atol=40 * eps)
    for reverse in (False, True):
        x1, x2 = np.ones(40, dtype), np.ones(40, dtype)
        nbk.sor_sweep_colored(*args, x1, 1.4, color_ptr, color_rows, reverse)
        reference.sor_sweep_colored(*args, x2, 1.4, color_ptr, color_rows, reverse)
        np.testing.assert_allclose(x1, x2, rtol=40 * eps, atol=40 * eps)
    A = random_sparse_spd(40, 0.15, seed=6, dtype=dtype)
    x = np.linspace(-1, 1, 40).astype(dtype)
    expected = float(np.sum((b.astype(float) - A.astype(float) @ x.astype(float)) ** 2))
    for module in (nbk, reference):
        r2 = module.csr_residual_norm2_split(*args[:4], b, x, color_rows)
        assert r2 == pytest.approx(expected, rel=200 * float(eps))
    for symmetric in (False, True):
        runs = []
        for module in (nbk, reference):
            x = np.zeros(40, dtype)
            norms = np.zeros(8)
            k = module.sor_run(*args, x, 1.4, symmetric, color_ptr, color_rows,
                               0.0, np.inf, 7, norms)
            runs.append((k, x, norms))
        assert runs[0][0] == runs[1][0] == 7
        np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=100 * eps, atol=100 * eps)
        np.testing.assert_allclose(runs[0][2], runs[1][2], rtol=100 * eps)


def test_colorings_are_proper_and_match_reference():
    A = random_sparse_spd(80, 0.05, seed=8)
    pattern = (abs(A) + abs(A.T)).tocsr()
    colors = nbk.greedy_coloring(pattern.indptr, pattern.indices, 80)
    np.testing.assert_array_equal(colors, reference.greedy_coloring(pattern.indptr, pattern.indices, 80))
    rows, cols = pattern.nonzero()
    off = rows != cols
    assert np.all(colors[rows[off]] != colors[cols[off]])
    grid = poisson2d(7)
    two, ok = nbk.two_coloring(grid.indptr, grid.indices, 49)
    two_ref, ok_ref = reference.two_coloring(grid.indptr, grid.indices, 49)
    assert ok and ok_ref
    np.testing.assert_array_equal(two, two_ref)
    r, c = grid.nonzero()
    assert np.all(two[r[r != c]] != two[c[r != c]])
    triangle = sp.csr_matrix(np.ones((3, 3)))
    assert not nbk.two_coloring(triangle.indptr, triangle.indices, 3)[1]


def test_bad_input_raises():
    A = poisson2d(4).tolil()
    A[5, 5] = 0.0
    with pytest.raises(ValueError, match=r"nonzero diagonal; A\[5, 5\]"):
        sor(A.tocsr(), np.ones(16))
    missing = sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="nonzero diagonal"):
        sor(missing, np.ones(2))
    for omega in (0.0, 2.0, -1.0, "1.5", float("nan")):
        with pytest.raises(ValueError, match="omega"):
            sor(poisson2d(3), np.ones(9), omega)
    with pytest.raises(ValueError, match="two-colourable"):
        sor(sp.csr_matrix(np.ones((3, 3)) + 2 * np.eye(3)), np.ones(3), ordering="redblack")
    with pytest.raises(ValueError, match="ordering"):
        sor(poisson2d(3), np.ones(9), ordering="zigzag")
    with pytest.raises(TypeError, match="rtol"):
        sor(poisson2d(3), np.ones(9), tol=1e-3)
    with pytest.raises(ValueError, match="expected"):
        sor(poisson2d(3), np.ones(8))


def test_failures_are_values():
    b = np.ones(9)
    b[2] = np.nan
    assert sor(poisson2d(3), b).reason == "DIVERGED_NANORINF"
    # Gauss-Seidel diverges on this indefinite matrix
    diverging = sp.csr_matrix(np.array([[1.0, 3.0], [3.0, 1.0]]))
    result = sor(diverging, np.ones(2), 1.0)
    assert result.reason == "DIVERGED_DTOL" and not result.converged and result.info == -1
    capped = sor(poisson2d(5), np.ones(25), 1.0, rtol=1e-14, maxiter=3)
    assert capped.reason == "DIVERGED_ITS" and capped.iterations == 3


def test_x0_untouched_and_prebuilt_matrix_reused():
    A = poisson2d(5)
    S = SorMatrix(A, ordering="redblack")
    x0 = np.full(25, 0.1)
    keep = x0.copy()
    a = sor(S, np.ones(25), 1.2, x0=x0, ordering="redblack")
    b = sor(A, np.ones(25), 1.2, x0=x0, ordering="redblack")
    np.testing.assert_array_equal(x0, keep)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.iterations == b.iterations


@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_inputs_untouched_and_callbacks_cannot_steer(ordering):
    # the natural ordering sweeps the returned x itself and reads the caller's b
    A = poisson2d(6)
    rhs = np.linspace(1.0, 2.0, 36)
    x0 = np.full(36, 0.1)
    kept = rhs.copy(), x0.copy()
    quiet = sor(A, rhs, 1.3, x0=x0, ordering=ordering, maxiter=7, rtol=0.0)
    seen = []

    def meddle(x):
        seen.append(x.copy())
        x[:] = 1e3  # a callback that writes its argument

    watched = sor(A, rhs, 1.3, x0=x0, ordering=ordering, maxiter=7, rtol=0.0, callback=meddle)
    np.testing.assert_array_equal(rhs, kept[0])
    np.testing.assert_array_equal(x0, kept[1])
    assert watched.x.tobytes() == quiet.x.tobytes()
    assert len(seen) == 7 and seen[-1].tobytes() == quiet.x.tobytes()
    # a read-only b is copied once, not handed to the kernels (a new compilation)
    frozen = rhs.copy()
    frozen.flags.writeable = False
    assert sor(A, frozen, 1.3, x0=x0, ordering=ordering, maxiter=7,
               rtol=0.0).x.tobytes() == quiet.x.tobytes()


@pytest.mark.slow  # compiles every sweep kernel again for int64 indices
def test_kernels_accept_int64_indices():
    """Matrices past 2^31 nonzeros use int64 indices: the kernels must compile for them."""
    S = SorMatrix(poisson2d(4), ordering="redblack")
    indptr, indices, data, diag, color_ptr, color_rows = rows_by_colour(S)
    as64 = [a.astype(np.int64) for a in (indptr, indices)]
    rows64 = color_rows.astype(np.int64)
    b = np.ones(16)
    x32, x64 = np.zeros(16), np.zeros(16)
    norms32, norms64 = np.zeros(6), np.zeros(6)
    nbk.sor_run(indptr, indices, data, diag, b, x32, 1.2, False,
                color_ptr, color_rows, 0.0, np.inf, 5, norms32)
    nbk.sor_run(*as64, data, diag, b, x64, 1.2, False, color_ptr, rows64,
                0.0, np.inf, 5, norms64)
    np.testing.assert_array_equal(x32, x64)
    np.testing.assert_array_equal(norms32, norms64)
    # the sweep-order kernels too
    for ordering in ("natural", "redblack"):
        S = SorMatrix(poisson2d(4), ordering=ordering)
        runs = []
        for cast in (lambda a: a, lambda a: a.astype(np.int64)):
            x, work, norms = np.zeros(16), np.empty(16), np.zeros(6)
            norms[0] = 4.0
            nbk.sor_run_lagged(cast(S.off_indptr), cast(S.mid), cast(S.off_indices), S.off_data,
                               S.diag, b, x, work, 1.2, True, S.color_ptr, 0.0, np.inf, 5, norms)
            runs.append((x, norms))
        np.testing.assert_array_equal(runs[0][0], runs[1][0])
        np.testing.assert_array_equal(runs[0][1], runs[1][1])


def _every_sweep_checked(A, b, omega, ordering, symmetric, tol, maxiter, dtype):
    """The run of the kernels that check after every sweep (a residual pass each)."""
    S = SorMatrix(A, dtype=dtype, ordering=ordering)
    b = b.astype(dtype)
    if ordering == "natural":
        args = (S.off_indptr, S.off_indices, S.off_data, S.diag, b)
        color_ptr, color_rows = np.zeros(1, np.int64), np.zeros(0, S.off_indices.dtype)
    else:
        indptr, indices, data, diag, color_ptr, color_rows = rows_by_colour(S)
        args = (indptr, indices, data, diag, b)
    x = np.zeros(b.shape[0], dtype)
    norms = np.zeros(maxiter + 1)
    norms[0] = np.linalg.norm(b.astype(np.float64))
    k = nbk.sor_run(*args, x, omega, symmetric, color_ptr, color_rows, tol, np.inf, maxiter, norms)
    return k, x, norms[:k + 1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("ordering", ["natural", "redblack", "multicolor"])
def test_residual_from_the_next_sweep_keeps_the_count(ordering, symmetric, dtype):
    """sor takes ||b - A x_k|| from sweep k + 1: same count and iterates as checking every sweep."""
    A = poisson2d(12, dtype=dtype) if ordering == "redblack" else random_sparse_spd(
        150, 0.04, seed=11, dtype=dtype)
    n = A.shape[0]
    b = np.random.default_rng(12).standard_normal(n)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    eps = float(np.finfo(dtype).eps)
    result = sor(A, b.astype(dtype), 1.3, rtol=rtol, ordering=ordering, symmetric=symmetric)
    tol = rtol * np.linalg.norm(b.astype(dtype).astype(np.float64))
    k, x, norms = _every_sweep_checked(A, b, 1.3, ordering, symmetric, tol, 10 * n, dtype)
    assert result.converged and result.x.dtype == dtype
    # Both histories are true residuals summed in different orders: they
    # differ by rounding, about eps (|b| + |A||x|) per entry. The counts are
    # equal unless a residual lies within that of the tolerance.
    absolute = np.abs(b) + abs(A.astype(np.float64)) @ np.abs(x.astype(np.float64))
    rounding = 4 * eps * np.max(np.diff(A.indptr)) * np.linalg.norm(absolute)
    first = min(result.iterations, k)
    assert result.iterations == k or (
        abs(result.iterations - k) == 1 and abs(norms[first] - tol) <= rounding)
    m = min(result.iterations, k) + 1
    np.testing.assert_allclose(result.residual_norms[:m], norms[:m], rtol=0, atol=rounding)
    if result.iterations == k:
        # the same iteration summed in another order: rounding apart, growing with k
        np.testing.assert_allclose(result.x, x, rtol=0, atol=8 * k * eps * np.abs(x).max())
    true = np.linalg.norm(b - A.astype(np.float64) @ result.x.astype(np.float64))
    assert true <= tol * (1 + 100 * eps * np.sqrt(n))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_lagged_kernels_equal_reference_and_triangular_solve(ordering, dtype):
    A = random_sparse_spd(70, 0.08, seed=13, dtype=dtype)
    S = SorMatrix(A, dtype=dtype, ordering=ordering)
    rng = np.random.default_rng(14)
    b, x = (rng.standard_normal(70).astype(dtype) for _ in range(2))
    bs, xs = S.to_sweep_order(b), S.to_sweep_order(x)
    eps = float(np.finfo(dtype).eps)
    system = (S.off_indptr, S.off_indices, S.off_data, S.diag)
    new = {}
    for module in (nbk, reference):
        out = np.empty_like(xs)
        r2 = module.sor_lagged_sweep(S.off_indptr, S.mid, S.off_indices, S.off_data, S.diag,
                                     bs, xs.copy(), out, 1.4, S.color_ptr)
        back = out.copy()
        module.sor_reverse_sweep(*system, bs, back, 1.4, S.color_ptr)
        new[module.__name__] = (r2, out, back)
        expected_r2 = float(np.sum((b.astype(float) - A.astype(float) @ x.astype(float)) ** 2))
        assert r2 == pytest.approx(expected_r2, rel=200 * eps)
        assert module.sor_residual_norm2_ordered(S.off_indptr, S.mid, S.off_indices, S.off_data,
                                                 S.diag, bs, xs, S.color_ptr) == pytest.approx(
            expected_r2, rel=200 * eps)
    (r_nb, out_nb, back_nb), (r_ref, out_ref, back_ref) = new.values()
    np.testing.assert_allclose(out_nb, out_ref, rtol=0, atol=40 * eps * np.abs(out_ref).max())
    np.testing.assert_allclose(back_nb, back_ref, rtol=0, atol=40 * eps * np.abs(back_ref).max())
    # the sweep is x + (D/w + L)^{-1} (b - A x) for the permuted matrix
    P = S.permutation if S.permutation is not None else np.arange(70)
    Ap = A.astype(np.float64)[P][:, P]
    lower = (sp.diags(Ap.diagonal()) / 1.4 + sp.tril(Ap, k=-1)).tocsr()
    xs64, bs64 = xs.astype(np.float64), bs.astype(np.float64)
    expected = xs64 + sla.spsolve_triangular(lower, bs64 - Ap @ xs64, lower=True)
    cond = np.linalg.cond(lower.toarray())
    np.testing.assert_allclose(out_nb, expected, rtol=0,
                               atol=10 * cond * eps * np.abs(expected).max())
    assert out_nb.dtype == dtype


def test_sweeps_follow_the_input_order():
    """SorMatrix.sweep takes natural-order vectors whatever the sweep order."""
    A = random_sparse_spd(50, 0.1, seed=15)
    b = np.random.default_rng(16).standard_normal(50)
    S = SorMatrix(A, ordering="multicolor")
    x = np.zeros(50)
    S.sweep(b, x, 1.0)
    P = S.permutation
    Ap = A[P][:, P]
    lower = (sp.diags(Ap.diagonal()) + sp.tril(Ap, k=-1)).tocsr()
    expected = np.empty(50)
    expected[P] = sla.spsolve_triangular(lower, b[P], lower=True)
    np.testing.assert_allclose(x, expected, rtol=1e-13, atol=1e-14)
    assert S.residual_norm(b, x) == pytest.approx(np.linalg.norm(b - A @ x), rel=1e-12)


@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_one_thread_and_two_give_the_same_bits(ordering):
    """The natural sweep's residual runs on the second core, a colour's rows on both: same bits."""
    import linsolve

    A = poisson2d(160)  # 128k entries: two threads under the policy
    b = np.random.default_rng(17).standard_normal(A.shape[0])
    S = SorMatrix(A, ordering=ordering)
    runs = []
    for threads in (1, 2):
        with linsolve.num_threads(threads):
            runs.append(sor(S, b, 1.6, rtol=1e-300, maxiter=12, ordering=ordering))
    assert runs[0].x.tobytes() == runs[1].x.tobytes()
    if ordering == "natural":  # the colours' partial sums of ||r||^2 are per thread
        assert runs[0].residual_norms.tobytes() == runs[1].residual_norms.tobytes()
    else:
        np.testing.assert_allclose(runs[0].residual_norms, runs[1].residual_norms, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_zero_initial_guess_residual_skips_a_but_keeps_the_bits(ordering, dtype):
    """From x0 = 0 the first residual is taken from b alone: the value the pass over A gives."""
    A = random_sparse_spd(300, 0.05, seed=21, dtype=dtype)
    b = np.random.default_rng(22).standard_normal(300).astype(dtype)
    S = SorMatrix(A, ordering=ordering)
    bs = S.to_sweep_order(b)
    full = nbk.sor_residual_norm2_ordered(S.off_indptr, S.mid, S.off_indices, S.off_data,
                                          S.diag, bs, np.zeros_like(bs), S.color_ptr)
    for x0 in (None, np.zeros(300), np.full(300, -0.0)):
        result = sor(S, b, 1.3, x0=x0, rtol=0.0, maxiter=3, ordering=ordering)
        assert result.residual_norms[0] == np.sqrt(full)
    # a nonzero guess still reads A
    x0 = np.zeros(300)
    x0[17] = 1.0
    result = sor(S, b, 1.3, x0=x0, rtol=0.0, maxiter=3, ordering=ordering)
    expected = np.linalg.norm(b.astype(float) - A.astype(float) @ x0)
    assert result.residual_norms[0] == pytest.approx(expected, rel=1e-5)
    assert abs(result.residual_norms[0] - np.linalg.norm(b.astype(float))) > 1e-3
    # and A is not read: spoiled after the build, it leaves that residual as it was
    S.off_data[:] = np.nan
    assert S.residual_norm(bs, np.zeros_like(bs), ordered=True) == np.sqrt(full)
    assert np.isnan(S.residual_norm(bs, np.ones_like(bs), ordered=True))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 301])
@pytest.mark.parametrize("dtypes", [(np.float64, np.float64), (np.float32, np.float32),
                                    (np.float32, np.float64)])
def test_two_thread_residual_pass_has_the_serial_bits(n, dtypes):
    """The natural ordering's residual pass on two threads sums in row order, as on one."""
    import numba

    from cext.numba.sor_lagged import _residual_rows_split, _residual_serial
    from cext.numba.spmv import unsigned_view

    data_dtype, vector_dtype = dtypes
    rng = np.random.default_rng(n)
    A = sp.random(n, n, density=0.3, random_state=n, format="csr") + sp.eye(n, format="csr")
    S = SorMatrix(A.astype(data_dtype), ordering="natural")
    b, x = (rng.standard_normal(n).astype(vector_dtype) for _ in range(2))
    args = (unsigned_view(S.off_indptr), unsigned_view(S.mid), unsigned_view(S.off_indices),
            S.off_data, S.diag, b, x, S.off_data.dtype.type(0), np.uint64(0))
    previous = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        split = _residual_rows_split(*args)
    finally:
        numba.set_num_threads(previous)
    assert split == _residual_serial(*args)
    expected = np.sum((b.astype(float) - A.astype(data_dtype).astype(float) @ x.astype(float)) ** 2)
    assert split == pytest.approx(expected, rel=1e-4 if np.float32 in dtypes else 1e-12)


@pytest.mark.parametrize("n", [0, 1, 7, 301])
@pytest.mark.parametrize("dtypes", [(np.float64, np.float64), (np.float32, np.float32),
                                    (np.float32, np.float64)])
@pytest.mark.parametrize("own", [False, True])
def test_inplace_natural_sweep_has_the_measured_sweeps_bits(n, dtypes, own):
    """The unmeasured natural sweep, in place over one vector (the diagonal read from the
    matrix's own data when it sweeps them), gives the bits of the measured sweep into a
    second vector, on a split and on a matrix's own arrays; both match a dense sweep."""
    from cext.numba.sor_lagged import _lagged_serial, _natural_inplace
    from cext.numba.spmv import unsigned_view
    from linsolve.stationary.sor_matrix import sweep_matrix

    data_dtype, vector_dtype = dtypes
    rng = np.random.default_rng(n)
    A = (sp.random(n, n, density=0.3, random_state=n, format="csr")
         + 4 * sp.eye(n, format="csr")).astype(data_dtype)
    A.sort_indices()
    S = sweep_matrix(A, data_dtype, "natural") if own else SorMatrix(A)
    assert S._skip == (1 if own and n else 0) or n == 0
    b, x = (rng.standard_normal(n).astype(vector_dtype) for _ in range(2))
    omega, keep = data_dtype(1.4), data_dtype(1.0 - 1.4)
    args = (unsigned_view(S.off_indptr), unsigned_view(S.mid), unsigned_view(S.off_indices),
            S.off_data, S.diag, b)
    measured = np.zeros_like(x)
    _lagged_serial(*args, x, measured, omega, keep, np.uint64(S._skip))
    inplace = x.copy()
    _natural_inplace(*args, inplace, omega, keep, np.uint64(S._skip))
    assert inplace.tobytes() == measured.tobytes()
    # against an independent dense sweep
    dense = A.toarray().astype(float)
    expected = x.astype(float).copy()
    for i in range(n):
        sigma = dense[i] @ expected - dense[i, i] * expected[i]
        expected[i] = (1 - 1.4) * expected[i] + 1.4 * (float(b[i]) - sigma) / dense[i, i]
    tol = 1e-4 if np.float32 in dtypes else 1e-12
    np.testing.assert_allclose(inplace, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_fixed_sweeps_measure_every_32nd_by_default(ordering):
    """rtol = atol = 0: the residual every 32 sweeps and at the end (NaN between), the same
    iterate and measured values as check_every=1; check_every=1 keeps every entry."""
    A = poisson2d(12)
    b = np.random.default_rng(4).standard_normal(144)
    every = sor(A, b, 1.5, rtol=0.0, maxiter=70, ordering=ordering, check_every=1)
    fixed = sor(A, b, 1.5, rtol=0.0, maxiter=70, ordering=ordering)
    assert fixed.x.tobytes() == every.x.tobytes()
    assert (fixed.iterations, fixed.reason) == (every.iterations, every.reason) == (
        70, "DIVERGED_ITS")
    measured = [0, 32, 64, 70]
    assert np.array_equal(fixed.residual_norms[measured], every.residual_norms[measured])
    assert np.isnan(np.delete(fixed.residual_norms, measured)).all()
    assert not np.isnan(every.residual_norms).any()
    assert fixed.matvecs == len(measured)
    # the last residual is the true one
    assert fixed.residual_norms[-1] == pytest.approx(np.linalg.norm(b - A @ fixed.x), rel=1e-12)
    # a tolerance to meet: every sweep, as before
    tol = sor(A, b, 1.5, rtol=1e-6, ordering=ordering)
    assert not np.isnan(tol.residual_norms).any()


def test_fixed_sweeps_still_see_divergence():
    # omega outside what converges for this non-symmetric matrix: caught at a measured sweep
    A = sp.csr_matrix(np.array([[1.0, 3.0], [-3.0, 1.0]]))
    result = sor(A, np.ones(2), 1.9, rtol=0.0, maxiter=10_000)
    assert result.reason == "DIVERGED_DTOL"
    assert result.iterations % 32 == 0 and result.iterations < 10_000


@pytest.mark.parametrize("case", ["plain", "unsorted", "stored zero", "int64 indptr",
                                  "missing diagonal"])
def test_natural_plain_call_on_the_matrix_arrays_matches_the_split(case):
    """sor() sweeps a CSR matrix's own arrays (no split copy) where it can, with the split's
    bits; any other matrix takes the split, and the caller's arrays are never written."""
    from linsolve.stationary.sor_matrix import sweep_matrix

    A = poisson2d(8).tocsr()
    A.eliminate_zeros()  # (poisson2d stores its band's zeros: the split path's case)
    b = np.random.default_rng(5).standard_normal(64)
    if case == "unsorted":
        A = A.copy()
        A.indices[:2] = A.indices[1::-1].copy()
        A.data[:2] = A.data[1::-1].copy()
        A.has_sorted_indices = False
    elif case == "stored zero":
        A = A.copy()
        A.data[1] = 0.0
    elif case == "int64 indptr":
        A = sp.csr_matrix((A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64)),
                          shape=A.shape)
    elif case == "missing diagonal":
        A = A.tolil()
        A[3, 3] = 0.0
        A = A.tocsr()
        A.eliminate_zeros()
    before = (A.data.copy(), A.indices.copy(), A.indptr.copy())
    if case == "missing diagonal":  # the split's error
        with pytest.raises(ValueError, match=r"nonzero diagonal; A\[3, 3\] = 0"):
            sor(A, b, 1.3, rtol=0.0, maxiter=5)
        return
    S = sweep_matrix(A, np.float64, "natural")
    assert S._skip == (1 if case in ("plain", "int64 indptr") else 0)
    split = SorMatrix(A, dtype=np.float64)
    for maxiter, check_every in ((9, 1), (70, None)):
        ours = sor(A, b, 1.3, rtol=0.0, maxiter=maxiter, check_every=check_every)
        theirs = sor(split, b, 1.3, rtol=0.0, maxiter=maxiter, check_every=check_every)
        assert ours.x.tobytes() == theirs.x.tobytes()
        assert ours.residual_norms.tobytes() == theirs.residual_norms.tobytes()
    assert all(np.array_equal(u, v) for u, v in zip(before, (A.data, A.indices, A.indptr)))
    with pytest.raises(RuntimeError, match="one solve"):
        sweep_matrix(sp.csr_matrix(np.diag([2.0, 3.0])), np.float64, "natural").sweep(
            np.ones(2), np.zeros(2), 1.2)


def test_own_arrays_only_for_the_working_dtype_and_writeable_arrays():
    # the others would compile the sweeps anew (or sweep in the wrong precision): the split
    from linsolve.stationary.sor_setup import own_arrays

    A = sp.csr_matrix(np.array([[4.0, -1.0], [-1.0, 4.0]]))
    split = own_arrays(A, np.float64)
    assert split is not None and split.arrays[4].tolist() == [0, 3]  # where the diagonal is
    assert split.arrays[0] is A.indptr and split.arrays[3].tolist() == [4.0, 4.0]
    assert own_arrays(A.astype(np.float32), np.float64) is None
    assert own_arrays(A, np.float32) is None
    frozen = A.copy()
    frozen.data.flags.writeable = False
    assert own_arrays(frozen, np.float64) is None


def test_a_callback_writing_a_does_not_change_the_solve():
    # a solve with a callback sweeps a copy of A, as SorMatrix(A) would: not A's arrays
    A = poisson2d(6).tocsr()
    A.eliminate_zeros()
    b = np.random.default_rng(6).standard_normal(36)
    quiet = sor(A, b, 1.4, rtol=0.0, maxiter=6)
    spoiled = A.copy()
    result = sor(spoiled, b, 1.4, rtol=0.0, maxiter=6,
                 callback=lambda x: spoiled.data.__imul__(2.0))
    assert result.x.tobytes() == quiet.x.tobytes()


def test_zero_initial_guess_of_a_non_finite_matrix_still_fails_at_once():
    # 0 * Inf is NaN: the shortcut (the residual of x = 0 is b) does not hold there
    A = sp.lil_matrix(poisson2d(4))
    A[3, 2] = np.inf
    result = sor(A.tocsr(), np.ones(16), 1.2)
    assert result.reason == "DIVERGED_NANORINF" and result.iterations == 0
    assert np.isnan(result.residual_norms[0])


@pytest.mark.parametrize("check_every", [2, 3, 8])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_checking_every_k_sweeps_keeps_the_iterates_and_the_guarantee(ordering, symmetric,
                                                                      check_every):
    import linsolve

    # two threads under the policy (the split and coloured kernels run); shifted so that
    # a few dozen sweeps converge
    A = sp.csr_array(poisson2d(160) + sp.eye(160 * 160))
    n = A.shape[0]
    b = np.random.default_rng(18).standard_normal(n)
    S = SorMatrix(A, ordering=ordering)
    every = sor(S, b, 1.2, rtol=1e-10, ordering=ordering, symmetric=symmetric, maxiter=4000)
    assert every.converged
    for threads in (1, 2):
        with linsolve.num_threads(threads):
            sparse = sor(S, b, 1.2, rtol=1e-10, ordering=ordering, symmetric=symmetric,
                         maxiter=4000, check_every=check_every)
        k = sparse.iterations
        assert sparse.converged
        # here the residual falls monotonically: the first multiple of the period after
        # the every-sweep count (in general SOR's residual may rise again: later)
        assert every.iterations <= k < every.iterations + check_every
        # the true residual of what is returned meets the tolerance, and is the one reported
        true = np.linalg.norm(b - A @ sparse.x)
        assert true <= 1e-10 * np.linalg.norm(b)
        assert sparse.true_residual_norm == pytest.approx(true, rel=1e-6)
        # measured where k is a multiple of the period, NaN between (one compiled chunk
        # here); the same values as every sweep's
        norms = sparse.residual_norms
        assert norms.shape == (k + 1,)
        measured = np.flatnonzero(~np.isnan(norms))
        assert set(measured) == set(range(0, k + 1, check_every)) | {k}
        assert np.all(norms[measured[:-1]] > 1e-10 * np.linalg.norm(b)) and norms[k] <= \
            1e-10 * np.linalg.norm(b)
        assert sparse.matvecs == measured.size
        shared = measured[measured <= every.iterations]
        # (bit for bit in the natural ordering; the colours sum ||r||^2 per thread)
        np.testing.assert_allclose(norms[shared], every.residual_norms[shared], rtol=1e-13)
        # the same sweeps: the iterate equals the every-sweep run stopped at k, bit for bit
        same = sor(S, b, 1.2, rtol=0.0, ordering=ordering, symmetric=symmetric, maxiter=k)
        assert same.x.tobytes() == sparse.x.tobytes()


@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_check_every_reference_twin_and_chunks(ordering):
    # the compiled run resumed in chunks that end off the period, each leaving its last
    # residual to the next chunk's first sweep (measure_end only at the end), against one
    # reference run
    S = SorMatrix(random_sparse_spd(60, 0.1, seed=19), ordering=ordering)
    b = S.to_sweep_order(np.random.default_rng(20).standard_normal(60))
    runs = []
    for module, stops in ((nbk, (7, 12, 20, 23)), (reference, (23,))):
        x, work, norms = np.zeros(60), np.empty(60), np.full(24, -1.0)
        norms[0] = np.linalg.norm(b)
        k = 0
        for stop in stops:
            k = module.sor_run_lagged(S.off_indptr, S.mid, S.off_indices, S.off_data, S.diag, b,
                                      x, work, 1.2, True, S.color_ptr, 0.0, np.inf, stop, norms,
                                      k, 4, stop == 23)
            assert k == stop
            assert stop == 23 or np.isnan(norms[stop])  # left to the next chunk
        runs.append((x, norms))
    (x_nb, norms_nb), (x_ref, norms_ref) = runs
    np.testing.assert_allclose(x_nb, x_ref, rtol=1e-13, atol=0)
    for norms in (norms_nb, norms_ref):  # 12 and 20 measured by the chunks that start there
        assert set(np.flatnonzero(~np.isnan(norms))) == {0, 4, 8, 12, 16, 20, 23}
    both = ~np.isnan(norms_ref)
    np.testing.assert_allclose(norms_nb[both], norms_ref[both], rtol=1e-12,
                               atol=1e-14 * norms_ref[0])


def test_sor_chunks_hand_over_the_residual():
    # 70k sweeps of a 4-unknown system run in two compiled chunks (at most 2**16 sweeps
    # each): the first leaves its last residual (NaN) to the second, which measures it
    A = sp.csr_array(np.array([[4.0, 1, 0, 0], [1, 4, 1, 0], [0, 1, 4, 1], [0, 0, 1, 4]]))
    b = np.ones(4)
    result = sor(A, b, 1.1, rtol=0.0, maxiter=70_003, check_every=4)
    assert result.iterations == 70_003 and result.reason == "DIVERGED_ITS"
    measured = np.flatnonzero(~np.isnan(result.residual_norms))
    assert set(measured) == set(range(0, 70_004, 4)) | {70_003}
    assert result.matvecs == measured.size
    np.testing.assert_allclose(result.x, np.linalg.solve(A.toarray(), b), rtol=1e-14)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_check_every_rejected(bad):
    with pytest.raises(ValueError, match="check_every"):
        sor(poisson2d(4), np.ones(16), 1.2, check_every=bad)


# --- the GPU path, run here through the CPU kernels of the same family ---------------

@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("ordering", ["redblack", "multicolor"])
def test_device_path_equals_the_host_path(monkeypatch, ordering, symmetric):
    # sor() on CuPy arrays runs DeviceSorMatrix (colour-stored sweeps, every sweep
    # measured); with NumPy arrays standing in, the same driver and arrays run the
    # Numba twins of the CuPy kernels: the solve must match the host path's
    import sys

    sor_module = sys.modules["linsolve.sor"]  # the attribute linsolve.sor is the function
    A = poisson2d(12)
    b = np.random.default_rng(21).standard_normal(A.shape[0])
    host = sor(A, b, 1.4, rtol=1e-10, ordering=ordering, symmetric=symmetric)
    monkeypatch.setattr(sor_module, "_on_device", lambda xp: True)
    device = sor(A, b, 1.4, rtol=1e-10, ordering=ordering, symmetric=symmetric,
                 check_every=5)  # the device measures every sweep regardless
    assert device.converged and device.iterations == host.iterations
    assert not np.isnan(device.residual_norms).any()
    # the same iteration in other summation orders: rounding apart
    np.testing.assert_allclose(device.residual_norms, host.residual_norms, rtol=1e-10,
                               atol=1e-13 * host.residual_norms[0])
    np.testing.assert_allclose(device.x, host.x, rtol=0, atol=1e-12 * np.abs(host.x).max())
    with pytest.raises(ValueError, match="coloured ordering"):
        sor(A, b, 1.4, ordering="natural")


# -- set-up in compiled code, and pattern reuse ----------------------------------------------

def _scipy_split(A, ordering, dtype):
    """The sweep-order arrays built by scipy alone (the oracle of the compiled set-up):
    symmetrised pattern, greedy or two-colouring, reverse Cuthill-McKee within a colour,
    the permuted matrix less its diagonal, explicit zeros dropped, columns sorted."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    csr = sp.csr_matrix(A)
    csr.sum_duplicates()
    n = csr.shape[0]
    permutation, color_ptr = None, np.zeros(1, dtype=np.int64)
    if ordering != "natural":
        pattern = (abs(csr) + abs(csr.T)).tocsr()
        colouring = reference.two_coloring if ordering == "redblack" else reference.greedy_coloring
        colors = colouring(pattern.indptr, pattern.indices, n)
        colors = colors[0] if ordering == "redblack" else colors
        rank = np.empty(n, dtype=np.int64)
        if n:  # (scipy's search fails on an empty graph)
            rank[reverse_cuthill_mckee(pattern, symmetric_mode=True)] = np.arange(n)
        permutation = np.lexsort((rank, colors))
        n_colors = int(colors.max()) + 1 if n else 0
        color_ptr = np.searchsorted(colors[permutation], np.arange(n_colors + 1))
        csr = csr[permutation][:, permutation].tocsr()
    diag = csr.diagonal()
    off = (csr - sp.diags(diag)).tocsr()
    off.eliminate_zeros()
    off.sort_indices()
    rows = np.repeat(np.arange(n), np.diff(off.indptr))
    mid = off.indptr[:-1] + np.bincount(rows[off.indices < rows], minlength=n)
    return {"off_indptr": off.indptr, "off_indices": off.indices, "mid": mid,
            "off_data": off.data.astype(dtype), "diag": diag.astype(dtype),
            "permutation": permutation, "color_ptr": color_ptr}


def _assert_split_equals(S, expected):
    for name, value in expected.items():
        got = getattr(S, name)
        if value is None:
            assert got is None, name
            continue
        assert np.array_equal(got, value), name
        if name in ("off_data", "diag"):
            assert got.dtype == value.dtype, name


def _split_cases():
    unsorted = random_sparse_spd(30, 0.15, seed=11)
    order = np.arange(unsorted.indices.shape[0])
    for i in range(30):  # reverse every row's columns: same matrix, not canonical
        order[unsorted.indptr[i]:unsorted.indptr[i + 1]] = order[unsorted.indptr[i]:
                                                                 unsorted.indptr[i + 1]][::-1]
    unsorted = sp.csr_matrix((unsorted.data[order], unsorted.indices[order], unsorted.indptr),
                             shape=unsorted.shape)
    zero_stored = poisson2d(5)
    zero_stored.data[1] = 0.0  # an off-diagonal entry stored as zero
    wide = random_sparse_spd(40, 0.1, seed=12)
    wide = sp.csr_matrix((wide.data, wide.indices.astype(np.int64), wide.indptr.astype(np.int64)),
                         shape=wide.shape)
    asymmetric = (poisson2d(5) + sp.csr_matrix(([0.5], ([0], [7])), shape=(25, 25))).tocsr()
    return {"poisson": poisson2d(7), "random": random_sparse_spd(60, 0.08, seed=10),
            "unsorted": unsorted, "zero stored": zero_stored, "int64 indices": wide,
            "asymmetric pattern": asymmetric, "empty": sp.csr_matrix((0, 0))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ordering", ["natural", "redblack", "multicolor"])
@pytest.mark.parametrize("case", list(_split_cases()))
def test_compiled_setup_builds_what_scipy_builds(case, ordering, dtype):
    A = _split_cases()[case]
    if ordering == "redblack" and case not in ("poisson", "empty"):
        pytest.skip("red-black needs a bipartite graph")
    S = SorMatrix(A.astype(dtype), ordering=ordering)
    _assert_split_equals(S, _scipy_split(A.astype(dtype), ordering, dtype))
    assert S.n_colors == S.color_ptr.shape[0] - 1 if ordering != "natural" else S.n_colors == 1


def test_rcm_kernel_follows_scipy_on_ties_and_components():
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    from cext.numba.coloring import rcm_order

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(2, 120))
        B = sp.random(n, n, density=float(rng.uniform(0.01, 0.08)), random_state=trial)
        pattern = (abs(B) + abs(B.T) + sp.eye(n)).tocsr()  # several components, many ties
        degree = (np.diff(pattern.indptr) + 1).astype(pattern.indices.dtype)
        ours = rcm_order(pattern.indptr, pattern.indices, degree, np.argsort(degree))
        assert np.array_equal(ours, reverse_cuthill_mckee(pattern, symmetric_mode=True))


def test_pattern_symmetry_check():
    from cext.numba.coloring import pattern_symmetric

    A = poisson2d(6)
    assert pattern_symmetric(A.indptr, A.indices, 36)
    for row, col in ((0, 35), (35, 0), (3, 9)):
        B = (A + sp.csr_matrix(([1.0], ([row], [col])), shape=A.shape)).tocsr()
        assert not pattern_symmetric(B.indptr, B.indices, 36)


@pytest.mark.parametrize("ordering", ["natural", "multicolor"])
def test_refactor_builds_what_a_fresh_build_builds(ordering):
    A = random_sparse_spd(50, 0.1, seed=13)
    S = SorMatrix(A, ordering=ordering)
    snapshot = {name: getattr(S, name).copy() for name in ("off_data", "diag")}
    for shift in (0.25, -0.5, 3.0):
        A2 = (A + shift * sp.eye(50, format="csr")).tocsr()
        S2 = S.refactor(A2)
        _assert_split_equals(S2, _scipy_split(A2, ordering, np.float64))
        if ordering != "natural":
            assert S2.permutation is S.permutation  # the symbolic part is shared
        b = np.random.default_rng(1).standard_normal(50)
        np.testing.assert_array_equal(sor(S2, b, 1.3, ordering=ordering).x,
                                      sor(A2, b, 1.3, ordering=ordering).x)
    for name, value in snapshot.items():  # S itself is untouched
        np.testing.assert_array_equal(getattr(S, name), value)
    # another pattern, a value turned zero, a zero diagonal: what SorMatrix(A) does
    other = random_sparse_spd(50, 0.1, seed=14)
    _assert_split_equals(S.refactor(other), _scipy_split(other, ordering, np.float64))
    zeroed = A.copy()
    zeroed.data[np.flatnonzero(zeroed.indices != np.repeat(np.arange(50),
                                                           np.diff(zeroed.indptr)))[0]] = 0.0
    _assert_split_equals(S.refactor(zeroed), _scipy_split(zeroed, ordering, np.float64))
    singular = A - sp.diags(A.diagonal() * (np.arange(50) == 7))
    with pytest.raises(ValueError, match=r"nonzero diagonal; A\[7, 7\]"):
        S.refactor(singular.tocsr())
    with pytest.raises(ValueError, match="shape"):
        S.refactor(poisson2d(3))


def test_plain_call_reuses_the_last_coloured_pattern():
    from linsolve.stationary import sor_matrix

    A = poisson2d(9)
    b = np.random.default_rng(2).standard_normal(81)
    first = sor(A, b, 1.6, ordering="multicolor")
    recent = sor_matrix._RECENT[("multicolor", "<f8")]
    A2 = (A + 0.3 * sp.eye(81, format="csr")).tocsr()
    second = sor(A2, b, 1.6, ordering="multicolor")
    assert sor_matrix._RECENT[("multicolor", "<f8")] is recent  # the same pattern, kept
    assert sor_matrix.sweep_matrix(A2, np.float64, "multicolor").permutation is recent.permutation
    fresh = sor(SorMatrix(A2, ordering="multicolor"), b, 1.6, ordering="multicolor")
    np.testing.assert_array_equal(second.x, fresh.x)
    np.testing.assert_array_equal(second.residual_norms, fresh.residual_norms)
    assert first.converged and second.converged
    # another pattern replaces it
    sor(random_sparse_spd(81, 0.1, seed=3), b, 1.2, ordering="multicolor")
    assert sor_matrix._RECENT[("multicolor", "<f8")] is not recent


@pytest.mark.parametrize("ordering", ["redblack", "multicolor"])
def test_setup_kernels_equal_their_reference_twins(ordering):
    from cext.numba import coloring as nb_coloring
    from cext.numba import sor as nb_sor
    from cext.numba import structure as nb_structure
    from cext.reference import coloring as ref_coloring
    from cext.reference import sor as ref_sor
    from cext.reference import structure as ref_structure

    A = poisson2d(6) if ordering == "redblack" else random_sparse_spd(40, 0.1, seed=15)
    n, nnz = A.shape[0], A.nnz
    split = {}
    for name, module in (("numba", nb_sor), ("reference", ref_sor)):
        arrays = (np.empty(n + 1, np.int32), np.empty(nnz - n, np.int32), np.empty(nnz - n),
                  np.empty(n), np.empty(n, np.int32))
        assert module.sor_split(A.indptr, A.indices, A.data, *arrays) == (n, True)
        split[name] = arrays
    for ours, theirs in zip(*split.values()):
        np.testing.assert_array_equal(ours, theirs)
    degree = (np.diff(A.indptr) + 1).astype(np.int32)
    orders = []
    for module in (nb_coloring, ref_coloring):
        permutation, inverse = np.empty(n, np.int32), np.empty(n, np.int32)
        flags = module.sweep_order(A.indptr, A.indices, degree, np.argsort(degree),
                                   ordering == "redblack", permutation, inverse)
        orders.append((permutation, inverse, flags[2]))
        assert flags[:2] == (True, True)
        assert module.pattern_symmetric(A.indptr, A.indices, n)
    for ours, theirs in zip(*orders):
        np.testing.assert_array_equal(ours, theirs)
    permutation, inverse, _ = orders[0]
    outputs = []
    for module in (nb_sor, ref_sor):
        position, diag = np.empty(n, np.int64), np.empty(n)
        assert module.sor_diagonal(A.indptr, A.indices, A.data, position, diag) == (n, True)
        out = (np.empty(n + 1, np.int32), np.empty(nnz - n, np.int32), np.empty(nnz - n),
               np.empty(n), np.empty(n, np.int32), np.empty(nnz - n, np.int64),
               np.empty(n, np.int64))
        assert module.sor_split_full(A.indptr, A.indices, A.data, position, permutation,
                                     inverse, *out) == 0
        gathered = (np.empty(nnz - n), np.empty(n))
        assert module.sor_gather_values(A.data, out[5], out[6], *gathered) == (0, 0)
        np.testing.assert_array_equal(gathered[0], out[2])  # the gather finds the same values
        np.testing.assert_array_equal(gathered[1], out[3])
        outputs.append((position, diag, *out))
    for ours, theirs in zip(*outputs):
        np.testing.assert_array_equal(ours, theirs)
    for module in (nb_structure, ref_structure):
        assert module.arrays_equal(A.indices, A.indices.copy())
        assert not module.arrays_equal(A.indices, np.roll(A.indices, 1))
