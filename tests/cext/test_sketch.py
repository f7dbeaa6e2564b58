"""Sketch kernels: Numba against the reference oracle, and the CUDA launcher without a GPU."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp

from cext import kernels_for, reference
from cext.numba import sketch as numba_sketch


def _system(m=12, n=7, seed=0):
    rng = np.random.default_rng(seed)
    A = sp.random(m, n, density=0.5, random_state=rng, format="csr") + sp.eye(m, n)
    A = sp.csr_matrix(A)
    A.sort_indices()
    csc = A.tocsc()
    csc.sort_indices()
    to64 = lambda a: a.astype(np.int64)
    x_true = rng.standard_normal(n)
    b = A @ x_true
    norms2 = np.asarray(A.multiply(A).sum(axis=1)).ravel()
    return (to64(A.indptr), to64(A.indices), A.data, to64(csc.indptr), to64(csc.indices),
            csc.data, norms2, b, A, rng)


def test_registry_hands_out_the_sketch_kernels():
    numba_set = kernels_for(np)
    assert numba_set.kaczmarz_run is numba_sketch.kaczmarz_run
    assert numba_set.countsketch_csr is numba_sketch.countsketch_csr
    strict = pytest.importorskip("array_api_strict")
    assert kernels_for(strict).kaczmarz_run is reference.kaczmarz_run


def test_kaczmarz_numba_matches_reference_and_keeps_the_residual():
    indptr, indices, data, cptr, cind, cdata, norms2, b, A, rng = _system()
    rows = rng.integers(0, A.shape[0], size=50).astype(np.int64)
    results = []
    for module in (numba_sketch, reference):
        x = np.zeros(A.shape[1])
        r = b.copy()
        norms = np.full(51, -1.0)
        norms[0] = np.linalg.norm(r)
        done = module.kaczmarz_run(indptr, indices, data, cptr, cind, cdata, norms2, rows, x, r,
                                   0.0, 7, norms, 0)
        assert done == 50
        # the incrementally updated residual is the true one, to rounding
        np.testing.assert_allclose(r, b - A @ x, atol=1e-12)
        np.testing.assert_allclose(norms[50], np.linalg.norm(r), rtol=1e-12)
        results.append((x, norms))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)


def test_kaczmarz_step_is_an_exact_projection_and_stops_at_tol():
    indptr, indices, data, cptr, cind, cdata, norms2, b, A, rng = _system(seed=1)
    x, r = np.zeros(A.shape[1]), b.copy()
    norms = np.zeros(2)
    numba_sketch.kaczmarz_run(indptr, indices, data, cptr, cind, cdata, norms2,
                              np.array([3], dtype=np.int64), x, r, 0.0, 1, norms, 0)
    assert abs((A @ x)[3] - b[3]) <= 1e-14 * abs(b[3]) + 1e-15  # row 3 now satisfied
    # a tolerance above ||r0|| stops after one step
    x, r = np.zeros(A.shape[1]), b.copy()
    norms = np.zeros(6)
    done = numba_sketch.kaczmarz_run(indptr, indices, data, cptr, cind, cdata, norms2,
                                     np.arange(5, dtype=np.int64), x, r,
                                     10 * np.linalg.norm(b), 100, norms, 0)
    assert done == 1


def test_countsketch_kernels_match_the_dense_product():
    indptr, indices, data, *_, A, rng = _system(m=15, n=6, seed=2)
    buckets = rng.integers(0, 4, size=15).astype(np.int64)
    signs = rng.choice([-1.0, 1.0], size=15)
    S = np.zeros((15, 4))
    S[np.arange(15), buckets] = signs
    expected = S.T @ A.toarray()
    for module in (numba_sketch, reference):
        out = np.zeros((4, 6))
        module.countsketch_csr(indptr, indices, data, buckets, signs, out)
        np.testing.assert_allclose(out, expected, atol=1e-14)
        out = np.zeros((4, 6))
        module.countsketch_dense(np.ascontiguousarray(A.toarray()), buckets, signs, out)
        np.testing.assert_allclose(out, expected, atol=1e-14)


def test_cupy_countsketch_launcher_without_a_gpu(monkeypatch):
    # A stand-in for cupy records the launch: one thread per column, int64
    # sizes, the float64 instantiation (no GPU needed; see test_cuda_sources).
    import types

    from cext.cupy import _compile
    from cext.cupy import sketch as cupy_sketch

    calls = []

    class Kernel:
        def __call__(self, grid, block, args):
            calls.append((grid, block, args))

    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert code == cupy_sketch.SOURCE and options == _compile.OPTIONS
            self.name_expressions = name_expressions

        def get_function(self, name):
            assert name == "countsketch_dense<double>"
            return Kernel()

    fake = types.ModuleType("cupy")
    fake.RawModule = RawModule
    fake.asarray = np.asarray
    fake.ascontiguousarray = np.ascontiguousarray
    fake.int64, fake.float64 = np.int64, np.float64
    monkeypatch.setitem(sys.modules, "cupy", fake)
    _compile._module.cache_clear()
    _compile.get_kernel.cache_clear()
    try:
        A = np.ones((5, 300))
        out = np.zeros((2, 300))
        cupy_sketch.countsketch_dense(A, np.zeros(5, dtype=np.int64), np.ones(5), out)
        with pytest.raises(TypeError, match="out"):
            cupy_sketch.countsketch_dense(A, np.zeros(5, dtype=np.int64), np.ones(5),
                                          out.astype(np.float32))
        # wrong shapes raise before the launch (the kernel would index out of bounds)
        with pytest.raises(ValueError, match="same n"):
            cupy_sketch.countsketch_dense(A, np.zeros(5, dtype=np.int64), np.ones(5),
                                          np.zeros((2, 299)))
        with pytest.raises(ValueError, match="one entry per row"):
            cupy_sketch.countsketch_dense(A, np.zeros(4, dtype=np.int64), np.ones(5), out)
    finally:
        _compile._module.cache_clear()
        _compile.get_kernel.cache_clear()
    (grid, block, args), = calls
    assert block == (_compile.BLOCK,) and grid == (2,)
    assert isinstance(args[1], np.int64) and isinstance(args[2], np.int64)
    assert args[3].dtype == np.int64 and args[4].dtype == np.float64
