"""Plain array-API versions of every kernel: the fallback and the test oracle.

Same signatures as :mod:`cext.numba` and :mod:`cext.cupy`: raw arrays in,
scalars returned as Python floats. Written only against the array API
standard, so it runs on NumPy, CuPy, ``array_api_strict`` and JAX alike; it
favours obvious code over speed.

Results and immutable arrays. A kernel with an ``out`` argument (and
``cg_update_p``, which updates ``p``; ``window_push_gemv``, which stores a
row of the window) *returns* the arrays it produces. Where the namespace
can write in place (:func:`writes_in_place`: NumPy, CuPy,
``array_api_strict``) they are the arguments, written in place, as the
compiled kernels do; where it cannot (JAX) they are new arrays and the
arguments are left alone. Callers therefore always use the return value,
``out = kernels.window_gemv(G, v, offsets, out)``, and the registry hands
out the compiled kernels returning ``out`` the same way.

In place only, for the sparse (NumPy/CuPy) paths and the fused CG update
that pcg uses on mutable namespaces: ``csr_spmv_dot``, ``dia_spmv_dot``,
``cg_update_xr``, the SOR sweeps, ``csr_triangular_solve``, ``csr_ichol0``,
``kaczmarz_run`` and the CountSketch kernels.
"""

from __future__ import annotations

from functools import lru_cache

from array_api_compat import array_namespace


@lru_cache(maxsize=None)
def writes_in_place(xp) -> bool:
    """Whether arrays of namespace ``xp`` support item assignment (decided once per namespace).

    False for JAX, whose arrays are immutable; True for NumPy, CuPy and
    ``array_api_strict``. Probed on a one-element array of ``xp`` rather
    than by name, so any other library is classified by what it does.

    Examples
    --------
    >>> import numpy as np
    >>> from array_api_compat import array_namespace
    >>> writes_in_place(array_namespace(np.zeros(1)))
    True
    """
    probe = xp.zeros((1,))
    try:
        probe[0] = 1.0
    except Exception:  # TypeError for JAX; any refusal means: build new arrays
        return False
    return True


def _store(xp, out, value):
    """The kernel's result ``value`` in ``out``'s dtype: written into ``out`` (and ``out``
    returned) where ``xp`` writes in place, else returned as a new array."""
    value = xp.astype(value, out.dtype, copy=False)
    if writes_in_place(xp):
        out[...] = value
        return out
    return value


def dot(a, b) -> float:
    """Return ``a . b``; for complex arrays the real part of ``conj(a) . b``.

    ``conj(a) . b`` is ``numpy.vdot``; CG on a Hermitian ``A`` needs only its
    real part (``r^H r``, ``r^H M r``, ``p^H A p`` are real up to rounding).
    """
    xp = array_namespace(a, b)
    if xp.isdtype(a.dtype, "complex floating"):
        return float(xp.real(xp.sum(xp.conj(a) * b)))
    return float(xp.sum(a * b))


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


def csr_check(indptr, indices, n_cols: int, check_order: bool = True):
    """Check a compressed structure: ``(code, row, value, canonical)``.

    Codes as :func:`cext.numba.structure.csr_check`: 0 valid, 1 ``indptr``
    does not start at 0, 2 ``indptr`` decreases after ``row``, 3 it ends
    beyond ``len(indices)``, 4 index ``value`` in ``row`` is outside
    ``[0, n_cols)``. ``canonical``: every row strictly increasing (False,
    unexamined, with ``check_order=False``).
    """
    xp = array_namespace(indptr, indices)
    n = indptr.shape[0] - 1
    if n < 0:
        raise ValueError("indptr must have at least one entry")
    if int(indptr[0]) != 0:
        return 1, 0, int(indptr[0]), False
    if n == 0:
        return 0, -1, 0, True
    decreasing = (indptr[1:] - indptr[:-1]) < 0
    if bool(xp.any(decreasing)):
        row = int(xp.argmax(xp.astype(decreasing, xp.int8)))
        return 2, row, int(indptr[row + 1]), False
    nnz = int(indptr[n])
    if nnz > indices.shape[0]:
        return 3, n, nnz, False
    columns = indices[:nnz]
    positions = xp.arange(nnz, dtype=indptr.dtype)
    row_of = xp.searchsorted(indptr, positions, side="right") - 1
    bad = (columns < 0) | (columns >= n_cols)
    if bool(xp.any(bad)):
        first = int(xp.argmax(xp.astype(bad, xp.int8)))
        return 4, int(row_of[first]), int(columns[first]), False
    if not check_order:
        return 0, -1, 0, False
    same_row = row_of[1:] == row_of[:-1]
    increasing = columns[1:] > columns[:-1]
    return 0, -1, 0, bool(xp.all(increasing | ~same_row))


def dia_spmv(offsets, values, x, out):
    """``out = A @ x`` for row-aligned DIA storage ``values[d, i] = A[i, i + offsets[d]]``;
    returns ``out``."""
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
    return _store(xp, out, acc)


def dia_spmv_dot(offsets, values, p, q) -> float:
    """``q = A @ p`` (in place); return ``p . q``."""
    dia_spmv(offsets, values, p, q)
    return dot(p, q)


def cg_update_xr(x, r, p, q, alpha) -> float:
    """``x += alpha p``; ``r -= alpha q`` in place; return the new ``r . r``.

    In place only: :func:`linsolve.pcg` updates ``x`` and ``r`` functionally
    on namespaces without in-place writes.
    """
    x[...] = x + alpha * p
    r[...] = r - alpha * q
    return dot(r, r)


def cg_update_xrz(x, r, p, q, alpha, scale, z):
    """``x += alpha p``; ``r -= alpha q``; ``z = scale * r`` in place; return ``(r . r, r . z)``.

    In place only, like :func:`cg_update_xr` (pcg's Jacobi-preconditioned update).
    """
    x[...] = x + alpha * p
    r[...] = r - alpha * q
    z[...] = scale * r
    return dot(r, r), dot(r, z)


def cg_update_p(p, z, beta):
    """``p = z + beta p``; returns ``p`` (written in place where the namespace allows)."""
    xp = array_namespace(p, z)
    return _store(xp, p, z + beta * p)


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


def sor_lagged_sweep(indptr, mid, indices, data, diag, b, x_old, x_new, omega, color_ptr) -> float:
    """``x_new <- SOR(x_old)`` on a system in sweep order; returns ``||b - A x_old||^2``.

    Rows left of ``mid[i]`` read the new values, the others the old ones
    (see the Numba twin). The arithmetic follows the ordering, as there:
    natural (``color_ptr`` of length <= 1) sums the upper part first,
    coloured sums each row once in CSR order.
    """
    total = 0.0
    colored = len(color_ptr) > 1
    for i in range(b.shape[0]):
        xi, bi, di = float(x_old[i]), float(b[i]), float(diag[i])
        if colored:
            sigma = sigma_old = 0.0
            for jj in range(int(indptr[i]), int(indptr[i + 1])):
                j = int(indices[jj])
                sigma += float(data[jj]) * float(x_new[j] if j < i else x_old[j])
                sigma_old += float(data[jj]) * float(x_old[j])
            total += (bi - di * xi - sigma_old) ** 2
            x_new[i] = (1.0 - omega) * xi + omega * ((bi - sigma) / di)
            continue
        lower_new = lower_old = upper = 0.0
        for jj in range(int(indptr[i]), int(mid[i])):
            j = int(indices[jj])
            lower_new += float(data[jj]) * float(x_new[j])
            lower_old += float(data[jj]) * float(x_old[j])
        for jj in range(int(mid[i]), int(indptr[i + 1])):
            upper += float(data[jj]) * float(x_old[int(indices[jj])])
        total += (bi - di * xi - lower_old - upper) ** 2
        weight = omega / di  # the Numba twin's arithmetic: see its comment
        x_new[i] = ((1.0 - omega) * xi + weight * (bi - upper)) - weight * lower_new
    return total


def sor_reverse_sweep(indptr, indices, data, diag, b, x, omega, color_ptr) -> None:
    """One backward SOR sweep in place on a system in sweep order."""
    sor_sweep_backward(indptr, indices, data, diag, b, x, omega)


def sor_residual_norm2_ordered(indptr, mid, indices, data, diag, b, x, color_ptr) -> float:
    """``||b - (D + O) x||^2`` for a system in sweep order, in :func:`sor_lagged_sweep`'s arithmetic."""
    total = 0.0
    for i in range(b.shape[0]):
        if len(color_ptr) > 1:
            parts = [sum(float(data[jj]) * float(x[int(indices[jj])])
                         for jj in range(int(indptr[i]), int(indptr[i + 1])))]
        else:
            parts = [sum(float(data[jj]) * float(x[int(indices[jj])]) for jj in rows)
                     for rows in (range(int(indptr[i]), int(mid[i])),
                                  range(int(mid[i]), int(indptr[i + 1])))]
        residual = float(b[i]) - float(diag[i]) * float(x[i])
        for part in parts:
            residual -= part
        total += residual ** 2
    return total


def sor_run_lagged(indptr, mid, indices, data, diag, b, x, work, omega, symmetric, color_ptr,
                   tol, grow_limit, maxiter, norms, start=0, check_every=1,
                   measure_end=True) -> int:
    """:func:`sor_run` with the residual of ``x_k`` taken from sweep ``k + 1`` (see the Numba twin).

    Measured for ``k`` a multiple of ``check_every`` (NaN otherwise) and at
    ``maxiter`` when ``measure_end``; a NaN ``norms[start]`` is measured too.
    """
    import math

    k = start
    while k < maxiter:
        r2 = sor_lagged_sweep(indptr, mid, indices, data, diag, b, x, work, omega, color_ptr)
        if k > start or math.isnan(norms[k]):
            if k % check_every == 0:
                rnorm = math.sqrt(r2) if math.isfinite(r2) else float("nan")
                norms[k] = rnorm
                if not (rnorm > tol and rnorm <= grow_limit):
                    return k
            else:
                norms[k] = float("nan")
        if symmetric:
            sor_reverse_sweep(indptr, indices, data, diag, b, work, omega, color_ptr)
        x[...] = work
        k += 1
    if k > start:
        r2 = sor_residual_norm2_ordered(indptr, mid, indices, data, diag, b, x, color_ptr) \
            if measure_end else float("nan")
        norms[k] = math.sqrt(r2) if r2 >= 0 else float("nan")
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


# --- M-FAC window passes (oracle twins of cext/numba/mfac.py) ---
# The window is read in its own dtype and summed in float64, a column chunk
# at a time so that the float64 copy stays at k x _WINDOW_CHUNK.

_WINDOW_CHUNK = 1 << 16


def _window_pieces(block_offsets):
    """``(block, start, stop)`` column pieces of at most ``_WINDOW_CHUNK``, block by block."""
    offsets = [int(o) for o in block_offsets]
    for b in range(len(offsets) - 1):
        for s in range(offsets[b], offsets[b + 1], _WINDOW_CHUNK):
            yield b, s, min(s + _WINDOW_CHUNK, offsets[b + 1])


def window_gemv(G, v, block_offsets, out):
    """``out[b, i] = sum_{j in block b} G[i, j] v[j]`` in float64, rows ``i < out.shape[1]``;
    returns ``out``."""
    xp = array_namespace(G, v, out)
    k = out.shape[1]
    nblocks = len(block_offsets) - 1
    rows = [xp.zeros((k,), dtype=xp.float64) for _ in range(nblocks)]
    for b, s, e in _window_pieces(block_offsets):
        rows[b] = rows[b] + xp.astype(G[:k, s:e], xp.float64) @ xp.astype(v[s:e], xp.float64)
    if nblocks == 0:
        return out
    return _store(xp, out, xp.stack(rows, axis=0))


def window_axpy_gemv_t(G, coef, v, alpha, beta, block_offsets, out):
    """``out[j] = alpha v[j] + beta sum_i coef[b(j), i] G[i, j]`` in float64, rounded once;
    returns ``out``.

    Rows ``i < k = coef.shape[1]`` of ``G`` are read.
    """
    xp = array_namespace(G, coef, v, out)
    k = coef.shape[1]
    pieces = []  # in column order: the blocks tile [0, d) in order, and so do their chunks
    for b, s, e in _window_pieces(block_offsets):
        combination = coef[b, :] @ xp.astype(G[:k, s:e], xp.float64)
        pieces.append(alpha * xp.astype(v[s:e], xp.float64) + beta * combination)
    if not pieces:
        return out
    return _store(xp, out, xp.concat(pieces))


def window_push_gemv(G, slot, g, block_offsets, out):
    """``G[slot] = g`` (in the window dtype), then ``window_gemv(G, G[slot], ..., out)``.

    Returns ``(G, out)``: the arguments, written in place, where the
    namespace allows; else a new window (``xp.where`` over a row mask) and a
    new ``out``.
    """
    xp = array_namespace(G, g, out)
    row = xp.astype(g, G.dtype)
    if writes_in_place(xp):
        G[slot, :] = row
    else:
        # A row mask rather than a concat of slices: the shapes do not depend on
        # slot, so a tracing library (JAX) compiles this once, not once per slot.
        at_slot = xp.reshape(xp.arange(G.shape[0]) == slot, (-1, 1))
        G = xp.where(at_slot, xp.reshape(row, (1, -1)), G)
    return G, window_gemv(G, row, block_offsets, out)


def spd_inverse_factor(A, out):
    """``out[b] = L_b^{-1}`` with ``A[b] = L_b L_b'``; returns ``out``, or None where Cholesky
    fails (the compiled kernels return a flag; the registry turns it into this)."""
    xp = array_namespace(A, out)
    try:
        if "cupy" in xp.__name__:
            # CuPy's cholesky neither raises nor returns NaN on failure unless told
            # to raise (GPU_REVIEW item 5): the factor would come back finite and wrong
            import cupyx

            with cupyx.errstate(linalg="raise"):
                L = xp.linalg.cholesky(A)
        else:
            L = xp.linalg.cholesky(A)
    except Exception:  # LinAlgError of whichever library
        return None
    if not bool(xp.all(xp.isfinite(L))):  # GPU libraries and JAX return NaN instead of raising
        return None
    return _store(xp, out, xp.linalg.inv(L))


def factor_apply(S, y, out):
    """``out[b] = S[b]' (S[b] y[b])``; returns ``out``."""
    xp = array_namespace(S, y, out)
    return _store(xp, out, (xp.matrix_transpose(S) @ (S @ y[..., None]))[..., 0])


# --- sketch-and-project (oracle twins of cext/numba/sketch.py: plain loops, small n) ---

def kaczmarz_run(indptr, indices, data, col_indptr, col_indices, col_data, row_norms2, rows,
                 x, r, tol, refresh, norms, start, running=None) -> int:
    """Randomized Kaczmarz steps with an incrementally updated residual (see cext.numba.sketch).

    ``running[0]``, when given and not negative, is the running ``||r||^2`` to
    resume from; it receives the running value at exit.
    """
    if running is not None and float(running[0]) >= 0.0:
        norm2 = float(running[0])
    else:
        norm2 = float(sum(float(v) * float(v) for v in r))
    tol2 = float(tol) ** 2
    refresh = max(int(refresh), 1)
    done = 0
    for i in (int(v) for v in rows):
        rn = float(row_norms2[i])
        if rn > 0.0:
            alpha = float(r[i]) / rn
            for jj in range(int(indptr[i]), int(indptr[i + 1])):
                j = int(indices[jj])
                coeff = alpha * float(data[jj])
                x[j] += coeff
                for kk in range(int(col_indptr[j]), int(col_indptr[j + 1])):
                    row = int(col_indices[kk])
                    old = float(r[row])
                    new = old - coeff * float(col_data[kk])
                    norm2 += new * new - old * old
                    r[row] = new
        done += 1
        if (start + done) % refresh == 0 or not norm2 > tol2:
            norm2 = float(sum(float(v) * float(v) for v in r))
        norms[start + done] = norm2 ** 0.5 if norm2 >= 0.0 else norm2
        if not norm2 > tol2:
            break
    if running is not None:
        running[0] = norm2
    return done


def countsketch_csr(indptr, indices, data, buckets, signs, out) -> None:
    """``out += S' A`` for the CountSketch (row ``i`` of CSR ``A`` to ``buckets[i]``, sign ``signs[i]``)."""
    for i in range(len(indptr) - 1):
        for jj in range(int(indptr[i]), int(indptr[i + 1])):
            out[int(buckets[i]), int(indices[jj])] += float(signs[i]) * float(data[jj])


def countsketch_dense(A, buckets, signs, out) -> None:
    """``out += S' A`` for a dense ``A``, in the array namespace of ``A``."""
    xp = array_namespace(A, out)
    for i in range(A.shape[0]):
        b = int(buckets[i])
        out[b, :] = out[b, :] + float(signs[i]) * xp.astype(A[i, :], out.dtype)


# --- Kronecker-factored layers (curvature.kronecker.kfac / curvature.kronecker.mkor) ---------------
# A batch of B same-shaped layers: X (B, m, n) holds each layer's (out, in)
# matrix; vec is column-major, so vec(L X R) = kron(R', L) vec(X).


def kron_matvec(left, right, X, out):
    """``out[b] = left[b] @ X[b] @ right[b]`` (float64 sums, rounded once); returns ``out``.

    With symmetric ``right = A`` and ``left = G`` this is
    ``kron(A, G) vec(X[b])`` on the column-major vec.
    """
    xp = array_namespace(left, right, X, out)
    f64 = xp.float64
    product = xp.astype(left, f64) @ xp.astype(X, f64) @ xp.astype(right, f64)
    return _store(xp, out, product)


def kron_eigen_solve(Ql, dl, Qr, dr, damping, X, out):
    """``out[b] = Ql[b] ((Ql[b]' X[b] Qr[b]) / (dl[b] dr[b]' + damping)) Qr[b]'``; returns ``out``.

    K-FAC's eigen-mode solve ``(kron(A, G) + damping I)^{-1} vec(X)`` with
    ``G = Ql diag(dl) Ql'`` and ``A = Qr diag(dr) Qr'``; float64 throughout.
    """
    xp = array_namespace(Ql, dl, Qr, dr, X, out)
    f64 = xp.float64
    Ql64, Qr64 = xp.astype(Ql, f64), xp.astype(Qr, f64)
    rotated = xp.matrix_transpose(Ql64) @ xp.astype(X, f64) @ Qr64
    scale = xp.astype(dl, f64)[:, :, None] * xp.astype(dr, f64)[:, None, :] + float(damping)
    product = Ql64 @ (rotated / scale) @ xp.matrix_transpose(Qr64)
    return _store(xp, out, product)


# The fused Chebyshev steps and the paired triangular solve live in their own
# modules, which import this one.
from .reference_chebyshev import csr_chebyshev_step, dia_chebyshev_step  # noqa: E402
from .reference_triangular import csr_triangular_pair_solve  # noqa: E402
