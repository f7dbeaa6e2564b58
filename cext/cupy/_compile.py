"""Shared pieces of the CuPy kernels: the CUDA prelude, compilation, launch helpers.

CuPy is imported inside functions only, so this module (and every kernel
module's ``SOURCE`` string) can be imported and compile-checked with NVRTC
on a machine without CuPy or a GPU (``tests/cext/test_cuda_sources.py``).

Every kernel source is one C++ template over the value type ``T`` (and the
index type ``I`` for CSR). The runtime compiles, per value dtype, exactly the
instantiations that the module's ``name_expressions(dtype)`` lists, through
``cupy.RawModule(code=SOURCE, options=OPTIONS, name_expressions=...)``; the
source test compiles the same strings with the same options.

Reductions are deterministic: each block reduces its threads' float64
contributions by a fixed shuffle tree and writes one partial sum; a
one-block kernel (``sum_partials``) adds the partials in a fixed order. No
atomics, so the same inputs on the same device give the same bits.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# No --use_fast_math: it would flush NaN/Inf checks and use approximate
# division; the PCG driver relies on NaN reaching the returned dot product.
# No -std flag either: the sources are plain C++11, and CuPy may add its own.
OPTIONS: tuple[str, ...] = ()

BLOCK = 256  # threads per block; the block reduction below assumes exactly this
MAX_BLOCKS = 4096  # cap for grid-stride kernels (also bounds the partial sums)

VALUE_TYPES = {"float32": "float", "float64": "double"}
INDEX_TYPES = {"int32": "int", "int64": "long long"}

PRELUDE = r'''
#define LS_BLOCK 256

// Sum over a warp by a fixed shuffle tree; the total lands in lane 0.
__device__ __forceinline__ double ls_warp_sum(double v)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over a block of LS_BLOCK threads; the total is valid in thread 0.
// Every thread of the block must call it (it synchronises).
__device__ __forceinline__ double ls_block_sum(double v)
{
    __shared__ double warp_totals[LS_BLOCK / 32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    v = ls_warp_sum(v);
    if (lane == 0)
        warp_totals[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = (lane < LS_BLOCK / 32) ? warp_totals[lane] : 0.0;
        v = ls_warp_sum(v);
    }
    return v;
}

// result[0] = sum of partials[0:m], in a fixed order; launch as <<<1, LS_BLOCK>>>.
extern "C" __global__ void sum_partials(const double* __restrict__ partials,
                                        long long m, double* __restrict__ result)
{
    double acc = 0.0;
    for (long long k = threadIdx.x; k < m; k += LS_BLOCK)
        acc += partials[k];
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        result[0] = acc;
}
'''

SUM_PARTIALS = "sum_partials"


def value_type(*arrays) -> str:
    """Dtype name shared by ``arrays`` (``"float32"`` or ``"float64"``).

    The raw kernels reinterpret memory, so a dtype mismatch or a strided
    view would silently read the wrong numbers instead of failing: these
    two checks are the only ones kept at the kernel level.

    Raises
    ------
    TypeError
        Dtypes differ or are not float32/float64.
    ValueError
        An array is not C-contiguous.
    """
    name = arrays[0].dtype.name
    if name not in VALUE_TYPES or any(a.dtype.name != name for a in arrays[1:]):
        raise TypeError("CuPy kernels need float32 or float64 arrays of one dtype, got "
                        + ", ".join(a.dtype.name for a in arrays))
    if not all(a.flags.c_contiguous for a in arrays):
        raise ValueError("CuPy kernels need C-contiguous arrays; pass cupy.ascontiguousarray(a)")
    return name


def grid_stride_blocks(n: int) -> int:
    """Blocks for a grid-stride loop over ``n`` items (fixed for a given ``n``)."""
    return max(1, min(MAX_BLOCKS, (n + BLOCK - 1) // BLOCK))


@lru_cache(maxsize=None)
def _module(source: str, name_expressions: tuple[str, ...]):
    import cupy  # lazy: importing cext.cupy must not import cupy

    # RawModule compiles on first use and caches per device (and on disk).
    return cupy.RawModule(code=source, options=OPTIONS, name_expressions=name_expressions)


@lru_cache(maxsize=None)
def get_kernel(source: str, name_expressions: tuple[str, ...], name: str):
    """The ``cupy.RawKernel`` for name expression ``name`` of ``source``."""
    if name not in name_expressions:
        raise KeyError(f"{name!r} is not among the compiled instantiations {name_expressions}")
    return _module(source, name_expressions).get_function(name)


def finish_sum(source: str, name_expressions: tuple[str, ...], partials) -> float:
    """Sum the per-block partials on the device in a fixed order; return a Python float."""
    import cupy

    result = cupy.empty(1, dtype=cupy.float64)
    kernel = get_kernel(source, name_expressions, SUM_PARTIALS)
    kernel((1,), (BLOCK,), (partials, np.int64(partials.shape[0]), result))
    return float(result[0])  # one device-to-host copy (synchronises)
