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


# --- SOR sweeps (oracle twins of cext/numba/sor.py: plain loops, small n) ---
# The CSR arrays hold the off-diagonal entries only; ``diag`` the diagonal.

def _relax_row(k, i, indptr, indices, data, diag, b, x, omega):
    sigma = 0.0
    for jj in range(int(indptr[k]), int(indptr[k + 1])):
        sigma += float(data[jj]) * float(x[int(indices[jj])])
    x[i] = (1.0 - omega) * float(x[i]) + omega * (float(b[i]) - sigma) / float(diag[i])


def sor_sweep_forward(indptr, indices, data, diag, b, x, omega) -> None:
    """One lexicographic SOR sweep, rows 0..n-1, in place."""
    for i in range(x.shape[0]):
        _relax_row(i, i, indptr, indices, data, diag, b, x, omega)


def sor_sweep_backward(indptr, indices, data, diag, b, x, omega) -> None:
    """One lexicographic SOR sweep, rows n-1..0, in place."""
    for i in reversed(range(x.shape[0])):
        _relax_row(i, i, indptr, indices, data, diag, b, x, omega)


def sor_sweep_colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows,
                      reverse=False) -> None:
    """One coloured SOR sweep (colours in order, or reversed), in place; rows stored by colour."""
    ncolors = color_ptr.shape[0] - 1
    for c in (reversed(range(ncolors)) if reverse else range(ncolors)):
        for k in range(int(color_ptr[c]), int(color_ptr[c + 1])):
            _relax_row(k, int(color_rows[k]), indptr, indices, data, diag, b, x, omega)


def greedy_coloring(indptr, indices, n: int):
    """First-fit colouring in natural order (same rule as the Numba kernel)."""
    import numpy as np

    colors = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        taken = {int(colors[int(j)]) for j in indices[int(indptr[i]):int(indptr[i + 1])]
                 if int(j) != i and colors[int(j)] >= 0}
        c = 0
        while c in taken:
            c += 1
        colors[i] = c
    return colors


def two_coloring(indptr, indices, n: int):
    """Depth-parity colouring by breadth-first search; ``(colors, bipartite)``."""
    import collections

    import numpy as np

    colors = np.full(n, -1, dtype=np.int64)
    for root in range(n):
        if colors[root] >= 0:
            continue
        colors[root] = 0
        queue = collections.deque([root])
        while queue:
            i = queue.popleft()
            for j in indices[int(indptr[i]):int(indptr[i + 1])]:
                j = int(j)
                if j == i:
                    continue
                if colors[j] < 0:
                    colors[j] = 1 - colors[i]
                    queue.append(j)
                elif colors[j] == colors[i]:
                    return colors, False
    return colors, True


def csr_residual_norm2_split(indptr, indices, data, diag, b, x, rows) -> float:
    """``||b - (D + O) x||^2``; stored row ``k`` is unknown ``rows[k]`` (identity if empty)."""
    import math

    total = 0.0
    for k in range(b.shape[0]):
        i = int(rows[k]) if rows.shape[0] else k
        acc = float(diag[i]) * float(x[i])
        for jj in range(int(indptr[k]), int(indptr[k + 1])):
            acc += float(data[jj]) * float(x[int(indices[jj])])
        total += (float(b[i]) - acc) ** 2
    return total if math.isfinite(total) else float("nan")


def sor_run(indptr, indices, data, diag, b, x, omega, symmetric, color_ptr, color_rows,
            tol, grow_limit, maxiter, norms, start=0) -> int:
    """Sweep until converged, grown past ``grow_limit``, NaN, or ``maxiter`` (see the Numba twin)."""
    import math

    k = start
    while k < maxiter:
        if color_ptr.shape[0] > 1:
            sor_sweep_colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows)
            if symmetric:
                sor_sweep_colored(indptr, indices, data, diag, b, x, omega, color_ptr,
                                  color_rows, reverse=True)
        else:
            sor_sweep_forward(indptr, indices, data, diag, b, x, omega)
            if symmetric:
                sor_sweep_backward(indptr, indices, data, diag, b, x, omega)
        k += 1
        rnorm = math.sqrt(csr_residual_norm2_split(indptr, indices, data, diag, b, x, color_rows))
        norms[k] = rnorm
        if not (rnorm > tol and rnorm <= grow_limit):
            break
    return k


# --- triangular solves and IC(0) (oracle twins of cext/numba/triangular.py) ---

def csr_triangular_solve(indptr, indices, data, diag, b, out, lower) -> None:
    """Solve ``(D + L) out = b`` (``lower``) or ``(D + U) out = b`` with a plain loop.

    Only the strictly lower (upper) CSR entries are read; ``out`` may be ``b``.
    """
    n = out.shape[0]
    rows = range(n) if lower else reversed(range(n))
    for i in rows:
        acc = float(b[i])
        for jj in range(int(indptr[i]), int(indptr[i + 1])):
            j = int(indices[jj])
            if (j < i) if lower else (j > i):
                acc -= float(data[jj]) * float(out[j])
        out[i] = acc / float(diag[i])


def csr_ichol0(indptr, indices, data) -> int:
    """IC(0) of sorted lower-triangular CSR in place; ``-1`` or the failed row.

    Dictionary-per-row version of the Numba kernel's merge.
    """
    import math

    n = indptr.shape[0] - 1
    rows = []  # rows[k] = {column: position} for the finished rows
    for i in range(n):
        start, end = int(indptr[i]), int(indptr[i + 1])
        positions = {int(indices[p]): p for p in range(start, end)}
        if i not in positions:
            return i
        for p in range(start, end):
            k = int(indices[p])
            if k >= i:
                continue
            acc = float(data[p])
            row_k = rows[k]
            for j, q in row_k.items():
                if j < k and j in positions:
                    acc -= float(data[positions[j]]) * float(data[q])
            data[p] = acc / float(data[row_k[k]])
        pivot = float(data[positions[i]])
        for j, p in positions.items():
            if j < i:
                pivot -= float(data[p]) ** 2
        if not (pivot > 0.0 and math.isfinite(pivot)):
            return i
        data[positions[i]] = math.sqrt(pivot)
        rows.append(positions)
    return -1
