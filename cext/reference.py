"""Plain array-API versions of every kernel: the fallback and the test oracle.

Same signatures as :mod:`cext.numba` and :mod:`cext.cupy`: raw arrays in,
results written into ``out`` (or updated in place), scalars returned as
Python floats. Written only against the array API standard, so it runs on
NumPy, CuPy and ``array_api_strict`` alike; it favours obvious code over
speed.
"""

from __future__ import annotations

from array_api_compat import array_namespace


def dot(a, b) -> float:
    """Return ``a . b``."""
    xp = array_namespace(a, b)
    return float(xp.sum(a * b))


def csr_spmv(indptr, indices, data, x, out) -> None:
    """``out = A @ x`` for CSR ``(indptr, indices, data)``, rows summed in order.

    Pads the rows to ELLPACK form (row-major, zero-filled) so the row sums
    run left to right like a serial CSR loop, without a Python loop.
    """
    xp = array_namespace(indptr, indices, data, x, out)
    n = out.shape[0]
    if n == 0:
        return
    row_nnz = indptr[1:] - indptr[:-1]
    width = int(xp.max(row_nnz)) if n else 0
    if width == 0:
        out[...] = xp.zeros_like(out)
        return
    slot = xp.arange(width, dtype=indptr.dtype)
    # position of slot k of row i in the CSR arrays, clipped for padding
    pos = xp.reshape(indptr[:-1], (n, 1)) + xp.reshape(slot, (1, width))
    valid = xp.reshape(slot, (1, width)) < xp.reshape(row_nnz, (n, 1))
    nnz = data.shape[0]
    safe = xp.where(valid, pos, xp.zeros_like(pos))
    if nnz == 0:
        out[...] = xp.zeros_like(out)
        return
    flat = xp.reshape(safe, (-1,))
    values = xp.reshape(xp.take(data, flat), (n, width))
    columns = xp.reshape(xp.take(indices, flat), (n, width))
    gathered = xp.reshape(xp.take(x, xp.reshape(columns, (-1,))), (n, width))
    products = xp.where(valid, values * gathered, xp.zeros_like(values))
    acc = products[:, 0]
    for k in range(1, width):
        acc = acc + products[:, k]
    out[...] = xp.astype(acc, out.dtype)


def csr_spmv_dot(indptr, indices, data, p, q) -> float:
    """``q = A @ p``; return ``p . q``."""
    csr_spmv(indptr, indices, data, p, q)
    return dot(p, q)


def dia_spmv(offsets, values, x, out) -> None:
    """``out = A @ x`` for row-aligned DIA storage ``values[d, i] = A[i, i + offsets[d]]``."""
    xp = array_namespace(values, x, out)
    n = out.shape[0]
    acc = xp.zeros(n, dtype=out.dtype)
    for d, off in enumerate(offsets):
        off = int(off)
        lo, hi = max(0, -off), min(n, n - off)
        if lo >= hi:
            continue
        term = values[d, lo:hi] * x[lo + off:hi + off]
        acc = xp.concat([acc[:lo], acc[lo:hi] + term, acc[hi:]])
    out[...] = acc


def dia_spmv_dot(offsets, values, p, q) -> float:
    """``q = A @ p``; return ``p . q``."""
    dia_spmv(offsets, values, p, q)
    return dot(p, q)


def cg_update_xr(x, r, p, q, alpha) -> float:
    """``x += alpha p``; ``r -= alpha q``; return the new ``r . r``."""
    x[...] = x + alpha * p
    r[...] = r - alpha * q
    return dot(r, r)


def cg_update_p(p, z, beta) -> None:
    """``p = z + beta p`` in place."""
    p[...] = z + beta * p
