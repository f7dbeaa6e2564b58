"""Coloured SOR sweeps and the split residual on the GPU (CuPy RawKernels).

Same arrays and semantics as :mod:`cext.numba.sor`: the CSR arrays hold
only the *off-diagonal* entries of A and ``diag`` its diagonal; for the
coloured sweep the CSR rows are stored colour by colour, stored row ``k``
being unknown ``color_rows[k]``. Mirrors :mod:`cext.reference.sor`.

- ``sor_sweep_colored`` launches one kernel per colour, one thread per row
  of the colour (rows of one colour are not coupled, so the order among
  them does not matter). The colour table ``color_ptr`` is read on the
  host (a NumPy or CuPy array; converted once per call).
- ``csr_residual_norm2_split`` is one fused pass: per-block float64
  partial sums of ``r_i^2`` finished by the deterministic one-block sum of
  :mod:`._compile` (no atomics).
- ``sor_run`` is a host loop over sweeps, reading one residual norm back
  per sweep. Only the coloured orderings run on the GPU: lexicographic
  sweeps are sequential by nature, so an empty colour table raises
  ``NotImplementedError``.

The lexicographic sweeps and the colourings are not provided here: the
registry hands out the :mod:`cext.reference` versions for them.
Row sums and updates are computed in float64 and rounded once to the array
dtype, as in the reference; NVRTC may contract ``a * b + c`` into an FMA, so
results match it to rounding, not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from ._compile import (BLOCK, INDEX_TYPES, PRELUDE, SUM_PARTIALS, VALUE_TYPES, finish_sum,
                       get_kernel, grid_stride_blocks, value_type)
from .spmv import _index_type

SOURCE = PRELUDE + r'''
// One SOR update of every stored row k in [begin, end) (the rows of one
// colour), one thread per row; stored row k holds the off-diagonal
// couplings of unknown rows[k]. Launch with ceil((end - begin) / LS_BLOCK)
// blocks. x is read and written (no __restrict__): the rows of a colour
// only read unknowns of other colours, which this launch does not write.
template <typename T, typename I>
__global__ void sor_color_sweep(const I* __restrict__ indptr, const I* __restrict__ indices,
                                const T* __restrict__ data, const T* __restrict__ diag,
                                const T* __restrict__ b, T* x, const I* __restrict__ rows,
                                double omega, long long begin, long long end)
{
    const long long k = begin + (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= end)
        return;
    const long long i = (long long)rows[k];
    double sigma = 0.0;
    const I stop = indptr[k + 1];
    for (I jj = indptr[k]; jj < stop; ++jj)
        sigma += (double)data[jj] * (double)x[indices[jj]];
    x[i] = (T)((1.0 - omega) * (double)x[i] + omega * ((double)b[i] - sigma) / (double)diag[i]);
}

// partials[block] = sum over the block's stored rows k of (b_i - diag_i x_i - O_k x)^2,
// i = rows[k] if permuted else k. Grid-stride over n rows.
template <typename T, typename I>
__global__ void sor_residual_norm2(const I* __restrict__ indptr, const I* __restrict__ indices,
                                   const T* __restrict__ data, const T* __restrict__ diag,
                                   const T* __restrict__ b, const T* __restrict__ x,
                                   const I* __restrict__ rows, long long n, int permuted,
                                   double* __restrict__ partials)
{
    double total = 0.0;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride) {
        const long long i = permuted ? (long long)rows[k] : k;
        double acc = (double)diag[i] * (double)x[i];
        const I stop = indptr[k + 1];
        for (I jj = indptr[k]; jj < stop; ++jj)
            acc += (double)data[jj] * (double)x[indices[jj]];
        const double ri = (double)b[i] - acc;
        total += ri * ri;
    }
    total = ls_block_sum(total);
    if (threadIdx.x == 0)
        partials[blockIdx.x] = total;
}
'''

_KERNELS = ("sor_color_sweep", "sor_residual_norm2")


def name_expressions(dtype: str) -> tuple[str, ...]:
    """The instantiations compiled for value dtype ``dtype`` (``"float32"``/``"float64"``)."""
    real = VALUE_TYPES[dtype]
    return tuple(f"{name}<{real}, {index}>" for name in _KERNELS
                 for index in INDEX_TYPES.values()) + (SUM_PARTIALS,)


def _rows_as(rows, index: str):
    # The kernels read the rows map with the CSR index type; another integer
    # dtype is converted (one copy; sor_run converts once for all sweeps).
    if rows.dtype.name != index or not rows.flags.c_contiguous:
        if rows.dtype.kind not in "iu":
            raise TypeError(f"the rows map must be an integer array, got {rows.dtype.name}")
        rows = rows.astype(index, order="C")
    return rows


def _host_bounds(color_ptr) -> list[int]:
    # The colour table lives on the host: it sets the launches.
    if hasattr(color_ptr, "get") and not isinstance(color_ptr, np.ndarray):
        color_ptr = color_ptr.get()  # CuPy array: one device-to-host copy
    return [int(v) for v in np.asarray(color_ptr).ravel()]


def _kernel(name: str, dtype: str, index: str):
    return get_kernel(SOURCE, name_expressions(dtype),
                      f"{name}<{VALUE_TYPES[dtype]}, {INDEX_TYPES[index]}>")


def _sweep(kernel, bounds, args_head, rows, omega: float, reverse: bool) -> None:
    ncolors = len(bounds) - 1
    order = range(ncolors - 1, -1, -1) if reverse else range(ncolors)
    for c in order:
        begin, end = bounds[c], bounds[c + 1]
        if end <= begin:
            continue  # an empty colour: nothing to launch (a zero grid is invalid)
        grid = (end - begin + BLOCK - 1) // BLOCK
        kernel((grid,), (BLOCK,), args_head + (rows, np.float64(omega), np.int64(begin),
                                               np.int64(end)))


def _residual2(kernel, dtype, args_head, rows, n: int) -> float:
    import cupy

    if n == 0:
        return 0.0
    grid = grid_stride_blocks(n)
    partials = cupy.empty(grid, dtype=cupy.float64)
    kernel((grid,), (BLOCK,), args_head + (rows, np.int64(n), np.int32(rows.shape[0] > 0),
                                           partials))
    return finish_sum(SOURCE, name_expressions(dtype), partials)


def sor_sweep_colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows,
                      reverse=False) -> None:
    """One coloured sweep: colours in order (reversed if ``reverse``), rows of a colour in parallel.

    The CSR rows are stored by colour: ``color_rows[color_ptr[c]:color_ptr[c + 1]]``
    are the unknowns of colour ``c`` and stored row ``k`` belongs to unknown
    ``color_rows[k]``. ``color_ptr`` (NumPy or CuPy) is read on the host.
    """
    dtype = value_type(data, diag, b, x)
    index = _index_type(indptr, indices)
    bounds = _host_bounds(color_ptr)
    if len(bounds) < 2:
        return
    rows = _rows_as(color_rows, index)
    _sweep(_kernel("sor_color_sweep", dtype, index), bounds,
           (indptr, indices, data, diag, b, x), rows, float(omega), bool(reverse))


def csr_residual_norm2_split(indptr, indices, data, diag, b, x, rows) -> float:
    """``||b - (D + O) x||^2`` for off-diagonal CSR ``O`` and diagonal ``D``.

    ``rows``: stored row ``k`` belongs to unknown ``rows[k]``; empty for natural storage.
    Accumulated in float64, summed in a fixed order (deterministic).
    """
    dtype = value_type(data, diag, b, x)
    index = _index_type(indptr, indices)
    rows = _rows_as(rows, index)
    return _residual2(_kernel("sor_residual_norm2", dtype, index), dtype,
                      (indptr, indices, data, diag, b, x), rows, b.shape[0])


def sor_run(indptr, indices, data, diag, b, x, omega, symmetric, color_ptr, color_rows,
            tol, grow_limit, maxiter, norms, start=0) -> int:
    """Sweep until ``||b - A x|| <= tol``, it exceeds ``grow_limit`` or is NaN, or ``maxiter``.

    A host loop over coloured sweeps (one launch per colour, one residual
    read back per sweep). ``norms[k]`` (NumPy or CuPy) receives the residual
    norm after sweep ``k`` (``norms[start]`` is the caller's); returns the
    last ``k``. ``symmetric`` adds the reverse sweep.

    Raises
    ------
    NotImplementedError
        The colour table is empty (lexicographic ordering) and the system is
        not: lexicographic sweeps are sequential and have no GPU kernel.
    """
    dtype = value_type(data, diag, b, x)
    index = _index_type(indptr, indices)
    bounds = _host_bounds(color_ptr)
    n = b.shape[0]
    if len(bounds) < 2 and n > 0:
        raise NotImplementedError(
            "lexicographic SOR sweeps are sequential and have no GPU kernel: use "
            "ordering='redblack' or ordering='multicolor' on the GPU (an empty colour "
            "table means the natural ordering)")
    rows = _rows_as(color_rows, index)
    head = (indptr, indices, data, diag, b, x)
    sweep = _kernel("sor_color_sweep", dtype, index)
    residual = _kernel("sor_residual_norm2", dtype, index)
    omega, tol, grow_limit = float(omega), float(tol), float(grow_limit)
    k = int(start)
    while k < int(maxiter):
        _sweep(sweep, bounds, head, rows, omega, False)
        if symmetric:
            _sweep(sweep, bounds, head, rows, omega, True)
        k += 1
        rnorm = math.sqrt(_residual2(residual, dtype, head, rows, n))  # NaN stays NaN
        norms[k] = rnorm
        if not (rnorm > tol and rnorm <= grow_limit):  # also stops on NaN
            break
    return k
