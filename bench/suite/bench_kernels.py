"""SpMV (scipy, Numba CSR, Numba DIA) and one CG iteration (scipy, ours) on 2-D Poisson.

Each benchmark records in ``extra_info`` the bytes one call must move, the
achieved GB/s from the mean time, and the bandwidth measured in the same
session, so a row reads as a fraction of what the machine can stream.
"""

from __future__ import annotations

import numpy as np

from bench.bandwidth import csr_spmv_bytes, dia_spmv_bytes

CG_STEPS = 10  # iterations per benchmarked call; reported per iteration


def _record(benchmark, bytes_moved: int, bandwidth: dict, per_call: int = 1) -> None:
    benchmark.extra_info["bytes_per_call"] = bytes_moved
    benchmark.extra_info["triad_GBps"] = bandwidth["triad_GBps"]
    benchmark.extra_info["copy_GBps"] = bandwidth["copy_GBps"]
    stats = getattr(benchmark, "stats", None)
    if stats is not None and bytes_moved:
        achieved = bytes_moved * per_call / stats.stats.mean / 1e9
        benchmark.extra_info["achieved_GBps"] = achieved
        benchmark.extra_info["fraction_of_triad"] = achieved / bandwidth["triad_GBps"]


def test_spmv_scipy(benchmark, poisson, bandwidth):
    x = np.ones(poisson.shape[0])
    benchmark(lambda: poisson @ x)
    _record(benchmark, csr_spmv_bytes(poisson), bandwidth)


def test_spmv_numba_csr(benchmark, poisson, bandwidth):
    from cext.numba import csr_spmv

    x = np.ones(poisson.shape[0])
    out = np.empty_like(x)
    args = (poisson.indptr, poisson.indices, poisson.data, x, out)
    csr_spmv(*args)  # compile before timing
    benchmark(csr_spmv, *args)
    np.testing.assert_allclose(out, poisson @ x)
    _record(benchmark, csr_spmv_bytes(poisson), bandwidth)


def test_spmv_numba_dia(benchmark, poisson, bandwidth):
    from cext import csr_to_dia
    from cext.numba import dia_spmv

    layout = csr_to_dia(poisson.indptr, poisson.indices, poisson.data, poisson.shape[0])
    assert layout is not None, "5-point Poisson must convert to DIA"
    x = np.ones(poisson.shape[0])
    out = np.empty_like(x)
    dia_spmv(layout.offsets, layout.values, x, out)
    benchmark(dia_spmv, layout.offsets, layout.values, x, out)
    np.testing.assert_allclose(out, poisson @ x)
    _record(benchmark, dia_spmv_bytes(layout.values), bandwidth)


def test_cg_iterations_scipy(benchmark, poisson, bandwidth):
    from scipy.sparse.linalg import cg

    b = np.ones(poisson.shape[0])
    benchmark(cg, poisson, b, rtol=1e-300, atol=0.0, maxiter=CG_STEPS)
    benchmark.extra_info["iterations_per_call"] = CG_STEPS
    _record(benchmark, 0, bandwidth)


def test_cg_iterations_ours(benchmark, poisson, bandwidth):
    from linsolve import pcg

    b = np.ones(poisson.shape[0])
    pcg(poisson, b, rtol=1e-300, maxiter=2)  # compile before timing
    result = benchmark(pcg, poisson, b, rtol=1e-300, maxiter=CG_STEPS)
    assert result.iterations == CG_STEPS
    benchmark.extra_info["iterations_per_call"] = CG_STEPS
    _record(benchmark, 0, bandwidth)
