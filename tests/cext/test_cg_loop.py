"""The kernels behind pcg's compiled chunks: plain-loop twins and the symmetry probe."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from cext import csr_to_dia, reference
from cext import numba as nbk
from cext.numba import blas1, dia
from tests.problems import poisson2d

DTYPES = [np.float32, np.float64]


@pytest.fixture
def one_thread():
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 64, 1001])
def test_plain_loop_twins_give_the_parallel_kernels_bits_on_one_thread(dtype, n, one_thread):
    # the compiled CG loop calls the twins on one thread; the digests of pcg
    # (recorded with the parallel kernels on one thread) depend on this
    rng = np.random.default_rng(n)
    x, r, p, q, scale = (rng.standard_normal(n).astype(dtype) for _ in range(5))
    pairs = [((x.copy(), r.copy()), (x.copy(), r.copy())) for _ in range(2)]
    (a, b), (c, d) = pairs
    assert blas1.cg_update_xr(*a, p, q, 0.3) == blas1._cg_update_xr_serial(*b, p, q, 0.3)
    z1, z2 = np.empty_like(x), np.empty_like(x)
    assert (blas1.cg_update_xrz(*c, p, q, 0.3, scale, z1)
            == blas1._cg_update_xrz_serial(*d, p, q, 0.3, scale, z2))
    for u, v in ((a, b), (c, d)):
        np.testing.assert_array_equal(u[0], v[0])
        np.testing.assert_array_equal(u[1], v[1])
    np.testing.assert_array_equal(z1, z2)
    p1, p2 = p.copy(), p.copy()
    blas1.cg_update_p(p1, r, 0.7)
    blas1._cg_update_p_serial(p2, r, 0.7)
    np.testing.assert_array_equal(p1, p2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dia_plain_loop_twin_gives_the_parallel_bits(dtype, one_thread):
    A = poisson2d(9).astype(dtype)
    layout = csr_to_dia(A.indptr, A.indices, A.data, 81)
    p = np.random.default_rng(2).standard_normal(81).astype(dtype)
    q1, q2 = np.empty_like(p), np.empty_like(p)
    assert (dia.dia_spmv_dot(layout.offsets, layout.values, p, q1)
            == dia._dia_spmv_dot_serial(layout.offsets, layout.values, p, q2))
    np.testing.assert_array_equal(q1, q2)


def _banded(n, offsets, dtype, seed=0):
    """A random matrix with the given diagonals (scipy CSR, sorted)."""
    rng = np.random.default_rng(seed)
    diagonals = [rng.standard_normal(n - abs(k)) for k in offsets]
    return sp.diags(diagonals, offsets, shape=(n, n), format="csr").astype(dtype)


# five diagonals throughout, as the 2-D Poisson matrices elsewhere: no new compilations
@pytest.mark.parametrize("n, offsets, dtype", [
    (1600, (-40, -1, 0, 1, 40), np.float64),  # several blocks of rows, all with interior rows
    (1600, (-40, -1, 0, 1, 40), np.float32),
    (1037, (-700, -3, 0, 2, 700), np.float64),  # a ragged last block, a wide band
    (600, (-599, -1, 0, 1, 599), np.float64),  # no row reaches every diagonal: checked loop only
    (9, (-3, -1, 0, 1, 3), np.float64),  # fewer rows than one group of partial sums
])
def test_dia_product_keeps_the_row_sums_and_sums_p_q_in_float64(dtype, n, offsets, one_thread):
    # the vectorised interior rows give the bits of the checked loop (dia_spmv): with
    # sorted offsets that is scipy's CSR product, summed in the same order
    A = _banded(n, offsets, dtype)
    layout = csr_to_dia(A.indptr, A.indices, A.data, n, max_fill=100.0, max_diagonals=8)
    assert layout is not None and layout.offsets == tuple(sorted(offsets))
    p = np.random.default_rng(1).standard_normal(n).astype(dtype)
    q_serial, q_parallel, q_plain = (np.empty_like(p) for _ in range(3))
    pq_serial = dia._dia_spmv_dot_serial(layout.offsets, layout.values, p, q_serial)
    pq_parallel = dia._dia_spmv_dot(layout.offsets, layout.values, p, q_parallel)
    dia.dia_spmv(layout.offsets, layout.values, p, q_plain)
    np.testing.assert_array_equal(q_serial, q_plain)
    np.testing.assert_array_equal(q_parallel, q_plain)
    if dtype == np.float64:
        np.testing.assert_array_equal(q_serial, A @ p)
    # one thread: the parallel kernel adds the blocks' sums as the plain loop does
    assert pq_serial == pq_parallel
    assert dia.dia_spmv_dot(layout.offsets, layout.values, p, np.empty_like(p)) == pq_serial
    # p . q in float64 from the stored q: only the order of the sum differs from numpy's
    p64, q64 = p.astype(np.float64), q_serial.astype(np.float64)
    bound = 4 * n * np.finfo(np.float64).eps * float(np.abs(p64) @ np.abs(q64))
    assert abs(pq_serial - float(p64 @ q64)) <= bound


def test_dia_product_on_two_threads_regroups_only_the_dot():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba's pool has one thread")
    A = _banded(3000, (-50, -1, 0, 1, 50), np.float64)
    layout = csr_to_dia(A.indptr, A.indices, A.data, 3000)
    p = np.random.default_rng(3).standard_normal(3000)
    q = np.empty_like(p)
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        pq = dia.dia_spmv_dot(layout.offsets, layout.values, p, q)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(q, A @ p)
    bound = 4 * 3000 * np.finfo(np.float64).eps * float(np.abs(p) @ np.abs(q))
    assert abs(pq - float(p @ q)) <= bound


def _probe_reference(A, x, y):
    """The six inner products in float64 from scipy's products."""
    A64, x64, y64 = A.astype(np.float64), x.astype(np.float64), y.astype(np.float64)
    Ax, Ay = A64 @ x64, A64 @ y64
    return np.array([x64 @ Ay, y64 @ Ax, Ax @ Ax, Ay @ Ay, x64 @ x64, y64 @ y64])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["csr", "dia"])
def test_symmetry_probe_matches_scipy_and_the_reference(dtype, layout):
    # a non-symmetric A: x.Ay and y.Ax differ, and the probe must say by how much
    A = (poisson2d(7) + sp.diags(np.linspace(0.1, 0.5, 48), 1)).tocsr().astype(dtype)
    rng = np.random.default_rng(3)
    x, y = (rng.random(49).astype(dtype) - 0.5 for _ in range(2))
    expected = _probe_reference(A, x, y)
    if layout == "csr":
        arrays = (A.indptr, A.indices, A.data)
        kernels = (nbk.csr_symmetry_probe, reference.csr_symmetry_probe)
    else:
        dia_layout = csr_to_dia(A.indptr, A.indices, A.data, 49)
        arrays = (dia_layout.offsets, dia_layout.values)
        kernels = (nbk.dia_symmetry_probe, reference.dia_symmetry_probe)
    # float32 products: each sum has at most 49 terms of at most 7 * 0.25
    tol = 100 * 49 * float(np.finfo(dtype).eps) * np.abs(expected).max()
    for kernel in kernels:
        got = np.array(kernel(*arrays, x, y), dtype=np.float64)
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
    assert abs(expected[0] - expected[1]) > 0.1  # the asymmetry is there to be seen
