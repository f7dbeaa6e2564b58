"""The vector passes of one MINRES iteration, fused (CuPy RawKernels).

Mirrors :mod:`cext.numba.minres` and :mod:`cext.reference.minres` (see
there for the passes and their scalars); the product with ``A`` is
cuSPARSE's (the solver calls ``minres_lanczos`` after it), so the fused
CSR/DIA Lanczos kernels fall back to the reference on CuPy. Like the Numba
twins, updates are computed in float64 and rounded once to the array dtype,
dots accumulate in float64, and every kernel returns the arrays it wrote
and then its dot, which is finished on the device in a fixed order
(deterministic, no atomics).
"""

from __future__ import annotations

import numpy as np

from ._compile import (BLOCK, PRELUDE, SUM_PARTIALS, VALUE_TYPES, finish_sum, get_kernel,
                       grid_stride_blocks, value_type)

SOURCE = PRELUDE + r'''
#define LS_GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)gridDim.x * blockDim.x)

// r1 = sq q + sy y + sr r1; partials[block] = sum over the block of y_i r1_i (new r1).
template <typename T>
__global__ void minres_lanczos(const T* __restrict__ q, const T* __restrict__ y,
                               T* __restrict__ r1, double sq, double sy, double sr, long long n,
                               double* __restrict__ partials)
{
    double acc = 0.0;
    LS_GRID_STRIDE(i, n) {
        const T value = (T)(sq * (double)q[i] + sy * (double)y[i] + sr * (double)r1[i]);
        r1[i] = value;
        acc += (double)y[i] * (double)value;
    }
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = acc;
}

// p -= c r2; partials[block] = sum over the block of p_i^2 (new p).
template <typename T>
__global__ void minres_orthogonalize(T* __restrict__ p, const T* __restrict__ r2, double c,
                                     long long n, double* __restrict__ partials)
{
    double acc = 0.0;
    LS_GRID_STRIDE(i, n) {
        const T value = (T)((double)p[i] - c * (double)r2[i]);
        p[i] = value;
        acc += (double)value * (double)value;
    }
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = acc;
}

// w1 = sv y + s1 w1 + s2 w2; x += phi w1
template <typename T>
__global__ void minres_update(T* __restrict__ x, T* __restrict__ w1, const T* __restrict__ w2,
                              const T* __restrict__ y, double sv, double s1, double s2,
                              double phi, long long n)
{
    LS_GRID_STRIDE(i, n) {
        const T w = (T)(sv * (double)y[i] + s1 * (double)w1[i] + s2 * (double)w2[i]);
        w1[i] = w;
        x[i] = (T)((double)x[i] + phi * (double)w);
    }
}

// minres_update, and r = sr r + sp p; partials[block] = sum over the block of r_i^2 (new r).
template <typename T>
__global__ void minres_update_residual(T* __restrict__ x, T* __restrict__ w1,
                                       const T* __restrict__ w2, const T* __restrict__ y,
                                       double sv, double s1, double s2, double phi,
                                       T* __restrict__ r, const T* __restrict__ p, double sr,
                                       double sp, long long n, double* __restrict__ partials)
{
    double acc = 0.0;
    LS_GRID_STRIDE(i, n) {
        const T w = (T)(sv * (double)y[i] + s1 * (double)w1[i] + s2 * (double)w2[i]);
        w1[i] = w;
        x[i] = (T)((double)x[i] + phi * (double)w);
        const T value = (T)(sr * (double)r[i] + sp * (double)p[i]);
        r[i] = value;
        acc += (double)value * (double)value;
    }
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = acc;
}
'''

_KERNELS = ("minres_lanczos", "minres_orthogonalize", "minres_update", "minres_update_residual")


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    real = VALUE_TYPES[dtype]
    return tuple(f"{name}<{real}>" for name in _KERNELS) + (SUM_PARTIALS,)


def _launch(name: str, dtype: str, grid: int, args) -> None:
    kernel = get_kernel(SOURCE, name_expressions(dtype), f"{name}<{VALUE_TYPES[dtype]}>")
    kernel((grid,), (BLOCK,), args)


def _reduce(name: str, dtype: str, n: int, args) -> float:
    import cupy

    grid = grid_stride_blocks(n)
    partials = cupy.empty(grid, dtype=cupy.float64)
    _launch(name, dtype, grid, args + (partials,))
    return finish_sum(SOURCE, name_expressions(dtype), partials)


def minres_lanczos(q, y, r1, sq, sy, sr):
    """``r1 = sq q + sy y + sr r1`` (``q = A @ y``); return ``(r1, y . r1)``."""
    dtype = value_type(q, y, r1)
    n = r1.shape[0]
    if n == 0:
        return r1, 0.0
    return r1, _reduce("minres_lanczos", dtype, n, (q, y, r1, np.float64(sq), np.float64(sy),
                                                    np.float64(sr), np.int64(n)))


def minres_orthogonalize(p, r2, c):
    """``p -= c r2``; return ``(p, p . p)``."""
    dtype = value_type(p, r2)
    n = p.shape[0]
    if n == 0:
        return p, 0.0
    return p, _reduce("minres_orthogonalize", dtype, n, (p, r2, np.float64(c), np.int64(n)))


def minres_update(x, w1, w2, y, sv, s1, s2, phi):
    """``w1 = sv y + s1 w1 + s2 w2``; ``x += phi w1``; return ``(x, w1)``."""
    dtype = value_type(x, w1, w2, y)
    n = x.shape[0]
    if n:
        _launch("minres_update", dtype, grid_stride_blocks(n),
                (x, w1, w2, y, np.float64(sv), np.float64(s1), np.float64(s2), np.float64(phi),
                 np.int64(n)))
    return x, w1


def minres_update_residual(x, w1, w2, y, sv, s1, s2, phi, r, p, sr, sp):
    """:func:`minres_update` and ``r = sr r + sp p``; return ``(x, w1, r, r . r)``."""
    dtype = value_type(x, w1, w2, y, r, p)
    n = x.shape[0]
    if n == 0:
        return x, w1, r, 0.0
    rr = _reduce("minres_update_residual", dtype, n,
                 (x, w1, w2, y, np.float64(sv), np.float64(s1), np.float64(s2), np.float64(phi),
                  r, p, np.float64(sr), np.float64(sp), np.int64(n)))
    return x, w1, r, rr
