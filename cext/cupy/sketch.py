"""CountSketch of a dense matrix on the GPU (CuPy RawKernel).

Mirrors ``countsketch_dense`` of :mod:`cext.numba.sketch` and
:mod:`cext.reference.sketch`: ``out += S' A`` where row ``i`` of the dense,
row-major ``A`` (m x n) is added, times ``signs[i]``, to row ``buckets[i]``
of ``out`` (s x n, float64). One thread per column: it walks the rows in
order, so every run adds in the same order (no atomics, the same bits each
time) and consecutive threads read consecutive addresses of a row. The
Gaussian and row sketches need no kernel of their own (a GEMM and a
gather); the randomized Kaczmarz row steps are sequential by nature and run
on the CPU kernel or the reference.
"""

from __future__ import annotations

import numpy as np

from ._compile import BLOCK, PRELUDE, VALUE_TYPES, get_kernel, grid_stride_blocks

SOURCE = PRELUDE + r'''
// out[buckets[i] * n + j] += signs[i] * A[i * n + j], rows i in order, one thread per column j.
template <typename T>
__global__ void countsketch_dense(const T* __restrict__ A, long long m, long long n,
                                  const long long* __restrict__ buckets,
                                  const double* __restrict__ signs, double* __restrict__ out)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += stride) {
        for (long long i = 0; i < m; ++i)
            out[buckets[i] * n + j] += signs[i] * (double)A[i * n + j];
    }
}
'''


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype``."""
    return (f"countsketch_dense<{VALUE_TYPES[dtype]}>",)


def countsketch_dense(A, buckets, signs, out) -> None:
    """``out += S' A`` for a dense C-contiguous CuPy ``A`` (float32/float64); ``out`` float64."""
    import cupy

    dtype = A.dtype.name
    if dtype not in VALUE_TYPES:
        raise TypeError(f"A must be float32 or float64, got {dtype}")
    if not A.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("A and out must be C-contiguous; pass cupy.ascontiguousarray(A)")
    if out.dtype.name != "float64":
        raise TypeError(f"out must be float64, got {out.dtype.name}")
    # shapes are checked here because the kernel indexes raw pointers: a
    # mismatch would read or write out of bounds instead of raising
    if A.ndim != 2 or out.ndim != 2 or out.shape[1] != A.shape[1]:
        raise ValueError(f"A (m, n) and out (s, n) must be 2-D with the same n, got A "
                         f"{A.shape} and out {out.shape}")
    m, n = A.shape
    buckets = cupy.ascontiguousarray(cupy.asarray(buckets), dtype=cupy.int64)
    signs = cupy.ascontiguousarray(cupy.asarray(signs), dtype=cupy.float64)
    if buckets.shape != (m,) or signs.shape != (m,):
        raise ValueError(f"buckets and signs need one entry per row of A ({m}), got "
                         f"{buckets.shape} and {signs.shape}")
    if m == 0 or n == 0:
        return
    kernel = get_kernel(SOURCE, name_expressions(dtype), name_expressions(dtype)[0])
    kernel((grid_stride_blocks(n),), (BLOCK,),
           (A, np.int64(m), np.int64(n), buckets, signs, out))
