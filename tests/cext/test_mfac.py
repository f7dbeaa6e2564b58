"""M-FAC window kernels: Numba/BLAS against the array-API reference, float32 and float64.

Both accumulate in float64, in different orders (the Numba kernels chunk the
columns and let LLVM reassociate; float64 windows' wide blocks go to BLAS
dgemv), so they agree to the float64 summation
bound ``4 * terms * eps64 * sum |G_ij v_j|``, not bit for bit; results rounded
to float32 agree to one float32 rounding on top.
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest

from cext import kernels_for, reference
from cext import numba as nbk
from cext.registry import backend_name

from tests.problems import gradient_window, window_gemv_bound

DTYPES = [np.float32, np.float64]
EPS64 = np.finfo(np.float64).eps
# A single block, a block spanning several Numba chunks, and tiny blocks.
LAYOUTS = [(0, 3001), (0, 20000, 20007, 20127, 20128)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offsets", LAYOUTS)
@pytest.mark.parametrize("k", [1, 7, 16, 19])  # below, at and past the 16-row unrolling
def test_window_gemv_matches_reference(dtype, offsets, k):
    d = offsets[-1]
    G, v = gradient_window(dtype, 20, d, seed=k)
    nblocks = len(offsets) - 1
    out, expected = np.empty((nblocks, k)), np.empty((nblocks, k))
    nbk.window_gemv(G, v, offsets, out)
    reference.window_gemv(G, v, offsets, expected)
    G64, v64 = G.astype(np.float64), v.astype(np.float64)
    bound = window_gemv_bound(G, v, offsets, k)
    assert np.all(np.abs(out - expected) <= bound)
    for b, (s, e) in enumerate(zip(offsets[:-1], offsets[1:])):
        assert np.all(np.abs(out[b] - G64[:k, s:e] @ v64[s:e]) <= bound[b])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offsets", LAYOUTS)
@pytest.mark.parametrize("k", [1, 8, 16, 19])
def test_window_axpy_gemv_t_matches_reference(dtype, offsets, k):
    d = offsets[-1]
    G, v = gradient_window(dtype, 20, d, seed=10 + k)
    nblocks = len(offsets) - 1
    coef = np.random.default_rng(k).standard_normal((nblocks, k))
    out, expected = np.empty(d, dtype=dtype), np.empty(d, dtype=dtype)
    alpha, beta = 0.5, -3.0
    nbk.window_axpy_gemv_t(G, coef, v, alpha, beta, offsets, out)
    reference.window_axpy_gemv_t(G, coef, v, alpha, beta, offsets, expected)
    G64, v64 = G.astype(np.float64), v.astype(np.float64)
    block_of = np.repeat(np.arange(nblocks), np.diff(offsets))
    exact = alpha * v64 + beta * np.einsum("ji,ij->j", coef[block_of], G64[:k])
    scale = abs(alpha) * np.abs(v64) + abs(beta) * np.einsum("ji,ij->j", np.abs(coef[block_of]),
                                                             np.abs(G64[:k]))
    bound = 4 * (k + 2) * EPS64 * scale + np.finfo(dtype).eps * np.abs(exact)
    for result in (out, expected):
        assert result.dtype == dtype
        assert np.all(np.abs(result.astype(np.float64) - exact) <= bound)


def test_window_axpy_gemv_t_writes_float64_from_float32gradient_window():
    G, v = gradient_window(np.float32, 8, 500, seed=3)
    coef = np.ones((1, 8))
    out = np.empty(500)  # float64 output: no rounding to float32 anywhere
    nbk.window_axpy_gemv_t(G, coef, v.astype(np.float64), 1.0, 1.0, (0, 500), out)
    exact = v.astype(np.float64) + G.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(out, exact, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offsets", LAYOUTS)
def test_window_push_gemv_stores_the_row_and_its_gram_row(dtype, offsets):
    d, k, slot = offsets[-1], 11, 4
    G, _ = gradient_window(dtype, 16, d, seed=5)
    g = np.random.default_rng(6).standard_normal(d)  # float64: rounded when stored
    G_ref = G.copy()
    nblocks = len(offsets) - 1
    out, expected = np.empty((nblocks, k)), np.empty((nblocks, k))
    nbk.window_push_gemv(G, slot, g, offsets, out)
    reference.window_push_gemv(G_ref, slot, g, offsets, expected)
    np.testing.assert_array_equal(G, G_ref)
    np.testing.assert_array_equal(G[slot], g.astype(dtype))
    assert np.all(np.abs(out - expected) <= window_gemv_bound(G, G[slot], offsets, k))


def test_window_gemv_propagates_nan():
    G, v = gradient_window(np.float32, 9, 100, seed=7)
    G[3, 50] = np.nan
    v[10] = np.inf
    out = np.empty((1, 9))
    nbk.window_gemv(G, v, (0, 100), out)
    assert np.isnan(out[0, 3])
    assert np.all(~np.isfinite(out[0]))  # the Inf in v reaches every row


def test_results_do_not_depend_on_the_thread_count():
    # 4.5M entries: two threads under the default ceiling (cext.threads), one under num_threads(1)
    from cext.threads import num_threads

    G, v = gradient_window(np.float32, 9, 500_000, seed=8)
    results = []
    for ceiling in (1, None):
        with num_threads(ceiling):
            out = np.empty((1, 9))
            nbk.window_gemv(G, v, (0, 500_000), out)
            results.append(out)
    np.testing.assert_array_equal(results[0], results[1])


def test_registry_hands_out_the_window_kernels():
    from array_api_compat import array_namespace

    numpy_kernels = kernels_for(array_namespace(np.zeros(1)))
    # parallel kernels come wrapped in the thread policy (cext.threads.managed)
    assert numpy_kernels.window_gemv.__wrapped__ is nbk.window_gemv
    assert numpy_kernels.window_push_gemv.__wrapped__ is nbk.window_push_gemv
    strict = array_namespace(array_api_strict.asarray([1.0]))
    assert backend_name(strict) == "reference"
    assert kernels_for(strict).window_axpy_gemv_t is reference.window_axpy_gemv_t


def test_reference_runs_under_array_api_strict():
    xp = array_api_strict
    G, v = gradient_window(np.float32, 5, 300, seed=9)
    out = xp.empty((2, 5), dtype=xp.float64)
    reference.window_gemv(xp.asarray(G), xp.asarray(v), (0, 100, 300), out)
    expected = np.empty((2, 5))
    nbk.window_gemv(G, v, (0, 100, 300), expected)
    np.testing.assert_allclose(np.asarray(out._array), expected, rtol=1e-12)
