"""M-FAC window kernels' fast paths: BLAS for float64 windows, threaded tasks.

Oracle: the array-API twins in :mod:`cext.reference` and float64 products.
Every path sums exact (float64) products in float64, in some order, so
two results differ by at most the float64 summation bound
``2 * terms * eps64 * sum |G_ij v_j|`` each way (``4 * terms * eps64 *
...`` between them; ``terms`` is the block width for ``G v`` and ``k + 2``
for ``alpha v + beta G'c``), plus one rounding of the output where it is
float32. For the random data here that bound is far above the observed
differences (about ``sqrt(terms) * eps64`` relative).
"""

from __future__ import annotations

import numpy as np
import pytest

from cext import reference
from cext import threads as cext_threads
from cext.numba import mfac as nbk

from tests.problems import gradient_window, window_gemv_bound

EPS64 = np.finfo(np.float64).eps
C = nbk._CHUNK
WIDE = nbk._BLAS_MIN_COLUMNS
# One wide block (BLAS for float64, several Numba chunks for float32), wide and
# narrow blocks mixed, narrow blocks only; widths not multiples of the chunk.
LAYOUTS = [(0, 2 * C + 1001), (0, WIDE, WIDE + 7, WIDE + 7 + 2 * C + 3, WIDE + 11 + 2 * C),
           (0, 100, 1100, WIDE - 1 + 1100)]


@pytest.fixture
def many_threads(monkeypatch):
    """Tiny tasks and a thread per task: the threaded path even at test sizes."""
    monkeypatch.setattr(nbk, "_MIN_WORK_PER_THREAD", 1)
    monkeypatch.setattr(nbk, "_TASK_ENTRIES", 1)  # one chunk per task


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets", LAYOUTS)
@pytest.mark.parametrize("k", [1, 7, 16, 21])  # warm-up (k < m), the 16-row unrolling, full
def test_window_gemv_equals_reference(dtype, offsets, k, many_threads):
    d, m = offsets[-1], 21
    G, v = gradient_window(dtype, m, d, seed=k)
    nblocks = len(offsets) - 1
    out, expected = np.full((nblocks, k), np.nan), np.empty((nblocks, k))
    nbk.window_gemv(G, v, offsets, out)
    reference.window_gemv(G, v, offsets, expected)
    bound = window_gemv_bound(G, v, offsets, k)
    assert np.all(np.abs(out - expected) <= bound)
    # and in norm: a fixed 1e-13 relative to the sum of |terms|, beside the derived bound
    scale = np.abs(G[:k].astype(np.float64)) @ np.abs(v.astype(np.float64))
    assert np.abs(out - expected).max() <= 1e-13 * scale.max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets", LAYOUTS)
@pytest.mark.parametrize("k", [1, 15, 16, 21])
@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
def test_window_axpy_gemv_t_equals_reference(dtype, offsets, k, out_dtype, many_threads):
    d, m = offsets[-1], 21
    G, v = gradient_window(dtype, m, d, seed=30 + k)
    nblocks = len(offsets) - 1
    coef = np.random.default_rng(k).standard_normal((nblocks, k))
    alpha, beta = 0.5, -3.0
    out, expected = np.full(d, np.nan, dtype=out_dtype), np.empty(d, dtype=out_dtype)
    nbk.window_axpy_gemv_t(G, coef, v, alpha, beta, offsets, out)
    reference.window_axpy_gemv_t(G, coef, v, alpha, beta, offsets, expected)
    G64, v64 = G[:k].astype(np.float64), v.astype(np.float64)
    block_of = np.repeat(np.arange(nblocks), np.diff(offsets))
    exact = alpha * v64 + beta * np.einsum("ji,ij->j", coef[block_of], G64)
    scale = abs(alpha) * np.abs(v64) + abs(beta) * np.einsum("ji,ij->j", np.abs(coef[block_of]),
                                                             np.abs(G64))
    # float64 sums (k + 2 terms) on each side, then one rounding to out_dtype each
    bound = 4 * (k + 2) * EPS64 * scale + 2 * np.finfo(out_dtype).eps * np.abs(exact)
    assert out.dtype == out_dtype
    assert np.all(np.abs(out.astype(np.float64) - expected.astype(np.float64)) <= bound)
    assert np.all(np.abs(out.astype(np.float64) - exact) <= bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offsets", LAYOUTS)
def test_window_push_gemv_equals_reference(dtype, offsets, many_threads):
    d, m, k, slot = offsets[-1], 21, 17, 16
    G, _ = gradient_window(dtype, m, d, seed=5)
    g = np.random.default_rng(6).standard_normal(d)  # float64: rounded when stored
    G_ref = G.copy()
    nblocks = len(offsets) - 1
    out, expected = np.empty((nblocks, k)), np.empty((nblocks, k))
    nbk.window_push_gemv(G, slot, g, offsets, out)
    reference.window_push_gemv(G_ref, slot, g, offsets, expected)
    np.testing.assert_array_equal(G, G_ref)
    np.testing.assert_array_equal(G[slot], g.astype(dtype))
    assert np.all(np.abs(out - expected) <= window_gemv_bound(G, G[slot], offsets, k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_tasks_give_the_single_thread_result_bit_for_bit(dtype, monkeypatch):
    # Chunk partial sums are added in chunk order whatever thread computed them.
    G, v = gradient_window(dtype, 19, 3 * nbk._CHUNK + 5, seed=8)
    offsets = (0, 5, 3 * nbk._CHUNK + 5)  # narrow blocks: Numba on every dtype
    coef = np.random.default_rng(9).standard_normal((2, 19))
    results = []
    for min_work in (10**12, 1):  # one thread, then a thread per task
        monkeypatch.setattr(nbk, "_MIN_WORK_PER_THREAD", min_work)
        monkeypatch.setattr(nbk, "_TASK_ENTRIES", 1)
        gram, combined = np.empty((2, 19)), np.empty(G.shape[1])
        nbk.window_gemv(G, v, offsets, gram)
        nbk.window_axpy_gemv_t(G, coef, v, 1.0, -1.0, offsets, combined)
        results.append((gram, combined))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_pass_threads_follow_the_library_ceiling():
    with cext_threads.num_threads(1):
        assert nbk._pass_threads(10**12) == 1
    assert nbk._pass_threads(10) == 1  # small work: one thread
    assert 1 <= nbk._pass_threads(10**12) <= cext_threads.get_num_threads()


def test_blas_is_held_to_the_library_ceiling():
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        with cext_threads.num_threads(1), nbk._BlasCeiling():
            assert set(blas_threads()) == {1}
        assert blas_threads() == before


def test_blas_path_propagates_nan_and_inf():
    G, v = gradient_window(np.float64, 9, 5000, seed=7)
    G[3, 50] = np.nan
    v[10] = np.inf
    out = np.empty((1, 9))
    nbk.window_gemv(G, v, (0, 5000), out)
    assert np.isnan(out[0, 3])
    assert np.all(~np.isfinite(out[0]))
    combined = np.empty(5000)
    nbk.window_axpy_gemv_t(G, np.ones((1, 9)), np.zeros(5000), 1.0, 1.0, (0, 5000), combined)
    assert np.isnan(combined[50])


def test_an_error_in_a_task_stops_the_others_and_propagates():
    done = []

    def run(t0, t1):
        if t0 == 3:
            raise KeyboardInterrupt  # as Ctrl-C between two tasks would
        done.append(t0)

    with pytest.raises(KeyboardInterrupt):
        nbk._run_tasks(run, list(range(200)), threads=2)
    assert len(done) < 199  # the other thread stopped early


@pytest.mark.parametrize("k", [1, 2, 17, 64])
def test_spd_inverse_factor_matches_lapack(k):
    rng = np.random.default_rng(k)
    X = rng.standard_normal((3, k, k + 5))
    A = X @ np.swapaxes(X, 1, 2) + 1e-3 * np.eye(k)
    S = np.empty_like(A)
    assert nbk.spd_inverse_factor(A, S)
    for b in range(3):
        expected = np.linalg.inv(np.linalg.cholesky(A[b]))
        # triangular inversion: error ~ k eps cond(L) |S|, cond(L) = sqrt(cond(A))
        cond_L = np.sqrt(np.linalg.cond(A[b]))
        assert np.abs(S[b] - expected).max() <= 10 * k * EPS64 * cond_L * np.abs(expected).max()
        assert np.all(np.triu(S[b], 1) == 0.0)
    A[1, 0, 0] = -1.0
    assert not nbk.spd_inverse_factor(A, S)


def test_float32_blas_passes_would_fail_the_small_damping_check():
    # Why float32 windows stay on the float64-summing kernels: sgemv over
    # column chunks (float64 across chunks) in either pass of the solve
    # leaves ~0.1 relative error on tests/curvature/test_mfac.py's float32 case, which
    # must be within 1e-4; float64 sums give ~1e-9.
    from tests.curvature.test_mfac import _float32_case, rel

    d, m, damping, grads, g, expected = _float32_case()
    G = grads[-m:]
    G64 = G.astype(np.float64)
    A = G64 @ G64.T + m * damping * np.eye(m)
    chunk = 512

    def sgemv_chunks(v32):
        return sum((G[:, s:s + chunk] @ v32[s:s + chunk]).astype(np.float64)
                   for s in range(0, d, chunk))

    for float32_gv in (False, True):
        y = sgemv_chunks(g) if float32_gv else G64 @ g
        c = np.linalg.solve(A, y)
        Gtc = np.concatenate([(c.astype(np.float32) @ G[:, s:s + chunk]).astype(np.float64)
                              for s in range(0, d, chunk)])
        assert rel((g - Gtc) / damping, expected) > 1e-2
    c = np.linalg.solve(A, G64 @ g)
    accurate = np.empty(d)
    nbk.window_axpy_gemv_t(G, -c[None, :], g, 1 / damping, 1 / damping, (0, d), accurate)
    assert rel(accurate, expected) < 1e-6
