"""Array-API twins of :mod:`cext.numba.spmv` and :mod:`cext.cupy.spmv`: CSR products."""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store
from .blas1 import dot


def csr_spmv(indptr, indices, data, x, out):
    """``out = A @ x`` for CSR ``(indptr, indices, data)``, rows summed in order; returns ``out``.

    Pads the rows to ELLPACK form (row-major, zero-filled) so the row sums
    run left to right like a serial CSR loop, without a Python loop.
    """
    xp = array_namespace(indptr, indices, data, x, out)
    n = out.shape[0]
    if n == 0:
        return out
    row_nnz = indptr[1:] - indptr[:-1]
    width = int(xp.max(row_nnz)) if n else 0
    if width == 0:
        return _store(xp, out, xp.zeros_like(out))
    slot = xp.arange(width, dtype=indptr.dtype)
    # position of slot k of row i in the CSR arrays, clipped for padding
    pos = xp.reshape(indptr[:-1], (n, 1)) + xp.reshape(slot, (1, width))
    valid = xp.reshape(slot, (1, width)) < xp.reshape(row_nnz, (n, 1))
    nnz = data.shape[0]
    safe = xp.where(valid, pos, xp.zeros_like(pos))
    if nnz == 0:
        return _store(xp, out, xp.zeros_like(out))
    flat = xp.reshape(safe, (-1,))
    values = xp.reshape(xp.take(data, flat), (n, width))
    columns = xp.reshape(xp.take(indices, flat), (n, width))
    gathered = xp.reshape(xp.take(x, xp.reshape(columns, (-1,))), (n, width))
    products = xp.where(valid, values * gathered, xp.zeros_like(values))
    acc = products[:, 0]
    for k in range(1, width):
        acc = acc + products[:, k]
    return _store(xp, out, acc)


def csr_spmv_dot(indptr, indices, data, p, q) -> float:
    """``q = A @ p`` (in place); return ``p . q``."""
    csr_spmv(indptr, indices, data, p, q)
    return dot(p, q)


def _probe(product, x, y):
    """The six inner products of the symmetry probe from ``product(v) = A @ v``."""
    Ax, Ay = product(x), product(y)
    return dot(x, Ay), dot(y, Ax), dot(Ax, Ax), dot(Ay, Ay), dot(x, x), dot(y, y)


def csr_symmetry_probe(indptr, indices, data, x, y):
    """``(x.Ay, y.Ax, |Ax|^2, |Ay|^2, |x|^2, |y|^2)`` for CSR ``(indptr, indices, data)``."""
    xp = array_namespace(x, y)
    return _probe(lambda v: csr_spmv(indptr, indices, data, v, xp.empty_like(v)), x, y)
