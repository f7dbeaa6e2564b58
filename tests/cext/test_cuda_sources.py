"""Every CUDA source in cext.cupy compiles with NVRTC, exactly as the runtime instantiates it.

Runs without a GPU and without CuPy: NVRTC (pip ``nvidia-cuda-nvrtc-cu12``)
is loaded with ctypes and compiles to PTX for virtual architectures. The
template instantiations are registered with ``nvrtcAddNameExpression``,
as ``cupy.RawModule(name_expressions=...)`` does, with the module's own
``OPTIONS``. The PTX parameter lists are checked against the argument
tuples the Python launchers pass (CuPy cannot check those: a wrong count
or width reads garbage on the device).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cext.cupy import _compile, blas1, dia, kron, mfac, sor, spmv
from cext.cupy import block as block_kernels
from cext.cupy import sketch as sketch_kernels
from tests import nvrtc
from tests.cuda_stub import fake_cupy, ptx_entries

if nvrtc.find_library() is None:
    pytest.skip("libnvrtc.so not found (pip install nvidia-cuda-nvrtc-cu12)",
                allow_module_level=True)

MODULES = {"spmv": spmv, "dia": dia, "blas1": blas1, "sor": sor, "mfac": mfac, "kron": kron,
           "block": block_kernels}
MODULES["sketch"] = sketch_kernels
DTYPES = ("float32", "float64")
# compute_70: oldest arch CuPy 13 wheels target with __shfl_*_sync (CUDA 13's NVRTC
# dropped it: compute_75 there); 80 and 90: A100, H100/H200.
ARCHS = (("compute_75",) if nvrtc.version()[0] >= 13 else ("compute_70",)) + (
    "compute_80", "compute_90")

# PTX parameter kinds of each kernel, in the order the Python launchers pass
# them: pointers and int64 (np.int64) are u64, np.int32 is u32, np.float64 is f64.
PARAMS = {
    "csr_spmv_dot": ["u64"] * 5 + ["u64", "u32", "u32", "u64"],  # ..., n, lanes, with_dot, partials
    # offsets, ndiag, values, p, q, n, with_dot, partials
    "dia_spmv_dot": ["u64", "u32"] + ["u64"] * 3 + ["u64", "u32", "u64"],
    "dot_partial": ["u64", "u64", "u64", "u64"],  # a, b, n, partials
    "cg_update_xr": ["u64"] * 4 + ["f64", "u64", "u64"],  # x, r, p, q, alpha, n, partials
    "cg_update_p": ["u64", "u64", "f64", "u64"],  # p, z, beta, n
    "sum_partials": ["u64", "u64", "u64"],  # partials, m, result
    # indptr, indices, data, diag, b, x, rows, omega, begin, end
    "sor_color_sweep": ["u64"] * 7 + ["f64", "u64", "u64"],
    # indptr, indices, data, diag, b, x, rows, n, permuted, partials
    "sor_residual_norm2": ["u64"] * 7 + ["u64", "u32", "u64"],
    # G, d, k, v, slot, chunk_start, partials
    "window_gemv_partial": ["u64", "u64", "u32", "u64", "u32", "u64", "u64"],
    "window_gemv_finish": ["u64", "u32", "u64", "u32", "u64"],  # partials, k, block_chunk, nblocks, out
    # G, d, k, coef, v, alpha, beta, block_offsets, nblocks, out
    "window_axpy_gemv_t": ["u64", "u64", "u32", "u64", "u64", "f64", "f64", "u64", "u32", "u64"],
    # A, m, n, buckets, signs, out
    "countsketch_dense": ["u64", "u64", "u64", "u64", "u64", "u64"],
    # L, transpose, X, out, batch, m, n
    "kron_left": ["u64", "u32", "u64", "u64", "u64", "u32", "u32"],
    # X, R, transpose, dl, dr, damping, scale, out, batch, m, n
    "kron_right": ["u64", "u64", "u32", "u64", "u64", "f64", "u32", "u64", "u64", "u32", "u32"],
    "block_spmm": ["u64"] * 7,  # indptr, indices, data, P, Q, n, k
    "block_column_dots": ["u64"] * 6,  # U, V, n, k, chunk, partials
    "block_column_sum": ["u64"] * 4,  # partials, nchunks, k, out
    "block_cg_update": ["u64"] * 7,  # X, R, P, Q, alpha, n, k
    "block_update_p": ["u64"] * 5,  # P, Z, beta, n, k
}



def _compile_or_fail(source, options, expressions, label):
    result = nvrtc.compile_source(source, options, expressions, name=f"{label}.cu")
    assert result.ok, (f"NVRTC failed on {label} with options {options}, "
                       f"expressions {expressions}:\n{result.log}")
    return result


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_source_compiles_for_every_instantiation(module_name, dtype, arch):
    module = MODULES[module_name]
    expressions = module.name_expressions(dtype)
    options = _compile.OPTIONS + (f"--gpu-architecture={arch}",)
    result = _compile_or_fail(module.SOURCE, options, expressions, f"{module_name}-{dtype}")
    entries = ptx_entries(result.ptx)
    for expression in expressions:
        lowered = result.lowered_names[expression]
        assert lowered in entries, f"{expression} ({lowered}) missing from the PTX"
        kernel = expression.split("<")[0]
        assert entries[lowered] == PARAMS[kernel], (
            f"{expression}: PTX parameters {entries[lowered]} do not match the launcher's "
            f"{PARAMS[kernel]}")
    # The value type of the instantiation really is the dtype asked for.
    width = {"float32": "f32", "float64": "f64"}[dtype]
    assert f"ld.global.nc.{width}" in result.ptx or f"ld.global.{width}" in result.ptx


# every standard compiles every source again: the default (c++17) in make test, the rest slow
@pytest.mark.parametrize("std", (pytest.param("c++11", marks=pytest.mark.slow),
                                 pytest.param("c++14", marks=pytest.mark.slow), "c++17"))
def test_sources_compile_under_each_language_standard(std):
    # CuPy may add its own -std flag; the sources must not depend on one.
    for name, module in MODULES.items():
        for dtype in DTYPES:
            _compile_or_fail(module.SOURCE, _compile.OPTIONS + (f"--std={std}",
                                                                "--gpu-architecture=compute_80"),
                             module.name_expressions(dtype), f"{name}-{dtype}-{std}")


def test_no_fast_math_in_runtime_options():
    # --use_fast_math implies flush-to-zero and approximate division/sqrt.
    assert not any("fast" in option or "ftz=true" in option for option in _compile.OPTIONS)


def test_instantiations_cover_every_dtype_and_index_type():
    assert spmv.name_expressions("float32") == (
        "csr_spmv_dot<float, int>", "csr_spmv_dot<float, long long>", "sum_partials")
    assert dia.name_expressions("float64") == ("dia_spmv_dot<double>", "sum_partials")
    assert set(blas1.name_expressions("float64")) == {
        "dot_partial<double>", "cg_update_xr<double>", "cg_update_p<double>", "sum_partials"}
    assert sor.name_expressions("float32") == (
        "sor_color_sweep<float, int>", "sor_color_sweep<float, long long>",
        "sor_residual_norm2<float, int>", "sor_residual_norm2<float, long long>", "sum_partials")
    assert block_kernels.name_expressions("float64") == (
        "block_spmm<double, int>", "block_spmm<double, long long>", "block_column_dots<double>",
        "block_cg_update<double>", "block_update_p<double>", "block_column_sum")


def test_broken_source_fails_to_compile():
    # Guards against a checker that passes vacuously (e.g. options ignored,
    # library stubbed): a type error must come back as a failure with a log.
    broken = spmv.SOURCE.replace("const T qi = (T)acc;", "const T qi = (T)acc + undeclared;")
    assert broken != spmv.SOURCE
    result = nvrtc.compile_source(broken, ("--gpu-architecture=compute_80",),
                                  spmv.name_expressions("float64"))
    assert not result.ok
    assert "undeclared" in result.log


def test_missing_instantiation_fails_to_compile():
    result = nvrtc.compile_source(blas1.SOURCE, ("--gpu-architecture=compute_80",),
                                  ("dot_partial<float>", "no_such_kernel<float>"))
    assert not result.ok


@pytest.mark.parametrize("dtype", DTYPES)
def test_launchers_pass_arguments_matching_the_ptx(monkeypatch, dtype):
    # Without a GPU: run each Python launcher against a stand-in for cupy that
    # records the argument kinds, and compare them with the PTX parameters
    # (checked above). Catches a Python int where the kernel wants an int32, etc.
    calls = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls, options=_compile.OPTIONS))
    caches = (_compile._module, _compile.get_kernel, dia._device_offsets, mfac._tables)
    for cache in caches:
        cache.cache_clear()
    try:
        n = 300
        v = [np.ones(n, dtype=dtype) for _ in range(4)]
        indptr = np.arange(n + 1, dtype=np.int64)
        indices = np.arange(n, dtype=np.int64)
        assert isinstance(spmv.csr_spmv_dot(indptr, indices, v[0], v[1], v[2]), float)
        spmv.csr_spmv(indptr, indices, v[0], v[1], v[2])  # int64: the RawKernel path
        values = np.ones((3, n), dtype=dtype)
        assert isinstance(dia.dia_spmv_dot((-1, 0, 1), values, v[0], v[1]), float)
        dia.dia_spmv((-1, 0, 1), values, v[0], v[1])
        assert isinstance(blas1.dot(v[0], v[1]), float)
        assert isinstance(blas1.cg_update_xr(v[0], v[1], v[2], v[3], 0.5), float)
        blas1.cg_update_p(v[0], v[1], 2.0)
        colors = np.array([0, 150, n], dtype=np.int64)
        rows = np.arange(n, dtype=np.int64)
        sor.sor_sweep_colored(indptr, indices, v[0], v[1], v[2], v[3], 1.5, colors, rows)
        assert isinstance(sor.csr_residual_norm2_split(indptr, indices, v[0], v[1], v[2], v[3],
                                                       rows), float)
        window, gram = np.ones((4, n), dtype=dtype), np.empty((2, 3))
        mfac.window_gemv(window, v[0], (0, 100, n), gram)
        mfac.window_push_gemv(window, 1, v[0], (0, 100, n), gram)
        mfac.window_axpy_gemv_t(window, gram, v[0], 1.0, -1.0, (0, 100, n), v[1])
        factors, layers = np.ones((2, 3, 3), dtype=dtype), np.ones((2, 3, 4), dtype=dtype)
        kron.kron_matvec(factors, np.ones((2, 4, 4), dtype=dtype), layers, layers.copy())
        kron.kron_eigen_solve(factors, np.ones((2, 3), dtype=dtype),
                              np.ones((2, 4, 4), dtype=dtype), np.ones((2, 4), dtype=dtype), 0.1,
                              layers, layers.copy())
        stand_in = sys.modules["cupy"]  # the sketch launcher also converts its index arrays
        stand_in.ascontiguousarray, stand_in.int64 = np.ascontiguousarray, np.int64
        sketch_kernels.countsketch_dense(np.ones((3, n), dtype=dtype), np.zeros(3, np.int64),
                                         np.ones(3), np.zeros((2, n)))
        P, Q = np.ones((n, 3), dtype=dtype), np.ones((n, 3), dtype=dtype)
        block_kernels.csr_spmm_dot(indptr, indices, v[0], P, Q, np.empty(3))
        block_kernels.block_cg_update(P.copy(), Q.copy(), P, Q, [0.5, 1.0, 2.0], np.empty(3))
        block_kernels.block_update_p(P, Q, np.ones(3))
        block_kernels.block_dots(P, Q, np.empty(3))
    finally:
        for cache in caches:
            cache.cache_clear()
    launched = {name for name, *_ in calls}
    assert launched == set(PARAMS)
    for name, grid, block, kinds in calls:
        assert kinds == PARAMS[name], (name, kinds)
        assert block == (_compile.BLOCK,) and len(grid) == 1 and grid[0] >= 1


def _sor_problem(n, index_dtype, value_dtype):
    # 1-D chain stored red (even unknowns) then black (odd): off-diagonal CSR by colour.
    order = np.concatenate([np.arange(0, n, 2), np.arange(1, n, 2)])
    indptr, indices = [0], []
    for i in order:
        indices += [j for j in (i - 1, i + 1) if 0 <= j < n]
        indptr.append(len(indices))
    color_ptr = np.array([0, (n + 1) // 2, n], dtype=np.int64)
    data = -np.ones(len(indices), dtype=value_dtype)
    vectors = [np.full(n, 2.0, dtype=value_dtype)] + [np.ones(n, dtype=value_dtype)
                                                      for _ in range(2)]
    return (np.array(indptr, dtype=index_dtype), np.array(indices, dtype=index_dtype), data,
            *vectors, color_ptr, order.astype(index_dtype))


@pytest.mark.parametrize("index_dtype", ("int32", "int64"))
@pytest.mark.parametrize("dtype", DTYPES)
def test_sor_launchers_launch_one_kernel_per_colour(monkeypatch, dtype, index_dtype):
    # The coloured sweep: one launch per nonempty colour, one thread per row,
    # colours reversed on request; the right instantiation; argument kinds as the PTX.
    calls, raw = [], []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls, raw, options=_compile.OPTIONS))
    caches = (_compile._module, _compile.get_kernel)
    for cache in caches:
        cache.cache_clear()
    try:
        n = 601
        indptr, indices, data, diag, b, x, color_ptr, rows = _sor_problem(n, index_dtype, dtype)
        sor.sor_sweep_colored(indptr, indices, data, diag, b, x, 1.2, color_ptr, rows)
        sor.sor_sweep_colored(indptr, indices, data, diag, b, x, 1.2, color_ptr, rows,
                              reverse=True)
        # an empty colour launches nothing; a rows map of another integer type is converted
        sor.sor_sweep_colored(indptr, indices, data, diag, b, x, 1.0,
                              np.array([0, 0, n], dtype=np.int32), rows.astype(np.uint32))
        # an empty colour table: nothing to do for the sweep, refused by sor_run
        sor.sor_sweep_colored(indptr, indices, data, diag, b, x, 1.0, np.zeros(1, np.int64),
                              rows[:0])
        assert sor.csr_residual_norm2_split(indptr, indices, data, diag, b, x, rows) == 0.0
        assert sor.csr_residual_norm2_split(indptr, indices, data, diag, b, x, rows[:0]) == 0.0
        norms = np.full(5, -1.0)
        # the stand-in's sums are 0: converged after the first (symmetric) sweep
        assert sor.sor_run(indptr, indices, data, diag, b, x, 1.0, True, color_ptr, rows,
                           1e-8, 1e5, 4, norms, 0) == 1
        assert norms[1] == 0.0 and norms[0] == -1.0
        assert sor.sor_run(indptr, indices, data, diag, b, x, 1.0, False, color_ptr, rows,
                           1e-8, 1e5, 4, norms, 4) == 4  # start == maxiter: no sweep
        with pytest.raises(NotImplementedError, match="redblack"):
            sor.sor_run(indptr, indices, data, diag, b, x, 1.0, False, np.zeros(1, np.int64),
                        rows[:0], 1e-8, 1e5, 4, norms, 0)
        with pytest.raises(TypeError):
            sor.sor_sweep_colored(indptr, indices.astype(np.int16), data, diag, b, x, 1.0,
                                  color_ptr, rows)
        with pytest.raises(TypeError):
            sor.sor_sweep_colored(indptr, indices, data, diag.astype(np.float16), b, x, 1.0,
                                  color_ptr, rows)
    finally:
        for cache in caches:
            cache.cache_clear()
    for name, grid, block, kinds in calls:
        assert kinds == PARAMS[name], (name, kinds)
        assert block == (_compile.BLOCK,) and len(grid) == 1 and grid[0] >= 1
    sweeps = [(grid[0], args) for name, grid, args in raw if name == "sor_color_sweep"]
    spans = [(int(args[8]), int(args[9])) for _, args in sweeps]
    red, black = (0, (n + 1) // 2), ((n + 1) // 2, n)
    # forward, reverse, the empty-colour sweep, sor_run's forward + reverse
    assert spans == [red, black, black, red, (0, n), red, black, black, red]
    for grid, args in sweeps:
        begin, end = int(args[8]), int(args[9])
        assert grid == -(-(end - begin) // _compile.BLOCK)  # one thread per row
        assert args[6].dtype.name == index_dtype  # rows map in the CSR index type
        assert args[5] is x  # updated in place
    residuals = [args for name, _, args in raw if name == "sor_residual_norm2"]
    assert [int(args[8]) for args in residuals] == [1, 0, 1]  # permuted flag
    assert all(int(args[7]) == n for args in residuals)


@pytest.mark.parametrize("index_dtype", ("int32", "int64"))
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_launchers_cover_the_block_and_refuse_mismatched_shapes(monkeypatch, dtype,
                                                                      index_dtype):
    # The element-wise kernels cover the n k entries; the dots launch one block per
    # (chunk, column) and sum k columns over the chunks; the right instantiation.
    calls, raw = [], []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(calls, raw, options=_compile.OPTIONS))
    caches = (_compile._module, _compile.get_kernel)
    for cache in caches:
        cache.cache_clear()
    try:
        n, k = block_kernels.CHUNK + 7, 5  # two chunks of rows
        indptr = np.arange(n + 1, dtype=index_dtype)
        indices = np.arange(n, dtype=index_dtype)
        data = np.ones(n, dtype=dtype)
        P, Q = np.ones((n, k), dtype=dtype), np.empty((n, k), dtype=dtype)
        block_kernels.csr_spmm_dot(indptr, indices, data, P, Q, np.empty(k))
        block_kernels.block_cg_update(P.copy(), P.copy(), P, Q, np.arange(k, dtype=np.float64),
                              np.empty(k))
        block_kernels.block_update_p(P, Q, np.ones(k))
        block_kernels.block_dots(P[:0], Q[:0], np.full(k, np.nan))  # n = 0: zeros, nothing launched
        with pytest.raises(ValueError, match="one shape"):
            block_kernels.block_dots(P, np.ones((n, 2), dtype=dtype), np.empty(k))
        with pytest.raises(ValueError, match="coefficients"):
            block_kernels.block_update_p(P, Q, np.ones(k + 1))
        with pytest.raises(TypeError):
            block_kernels.block_update_p(P, np.ones((n, k), dtype=np.float16), np.ones(k))
        with pytest.raises(ValueError, match="C-contiguous"):
            block_kernels.block_dots(P[::2], Q[::2], np.empty(k))
    finally:
        for cache in caches:
            cache.cache_clear()
    for name, grid, block_shape, kinds in calls:
        assert kinds == PARAMS[name], (name, kinds)
        assert block_shape == (_compile.BLOCK,)
    names = [name for name, *_ in calls]
    assert names == ["block_spmm", "block_column_dots", "block_column_sum", "block_cg_update",
                     "block_column_dots", "block_column_sum", "block_update_p"]
    for name, grid, args in raw:
        if name == "block_column_dots":
            assert grid == (2 * k,) and int(args[4]) == block_kernels.CHUNK
        elif name == "block_column_sum":
            assert grid == (1,) and int(args[1]) == 2 and int(args[2]) == k
        else:  # grid-stride over the n k entries
            assert grid == (_compile.grid_stride_blocks(n * k),)
            assert (int(args[-2]), int(args[-1])) == (n, k)
    spmm = next(args for name, _, args in raw if name == "block_spmm")
    assert spmm[0].dtype.name == index_dtype and spmm[2].dtype.name == dtype
    update = next(args for name, _, args in raw if name == "block_cg_update")
    assert update[4].dtype == np.float64 and update[4].tolist() == list(range(k))


def test_block_sources_round_each_product_and_sum_separately():
    # no FMA contraction: a float64 product entry has the CPU loop's bits (module notes)
    result = _compile_or_fail(block_kernels.SOURCE, _compile.OPTIONS + ("--gpu-architecture=compute_80",),
                              block_kernels.name_expressions("float64"), "block-fma")
    spmm = result.lowered_names["block_spmm<double, int>"]
    body = result.ptx.split(f".entry {spmm}")[1].split(".entry")[0]
    assert "mul.rn.f64" in body and "add.rn.f64" in body and "fma" not in body
