"""Batched Kronecker matvecs for many small layers (CuPy RawKernels).

Mirrors :mod:`cext.numba.kron` (same names, same signatures) and the twins
in :mod:`cext.reference.kron`: ``B`` layers of one shape, ``X[b]`` an ``(m, n)``
matrix (column-major vec), ``vec(L X R) = kron(R', L) vec(X)``. cuBLAS's
batched GEMM launches per product and rounds each product to the working
dtype; here two kernels do the two sides of the product with one thread
per output entry over the whole batch (grid-stride), every sum in double:

- ``kron_left``:  ``T[b] = op(L[b]) @ S[b]`` into a double scratch.
- ``kron_right``: ``out[b] = T[b] @ op(R[b])``, optionally divided entry-wise
  by ``dl[b, i] dr[b, j] + damping`` (the eigen-mode scaling), rounded once
  into ``out``'s dtype.

``kron_matvec`` is left then right; ``kron_eigen_solve`` is
left(Ql') -> right(Qr, scaled) -> left(Ql) -> right(Qr'). Each thread reads
a row of one operand and a column of the other: fine for the 10-300-wide
layers this is for (the operands stay in L1/L2), not a tuned GEMM.
"""

from __future__ import annotations

import numpy as np

from ._compile import BLOCK, VALUE_TYPES, get_kernel, grid_stride_blocks, value_type

SOURCE = r'''
// T[b, i, j] = sum_k op(L)[b, i, k] S[b, k, j]; L (batch, m, m), S and T (batch, m, n).
template <typename T, typename S>
__global__ void kron_left(const T* __restrict__ L, int transpose, const S* __restrict__ X,
                          double* __restrict__ out, long long batch, int m, int n)
{
    const long long total = batch * m * n;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long b = t / ((long long)m * n);
        const int i = (int)((t / n) % m);
        const int j = (int)(t % n);
        const T* Lb = L + b * m * m;
        const S* Xb = X + b * m * n;
        double acc = 0.0;
        for (int k = 0; k < m; ++k) {
            const double lik = transpose ? (double)Lb[(long long)k * m + i]
                                         : (double)Lb[(long long)i * m + k];
            acc += lik * (double)Xb[(long long)k * n + j];
        }
        out[t] = acc;
    }
}

// out[b, i, j] = sum_k X[b, i, k] op(R)[b, k, j], divided by dl[b, i] dr[b, j] + damping
// when scale != 0; R (batch, n, n), dl (batch, m), dr (batch, n).
template <typename T, typename O>
__global__ void kron_right(const double* __restrict__ X, const T* __restrict__ R, int transpose,
                           const T* __restrict__ dl, const T* __restrict__ dr, double damping,
                           int scale, O* __restrict__ out, long long batch, int m, int n)
{
    const long long total = batch * m * n;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const long long b = t / ((long long)m * n);
        const int i = (int)((t / n) % m);
        const int j = (int)(t % n);
        const T* Rb = R + b * n * n;
        const double* Xb = X + b * m * n;
        double acc = 0.0;
        for (int k = 0; k < n; ++k) {
            const double rkj = transpose ? (double)Rb[(long long)j * n + k]
                                         : (double)Rb[(long long)k * n + j];
            acc += Xb[(long long)i * n + k] * rkj;
        }
        if (scale)
            acc /= (double)dl[b * m + i] * (double)dr[b * n + j] + damping;
        out[t] = (O)acc;
    }
}
'''


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for factor dtype ``dtype`` (duplicates removed)."""
    real = VALUE_TYPES[dtype]
    names = (f"kron_left<{real}, {real}>", f"kron_left<{real}, double>",
             f"kron_right<{real}, {real}>", f"kron_right<{real}, double>")
    return tuple(dict.fromkeys(names))


def _launch_left(dtype, L, transpose, X, scratch, batch, m, n):
    source_type = VALUE_TYPES[X.dtype.name]   # the user's X, or a float64 scratch
    kernel = get_kernel(SOURCE, name_expressions(dtype),
                        f"kron_left<{VALUE_TYPES[dtype]}, {source_type}>")
    kernel((grid_stride_blocks(batch * m * n),), (BLOCK,),
           (L, np.int32(transpose), X, scratch, np.int64(batch), np.int32(m), np.int32(n)))


def _launch_right(dtype, X, R, transpose, dl, dr, damping, scale, out, batch, m, n):
    out_type = VALUE_TYPES[out.dtype.name]
    kernel = get_kernel(SOURCE, name_expressions(dtype),
                        f"kron_right<{VALUE_TYPES[dtype]}, {out_type}>")
    kernel((grid_stride_blocks(batch * m * n),), (BLOCK,),
           (X, R, np.int32(transpose), dl, dr, np.float64(damping), np.int32(scale), out,
            np.int64(batch), np.int32(m), np.int32(n)))


def kron_matvec(left, right, X, out) -> None:
    """``out[b] = left[b] @ X[b] @ right[b]`` (double sums, rounded once)."""
    import cupy

    dtype = value_type(left, right, X, out)
    batch, m, n = X.shape
    if batch * m * n == 0:
        return
    scratch = cupy.empty((batch, m, n), dtype=cupy.float64)
    _launch_left(dtype, left, 0, X, scratch, batch, m, n)
    _launch_right(dtype, scratch, right, 0, right, right, 0.0, 0, out, batch, m, n)


def kron_eigen_solve(Ql, dl, Qr, dr, damping, X, out) -> None:
    """``out[b] = Ql[b] ((Ql[b]' X[b] Qr[b]) / (dl[b] dr[b]' + damping)) Qr[b]'``."""
    import cupy

    dtype = value_type(Ql, dl, Qr, dr, X, out)
    batch, m, n = X.shape
    if batch * m * n == 0:
        return
    first = cupy.empty((batch, m, n), dtype=cupy.float64)
    second = cupy.empty((batch, m, n), dtype=cupy.float64)
    _launch_left(dtype, Ql, 1, X, first, batch, m, n)
    _launch_right(dtype, first, Qr, 0, dl, dr, float(damping), 1, second, batch, m, n)
    _launch_left(dtype, Ql, 0, second, first, batch, m, n)
    _launch_right(dtype, first, Qr, 1, dl, dr, 0.0, 0, out, batch, m, n)
