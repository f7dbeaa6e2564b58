"""Batched Kronecker kernels: Numba and CuPy against the reference and dense kron.

All versions accumulate in float64 (different orders), so float64 results
agree to ``c * m * n * eps64`` relative on these O(1) inputs, and float32
results to one float32 rounding of the output on top.
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

from cext import kernels_for, reference
from cext import numba as nbk
from cext.registry import KERNEL_NAMES

DTYPES = [np.float32, np.float64]


def _layers(dtype, batch=5, m=6, n=9, seed=0):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((batch, m, m))
    A = rng.standard_normal((batch, n, n))
    G, A = G @ np.swapaxes(G, 1, 2), A @ np.swapaxes(A, 1, 2)   # symmetric factors
    X = rng.standard_normal((batch, m, n))
    return G.astype(dtype), A.astype(dtype), X.astype(dtype)


def _tolerance(dtype):
    return 1e-13 if dtype == np.float64 else 3 * np.finfo(np.float32).eps


def rel(x, y):
    return float(np.linalg.norm(np.asarray(x, np.float64) - y) / np.linalg.norm(y))


def test_kernels_are_registered():
    assert {"kron_matvec", "kron_eigen_solve"} <= set(KERNEL_NAMES)
    assert kernels_for(np).kron_matvec.__wrapped__ is nbk.kron_matvec
    strict = kernels_for(array_api_strict)
    assert strict.kron_matvec is reference.kron_matvec


@pytest.mark.parametrize("dtype", DTYPES)
def test_kron_matvec_is_the_column_major_kronecker_product(dtype):
    G, A, X = _layers(dtype)
    out, expected = np.empty_like(X), np.empty_like(X)
    nbk.kron_matvec(G, A, X, out)
    reference.kron_matvec(G, A, X, expected)
    for b in range(X.shape[0]):
        dense = np.kron(A[b].astype(np.float64), G[b].astype(np.float64)) \
            @ X[b].astype(np.float64).T.reshape(-1)
        assert rel(out[b].T.reshape(-1), dense) < _tolerance(dtype)
        assert rel(expected[b].T.reshape(-1), dense) < _tolerance(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kron_eigen_solve_inverts_the_damped_product(dtype):
    G, A, X = _layers(dtype, batch=3, m=4, n=7, seed=1)
    dl, Ql = np.linalg.eigh(G.astype(np.float64))
    dr, Qr = np.linalg.eigh(A.astype(np.float64))
    args = [a.astype(dtype) for a in (Ql, dl, Qr, dr)]
    damping = 0.5
    out, expected = np.empty_like(X), np.empty_like(X)
    nbk.kron_eigen_solve(*args, damping, X, out)
    reference.kron_eigen_solve(*args, damping, X, expected)
    # the formula in float64 on the same (rounded) inputs: float32 kernels
    # must agree with it to one float32 rounding of the output
    formula = np.empty(X.shape)
    reference.kron_eigen_solve(*(a.astype(np.float64) for a in args), damping,
                               X.astype(np.float64), formula)
    assert rel(out, formula) < _tolerance(dtype)
    assert rel(expected, formula) < _tolerance(dtype)
    if dtype != np.float64:
        return      # float32 eigenvectors are not orthogonal enough for the dense check
    for b in range(X.shape[0]):
        F = np.kron(A[b], G[b]) + damping * np.eye(X.shape[1] * X.shape[2])
        dense = np.linalg.solve(F, X[b].T.reshape(-1))
        tol = 10 * np.linalg.cond(F) * np.finfo(np.float64).eps   # the dense solve's own error
        assert rel(out[b].T.reshape(-1), dense) < tol


def test_reference_runs_under_array_api_strict():
    G, A, X = _layers(np.float64, batch=2, m=3, n=4, seed=2)
    xs = [array_api_strict.asarray(a) for a in (G, A, X)]
    out = array_api_strict.empty(X.shape, dtype=array_api_strict.float64)
    reference.kron_matvec(*xs, out)
    assert rel(np.asarray(out._array), G @ X @ A) < 1e-14


def test_nan_reaches_the_result():
    G, A, X = _layers(np.float64, batch=2, m=3, n=4, seed=3)
    X[1, 0, 0] = np.nan
    out = np.empty_like(X)
    nbk.kron_matvec(G, A, X, out)
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_cupy_kernels_match_numba(dtype):
    from tests.gpu import cupy_or_skip

    cupy = cupy_or_skip()
    from cext.cupy import kron as gpu

    G, A, X = _layers(dtype, batch=4, m=10, n=33, seed=4)
    out, expected = cupy.empty(X.shape, dtype=dtype), np.empty_like(X)
    gpu.kron_matvec(cupy.asarray(G), cupy.asarray(A), cupy.asarray(X), out)
    nbk.kron_matvec(G, A, X, expected)
    assert rel(cupy.asnumpy(out), expected.astype(np.float64)) < _tolerance(dtype)
    dl, Ql = np.linalg.eigh(G.astype(np.float64))
    dr, Qr = np.linalg.eigh(A.astype(np.float64))
    args = [a.astype(dtype) for a in (Ql, dl, Qr, dr)]
    gpu.kron_eigen_solve(*(cupy.asarray(a) for a in args), 0.3, cupy.asarray(X), out)
    nbk.kron_eigen_solve(*args, 0.3, X, expected)
    assert rel(cupy.asnumpy(out), expected.astype(np.float64)) < 10 * _tolerance(dtype)
