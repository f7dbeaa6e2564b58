"""CSR sparse matrix-vector products, parallel over rows (Numba).

Kernels are dumb: raw arrays in, results written into ``out``; shapes and
dtypes are checked by the Python wrapper that calls them
(:mod:`linsolve.operators`). Mirrors :mod:`cext.cupy.spmv` and
:func:`cext.reference.csr_spmv`.
"""

from __future__ import annotations

import numba as nb
from numba import prange

# No ``fastmath``: the PCG driver relies on NaN/Inf surviving into the dot
# product it returns. Row sums stay in CSR order, so each entry of ``out`` is
# bit-identical to a serial CSR loop (and to scipy's).
_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)


@nb.njit(**_JIT)
def csr_spmv(indptr, indices, data, x, out):
    """``out = A @ x`` for the CSR matrix ``(indptr, indices, data)``."""
    for i in prange(out.shape[0]):
        acc = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            acc += data[jj] * x[indices[jj]]
        out[i] = acc


@nb.njit(**_JIT)
def csr_spmv_dot(indptr, indices, data, p, q):
    """``q = A @ p``; return ``p . q`` computed in the same pass over the rows."""
    total = 0.0
    for i in prange(q.shape[0]):
        acc = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            acc += data[jj] * p[indices[jj]]
        q[i] = acc
        total += p[i] * acc
    return total
