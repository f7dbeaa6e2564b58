"""CSR sparse matrix-vector products on the GPU (cuSPARSE and a fused RawKernel).

Kernels are dumb: raw arrays in, results written into ``out``; the wrapper
above them (:mod:`linsolve.operators`) checks shapes. Mirrors
:mod:`cext.numba.spmv` and :mod:`cext.reference.spmv`.

- ``csr_spmv`` hands the product to cuSPARSE (``cupyx.cusparse.spmv`` on a
  ``cupyx.scipy.sparse.csr_matrix`` wrapped around the arrays, no copy).
  cuSPARSE takes 32-bit indices only; int64 index arrays go to the RawKernel
  below rather than being copied down.
- ``csr_spmv_dot`` is one fused RawKernel: a group of ``lanes`` threads
  (a power of two up to a warp, chosen from the mean row length) per row,
  the row sum reduced by a fixed shuffle tree, ``q`` written, and per-block
  partial sums of ``p_i q_i`` finished by a deterministic one-block sum (no
  atomics). Row sums and the dot accumulate in float64, as in the Numba
  kernel; within a row the summation order is the lane tree, not CSR order,
  so ``q`` matches the serial loop to rounding, not bit for bit.
"""

from __future__ import annotations

import numpy as np

from ._compile import (BLOCK, INDEX_TYPES, PRELUDE, SUM_PARTIALS, VALUE_TYPES, finish_sum,
                       get_kernel, value_type)

SOURCE = PRELUDE + r'''
// q = A p for CSR (indptr, indices, data) with `lanes` threads per row
// (lanes a power of two <= 32, so a group never straddles a warp); if
// with_dot, partials[block] = sum over the block's rows of p_i q_i.
// Launch with ceil(n * lanes / LS_BLOCK) blocks: each thread serves at most
// one row, and all threads stay to the end (the shuffles use a full mask).
template <typename T, typename I>
__global__ void csr_spmv_dot(const I* __restrict__ indptr, const I* __restrict__ indices,
                             const T* __restrict__ data, const T* __restrict__ p,
                             T* __restrict__ q, long long n, int lanes, int with_dot,
                             double* __restrict__ partials)
{
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long row = thread / lanes;
    const int lane = (int)(threadIdx.x & (lanes - 1));
    double acc = 0.0;
    if (row < n) {
        // 64-bit position: an int32 jj += lanes could wrap past INT_MAX on the last row
        const long long stop = (long long)indptr[row + 1];
        for (long long jj = (long long)indptr[row] + lane; jj < stop; jj += lanes)
            acc += (double)data[jj] * (double)p[indices[jj]];
    }
    for (int offset = lanes >> 1; offset > 0; offset >>= 1)
        acc += __shfl_down_sync(0xffffffffu, acc, offset, lanes);
    double contribution = 0.0;
    if (row < n && lane == 0) {
        const T qi = (T)acc;
        q[row] = qi;
        if (with_dot)  // p may be shorter than q (a rectangular block): read only for the dot
            contribution = (double)p[row] * (double)qi;
    }
    if (with_dot) {  // uniform over the grid
        contribution = ls_block_sum(contribution);
        if (threadIdx.x == 0)
            partials[blockIdx.x] = contribution;
    }
}
'''


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    real = VALUE_TYPES[dtype]
    return tuple(f"csr_spmv_dot<{real}, {index}>" for index in INDEX_TYPES.values()) + (
        SUM_PARTIALS,)


def _lanes(nnz: int, n: int) -> int:
    # Threads per row: the power of two at or below the mean row length,
    # capped at a warp (5-point stencil -> 4 lanes, dense-ish rows -> 32).
    mean = nnz / max(n, 1)
    lanes = 1
    while lanes * 2 <= min(mean, 32):
        lanes *= 2
    return lanes


def _index_type(indptr, indices) -> str:
    name = indptr.dtype.name
    if name not in INDEX_TYPES or indices.dtype.name != name:
        raise TypeError("CSR index arrays must both be int32 or both int64, got "
                        f"{indptr.dtype.name} and {indices.dtype.name}")
    # the kernels index raw pointers: a strided view would be read as if it were packed
    if not (indptr.flags.c_contiguous and indices.flags.c_contiguous):
        raise ValueError("CSR index arrays must be C-contiguous (cupy.ascontiguousarray)")
    return name


def _fused(indptr, indices, data, p, q, with_dot: bool) -> float:
    import cupy

    dtype = value_type(data, p, q)
    index = _index_type(indptr, indices)
    n = q.shape[0]
    if n == 0:
        return 0.0
    lanes = _lanes(data.shape[0], n)
    grid = (n * lanes + BLOCK - 1) // BLOCK
    expressions = name_expressions(dtype)
    kernel = get_kernel(SOURCE, expressions,
                        f"csr_spmv_dot<{VALUE_TYPES[dtype]}, {INDEX_TYPES[index]}>")
    partials = cupy.empty(grid if with_dot else 1, dtype=cupy.float64)
    kernel((grid,), (BLOCK,), (indptr, indices, data, p, q, np.int64(n), np.int32(lanes),
                               np.int32(with_dot), partials))
    return finish_sum(SOURCE, expressions, partials) if with_dot else 0.0


def csr_spmv(indptr, indices, data, x, out) -> None:
    """``out = A @ x`` for the CSR matrix ``(indptr, indices, data)`` (cuSPARSE)."""
    value_type(data, x, out)
    index = _index_type(indptr, indices)
    n = out.shape[0]
    if n == 0:
        return
    if index != "int32" or data.shape[0] == 0:
        _fused(indptr, indices, data, x, out, with_dot=False)
        return
    import cupyx.scipy.sparse as cusp
    from cupyx import cusparse

    A = cusp.csr_matrix((data, indices, indptr), shape=(n, x.shape[0]), copy=False)
    if cusparse.check_availability("spmv"):
        y = cusparse.spmv(A, x, y=out)  # beta = 0: out is overwritten
        if y is not out:  # pragma: no cover - cupyx copied it (dtype cast)
            out[...] = y
    else:  # pragma: no cover - old CUDA without the generic API
        out[...] = A @ x


def csr_spmv_dot(indptr, indices, data, p, q) -> float:
    """``q = A @ p``; return ``p . q`` computed in the same pass over the rows."""
    return _fused(indptr, indices, data, p, q, with_dot=True)
