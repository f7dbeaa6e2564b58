"""Fused vector updates of the CG iteration (CuPy RawKernels).

Each kernel makes one pass over memory where CuPy's array expressions would
make two or three (and launch as many kernels). Mirrors
:mod:`cext.numba.blas1` and :mod:`cext.reference.blas1`.
Like the Numba twins, the updates are computed in float64 and rounded once
to the array dtype, and dots accumulate in float64.
"""

from __future__ import annotations

import numpy as np

from ._compile import (BLOCK, PRELUDE, SUM_PARTIALS, VALUE_TYPES, finish_sum, get_kernel,
                       grid_stride_blocks, value_type)

SOURCE = PRELUDE + r'''
template <typename T>
__global__ void dot_partial(const T* __restrict__ a, const T* __restrict__ b, long long n,
                            double* __restrict__ partials)
{
    double acc = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        acc += (double)a[i] * (double)b[i];
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = acc;
}

// x += alpha p; r -= alpha q; partials[block] = sum over the block of r_i^2 (new r).
template <typename T>
__global__ void cg_update_xr(T* __restrict__ x, T* __restrict__ r, const T* __restrict__ p,
                             const T* __restrict__ q, double alpha, long long n,
                             double* __restrict__ partials)
{
    double acc = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        x[i] = (T)((double)x[i] + alpha * (double)p[i]);
        const T ri = (T)((double)r[i] - alpha * (double)q[i]);
        r[i] = ri;
        acc += (double)ri * (double)ri;
    }
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = acc;
}

// p = z + beta p
template <typename T>
__global__ void cg_update_p(T* __restrict__ p, const T* __restrict__ z, double beta, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        p[i] = (T)((double)z[i] + beta * (double)p[i]);
}
'''

_KERNELS = ("dot_partial", "cg_update_xr", "cg_update_p")


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    real = VALUE_TYPES[dtype]
    return tuple(f"{name}<{real}>" for name in _KERNELS) + (SUM_PARTIALS,)


def _launch(name: str, dtype: str, grid: int, args) -> None:
    expressions = name_expressions(dtype)
    kernel = get_kernel(SOURCE, expressions, f"{name}<{VALUE_TYPES[dtype]}>")
    kernel((grid,), (BLOCK,), args)


def _reduce(name: str, dtype: str, n: int, args) -> float:
    import cupy

    grid = grid_stride_blocks(n)
    partials = cupy.empty(grid, dtype=cupy.float64)
    _launch(name, dtype, grid, args + (partials,))
    return finish_sum(SOURCE, name_expressions(dtype), partials)


def dot(a, b) -> float:
    """Return ``a . b`` (accumulated in float64)."""
    dtype = value_type(a, b)
    n = a.shape[0]
    if n == 0:
        return 0.0
    return _reduce("dot_partial", dtype, n, (a, b, np.int64(n)))


def cg_update_xr(x, r, p, q, alpha) -> float:
    """``x += alpha p``; ``r -= alpha q``; return the new ``r . r``."""
    dtype = value_type(x, r, p, q)
    n = x.shape[0]
    if n == 0:
        return 0.0
    return _reduce("cg_update_xr", dtype, n, (x, r, p, q, np.float64(alpha), np.int64(n)))


def cg_update_p(p, z, beta) -> None:
    """``p = z + beta p`` in place."""
    dtype = value_type(p, z)
    n = p.shape[0]
    if n == 0:
        return
    _launch("cg_update_p", dtype, grid_stride_blocks(n), (p, z, np.float64(beta), np.int64(n)))
