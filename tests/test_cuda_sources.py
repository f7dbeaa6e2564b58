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

import re
import sys
import types

import numpy as np
import pytest

from cext.cupy import _compile, blas1, dia, spmv

from . import nvrtc

if nvrtc.find_library() is None:
    pytest.skip("libnvrtc.so.12 not found (pip install nvidia-cuda-nvrtc-cu12)",
                allow_module_level=True)

MODULES = {"spmv": spmv, "dia": dia, "blas1": blas1}
DTYPES = ("float32", "float64")
# compute_70: oldest arch CuPy 13 wheels target with __shfl_*_sync; 80 and 90: A100, H100.
ARCHS = ("compute_70", "compute_80", "compute_90")

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
}


def _entries(ptx: str) -> dict[str, list[str]]:
    return {m.group(1): re.findall(r"\.param\s+\.(\w+)", m.group(2))
            for m in re.finditer(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S)}


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
    entries = _entries(result.ptx)
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


@pytest.mark.parametrize("std", ("c++11", "c++14", "c++17"))
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


class _FakeKernel:
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __call__(self, grid, block, args):
        kinds = []
        for arg in args:
            if isinstance(arg, np.ndarray):
                kinds.append("u64")
            elif isinstance(arg, (np.int64, np.float64, np.int32)):
                kinds.append({np.int64: "u64", np.float64: "f64", np.int32: "u32"}[type(arg)])
            else:
                kinds.append(type(arg).__name__)  # Python int/float/None: never right
        self.calls.append((self.name, grid, block, kinds))
        if self.name == "sum_partials":
            args[2][0] = 0.0


def _fake_cupy(calls):
    fake = types.ModuleType("cupy")

    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert options == _compile.OPTIONS
            self.name_expressions = name_expressions

        def get_function(self, name):
            assert name in self.name_expressions
            return _FakeKernel(name.split("<")[0], calls)

    class Device:
        id = 0

        def __init__(self, device_id=0):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(Device=Device)
    fake.empty, fake.asarray, fake.float64 = np.empty, np.asarray, np.float64
    return fake


@pytest.mark.parametrize("dtype", DTYPES)
def test_launchers_pass_arguments_matching_the_ptx(monkeypatch, dtype):
    # Without a GPU: run each Python launcher against a stand-in for cupy that
    # records the argument kinds, and compare them with the PTX parameters
    # (checked above). Catches a Python int where the kernel wants an int32, etc.
    calls = []
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(calls))
    caches = (_compile._module, _compile.get_kernel, dia._device_offsets)
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
    finally:
        for cache in caches:
            cache.cache_clear()
    launched = {name for name, *_ in calls}
    assert launched == set(PARAMS)
    for name, grid, block, kinds in calls:
        assert kinds == PARAMS[name], (name, kinds)
        assert block == (_compile.BLOCK,) and len(grid) == 1 and grid[0] >= 1
