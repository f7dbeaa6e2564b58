"""Numba kernels against the array-API reference, and the registry."""

from __future__ import annotations

import importlib
import inspect
import math
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp
from array_api_compat import array_namespace

import cext
from cext import csr_to_dia, kernels_for, reference
from cext import numba as nbk
from cext.registry import KERNELS, PARALLEL_KERNELS, RESULT_ARGUMENTS

from tests.problems import poisson2d, random_sparse_spd

DTYPES = [np.float32, np.float64]


def _tolerance(dtype, terms: int) -> float:
    # Summation error bound ~ terms * eps relative to sum |a_i b_i|.
    return 4 * terms * np.finfo(dtype).eps


def _csr(dtype, index_dtype, seed=0, n=200):
    A = sp.random(n, n, density=0.05, random_state=seed, format="csr", dtype=np.float64)
    A = A + sp.eye(n, format="csr")
    return (A.indptr.astype(index_dtype), A.indices.astype(index_dtype),
            A.data.astype(dtype), A)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_csr_spmv_matches_reference_and_scipy(dtype, index_dtype):
    indptr, indices, data, A = _csr(dtype, index_dtype)
    x = np.random.default_rng(1).standard_normal(A.shape[0]).astype(dtype)
    out_numba = np.empty_like(x)
    out_ref = np.empty_like(x)
    nbk.csr_spmv(indptr, indices, data, x, out_numba)
    reference.csr_spmv(indptr, indices, data, x, out_ref)
    # Same row order: float64 sums are bit-identical; float32 accumulates in
    # float64 in the Numba kernel, so compare with the bound.
    if dtype == np.float64:
        np.testing.assert_array_equal(out_numba, out_ref)
    exact = A.astype(np.float64) @ x.astype(np.float64)
    scale = abs(A) @ np.abs(x.astype(np.float64))
    assert np.all(np.abs(out_numba - exact) <= _tolerance(dtype, 20) * scale + 1e-30)


@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_spmv_dot_returns_pq(dtype):
    indptr, indices, data, A = _csr(dtype, np.int32)
    p = np.random.default_rng(2).standard_normal(A.shape[0]).astype(dtype)
    q = np.empty_like(p)
    pq = nbk.csr_spmv_dot(indptr, indices, data, p, q)
    q_ref = np.empty_like(p)
    pq_ref = reference.csr_spmv_dot(indptr, indices, data, p, q_ref)
    np.testing.assert_allclose(q, q_ref, rtol=_tolerance(dtype, 20), atol=0)
    bound = _tolerance(dtype, A.shape[0]) * float(np.abs(p) @ np.abs(q_ref))
    assert abs(pq - pq_ref) <= bound


@pytest.mark.parametrize("dtype", DTYPES)
def test_dia_layout_and_kernels_match_csr(dtype):
    A = poisson2d(12, dtype=dtype)
    layout = csr_to_dia(A.indptr, A.indices, A.data, A.shape[0])
    assert layout.offsets == (-12, -1, 0, 1, 12)
    x = np.random.default_rng(3).standard_normal(A.shape[0]).astype(dtype)
    out = np.empty_like(x)
    nbk.dia_spmv(layout.offsets, layout.values, x, out)
    out_ref = np.empty_like(x)
    reference.dia_spmv(layout.offsets, layout.values, x, out_ref)
    np.testing.assert_array_equal(out, out_ref) if dtype == np.float64 else None
    np.testing.assert_allclose(out, A @ x, rtol=_tolerance(dtype, 5), atol=_tolerance(dtype, 5))
    q = np.empty_like(x)
    pq = nbk.dia_spmv_dot(layout.offsets, layout.values, x, q)
    np.testing.assert_allclose(q, out_ref, rtol=_tolerance(dtype, 5), atol=_tolerance(dtype, 5))
    assert math.isclose(pq, float(x.astype(np.float64) @ (A.astype(np.float64) @ x)),
                        rel_tol=_tolerance(dtype, A.shape[0]) * 10)


def test_csr_to_dia_refuses_scattered_matrices_and_sums_duplicates():
    A = random_sparse_spd(100, density=0.1)
    assert csr_to_dia(A.indptr, A.indices, A.data, 100) is None
    # duplicate (0, 0) entries in non-canonical CSR add up, as SpMV would
    indptr = np.array([0, 2, 3])
    indices = np.array([0, 0, 1])
    data = np.array([1.0, 2.0, 5.0])
    layout = csr_to_dia(indptr, indices, data, 2)
    assert layout.offsets == (0,)
    np.testing.assert_array_equal(layout.values, [[3.0, 5.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cg_updates_match_reference(dtype):
    rng = np.random.default_rng(4)
    x, r, p, q = (rng.standard_normal(1000).astype(dtype) for _ in range(4))
    x2, r2, p2 = x.copy(), r.copy(), p.copy()
    rr = nbk.cg_update_xr(x, r, p, q, 0.3)
    rr_ref = reference.cg_update_xr(x2, r2, p, q, 0.3)
    # 'contract' may fuse a*b+c into one rounding: within an ulp per entry.
    np.testing.assert_allclose(x, x2, rtol=2 * np.finfo(dtype).eps, atol=2 * np.finfo(dtype).eps)
    np.testing.assert_allclose(r, r2, rtol=2 * np.finfo(dtype).eps, atol=2 * np.finfo(dtype).eps)
    assert math.isclose(rr, rr_ref, rel_tol=_tolerance(dtype, 1000))
    nbk.cg_update_p(p, q, 0.7)
    reference.cg_update_p(p2, q, 0.7)
    np.testing.assert_allclose(p, p2, rtol=2 * np.finfo(dtype).eps, atol=2 * np.finfo(dtype).eps)


def test_nan_survives_every_reduction():
    """No fastmath 'nnan': a NaN anywhere must reach the returned scalar."""
    A = poisson2d(6)
    layout = csr_to_dia(A.indptr, A.indices, A.data, 36)
    p = np.ones(36)
    p[17] = np.nan
    q = np.empty(36)
    assert math.isnan(nbk.csr_spmv_dot(A.indptr, A.indices, A.data, p, q))
    assert math.isnan(nbk.dia_spmv_dot(layout.offsets, layout.values, p, q))
    assert math.isnan(nbk.dot(p, np.ones(36)))
    x, r = np.zeros(36), np.ones(36)
    assert math.isnan(nbk.cg_update_xr(x, r, np.ones(36), p, 1.0))
    inf = np.full(36, np.inf)
    assert math.isinf(nbk.dot(inf, np.ones(36)))


def test_registry_picks_backend_by_namespace_and_falls_back():
    strict = pytest.importorskip("array_api_strict")
    assert kernels_for(array_namespace(np.ones(2))).backend == "numba"
    kernels = kernels_for(array_namespace(strict.ones(2)))
    assert kernels.backend == "reference"
    assert kernels.csr_spmv is reference.csr_spmv
    assert set(cext.KERNEL_NAMES) <= set(vars(kernels))
    # a backend lacking a kernel gets the reference one
    partial = cext.KernelSet("partial", type("M", (), {"dot": staticmethod(nbk.dot)}))
    assert partial.dot is nbk.dot and partial.cg_update_p is reference.cg_update_p


def test_backends_mirror_each_other_file_for_file():
    # cext.numba.sor and cext.reference.sor hold the same kernels; CuPy has a
    # subset of the modules (the registry falls back to the reference for the rest)
    def modules(backend, private=()):
        folder = pathlib.Path(cext.__file__).parent / backend
        return {path.stem for path in folder.glob("*.py")} - {"__init__", *private}

    assert modules("reference", private=("_common",)) == modules("numba")
    assert modules("cupy", private=("_compile", "availability")) <= modules("numba")


def test_every_kernel_sits_where_its_spec_says():
    for spec in KERNELS:
        for backend in ("numba", "reference", "cupy"):
            if not (pathlib.Path(cext.__file__).parent / backend / f"{spec.module}.py").is_file():
                assert backend == "cupy", f"no {backend}/{spec.module}.py for {spec.name}"
                continue
            kernel = getattr(importlib.import_module(f"cext.{backend}.{spec.module}"), spec.name,
                             None)
            if kernel is None:
                assert backend == "cupy", f"{spec.name} is not in cext.{backend}.{spec.module}"
                continue
            assert getattr(importlib.import_module(f"cext.{backend}"), spec.name) is kernel
            # the written arguments sit at the same positions in every backend's signature
            parameters = list(inspect.signature(getattr(kernel, "py_func", kernel)).parameters)
            assert tuple(parameters.index(name) for name in spec.writes) == spec.positions


def test_derived_tables_follow_the_specs():
    assert len(set(cext.KERNEL_NAMES)) == len(KERNELS)
    assert PARALLEL_KERNELS == {spec.name for spec in KERNELS if spec.parallel}
    assert RESULT_ARGUMENTS["window_push_gemv"] == (0, 4)
    assert RESULT_ARGUMENTS["spd_inverse_factor"] == (1,)


def test_reference_kernels_run_under_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    A = poisson2d(4)
    indptr = xp.asarray(A.indptr.astype(np.int64))
    indices = xp.asarray(A.indices.astype(np.int64))
    data = xp.asarray(A.data)
    x = xp.asarray(np.arange(16.0))
    out = xp.zeros(16, dtype=xp.float64)
    pq = reference.csr_spmv_dot(indptr, indices, data, x, out)
    np.testing.assert_allclose(np.asarray(out), A @ np.arange(16.0))
    assert pq == pytest.approx(float(np.arange(16.0) @ (A @ np.arange(16.0))))


@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_spmv_one_thread_twin_is_bit_identical(dtype):
    # on one thread the wrappers switch to plain loops (cext.threads policy)
    import numba

    indptr, indices, data, A = _csr(dtype, np.int32, n=301)  # odd: the unpaired last row
    p = np.random.default_rng(5).standard_normal(A.shape[0]).astype(dtype)
    outputs = {}
    before = numba.get_num_threads()
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            q, out = np.empty_like(p), np.empty_like(p)
            pq = nbk.csr_spmv_dot(indptr, indices, data, p, q)
            nbk.csr_spmv(indptr, indices, data, p, out)
            outputs[threads] = (q, out, pq)
    finally:
        numba.set_num_threads(before)
    serial = outputs[1]
    for q, out, pq in outputs.values():
        np.testing.assert_array_equal(q, serial[0])
        np.testing.assert_array_equal(out, serial[1])
        # the dot's partial sums are grouped differently across threads
        assert pq == pytest.approx(serial[2], rel=float(_tolerance(dtype, A.shape[0])))
    np.testing.assert_array_equal(serial[1], serial[0])
