"""Triangular-solve and IC(0) kernels: Numba against the reference and dense LAPACK."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from cext import kernels_for, reference
from cext import numba as nbk
from array_api_compat import array_namespace

from .problems import indefinite, poisson1d, poisson2d, random_sparse_spd

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


def test_reference_triangular_solve_under_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    indptr, indices, data, diag, b, A = _system(n=15)
    expected = np.empty_like(b)
    reference.csr_triangular_solve(indptr, indices, data, diag, b, expected, True)
    out = xp.zeros(15, dtype=xp.float64)
    reference.csr_triangular_solve(xp.asarray(indptr), xp.asarray(indices), xp.asarray(data),
                                   xp.asarray(diag), xp.asarray(b), out, True)
    np.testing.assert_array_equal(np.asarray(out), expected)
