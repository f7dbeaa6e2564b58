"""The fused Lanczos and BiCGStab products on long CSR rows: one row at a time, the same bits.

On one thread :func:`cext.numba.minres.single_rows` sends matrices whose
rows average :data:`cext.numba.minres.LONG_ROWS` entries or more to a loop
that sums one row at a time; shorter rows, and every product on two threads,
go to the pair loop. Both must give what scipy's CSR product gives (each row
summed in CSR order, so the product is equal bit for bit) and the same dots.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from cext.numba import bicgstab as nb_bicgstab
from cext.numba import minres as nb_minres
from cext.numba.spmv import unsigned_view


def ragged(n: int, mean: int, seed: int = 0, dtype=np.float64) -> sp.csr_matrix:
    """CSR with rows of 1 to ``2 mean - 1`` entries (sorted, no duplicates), random values."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        count = int(rng.integers(1, 2 * mean))
        columns = np.sort(rng.choice(n, size=min(count, n), replace=False))
        rows.append(columns)
    indptr = np.concatenate(([0], np.cumsum([len(c) for c in rows]))).astype(np.int32)
    indices = np.concatenate(rows).astype(np.int32)
    data = rng.standard_normal(indices.shape[0]).astype(dtype)
    return sp.csr_matrix((data, indices, indptr), shape=(n, n))


def test_single_rows_threshold():
    long, short = ragged(300, 14), ragged(300, 3)
    assert nb_minres.single_rows(long.indptr)
    assert not nb_minres.single_rows(short.indptr)
    assert not nb_minres.single_rows(np.zeros(1, dtype=np.int32))  # 0 x 0


def test_long_rows_match_scipy_and_the_pair_loop():
    A = ragged(2500, 14)
    n = A.shape[0]
    rng = np.random.default_rng(1)
    y, r1, w = (rng.standard_normal(n) for _ in range(3))
    sq, sy, sr = 0.7, -0.2, 0.3
    expected = sq * (A @ y) + sy * y + sr * r1
    args = (unsigned_view(A.indptr), unsigned_view(A.indices), A.data)
    single_r1, pair_r1 = r1.copy(), r1.copy()
    single_dot = nb_minres._csr_lanczos_single_serial(*args, y, single_r1, sq, sy, sr)
    pair_dot = nb_minres._csr_lanczos_serial(*args, y, pair_r1, sq, sy, sr)
    single_q, pair_q = np.empty(n), np.empty(n)
    single_dots = nb_bicgstab._csr_spmv_dots_single_serial(*args, y, single_q, w)
    pair_dots = nb_bicgstab._csr_spmv_dots_serial(*args, y, pair_q, w)
    # scipy sums each row in CSR order, as both loops do: equal bits
    np.testing.assert_array_equal(single_r1, expected)
    np.testing.assert_array_equal(pair_r1, expected)
    np.testing.assert_array_equal(single_q, A @ y)
    np.testing.assert_array_equal(pair_q, A @ y)
    # the dots take the rows in the same order in both loops
    assert single_dot == pair_dot
    assert single_dots == pair_dots
    bound = 4 * n * np.finfo(np.float64).eps
    assert abs(single_dot - y @ expected) <= bound * (np.abs(y) @ np.abs(expected))
    q = A @ y
    assert abs(single_dots[0] - w @ q) <= bound * (np.abs(w) @ np.abs(q))
    assert abs(single_dots[1] - q @ q) <= bound * (q @ q)


@pytest.mark.parametrize("threads", [1, 2])
def test_public_kernels_take_the_long_row_loop(threads):
    """The wrappers the solvers call, on one thread (one row at a time) and two (pairs):
    scipy's product in float64; in float32 (products rounded to float32, sums in float64)
    the bits of the pair loop."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        _check_public_kernels()
    finally:
        numba.set_num_threads(before)


def _check_public_kernels():
    for dtype in (np.float64, np.float32):
        A = ragged(700, 12, seed=2, dtype=dtype)
        n = A.shape[0]
        y = np.random.default_rng(3).standard_normal(n).astype(dtype)
        r1 = np.zeros(n, dtype=dtype)
        r1, _ = nb_minres.csr_minres_lanczos(A.indptr, A.indices, A.data, y, r1, 1.0, 0.0, 0.0)
        q = np.empty(n, dtype=dtype)
        nb_bicgstab.bicgstab_csr_spmv_dots(A.indptr, A.indices, A.data, y, q, y)
        pair = np.zeros(n, dtype=dtype)
        nb_minres._csr_lanczos_serial(unsigned_view(A.indptr), unsigned_view(A.indices),
                                      A.data, y, pair, 1.0, 0.0, 0.0)
        np.testing.assert_array_equal(r1, pair)
        np.testing.assert_array_equal(q, pair)
        if dtype == np.float64:
            np.testing.assert_array_equal(r1, A @ y)
        else:
            exact = A.astype(np.float64) @ y.astype(np.float64)
            scale = abs(A).astype(np.float64) @ np.abs(y).astype(np.float64)
            assert np.all(np.abs(r1 - exact) <= 30 * np.finfo(np.float32).eps * scale)
