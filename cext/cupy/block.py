"""Kernels of the batched Krylov iterations on the GPU: a CSR matrix times a block (CuPy).

Mirrors :mod:`cext.numba.block` and :mod:`cext.reference.block`, with the
same layout: a block of ``k`` vectors is an ``(n, k)`` C-ordered array, so
the ``k`` values a matrix entry multiplies are contiguous.

- Element-wise kernels (the product, the updates) run one thread per entry
  of the block over the flat ``n k`` entries, grid-stride: a warp covers
  ``32 / k`` consecutive rows, and its gathers of ``P[col, :]`` read whole
  runs of ``k`` values (coalesced for ``k`` up to 32 in float64 lines).
  Each product entry is its row's sum in CSR order, in double, with the
  multiply and add rounded separately (``__dmul_rn``/``__dadd_rn``: no FMA
  contraction), so a float64 ``Q`` has the bits of the Numba kernel and of
  the single-vector serial loop; the updates compute in double and round
  once, as the Numba kernels do.
- The ``k`` column inner products: one thread block per (chunk of
  :data:`CHUNK` rows, column), a fixed shuffle tree per block, the chunks'
  sums added in chunk order by ``block_column_sum``. No atomics: the same
  inputs give the same bits. They cost a second read of the two blocks (the
  Numba kernels fuse them into the same pass): per-column sums across a
  warp that holds several columns would need ``k`` to divide 32.

The coefficients (``alpha``, ``beta``) and the dots stay on the device.
"""

from __future__ import annotations

import numpy as np

from ._compile import (BLOCK, INDEX_TYPES, PRELUDE, VALUE_TYPES, get_kernel, grid_stride_blocks,
                       value_type)

CHUNK = 16384  # rows per partial sum of the column dots (one thread block per chunk and column)

SOURCE = PRELUDE + r'''
// Q = A P for CSR (indptr, indices, data) and (n, k) row-interleaved blocks: one
// thread per entry (row, column) of Q, the row's sum in CSR order in double.
template <typename T, typename I>
__global__ void block_spmm(const I* __restrict__ indptr, const I* __restrict__ indices,
                           const T* __restrict__ data, const T* __restrict__ P,
                           T* __restrict__ Q, long long n, long long k)
{
    const long long total = n * k;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += stride) {
        const long long row = t / k;
        const long long column = t - row * k;
        const long long stop = (long long)indptr[row + 1];
        double acc = 0.0;
        for (long long e = (long long)indptr[row]; e < stop; ++e)
            acc = __dadd_rn(acc, __dmul_rn((double)data[e],
                                           (double)P[(long long)indices[e] * k + column]));
        Q[t] = (T)acc;
    }
}

// partials[c * k + j] = sum over the rows i of chunk c of U[i, j] V[i, j]; one block
// per (chunk, column): blockIdx.x = c * k + j.
template <typename T>
__global__ void block_column_dots(const T* __restrict__ U, const T* __restrict__ V,
                                  long long n, long long k, long long chunk,
                                  double* __restrict__ partials)
{
    const long long c = blockIdx.x / k;
    const long long j = blockIdx.x - c * k;
    const long long stop = (c + 1) * chunk < n ? (c + 1) * chunk : n;
    double acc = 0.0;
    for (long long i = c * chunk + threadIdx.x; i < stop; i += LS_BLOCK)
        acc += (double)U[i * k + j] * (double)V[i * k + j];
    acc = ls_block_sum(acc);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = acc;
}

// out[j] = sum of partials[c * k + j] over the chunks c, in chunk order.
extern "C" __global__ void block_column_sum(const double* __restrict__ partials,
                                            long long nchunks, long long k,
                                            double* __restrict__ out)
{
    const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= k)
        return;
    double acc = 0.0;
    for (long long c = 0; c < nchunks; ++c)
        acc += partials[c * k + j];
    out[j] = acc;
}

// X += P alpha; R -= Q alpha, column by column (alpha[j] in double; rounded once).
template <typename T>
__global__ void block_cg_update(T* __restrict__ X, T* __restrict__ R,
                                const T* __restrict__ P, const T* __restrict__ Q,
                                const double* __restrict__ alpha, long long n, long long k)
{
    const long long total = n * k;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += stride) {
        const double a = alpha[t % k];
        X[t] = (T)__dadd_rn((double)X[t], __dmul_rn(a, (double)P[t]));
        R[t] = (T)__dsub_rn((double)R[t], __dmul_rn(a, (double)Q[t]));
    }
}

// P = Z + P beta, column by column (beta[j] in double; rounded once).
template <typename T>
__global__ void block_update_p(T* __restrict__ P, const T* __restrict__ Z,
                               const double* __restrict__ beta, long long n, long long k)
{
    const long long total = n * k;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += stride)
        P[t] = (T)__dadd_rn((double)Z[t], __dmul_rn(beta[t % k], (double)P[t]));
}
'''

_TEMPLATES = ("block_column_dots", "block_cg_update", "block_update_p")


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    real = VALUE_TYPES[dtype]
    return (tuple(f"block_spmm<{real}, {index}>" for index in INDEX_TYPES.values())
            + tuple(f"{name}<{real}>" for name in _TEMPLATES) + ("block_column_sum",))


def _kernel(name: str, dtype: str, index: str | None = None):
    expressions = name_expressions(dtype)
    if name == "block_spmm":
        name = f"block_spmm<{VALUE_TYPES[dtype]}, {INDEX_TYPES[index]}>"
    elif name in _TEMPLATES:
        name = f"{name}<{VALUE_TYPES[dtype]}>"
    return get_kernel(SOURCE, expressions, name)


def _shape(*blocks) -> tuple[int, int]:
    """``(n, k)`` shared by the blocks; ValueError otherwise (the kernels read raw memory)."""
    shape = tuple(blocks[0].shape)
    if len(shape) != 2 or any(tuple(block.shape) != shape for block in blocks[1:]):
        raise ValueError("block kernels need (n, k) blocks of one shape, got "
                         + ", ".join(str(tuple(block.shape)) for block in blocks))
    return int(shape[0]), int(shape[1])


def _coefficients(values, k: int):
    """Per-column coefficients as a device float64 vector of ``k`` (from host or device)."""
    import cupy

    values = cupy.asarray(values, dtype=cupy.float64)
    if not values.flags.c_contiguous:
        values = values.copy()
    if tuple(values.shape) != (k,):
        raise ValueError(f"block kernels need {k} per-column coefficients, got shape "
                         f"{tuple(values.shape)}")
    return values


def _column_dots(U, V, n: int, k: int, dtype: str, out) -> None:
    """``out[j] = U[:, j] . V[:, j]`` (chunked block sums, then chunk order)."""
    import cupy

    if n == 0:
        out[...] = 0.0
        return
    nchunks = (n + CHUNK - 1) // CHUNK
    partials = cupy.empty(nchunks * k, dtype=cupy.float64)
    _kernel("block_column_dots", dtype)((nchunks * k,), (BLOCK,),
                                        (U, V, np.int64(n), np.int64(k), np.int64(CHUNK),
                                         partials))
    _kernel("block_column_sum", dtype)(((k + BLOCK - 1) // BLOCK,), (BLOCK,),
                                       (partials, np.int64(nchunks), np.int64(k), out))


def csr_spmm_dot(indptr, indices, data, P, Q, dots) -> None:
    """``Q = A @ P`` for CSR ``A`` and ``(n, k)`` blocks; ``dots[j] = P[:, j] . Q[:, j]``."""
    from .spmv import _index_type

    dtype = value_type(data, P, Q)
    index = _index_type(indptr, indices)
    n, k = _shape(P, Q)
    if k == 0:
        return
    if n > 0:
        _kernel("block_spmm", dtype, index)((grid_stride_blocks(n * k),), (BLOCK,),
                                            (indptr, indices, data, P, Q, np.int64(n),
                                             np.int64(k)))
    _column_dots(P, Q, n, k, dtype, dots)


def block_cg_update(X, R, P, Q, alpha, rr) -> None:
    """``X += P alpha``; ``R -= Q alpha`` column by column; ``rr[j] = R[:, j] . R[:, j]``."""
    dtype = value_type(X, R, P, Q)
    n, k = _shape(X, R, P, Q)
    if k == 0:
        return
    if n > 0:
        _kernel("block_cg_update", dtype)((grid_stride_blocks(n * k),), (BLOCK,),
                                          (X, R, P, Q, _coefficients(alpha, k), np.int64(n),
                                           np.int64(k)))
    _column_dots(R, R, n, k, dtype, rr)


def block_update_p(P, Z, beta) -> None:
    """``P = Z + P beta`` column by column, in place."""
    dtype = value_type(P, Z)
    n, k = _shape(P, Z)
    if n == 0 or k == 0:
        return
    _kernel("block_update_p", dtype)((grid_stride_blocks(n * k),), (BLOCK,),
                                     (P, Z, _coefficients(beta, k), np.int64(n), np.int64(k)))


def block_dots(U, V, out) -> None:
    """``out[j] = U[:, j] . V[:, j]``, the chunked sums of the other block kernels."""
    dtype = value_type(U, V)
    n, k = _shape(U, V)
    if k == 0:
        return
    _column_dots(U, V, n, k, dtype, out)
