"""Diagonal-storage (DIA) sparse matrix-vector products (CuPy RawKernel).

Storage is row-aligned: ``values[d, i] = A[i, i + offsets[d]]`` (zero
outside the matrix), so thread ``i`` reads ``values[d, i]`` for every
diagonal and consecutive threads read consecutive addresses (coalesced),
with no column indices at all. Mirrors :mod:`cext.numba.dia` and
:mod:`cext.reference.dia`.

``offsets`` arrives as a tuple of ints (the Numba twin specialises on it);
here it is copied once to a small device array, cached per tuple and
device. Each ``out[i]`` is summed in diagonal order in float64, as the
Numba kernel does, and rounded once.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._compile import (BLOCK, PRELUDE, SUM_PARTIALS, VALUE_TYPES, finish_sum, get_kernel,
                       grid_stride_blocks, value_type)

SOURCE = PRELUDE + r'''
// q = A p for row-aligned DIA (offsets, values); if with_dot,
// partials[block] = sum over the block's rows of p_i q_i.
template <typename T>
__global__ void dia_spmv_dot(const long long* __restrict__ offsets, int ndiag,
                             const T* __restrict__ values, const T* __restrict__ p,
                             T* __restrict__ q, long long n, int with_dot,
                             double* __restrict__ partials)
{
    double contribution = 0.0;
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
        contribution += (double)p[i] * (double)qi;
    }
    if (with_dot) {  // uniform over the grid: every thread of a block reaches the barrier
        contribution = ls_block_sum(contribution);
        if (threadIdx.x == 0)
            partials[blockIdx.x] = contribution;
    }
}
'''


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    return (f"dia_spmv_dot<{VALUE_TYPES[dtype]}>", SUM_PARTIALS)


@lru_cache(maxsize=64)
def _device_offsets(offsets: tuple[int, ...], device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.asarray(np.asarray(offsets, dtype=np.int64))


def _run(offsets, values, x, out, with_dot: bool) -> float:
    import cupy

    dtype = value_type(values, x, out)
    n = out.shape[0]
    offsets = tuple(int(o) for o in offsets)
    if n == 0:
        return 0.0
    if not offsets:
        out.fill(0)
        return 0.0
    if values.shape != (len(offsets), n):
        raise ValueError(f"values has shape {values.shape}, expected {(len(offsets), n)}")
    grid = grid_stride_blocks(n)
    expressions = name_expressions(dtype)
    kernel = get_kernel(SOURCE, expressions, expressions[0])
    device_offsets = _device_offsets(offsets, cupy.cuda.Device().id)
    partials = cupy.empty(grid if with_dot else 1, dtype=cupy.float64)
    kernel((grid,), (BLOCK,), (device_offsets, np.int32(len(offsets)), values, x, out,
                               np.int64(n), np.int32(with_dot), partials))
    return finish_sum(SOURCE, expressions, partials) if with_dot else 0.0


def dia_spmv(offsets, values, x, out) -> None:
    """``out = A @ x`` for the row-aligned DIA matrix ``(offsets, values)``."""
    _run(offsets, values, x, out, with_dot=False)


def dia_spmv_dot(offsets, values, p, q) -> float:
    """``q = A @ p``; return ``p . q`` computed in the same pass over the rows."""
    return _run(offsets, values, p, q, with_dot=True)
