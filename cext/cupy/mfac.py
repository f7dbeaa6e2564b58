"""Passes over an M-FAC gradient window, accumulated in float64 (CuPy RawKernels).

Mirrors :mod:`cext.numba.mfac` (same names, same signatures) and the
twins in :mod:`cext.reference.mfac`: the window ``G`` (m x d, row-major) is read
in its own dtype and every sum runs in double, because at small damping
the M-FAC solve divides a cancellation by the damping
(:mod:`curvature.mfac.window`).

- ``G v`` per column block: the columns are cut into chunks that never
  straddle a block; one thread block takes one chunk and ``_ROWS`` rows,
  its threads stride over the chunk (coalesced along a row) with one
  double accumulator per row, and a fixed shuffle tree reduces each row
  into ``partials[chunk, row]``. A second kernel adds a block's chunks in
  chunk order: no atomics, the same bits on every run.
- ``alpha v + beta G_b' c_b``: one thread per column, looping over the k
  rows; consecutive threads read consecutive addresses of a row.
- The push (``G[slot] = g`` and the new Gram row) is the ``G v`` kernel
  with ``slot >= 0``: the first row group of each chunk stores ``g`` and
  every block multiplies with ``g`` rounded to the window dtype, reading
  row ``slot`` from ``g`` rather than from memory being written.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._compile import BLOCK, PRELUDE, VALUE_TYPES, get_kernel, grid_stride_blocks

_ROWS = 8  # rows per thread block in the G v kernel (MF_ROWS below)
_CHUNK = 8192  # columns per thread block in the G v kernel

SOURCE = PRELUDE + r'''
#define MF_ROWS 8

// partials[c * k + i] = sum over the columns j of chunk c of G[i, j] w[j],
// for the MF_ROWS rows i of this block's row group; launch one block per
// (chunk, row group), blockIdx.x = c * ngroups + group. w[j] = v[j], or, when
// slot >= 0, w[j] = (T)v[j] stored into G[slot, j] by the blocks of group 0.
template <typename T, typename V>
__global__ void window_gemv_partial(T* __restrict__ G, long long d, int k,
                                    const V* __restrict__ v, int slot,
                                    const long long* __restrict__ chunk_start,
                                    double* __restrict__ partials)
{
    const int ngroups = (k + MF_ROWS - 1) / MF_ROWS;
    const long long c = blockIdx.x / ngroups;
    const int row0 = (blockIdx.x % ngroups) * MF_ROWS;
    const long long s = chunk_start[c];
    const long long e = chunk_start[c + 1];
    double acc[MF_ROWS];
#pragma unroll
    for (int r = 0; r < MF_ROWS; ++r)
        acc[r] = 0.0;
    for (long long j = s + threadIdx.x; j < e; j += LS_BLOCK) {
        double wj;
        if (slot >= 0) {
            const T stored = (T)v[j];
            if (row0 == 0)
                G[(long long)slot * d + j] = stored;
            wj = (double)stored;
        } else {
            wj = (double)v[j];
        }
#pragma unroll
        for (int r = 0; r < MF_ROWS; ++r) {
            const int i = row0 + r;
            if (i < k) {
                const double gij = (i == slot) ? wj : (double)G[(long long)i * d + j];
                acc[r] += gij * wj;
            }
        }
    }
    for (int r = 0; r < MF_ROWS; ++r) {
        const double total = ls_block_sum(acc[r]);
        if (threadIdx.x == 0 && row0 + r < k)
            partials[c * k + row0 + r] = total;
        __syncthreads();  // ls_block_sum's shared memory is reused by the next row
    }
}

// out[b * k + i] = sum of partials[c * k + i] over the chunks c of block b, in order.
extern "C" __global__ void window_gemv_finish(const double* __restrict__ partials, int k,
                                              const long long* __restrict__ block_chunk,
                                              int nblocks, double* __restrict__ out)
{
    const long long total = (long long)nblocks * k;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long b = t / k;
        const long long i = t % k;
        double acc = 0.0;
        for (long long c = block_chunk[b]; c < block_chunk[b + 1]; ++c)
            acc += partials[c * k + i];
        out[t] = acc;
    }
}

// out[j] = alpha v[j] + beta sum_{i < k} coef[b(j) * k + i] G[i, j], in double,
// rounded once; b(j) is the block of column j (block_offsets, nblocks + 1 entries).
template <typename T, typename V, typename O>
__global__ void window_axpy_gemv_t(const T* __restrict__ G, long long d, int k,
                                   const double* __restrict__ coef, const V* __restrict__ v,
                                   double alpha, double beta,
                                   const long long* __restrict__ block_offsets, int nblocks,
                                   O* __restrict__ out)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < d; j += stride) {
        int lo = 0, hi = nblocks - 1;  // last b with block_offsets[b] <= j
        while (lo < hi) {
            const int mid = (lo + hi + 1) / 2;
            if (block_offsets[mid] <= j)
                lo = mid;
            else
                hi = mid - 1;
        }
        const double* __restrict__ cb = coef + (long long)lo * k;
        double acc = 0.0;
        for (int i = 0; i < k; ++i)
            acc += cb[i] * (double)G[(long long)i * d + j];
        out[j] = (O)(alpha * (double)v[j] + beta * acc);
    }
}
'''

_OTHER = {"float32": "float64", "float64": "float32"}


def _promoted(a: str, b: str) -> str:
    return "float64" if "float64" in (a, b) else "float32"


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for window dtype ``dtype`` (any vector dtype)."""
    real = VALUE_TYPES[dtype]
    vectors = (dtype, _OTHER[dtype])
    return (tuple(f"window_gemv_partial<{real}, {VALUE_TYPES[v]}>" for v in vectors)
            + tuple(f"window_axpy_gemv_t<{real}, {VALUE_TYPES[v]}, "
                    f"{VALUE_TYPES[_promoted(dtype, v)]}>" for v in vectors)
            + ("window_gemv_finish",))


def _dtype(array, name: str, allowed=tuple(VALUE_TYPES)) -> str:
    dtype = array.dtype.name
    if dtype not in allowed:
        raise TypeError(f"{name} must be one of {allowed}, got {dtype}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass cupy.ascontiguousarray({name})")
    return dtype


@lru_cache(maxsize=64)
def _tables(block_offsets: tuple[int, ...], device_id: int):
    """Device ``(chunk_start, block_chunk, block_offsets)`` for one layout, cached."""
    import cupy

    starts, block_chunk = [], [0]
    for b in range(len(block_offsets) - 1):
        starts.extend(range(block_offsets[b], block_offsets[b + 1], _CHUNK))
        block_chunk.append(len(starts))
    nchunks = len(starts)
    starts.append(block_offsets[-1])
    with cupy.cuda.Device(device_id):
        return (cupy.asarray(np.asarray(starts, dtype=np.int64)),
                cupy.asarray(np.asarray(block_chunk, dtype=np.int64)),
                cupy.asarray(np.asarray(block_offsets, dtype=np.int64)), nchunks)


def _gemv(G, v, slot: int, block_offsets, out) -> None:
    import cupy

    dtype = _dtype(G, "G")
    vtype = _dtype(v, "v")
    _dtype(out, "out", ("float64",))
    offsets = tuple(int(o) for o in block_offsets)
    k, d = out.shape[1], G.shape[1]
    if k == 0:
        return
    chunk_start, block_chunk, _, nchunks = _tables(offsets, cupy.cuda.Device().id)
    if nchunks == 0:
        out.fill(0)
        return
    expressions = name_expressions(dtype)
    partial = get_kernel(SOURCE, expressions,
                         f"window_gemv_partial<{VALUE_TYPES[dtype]}, {VALUE_TYPES[vtype]}>")
    partials = cupy.empty(nchunks * k, dtype=cupy.float64)
    ngroups = (k + _ROWS - 1) // _ROWS
    partial((nchunks * ngroups,), (BLOCK,), (G, np.int64(d), np.int32(k), v, np.int32(slot),
                                             chunk_start, partials))
    finish = get_kernel(SOURCE, expressions, "window_gemv_finish")
    nblocks = len(offsets) - 1
    finish((grid_stride_blocks(nblocks * k),), (BLOCK,),
           (partials, np.int32(k), block_chunk, np.int32(nblocks), out))


def window_gemv(G, v, block_offsets, out) -> None:
    """``out[b, i] = sum_{j in block b} G[i, j] v[j]`` (double sums), rows ``i < out.shape[1]``."""
    _gemv(G, v, -1, block_offsets, out)


def window_push_gemv(G, slot, g, block_offsets, out) -> None:
    """``G[slot] = g`` (in the window dtype), then ``window_gemv(G, G[slot], ..., out)``."""
    _gemv(G, g, int(slot), block_offsets, out)


def window_axpy_gemv_t(G, coef, v, alpha, beta, block_offsets, out) -> None:
    """``out[j] = alpha v[j] + beta sum_i coef[b(j), i] G[i, j]`` (double), rows ``i < coef.shape[1]``."""
    import cupy

    dtype = _dtype(G, "G")
    vtype = _dtype(v, "v")
    otype = _dtype(out, "out", (_promoted(dtype, vtype),))
    _dtype(coef, "coef", ("float64",))
    offsets = tuple(int(o) for o in block_offsets)
    k, d = coef.shape[1], G.shape[1]
    if d == 0:
        return
    _, _, device_offsets, _ = _tables(offsets, cupy.cuda.Device().id)
    name = (f"window_axpy_gemv_t<{VALUE_TYPES[dtype]}, {VALUE_TYPES[vtype]}, "
            f"{VALUE_TYPES[otype]}>")
    kernel = get_kernel(SOURCE, name_expressions(dtype), name)
    kernel((grid_stride_blocks(d),), (BLOCK,),
           (G, np.int64(d), np.int32(k), coef, v, np.float64(alpha), np.float64(beta),
            device_offsets, np.int32(len(offsets) - 1), out))
