"""Fused passes of the BiCGStab iteration (CuPy RawKernels).

The passes of :mod:`cext.numba.bicgstab`, one kernel launch each where
CuPy's array expressions would launch two or three and read the vectors
again for every dot product. Mirrors :mod:`cext.numba.bicgstab` and
:mod:`cext.reference.bicgstab`; the conventions are :mod:`cext.cupy.spmv`'s
(``lanes`` threads per CSR row, float64 row sums) and
:mod:`cext.cupy.dia`'s (row-aligned DIA, offsets as a small device array).

Updates are computed in float64 and rounded once to the array dtype; dots
accumulate in float64, per block by the fixed shuffle tree of the prelude,
then over the blocks by a one-block sum in a fixed order (no atomics: the
same inputs give the same bits). Kernels with two dots write both per-block
partials into one ``(2, blocks)`` buffer and finish them in one launch
(``sum_partials_pair``), read back in one copy.

``s_hat`` may be ``r`` in ``bicgstab_update_xr`` (no preconditioner), and
``s`` is ``r`` in ``bicgstab_update_xr_scaled``, so those pointers are not
declared ``__restrict__``: each thread reads ``s_hat[i]`` before it writes
``r[i]``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._compile import (BLOCK, INDEX_TYPES, PRELUDE, VALUE_TYPES, get_kernel, grid_stride_blocks,
                       value_type)
from .spmv import _index_type, _lanes

SOURCE = PRELUDE + r'''
// Every thread of the block calls it; the two totals land in thread 0.
// The barrier between the two sums keeps the second from overwriting the
// warp totals that warp 0 is still reading for the first.
__device__ __forceinline__ void ls_block_sum_pair(double& a, double& b)
{
    a = ls_block_sum(a);
    __syncthreads();
    b = ls_block_sum(b);
}

// result[0] = sum of partials[0:m], result[1] = sum of partials[m:2m], each in a
// fixed order; launch as <<<2, LS_BLOCK>>> (block k finishes sum k).
extern "C" __global__ void sum_partials_pair(const double* __restrict__ partials,
                                             long long m, double* __restrict__ result)
{
    const double* part = partials + (long long)blockIdx.x * m;
    double acc = 0.0;
    for (long long k = threadIdx.x; k < m; k += LS_BLOCK)
        acc += part[k];
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        result[blockIdx.x] = acc;
}

// q = A p for CSR with `lanes` threads per row (a power of two <= 32);
// partials[block] = block's part of w . q, partials[nblocks + block] of q . q.
// Launch with ceil(n * lanes / LS_BLOCK) blocks; w may be p.
template <typename T, typename I>
__global__ void bicgstab_csr_spmv_dots(const I* __restrict__ indptr,
                                       const I* __restrict__ indices,
                                       const T* __restrict__ data, const T* p,
                                       T* __restrict__ q, const T* w, long long n, int lanes,
                                       double* __restrict__ partials)
{
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long row = thread / lanes;
    const int lane = (int)(threadIdx.x & (lanes - 1));
    double acc = 0.0;
    if (row < n) {
        const long long stop = (long long)indptr[row + 1];
        for (long long jj = (long long)indptr[row] + lane; jj < stop; jj += lanes)
            acc += (double)data[jj] * (double)p[indices[jj]];
    }
    for (int offset = lanes >> 1; offset > 0; offset >>= 1)
        acc += __shfl_down_sync(0xffffffffu, acc, offset, lanes);
    double wq = 0.0, qq = 0.0;
    if (row < n && lane == 0) {
        const T qi = (T)acc;
        q[row] = qi;
        wq = (double)w[row] * (double)qi;
        qq = (double)qi * (double)qi;
    }
    ls_block_sum_pair(wq, qq);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = wq;
        partials[gridDim.x + blockIdx.x] = qq;
    }
}

// q = A p for row-aligned DIA (offsets, values), grid-stride over rows;
// partials as bicgstab_csr_spmv_dots.
template <typename T>
__global__ void bicgstab_dia_spmv_dots(const long long* __restrict__ offsets, int ndiag,
                                       const T* __restrict__ values, const T* p,
                                       T* __restrict__ q, const T* w, long long n,
                                       double* __restrict__ partials)
{
    double wq = 0.0, qq = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        double acc = 0.0;
        for (int d = 0; d < ndiag; ++d) {
            const long long j = i + offsets[d];
            if (j >= 0 && j < n)
                acc += (double)values[(long long)d * n + i] * (double)p[j];
        }
        const T qi = (T)acc;
        q[i] = qi;
        wq += (double)w[i] * (double)qi;
        qq += (double)qi * (double)qi;
    }
    ls_block_sum_pair(wq, qq);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = wq;
        partials[gridDim.x + blockIdx.x] = qq;
    }
}

// p = r + beta (p - omega v)
template <typename T>
__global__ void bicgstab_update_p(T* __restrict__ p, const T* __restrict__ r,
                                  const T* __restrict__ v, double beta, double omega,
                                  long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        p[i] = (T)((double)r[i] + beta * ((double)p[i] - omega * (double)v[i]));
}

// r -= alpha v (r becomes s); partials[block] = block's part of s . s
template <typename T>
__global__ void bicgstab_update_s(T* __restrict__ r, const T* __restrict__ v, double alpha,
                                  long long n, double* __restrict__ partials)
{
    double acc = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const T si = (T)((double)r[i] - alpha * (double)v[i]);
        r[i] = si;
        acc += (double)si * (double)si;
    }
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = acc;
}

// x += alpha p_hat + omega s_hat; r -= omega t (r holds s; s_hat may be r);
// partials[block] = block's part of r . r, partials[nblocks + block] of rhat . r
template <typename T>
__global__ void bicgstab_update_xr(T* __restrict__ x, T* r, const T* __restrict__ p_hat,
                                   const T* s_hat, const T* __restrict__ t,
                                   const T* __restrict__ rhat, double alpha, double omega,
                                   long long n, double* __restrict__ partials)
{
    double rr = 0.0, rhat_r = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double si_hat = (double)s_hat[i];
        x[i] = (T)((double)x[i] + (alpha * (double)p_hat[i] + omega * si_hat));
        const T ri = (T)((double)r[i] - omega * (double)t[i]);
        r[i] = ri;
        rr += (double)ri * (double)ri;
        rhat_r += (double)rhat[i] * (double)ri;
    }
    ls_block_sum_pair(rr, rhat_r);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = rr;
        partials[gridDim.x + blockIdx.x] = rhat_r;
    }
}

// x += scale (alpha p + omega s); r -= omega t (r holds s; s may be r): the Jacobi
// step with M = diag(scale) folded into the matrix; partials as bicgstab_update_xr
template <typename T>
__global__ void bicgstab_update_xr_scaled(T* __restrict__ x, T* r, const T* __restrict__ p,
                                          const T* s, const T* __restrict__ t,
                                          const T* __restrict__ rhat, double alpha,
                                          double omega, const T* __restrict__ scale,
                                          long long n, double* __restrict__ partials)
{
    double rr = 0.0, rhat_r = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double si = (double)s[i];
        x[i] = (T)((double)x[i] + (double)scale[i] * (alpha * (double)p[i] + omega * si));
        const T ri = (T)((double)r[i] - omega * (double)t[i]);
        r[i] = ri;
        rr += (double)ri * (double)ri;
        rhat_r += (double)rhat[i] * (double)ri;
    }
    ls_block_sum_pair(rr, rhat_r);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = rr;
        partials[gridDim.x + blockIdx.x] = rhat_r;
    }
}
'''

SUM_PARTIALS_PAIR = "sum_partials_pair"
_VALUE_KERNELS = ("bicgstab_dia_spmv_dots", "bicgstab_update_p", "bicgstab_update_s",
                  "bicgstab_update_xr", "bicgstab_update_xr_scaled")


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    real = VALUE_TYPES[dtype]
    csr = tuple(f"bicgstab_csr_spmv_dots<{real}, {index}>" for index in INDEX_TYPES.values())
    return csr + tuple(f"{name}<{real}>" for name in _VALUE_KERNELS) + (
        "sum_partials", SUM_PARTIALS_PAIR)


def _kernel(dtype: str, expression: str):
    return get_kernel(SOURCE, name_expressions(dtype), expression)


def _finish_one(dtype: str, partials) -> float:
    import cupy

    result = cupy.empty(1, dtype=cupy.float64)
    _kernel(dtype, "sum_partials")((1,), (BLOCK,),
                                   (partials, np.int64(partials.shape[0]), result))
    return float(result[0])  # one device-to-host copy (synchronises)


def _finish_pair(dtype: str, partials, blocks: int) -> tuple[float, float]:
    import cupy

    result = cupy.empty(2, dtype=cupy.float64)
    _kernel(dtype, SUM_PARTIALS_PAIR)((2,), (BLOCK,), (partials, np.int64(blocks), result))
    first, second = cupy.asnumpy(result).tolist()  # one device-to-host copy for both
    return first, second


def bicgstab_csr_spmv_dots(indptr, indices, data, p, q, w):
    """``q = A @ p`` for CSR ``A``; return ``(w . q, q . q)`` from the same pass."""
    import cupy

    dtype = value_type(data, p, q, w)
    index = _index_type(indptr, indices)
    n = q.shape[0]
    if n == 0:
        return 0.0, 0.0
    lanes = _lanes(data.shape[0], n)
    grid = (n * lanes + BLOCK - 1) // BLOCK
    partials = cupy.empty(2 * grid, dtype=cupy.float64)
    kernel = _kernel(dtype, f"bicgstab_csr_spmv_dots<{VALUE_TYPES[dtype]}, {INDEX_TYPES[index]}>")
    kernel((grid,), (BLOCK,), (indptr, indices, data, p, q, w, np.int64(n), np.int32(lanes),
                               partials))
    return _finish_pair(dtype, partials, grid)


@lru_cache(maxsize=64)
def _device_offsets(offsets: tuple[int, ...], device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.asarray(np.asarray(offsets, dtype=np.int64))


def bicgstab_dia_spmv_dots(offsets, values, p, q, w):
    """``q = A @ p`` for row-aligned DIA; return ``(w . q, q . q)`` from the same pass."""
    import cupy

    dtype = value_type(values, p, q, w)
    n = q.shape[0]
    offsets = tuple(int(o) for o in offsets)
    if n == 0:
        return 0.0, 0.0
    if not offsets:
        q.fill(0)
        return 0.0, 0.0
    if values.shape != (len(offsets), n):
        raise ValueError(f"values has shape {values.shape}, expected {(len(offsets), n)}")
    grid = grid_stride_blocks(n)
    partials = cupy.empty(2 * grid, dtype=cupy.float64)
    kernel = _kernel(dtype, f"bicgstab_dia_spmv_dots<{VALUE_TYPES[dtype]}>")
    kernel((grid,), (BLOCK,), (_device_offsets(offsets, cupy.cuda.Device().id),
                               np.int32(len(offsets)), values, p, q, w, np.int64(n), partials))
    return _finish_pair(dtype, partials, grid)


def _launch(name: str, dtype: str, n: int, args) -> None:
    _kernel(dtype, f"{name}<{VALUE_TYPES[dtype]}>")((grid_stride_blocks(n),), (BLOCK,), args)


def bicgstab_update_p(p, r, v, beta, omega) -> None:
    """``p = r + beta (p - omega v)`` in place."""
    dtype = value_type(p, r, v)
    n = p.shape[0]
    if n:
        _launch("bicgstab_update_p", dtype, n, (p, r, v, np.float64(beta), np.float64(omega),
                                                np.int64(n)))


def _reduce_one(name: str, dtype: str, n: int, args) -> float:
    import cupy

    grid = grid_stride_blocks(n)
    partials = cupy.empty(grid, dtype=cupy.float64)
    _kernel(dtype, f"{name}<{VALUE_TYPES[dtype]}>")((grid,), (BLOCK,), args + (partials,))
    return _finish_one(dtype, partials)


def bicgstab_update_s(r, v, alpha) -> float:
    """``r -= alpha v`` in place (``r`` becomes ``s``); return ``s . s``."""
    dtype = value_type(r, v)
    n = r.shape[0]
    if n == 0:
        return 0.0
    return _reduce_one("bicgstab_update_s", dtype, n, (r, v, np.float64(alpha), np.int64(n)))


def _reduce_pair(name: str, dtype: str, n: int, args) -> tuple[float, float]:
    import cupy

    grid = grid_stride_blocks(n)
    partials = cupy.empty(2 * grid, dtype=cupy.float64)
    _kernel(dtype, f"{name}<{VALUE_TYPES[dtype]}>")((grid,), (BLOCK,), args + (partials,))
    return _finish_pair(dtype, partials, grid)


def bicgstab_update_xr(x, r, p_hat, s_hat, t, rhat, alpha, omega):
    """``x += alpha p_hat + omega s_hat``; ``r -= omega t``; return ``(r . r, rhat . r)``."""
    dtype = value_type(x, r, p_hat, s_hat, t, rhat)
    n = x.shape[0]
    if n == 0:
        return 0.0, 0.0
    return _reduce_pair("bicgstab_update_xr", dtype, n,
                        (x, r, p_hat, s_hat, t, rhat, np.float64(alpha), np.float64(omega),
                         np.int64(n)))


def bicgstab_update_xr_scaled(x, r, p, s, t, rhat, alpha, omega, scale):
    """``x += scale (alpha p + omega s)``; ``r -= omega t``; return ``(r . r, rhat . r)``."""
    dtype = value_type(x, r, p, s, t, rhat, scale)
    n = x.shape[0]
    if n == 0:
        return 0.0, 0.0
    return _reduce_pair("bicgstab_update_xr_scaled", dtype, n,
                        (x, r, p, s, t, rhat, np.float64(alpha), np.float64(omega), scale,
                         np.int64(n)))
