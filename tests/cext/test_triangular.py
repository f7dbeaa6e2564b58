"""Triangular-solve and IC(0) kernels: Numba against the reference and dense LAPACK."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from cext import kernels_for, reference
from cext import numba as nbk
from array_api_compat import array_namespace

from tests.problems import indefinite, poisson1d, poisson2d, random_sparse_spd

DTYPES = [np.float32, np.float64]


def _system(n=60, seed=0, dtype=np.float64, index_dtype=np.int32, shuffle=False):
    A = random_sparse_spd(n, density=0.1, seed=seed)
    A = sp.csr_array(A)
    if shuffle:  # columns out of order inside each row: the kernels must not care
        rng = np.random.default_rng(seed)
        for i in range(n):
            lo, hi = A.indptr[i], A.indptr[i + 1]
            perm = lo + rng.permutation(hi - lo)
            A.indices[lo:hi], A.data[lo:hi] = A.indices[perm].copy(), A.data[perm].copy()
        A.has_sorted_indices = False
    b = np.random.default_rng(seed + 1).standard_normal(n)
    return (A.indptr.astype(index_dtype), A.indices.astype(index_dtype), A.data.astype(dtype),
            A.diagonal().astype(dtype), b.astype(dtype), A)


def _tolerance(dtype, n, cond):
    # backward-stable triangular solve: relative error <= c n eps cond
    return 10 * n * np.finfo(dtype).eps * cond


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("shuffle", [False, True])
def test_triangular_solve_matches_reference_and_lapack(dtype, index_dtype, lower, shuffle):
    indptr, indices, data, diag, b, A = _system(dtype=dtype, index_dtype=index_dtype,
                                                shuffle=shuffle)
    dense = A.toarray()
    # a diagonal different from A's, to check that the kernel uses the one it is given
    diag = (1.5 * diag).astype(dtype)
    T = (np.tril(dense, -1) if lower else np.triu(dense, 1)) + np.diag(diag.astype(np.float64))
    expected = sla.solve_triangular(T, b.astype(np.float64), lower=lower)
    out_numba = np.empty_like(b)
    out_ref = np.empty_like(b)
    nbk.csr_triangular_solve(indptr, indices, data, diag, b, out_numba, lower)
    reference.csr_triangular_solve(indptr, indices, data, diag, b, out_ref, lower)
    assert out_numba.dtype == dtype
    tol = _tolerance(dtype, len(b), np.linalg.cond(T))
    scale = np.linalg.norm(expected)
    assert np.linalg.norm(out_numba - expected) <= tol * scale
    assert np.linalg.norm(out_ref - expected) <= tol * scale
    if dtype == np.float64 and not shuffle:
        # same operations in the same order (Python floats are doubles)
        np.testing.assert_array_equal(out_numba, out_ref)


@pytest.mark.parametrize("kernel", [nbk.csr_triangular_solve, reference.csr_triangular_solve])
@pytest.mark.parametrize("lower", [True, False])
def test_triangular_solve_in_place(kernel, lower):
    indptr, indices, data, diag, b, _ = _system(n=40)
    expected = np.empty_like(b)
    kernel(indptr, indices, data, diag, b, expected, lower)
    x = b.copy()
    kernel(indptr, indices, data, diag, x, x, lower)
    np.testing.assert_array_equal(x, expected)


def _lower_csr(A):
    L = sp.csr_array(sp.tril(A, format="csr"))
    L.sort_indices()
    return L


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("problem", ["poisson2d", "random"])
def test_ichol0_numba_matches_reference(dtype, index_dtype, problem):
    # the random pattern makes rows share earlier columns (non-empty merges)
    A = poisson2d(7) + sp.eye(49) * 0.1 if problem == "poisson2d" else \
        random_sparse_spd(49, density=0.15, seed=3)
    L = _lower_csr(A)
    indptr, indices = L.indptr.astype(index_dtype), L.indices.astype(index_dtype)
    data_numba = L.data.astype(dtype)
    data_ref = L.data.astype(dtype)
    assert nbk.csr_ichol0(indptr, indices, data_numba) == -1
    assert reference.csr_ichol0(indptr, indices, data_ref) == -1
    np.testing.assert_allclose(data_numba, data_ref, rtol=20 * np.finfo(dtype).eps)
    if dtype == np.float64:
        np.testing.assert_array_equal(data_numba, data_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ichol0_by_domains_equals_the_sequential_factor(dtype):
    A = sp.csr_array(random_sparse_spd(150, density=0.04, seed=8))
    ordering = domain_ordering(A, 4)
    B = sp.csr_array(A[ordering.perm][:, ordering.perm])
    L = _lower_csr(B)
    sequential = L.data.astype(dtype)
    assert nbk.csr_ichol0(L.indptr, L.indices, sequential) == -1
    for threads in THREAD_COUNTS:
        staged = L.data.astype(dtype)
        with numba_threads(threads):
            assert nbk.csr_ichol0_domains(L.indptr, L.indices, staged, ordering.segment_ptr,
                                          ordering.stage_ptr) == -1
        np.testing.assert_array_equal(staged, sequential)
    # a failed pivot: the first failed row in the numbering, as the sequential kernel says
    broken = L.data.astype(dtype)
    last = L.indptr[1:] - 1
    broken[last[[10, 140]]] = -1.0
    for threads in THREAD_COUNTS:
        with numba_threads(threads):
            assert nbk.csr_ichol0_domains(L.indptr, L.indices, broken.copy(),
                                          ordering.segment_ptr, ordering.stage_ptr) == 10
    assert reference.csr_ichol0_domains(L.indptr, L.indices, broken.copy(), ordering.segment_ptr,
                                        ordering.stage_ptr) == 10


def test_ichol0_tridiagonal_is_exact_cholesky():
    A = poisson1d(30) + sp.diags(np.linspace(0.0, 1.0, 30))
    L = _lower_csr(A)
    data = L.data.copy()
    assert nbk.csr_ichol0(L.indptr, L.indices, data) == -1
    factor = sp.csr_array((data, L.indices, L.indptr), shape=A.shape).toarray()
    expected = np.linalg.cholesky(A.toarray())
    # Cholesky is backward stable; on a tridiagonal both do the same operations
    np.testing.assert_allclose(factor, expected, rtol=0, atol=50 * np.finfo(float).eps)


@pytest.mark.parametrize("kernel", [nbk.csr_ichol0, reference.csr_ichol0])
def test_ichol0_reports_failed_pivot(kernel):
    L = _lower_csr(indefinite(10))  # diagonal -1, 2, 3, ...: row 0 fails
    assert kernel(L.indptr, L.indices, L.data.copy()) == 0
    d = np.arange(1.0, 11.0)
    d[4] = np.nan
    L = _lower_csr(sp.diags(d))
    assert kernel(L.indptr, L.indices, L.data.copy()) == 4
    A = sp.csr_array(poisson1d(6).toarray() - np.diag(np.eye(6)[3] * 2.0))  # zero diagonal at 3
    A.eliminate_zeros()
    L = _lower_csr(A)  # row 3 has no stored diagonal
    assert kernel(L.indptr, L.indices, L.data.copy()) == 3


def test_registry_hands_out_numba_triangular_kernels():
    K = kernels_for(array_namespace(np.ones(1)))
    assert K.csr_triangular_solve is nbk.csr_triangular_solve
    assert K.csr_ichol0 is nbk.csr_ichol0
    # IC(0) by domains factors the segments of a stage in parallel: under the thread policy
    assert K.csr_ichol0_domains.__wrapped__ is nbk.csr_ichol0_domains


def test_reference_triangular_solve_under_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    indptr, indices, data, diag, b, A = _system(n=15)
    expected = np.empty_like(b)
    reference.csr_triangular_solve(indptr, indices, data, diag, b, expected, True)
    out = xp.zeros(15, dtype=xp.float64)
    reference.csr_triangular_solve(xp.asarray(indptr), xp.asarray(indices), xp.asarray(data),
                                   xp.asarray(diag), xp.asarray(b), out, True)
    np.testing.assert_array_equal(np.asarray(out), expected)


# --- the staged pair of unit triangular solves -----------------------------------------

import contextlib  # noqa: E402

import numba  # noqa: E402

from cext.numba.triangular import csr_triangular_pair_solve as pair_solve_numba  # noqa: E402
from cext.reference.triangular import (  # noqa: E402
    csr_triangular_pair_solve as pair_solve_reference)
from linsolve.precond._ordering import domain_ordering, natural_ordering  # noqa: E402
from linsolve.precond._triangular import pad_rows  # noqa: E402

THREAD_COUNTS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})


@contextlib.contextmanager
def numba_threads(count):
    """Numba's thread count for this thread, which the raw kernel follows (no policy here)."""
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _pair_system(n=120, seed=0, dtype=np.float64, index_dtype=np.int32, num_domains=2):
    """Unit triangular factors of IC(0)'s shape on a random SPD pattern, in domain ordering."""
    A = sp.csr_array(random_sparse_spd(n, density=0.04, seed=seed))
    ordering = domain_ordering(A, num_domains) if num_domains else natural_ordering(n)
    B = sp.csr_array(A[ordering.perm][:, ordering.perm])
    B.sort_indices()
    rng = np.random.default_rng(seed + 1)
    # strictly lower part of B, rows scaled to keep I + L well conditioned
    lower = sp.csr_array(sp.tril(B, -1, format="csr"))
    lower.data = 0.3 * lower.data / np.abs(lower.data).max()
    upper = sp.csr_array(sp.triu(B, 1, format="csr"))  # not lower.T: the kernel must not care
    upper.data = 0.3 * rng.uniform(-1, 1, upper.nnz)
    scale_in = rng.uniform(0.5, 2.0, n)
    scale_out = rng.uniform(0.5, 2.0, n)
    b = rng.standard_normal(n)
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    index = lambda a: np.ascontiguousarray(a, dtype=index_dtype)  # noqa: E731
    args = (index(lower.indptr), index(lower.indices), cast(lower.data), index(upper.indptr),
            index(upper.indices), cast(upper.data), cast(scale_in), cast(scale_out),
            index(ordering.perm), index(ordering.segment_ptr), index(ordering.stage_ptr))
    return args, cast(b), lower, upper, ordering


def _pair_dense(args, b, lower, upper, ordering):
    """The definition with LAPACK, in float64: P^T S_out (I + U)^{-1} (I + L)^{-1} S_in P b.

    ``args[3:6]`` all None: ``U = L^T``.
    """
    n = b.shape[0]
    perm = ordering.perm
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    lower_dense = sp.csr_array((f64(args[2]), args[1], args[0]), shape=(n, n)).toarray()
    if args[3] is None:
        upper_dense = lower_dense.T
    else:
        upper_dense = sp.csr_array((f64(args[5]), args[4], args[3]), shape=(n, n)).toarray()
    I_L, I_U = np.eye(n) + lower_dense, np.eye(n) + upper_dense
    y = sla.solve_triangular(I_L, f64(args[6]) * f64(b)[perm], lower=True)
    z = f64(args[7]) * sla.solve_triangular(I_U, y, lower=False)
    out = np.empty(n)
    out[perm] = z
    # forward error bound of two backward-stable solves: c n eps (cond(I+L) + cond(I+U))
    return out, np.linalg.cond(I_L) + np.linalg.cond(I_U)


def _padded(args, width):
    """``args`` with the rows of L (and U) padded to a multiple of ``width`` (explicit zeros)."""
    n = args[6].shape[0]
    out = list(args)
    for at in (0, 3):
        if args[at] is None:
            continue
        csr = sp.csr_array((args[at + 2], args[at + 1], args[at]), shape=(n, n))
        out[at:at + 3] = [np.ascontiguousarray(a, dtype=args[at + 2].dtype if k == 2
                                               else args[at].dtype)
                          for k, a in enumerate(pad_rows(csr, width))]
    return tuple(out)


@pytest.mark.parametrize("dtype", DTYPES)
# int64 indices (matrices past 2**31 entries) compile every kernel again: make test-slow
@pytest.mark.parametrize("index_dtype", [np.int32, pytest.param(np.int64, marks=pytest.mark.slow)])
# one domain and four run the same kernels as two: make test-slow sweeps them
@pytest.mark.parametrize("num_domains", [0, pytest.param(1, marks=pytest.mark.slow), 2,
                                         pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("transposed", [False, True], ids=["U", "L^T"])
def test_pair_solve_matches_dense_triangular_solves(dtype, index_dtype, num_domains, transposed):
    args, b, lower, upper, ordering = _pair_system(dtype=dtype, index_dtype=index_dtype,
                                                   num_domains=num_domains)
    if transposed:
        args = args[:3] + (None, None, None) + args[6:]
    expected, cond = _pair_dense(args, b, lower, upper, ordering)
    scale = np.linalg.norm(expected)
    padded = _padded(args, 4)
    assert np.all(np.diff(padded[0]) % 4 == 0)
    for threads in THREAD_COUNTS:
        out, work = np.empty_like(b), np.empty_like(b)
        with numba_threads(threads):
            pair_solve_numba(*args, b, work, out)
        assert out.dtype == dtype
        if dtype == np.float64:
            assert np.linalg.norm(out - expected) <= 1e-13 * scale
        else:
            bound = 10 * len(b) * np.finfo(dtype).eps * cond
            assert np.linalg.norm(out - expected) <= bound * scale
        # rows padded with leading zeros, four entries a step: the same sums
        quad_out = np.empty_like(b)
        with numba_threads(threads):
            pair_solve_numba(*padded, b, work, quad_out, True)
        np.testing.assert_array_equal(quad_out, out)
    ref_out, ref_work = np.empty_like(b), np.empty_like(b)
    pair_solve_reference(*args, b, ref_work, ref_out)
    # the same operations in the same order, in the data's dtype: float32 sums stay float32
    # (a float64 accumulator would round differently), and the staged parallel sweep
    # equals the one-thread sweep bit for bit
    np.testing.assert_array_equal(out, ref_out)


def test_pair_solve_upper_all_or_nothing():
    args, b, *_ = _pair_system(n=20)
    with pytest.raises(ValueError, match="all arrays or all None"):
        pair_solve_numba(*args[:3], None, args[4], args[5], *args[6:], b, np.empty_like(b),
                         np.empty_like(b))


def test_pair_solve_two_threads_equal_one_on_a_grid():
    # the staged parallel sweep (two threads where Numba has them) against the serial one
    A = sp.csr_array(poisson2d(24))
    ordering = domain_ordering(A, 2)
    B = sp.csr_array(A[ordering.perm][:, ordering.perm])
    lower = sp.csr_array(sp.tril(B, -1, format="csr") * 0.25)
    upper = sp.csr_array(lower.T.tocsr())
    ones = np.ones(A.shape[0])
    args = (lower.indptr, lower.indices, lower.data, upper.indptr, upper.indices, upper.data,
            ones, ones, ordering.perm.astype(np.int32), ordering.segment_ptr.astype(np.int32),
            ordering.stage_ptr.astype(np.int32))
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    for args in (args, args[:3] + (None, None, None) + args[6:]):  # U stored; U = L^T read from L
        results = []
        for threads in THREAD_COUNTS:
            out, work = np.empty_like(b), np.empty_like(b)
            with numba_threads(threads):
                pair_solve_numba(*args, b, work, out)
            results.append(out)
        np.testing.assert_array_equal(results[0], results[-1])
        expected, _ = _pair_dense(args, b, lower, upper, ordering)
        assert np.linalg.norm(results[-1] - expected) <= 1e-13 * np.linalg.norm(expected)


def test_preconditioners_get_the_pair_solve_under_the_thread_policy():
    # a parallel kernel called outside a solve must apply cext.threads' policy itself
    from linsolve.precond import ichol0, ssor

    A = poisson2d(6)
    for M in (ichol0(A), ssor(A, ordering="domains")):
        assert M._solve is not pair_solve_numba
        assert M._solve.__wrapped__ is pair_solve_numba


# --- the pattern layout of IC(0) and SSOR (linsolve.precond._pattern) ---

def _unsymmetric_pattern(n=40, seed=4):
    """Canonical CSR with a full diagonal and an unsymmetric pattern."""
    A = sp.random(n, n, density=0.12, random_state=seed, format="csr") + sp.eye(n)
    A = sp.csr_array(A)
    A.sort_indices()
    return A


@pytest.mark.parametrize("kind", ["symmetric", "unsymmetric"])
def test_permuted_lower_and_mirror_match_reference_and_scipy(kind):
    A = sp.csr_array(random_sparse_spd(50, density=0.1, seed=1)) if kind == "symmetric" \
        else _unsymmetric_pattern()
    n, nnz = A.shape[0], A.nnz
    perm = np.random.default_rng(0).permutation(n)
    inverse = np.argsort(perm)
    out = {}
    for name, module in (("numba", nbk), ("reference", reference)):
        arrays = [np.empty(n + 1, np.int64)] + [np.full(nnz, -7, np.int64) for _ in range(3)]
        module.csr_permuted_lower(A.indptr.astype(np.int64), A.indices.astype(np.int64), perm,
                                  inverse, *arrays)
        mirror = np.empty(nnz, np.int64)
        module.csr_mirror(A.indptr, A.indices, mirror)
        m = int(arrays[0][-1])
        out[name] = (arrays[0], arrays[1][:m], arrays[2][:m], arrays[3][:m], mirror)
    for got, want in zip(out["numba"], out["reference"]):
        np.testing.assert_array_equal(got, want)
    indptr, indices, source, mirror_lower, mirror = out["numba"]
    expected = sp.csr_array(sp.tril(A[perm][:, perm], format="csr"))
    expected.sort_indices()
    np.testing.assert_array_equal(indptr, expected.indptr)
    np.testing.assert_array_equal(indices, expected.indices)
    np.testing.assert_array_equal(A.data[source], expected.data)
    dense = A.toarray()
    rows = np.repeat(np.arange(n), np.diff(A.indptr))
    for p in range(nnz):  # mirror: the position of A[j, i], or -1 where not stored
        i, j = rows[p], A.indices[p]
        assert (mirror[p] == -1) == (dense[j, i] == 0)
        if mirror[p] >= 0:
            assert rows[mirror[p]] == j and A.indices[mirror[p]] == i
    new_rows = np.repeat(np.arange(n), np.diff(indptr))
    for q in range(indices.shape[0]):
        i, j = new_rows[q], indices[q]
        if i == j:
            assert mirror_lower[q] == -1
        else:
            assert mirror_lower[q] == mirror[source[q]]


def test_strict_padded_and_scaled_gathers_match_reference():
    A = sp.csr_array(random_sparse_spd(60, density=0.08, seed=2))
    lower = sp.csr_array(sp.tril(A, format="csr"))
    lower.sort_indices()
    counts = np.diff(sp.tril(A, -1, format="csr").indptr)
    padded = -(-counts // 4) * 4
    strict_indptr = np.concatenate(([0], np.cumsum(padded))).astype(np.int64)
    total = int(strict_indptr[-1])
    rng = np.random.default_rng(3)
    left, right = rng.uniform(0.5, 2, 60), rng.uniform(0.5, 2, 60)
    out = {}
    for name, module in (("numba", nbk), ("reference", reference)):
        arrays = [np.empty(total, np.int64) for _ in range(3)]
        module.csr_strict_padded(lower.indptr.astype(np.int64), lower.indices.astype(np.int64),
                                 strict_indptr, *arrays)
        gathered = np.empty(total)
        module.csr_scaled_gather(strict_indptr, arrays[0], arrays[1], lower.data, left, right,
                                 gathered)
        out[name] = (*arrays, gathered)
    for got, want in zip(out["numba"], out["reference"]):
        np.testing.assert_array_equal(got, want)
    indices, _, rows, gathered = out["numba"]
    # the padded matrix is diag(left) tril(A, -1) diag(right), padding zeros first in a row
    padded_matrix = sp.csr_array((gathered, indices, strict_indptr), shape=A.shape)
    expected = sp.diags_array(left) @ sp.tril(A, -1) @ sp.diags_array(right)
    np.testing.assert_array_equal(padded_matrix.toarray(), expected.toarray())
    assert np.all(np.diff(strict_indptr) % 4 == 0)
    np.testing.assert_array_equal(rows, np.repeat(np.arange(60), padded))


@pytest.mark.parametrize("module", [nbk, reference], ids=["numba", "reference"])
def test_symmetric_scaled_gather_tells_symmetric_values(module):
    A = sp.csr_array(random_sparse_spd(30, density=0.15, seed=6))
    n = A.shape[0]
    perm = np.arange(n)
    arrays = [np.empty(n + 1, np.int64)] + [np.empty(A.nnz, np.int64) for _ in range(3)]
    module.csr_permuted_lower(A.indptr.astype(np.int64), A.indices.astype(np.int64), perm, perm,
                              *arrays)
    m = int(arrays[0][-1])
    source, mirror = arrays[2][:m], arrays[3][:m]
    strict = mirror >= 0  # the off-diagonal entries of a symmetric pattern
    ptr = np.concatenate(([0], np.cumsum(np.bincount(np.repeat(np.arange(n),
                                                                np.diff(arrays[0])),
                                                      weights=strict, minlength=n))))
    ptr = ptr.astype(np.int64)
    cols = arrays[1][:m][strict]
    ones, out = np.ones(n), np.empty(int(strict.sum()))
    empty = np.zeros(0, np.int64)
    args = (ptr, cols, source[strict], mirror[strict], empty)
    assert module.csr_symmetric_scaled_gather(*args, A.data, ones, ones, out)
    data = A.data.copy()
    data[source[strict][0]] += 1e-12  # one value off its mirror
    assert not module.csr_symmetric_scaled_gather(*args, data, ones, ones, out)
    data = A.data.copy()
    data[source[strict][1]] = np.nan
    assert not module.csr_symmetric_scaled_gather(*args, data, ones, ones, out)
    orphan = np.array([source[strict][2]], np.int64)  # an entry claimed to have no mirror
    assert not module.csr_symmetric_scaled_gather(*args[:4], orphan, A.data, ones, ones, out)


# --- the pair solve on an (n, k) block (batched pcg's preconditioner) ---

from cext.numba.triangular import (  # noqa: E402
    csr_triangular_pair_solve_block as pair_block_numba)
from cext.reference.triangular import (  # noqa: E402
    csr_triangular_pair_solve_block as pair_block_reference)


@pytest.mark.parametrize("dtype", DTYPES)
# as the vector test: one domain and four run the same kernels as two
@pytest.mark.parametrize("num_domains", [0, pytest.param(1, marks=pytest.mark.slow), 2,
                                         pytest.param(4, marks=pytest.mark.slow)])
@pytest.mark.parametrize("transposed", [False, True], ids=["U", "L^T"])
def test_pair_solve_block_equals_the_vector_kernel_column_by_column(dtype, num_domains,
                                                                    transposed):
    args, b, lower, upper, ordering = _pair_system(dtype=dtype, num_domains=num_domains)
    if transposed:
        args = args[:3] + (None, None, None) + args[6:]
    padded = _padded(args, 4)
    n = b.shape[0]
    rng = np.random.default_rng(7)
    for k in (1, 3, 8, 9):
        B = np.ascontiguousarray(rng.standard_normal((n, k)), dtype=dtype)
        B_before = B.copy()
        for threads in THREAD_COUNTS:
            for kernel_args, quad in ((args, False), (padded, True)):
                expected = np.empty_like(B)
                for c in range(k):
                    out, work = np.empty(n, dtype), np.empty(n, dtype)
                    with numba_threads(threads):
                        pair_solve_numba(*kernel_args, np.ascontiguousarray(B[:, c]), work, out,
                                         quad)
                    expected[:, c] = out
                out, work = np.empty_like(B), np.empty_like(B)
                with numba_threads(threads):
                    pair_block_numba(*kernel_args, B, work, out, quad)
                assert out.dtype == dtype
                # the vector kernel's operations on each column, in its order: bit for bit
                np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(B, B_before)
        # and the definition, against LAPACK (column 0)
        dense, cond = _pair_dense(args, B[:, 0], lower, upper, ordering)
        bound = 1e-13 if dtype == np.float64 else 10 * n * np.finfo(dtype).eps * cond
        assert np.linalg.norm(out[:, 0] - dense) <= bound * np.linalg.norm(dense)
    ref_out, ref_work = np.empty_like(B), np.empty_like(B)
    pair_block_reference(*args, B, ref_work, ref_out)
    np.testing.assert_array_equal(ref_out, out)


def test_pair_solve_block_refuses_blocks_of_the_wrong_layout():
    args, *_ = _pair_system(n=20)
    B = np.ones((20, 3))
    with pytest.raises(ValueError, match="C-contiguous"):
        pair_block_numba(*args, np.asfortranarray(B), np.empty_like(B), np.empty_like(B))
    with pytest.raises(ValueError, match="work must be"):
        pair_block_numba(*args, B, np.empty((20, 2)), np.empty_like(B))
    with pytest.raises(ValueError, match="all arrays or all None"):
        pair_block_numba(*args[:3], None, args[4], args[5], *args[6:], B, np.empty_like(B),
                         np.empty_like(B))


def test_triangular_preconditioners_get_the_block_solve_under_the_thread_policy():
    from linsolve.precond import ichol0, ssor

    A = poisson2d(6)
    for M in (ichol0(A), ssor(A, ordering="domains")):
        assert M._solve_block is not pair_block_numba
        assert M._solve_block.__wrapped__ is pair_block_numba
