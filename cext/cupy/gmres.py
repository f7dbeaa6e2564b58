"""GMRES's passes over its Krylov basis (CuPy RawKernels).

Mirrors :mod:`cext.numba.gmres` and :mod:`cext.reference.gmres`: classical
Gram-Schmidt applied twice as block passes over the row-major basis ``V``
(``(restart + 1, n)``), sums in float64, updates computed in float64 and
rounded once. The coefficients never leave the device: the dots of a pass
are summed per column chunk (one thread block per chunk and group of
``GM_ROWS`` rows, a fixed shuffle tree per row), the chunk sums are added
in chunk order by ``gmres_sum``, and the update kernel reads them from
device memory. No atomics: the same inputs give the same bits.

Per projection: dots, sum, update; dots, sum, the choice of the second
update (zero where it is below rounding: the rule of
:mod:`cext.numba.gmres`), update (with ``||w||^2`` partials); the final
norm and ``h``; the scaling, which reads the norm on the device.
"""

from __future__ import annotations

import numpy as np

from ._compile import (BLOCK, PRELUDE, SUM_PARTIALS, VALUE_TYPES, get_kernel,
                       grid_stride_blocks, value_type)

_ROWS = 8  # rows per thread block in the dots kernel (GM_ROWS below)
_CHUNK = 8192  # columns per thread block in the dots kernel

SOURCE = PRELUDE + r'''
#define GM_ROWS 8

// partials[c * (rows + 1) + i] = sum over the columns k of chunk c of V[i, k] w[k] for
// i < rows, and of w[k]^2 for i = rows; one block per (chunk, row group),
// blockIdx.x = c * ngroups + group.
template <typename T>
__global__ void gmres_dots(const T* __restrict__ V, long long n, int rows,
                           const T* __restrict__ w, long long chunk,
                           double* __restrict__ partials)
{
    const int width = rows + 1;
    const int ngroups = (width + GM_ROWS - 1) / GM_ROWS;
    const long long c = blockIdx.x / ngroups;
    const int row0 = (blockIdx.x % ngroups) * GM_ROWS;
    const long long s = c * chunk;
    const long long e = (s + chunk < n) ? s + chunk : n;
    double acc[GM_ROWS];
#pragma unroll
    for (int r = 0; r < GM_ROWS; ++r)
        acc[r] = 0.0;
    for (long long k = s + threadIdx.x; k < e; k += LS_BLOCK) {
        const double wk = (double)w[k];
#pragma unroll
        for (int r = 0; r < GM_ROWS; ++r) {
            const int i = row0 + r;
            if (i < rows)
                acc[r] += (double)V[(long long)i * n + k] * wk;
            else if (i == rows)
                acc[r] += wk * wk;
        }
    }
    for (int r = 0; r < GM_ROWS; ++r) {
        const double total = ls_block_sum(acc[r]);
        if (threadIdx.x == 0 && row0 + r < width)
            partials[c * width + row0 + r] = total;
        __syncthreads();  // ls_block_sum's shared memory is reused by the next row
    }
}

// out[i] = sum of partials[c * width + i] over the chunks c, in chunk order.
extern "C" __global__ void gmres_sum(const double* __restrict__ partials, long long nchunks,
                                     int width, double* __restrict__ out)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= width)
        return;
    double acc = 0.0;
    for (long long c = 0; c < nchunks; ++c)
        acc += partials[c * width + i];
    out[i] = acc;
}

// coef[i] = second[i] for i < rows, or 0 for all i where the second update is below
// rounding: sum second[i]^2 <= threshold2 * second[rows] (second[rows] = ||w_1||^2).
// Launch as <<<1, LS_BLOCK>>>; a NaN applies the update (and reaches h).
extern "C" __global__ void gmres_select(const double* __restrict__ second, int rows,
                                        double threshold2, double* __restrict__ coef)
{
    __shared__ int apply;
    double acc = 0.0;
    for (int i = threadIdx.x; i < rows; i += LS_BLOCK)
        acc += second[i] * second[i];
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        apply = !(acc <= threshold2 * second[rows]);
    __syncthreads();
    for (int i = threadIdx.x; i < rows; i += LS_BLOCK)
        coef[i] = apply ? second[i] : 0.0;
}

// w[k] -= sum_{i < rows} coef[i] V[i, k] (in double, rounded once);
// partials[block] = the block's sum of the new w[k]^2.
template <typename T>
__global__ void gmres_update(const T* __restrict__ V, long long n, int rows,
                             const double* __restrict__ coef, T* __restrict__ w,
                             double* __restrict__ partials)
{
    double squares = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride) {
        double acc = (double)w[k];
        for (int i = 0; i < rows; ++i)
            acc -= coef[i] * (double)V[(long long)i * n + k];
        const T wk = (T)acc;
        w[k] = wk;
        squares += (double)wk * (double)wk;
    }
    squares = ls_block_sum(squares);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = squares;
}

// h[i] = first[i] + second[i] (i < rows); h[rows] = ||w|| out; h[rows + 1] = ||w|| in.
// Launch as <<<1, LS_BLOCK>>>. sqrt of a NaN sum is NaN.
extern "C" __global__ void gmres_finish(const double* __restrict__ first,
                                        const double* __restrict__ second, int rows,
                                        const double* __restrict__ squares,
                                        double* __restrict__ h)
{
    for (int i = threadIdx.x; i < rows; i += LS_BLOCK)
        h[i] = first[i] + second[i];
    if (threadIdx.x == 0) {
        h[rows] = sqrt(squares[0]);
        h[rows + 1] = sqrt(first[rows]);
    }
}

// w *= 1 / h[index] when h[index] is positive and finite (read on the device).
template <typename T>
__global__ void gmres_scale(T* __restrict__ w, long long n, const double* __restrict__ h,
                            int index)
{
    const double norm = h[index];
    if (!(norm > 0.0 && norm <= 1.7976931348623157e308))
        return;
    const double scale = 1.0 / norm;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride)
        w[k] = (T)((double)w[k] * scale);
}

// out[p] += sum_{i < k} y[i] V[i, p] (in double, rounded once).
template <typename T>
__global__ void gmres_combine(const T* __restrict__ V, long long n, int k,
                              const double* __restrict__ y, T* __restrict__ out)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < n; p += stride) {
        double acc = (double)out[p];
        for (int i = 0; i < k; ++i)
            acc += y[i] * (double)V[(long long)i * n + p];
        out[p] = (T)acc;
    }
}
'''

_TEMPLATES = ("gmres_dots", "gmres_update", "gmres_scale", "gmres_combine")


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    real = VALUE_TYPES[dtype]
    return (tuple(f"{name}<{real}>" for name in _TEMPLATES)
            + ("gmres_sum", "gmres_select", "gmres_finish", SUM_PARTIALS))


def _kernel(name: str, dtype: str):
    expressions = name_expressions(dtype)
    if name in _TEMPLATES:
        name = f"{name}<{VALUE_TYPES[dtype]}>"
    return get_kernel(SOURCE, expressions, name)


def _device_float64(array):
    """``array`` as a device float64 array (the coefficients may come from the host)."""
    import cupy

    return cupy.asarray(array, dtype=cupy.float64)


def _pass(V, n: int, rows: int, w, coef_out, dtype: str, partials) -> None:
    """Dots of ``w`` with rows ``0..rows-1`` (and ``||w||^2``) into ``coef_out``."""
    width = rows + 1
    nchunks = (n + _CHUNK - 1) // _CHUNK
    ngroups = (width + _ROWS - 1) // _ROWS
    _kernel("gmres_dots", dtype)((nchunks * ngroups,), (BLOCK,),
                                 (V, np.int64(n), np.int32(rows), w, np.int64(_CHUNK),
                                  partials))
    _kernel("gmres_sum", dtype)(((width + BLOCK - 1) // BLOCK,), (BLOCK,),
                                (partials, np.int64(nchunks), np.int32(width), coef_out))


def gmres_project(V, j, w, h, tau) -> None:
    """Orthogonalise ``w`` against rows ``0..j`` of ``V`` (CGS2) and scale it to unit norm.

    The second update is applied when it exceeds ``tau u ||w_1||``.
    ``h`` (device float64, at least ``j + 3`` entries) receives the
    coefficients ``h[0..j]``, ``||w||`` after orthogonalisation ``h[j + 1]``
    and on entry ``h[j + 2]``; see :func:`cext.numba.gmres.gmres_project`.
    """
    import cupy

    dtype = value_type(V, w)
    n = int(w.shape[0])
    rows = int(j) + 1
    if n == 0:
        h[:rows + 2] = 0.0
        return
    width = rows + 1
    nchunks = (n + _CHUNK - 1) // _CHUNK
    partials = cupy.empty(nchunks * width, dtype=cupy.float64)
    first = cupy.empty(width, dtype=cupy.float64)
    second = cupy.empty(width, dtype=cupy.float64)
    applied = cupy.empty(width, dtype=cupy.float64)
    grid = grid_stride_blocks(n)
    update_partials = cupy.empty(grid, dtype=cupy.float64)
    squares = cupy.empty(1, dtype=cupy.float64)
    update = _kernel("gmres_update", dtype)
    _pass(V, n, rows, w, first, dtype, partials)
    update((grid,), (BLOCK,), (V, np.int64(n), np.int32(rows), first, w, update_partials))
    _pass(V, n, rows, w, second, dtype, partials)
    unit = 2.0**-53 if dtype == "float64" else 2.0**-24
    _kernel("gmres_select", dtype)((1,), (BLOCK,), (second, np.int32(rows),
                                                    np.float64((float(tau) * unit) ** 2), applied))
    update((grid,), (BLOCK,), (V, np.int64(n), np.int32(rows), applied, w, update_partials))
    _kernel(SUM_PARTIALS, dtype)((1,), (BLOCK,),
                                 (update_partials, np.int64(grid), squares))
    _kernel("gmres_finish", dtype)((1,), (BLOCK,), (first, applied, np.int32(rows), squares, h))
    _kernel("gmres_scale", dtype)((grid,), (BLOCK,), (w, np.int64(n), h, np.int32(rows)))


def gmres_combine(V, y, k, out) -> None:
    """``out += sum_{i < k} y[i] V[i]`` (double sums, rounded once)."""
    dtype = value_type(V, out)
    n = int(out.shape[0])
    if n == 0 or int(k) == 0:
        return
    y = _device_float64(y)
    _kernel("gmres_combine", dtype)((grid_stride_blocks(n),), (BLOCK,),
                                    (V, np.int64(n), np.int32(k), y, out))
