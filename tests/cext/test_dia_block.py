"""``dia_spmm_dot``: a DIA matrix times an ``(n, k)`` block, with the ``k`` column dots.

Every column of the product must carry the bits of the single-vector
``dia_spmv`` on that column (the batched pcg on a stencil then differs from
``k`` separate solves only in how its inner products are summed), and the
dots those of ``block_dots``, the other block kernels' chunked sums.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from array_api_compat import array_namespace

from cext import csr_to_dia, reference
from cext import numba as nbk
from linsolve.core.operators import as_operator
from tests.problems import poisson2d

N = 2500  # two chunks of rows (2048 each) and a remainder


def _stencil():
    """5-point Laplacian, offsets (-50, -1, 0, 1, 50): most rows reach every diagonal."""
    A = poisson2d(50)
    layout = csr_to_dia(A.indptr, A.indices, A.data, N)
    return layout.offsets, layout.values


def _far_offsets():
    """Five diagonals, two of them near the corners: no row reaches all five, so every row
    takes the bounds test; the values outside the matrix are left nonzero, which a kernel
    that read them would show."""
    offsets = (-(N - 3), -7, 0, 40, N - 2)
    values = np.random.default_rng(3).standard_normal((len(offsets), N))
    return offsets, values


def _dense(offsets, values):
    """The matrix as a dense float64 array, entries outside it dropped."""
    n = values.shape[1]
    A = np.zeros((n, n))
    for d, offset in enumerate(offsets):
        rows = np.arange(max(0, -offset), min(n, n - offset))
        A[rows, rows + offset] = values[d, rows]
    return A


def _spmv_column(offsets, values, v):
    out = np.empty(v.shape[0], dtype=values.dtype)
    nbk.dia_spmv(offsets, values, np.ascontiguousarray(v), out)
    return out


def _product(offsets, values, P):
    Q, dots = np.full_like(P, np.nan), np.full(P.shape[1], np.nan)
    nbk.dia_spmm_dot(offsets, values, P, Q, dots)
    return Q, dots


# k = 1 and 3: scalar sums only; 8: one group of lanes; 9: a group and a scalar column
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 3, 8, 9])
@pytest.mark.parametrize("matrix", [_stencil, _far_offsets])
def test_every_column_has_the_single_spmv_bits_and_dots_the_block_dots_bits(matrix, k, dtype):
    offsets, values = matrix()
    values = values.astype(dtype)
    P = np.random.default_rng(k).standard_normal((N, k)).astype(dtype)
    P_before = P.copy()
    Q, dots = _product(offsets, values, P)
    np.testing.assert_array_equal(P, P_before)
    for j in range(k):
        np.testing.assert_array_equal(Q[:, j], _spmv_column(offsets, values, P[:, j]))
    expected = np.empty(k)
    nbk.block_dots(P, Q, expected)
    np.testing.assert_array_equal(dots, expected)
    # against the dense product, in float64: at most 5 products a row, each rounded
    # once, summed in float64 and rounded once to dtype
    A = _dense(offsets, values.astype(np.float64))
    P64 = P.astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    magnitude = abs(A) @ abs(P64)
    assert np.all(abs(Q - A @ P64) <= 2 * len(offsets) * eps * magnitude)
    exact = np.einsum("ij,ij->j", P64, A @ P64)
    scale = np.einsum("ij,ij->j", abs(P64), magnitude)
    assert np.all(abs(dots - exact) <= (N * 1.2e-16 + 4 * len(offsets) * eps) * scale)


@pytest.mark.parametrize("k", [3, 9])
def test_bits_do_not_depend_on_the_thread_count(k):
    offsets, values = _stencil()
    P = np.random.default_rng(5).standard_normal((N, k))
    before = numba.get_num_threads()
    outputs = []
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            outputs.append(_product(offsets, values, P))
    finally:
        numba.set_num_threads(before)
    for Q, dots in outputs[1:]:
        np.testing.assert_array_equal(Q, outputs[0][0])
        np.testing.assert_array_equal(dots, outputs[0][1])


def test_a_column_view_and_a_fortran_block_take_the_scalar_sums_with_the_same_bits():
    offsets, values = _stencil()
    P = np.asfortranarray(np.random.default_rng(6).standard_normal((N, 8)))
    Q, dots = np.empty_like(P), np.empty(8)  # Fortran order too: not the lanes
    nbk.dia_spmm_dot(offsets, values, P, Q, dots)
    np.testing.assert_array_equal(Q, _product(offsets, values, np.ascontiguousarray(P))[0])


def test_a_nan_in_one_column_stays_in_it():
    offsets, values = _stencil()
    P = np.random.default_rng(7).standard_normal((N, 9))
    P[100, 3] = np.nan
    P[2400, 8] = np.inf  # the scalar column
    Q, dots = _product(offsets, values, P)
    assert np.isnan(dots[3]) and not np.isfinite(dots[8])
    assert np.isfinite(np.delete(dots, (3, 8))).all()
    assert np.isfinite(np.delete(Q, (3, 8), axis=1)).all()


def test_empty_blocks():
    offsets, values = _stencil()
    Q, dots = _product(offsets, values, np.zeros((N, 0)))
    assert Q.shape == (N, 0) and dots.shape == (0,)


def test_reference_twin_matches_the_column_loop_and_the_compiled_kernel():
    offsets, values = _far_offsets()
    P = np.random.default_rng(8).standard_normal((N, 3))
    Q, dots = reference.dia_spmm_dot(offsets, values, P, np.empty_like(P), np.empty(3))
    for j in range(3):
        column = reference.dia_spmv(offsets, values, P[:, j], np.empty(N))
        np.testing.assert_array_equal(Q[:, j], column)
    compiled, compiled_dots = _product(offsets, values, P)
    # float64: the reference adds the diagonals in the same order
    np.testing.assert_array_equal(Q, compiled)
    scale = np.einsum("ij,ij->j", abs(P), abs(_dense(offsets, values)) @ abs(P))
    assert np.all(abs(dots - compiled_dots) <= 2 * N * 1.2e-16 * scale)


def test_reference_twin_runs_under_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    A = poisson2d(8)
    layout = csr_to_dia(A.indptr, A.indices, A.data, 64)
    P = np.random.default_rng(9).standard_normal((64, 2))
    Q, dots = reference.dia_spmm_dot(layout.offsets, xp.asarray(layout.values), xp.asarray(P),
                                     xp.zeros((64, 2), dtype=xp.float64),
                                     xp.zeros((2,), dtype=xp.float64))
    np.testing.assert_allclose(np.asarray(Q), A @ P, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(np.asarray(dots), np.einsum("ij,ij->j", P, A @ P), rtol=1e-13)


def test_dia_operator_block_products_equal_its_column_products():
    A = sp.csr_matrix(poisson2d(30))
    op = as_operator(A, array_namespace(np.ones(1)), np.float64, 900)
    assert op.layout == "dia"
    P = np.random.default_rng(10).standard_normal((900, 9))
    P_before = P.copy()
    columns = np.stack([op.matvec(np.ascontiguousarray(P[:, j])) for j in range(9)], axis=1)
    np.testing.assert_array_equal(op.matmat(P), columns)
    Q, dots = op.matmat_dot(P, np.empty_like(P), np.empty(9))
    np.testing.assert_array_equal(Q, columns)
    np.testing.assert_allclose(dots, np.einsum("ij,ij->j", P, A @ P), rtol=1e-12)
    np.testing.assert_array_equal(P, P_before)
