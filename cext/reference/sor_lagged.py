"""Array-API twins of :mod:`cext.numba.sor_lagged`: SOR on a system stored in sweep order.

Plain loops, for small ``n``, in the Numba kernels' order of arithmetic
(natural orderings sum the upper part of a row first, coloured ones each
row once in CSR order).
"""

from __future__ import annotations

from .sor import sor_sweep_backward


def sor_lagged_sweep(indptr, mid, indices, data, diag, b, x_old, x_new, omega, color_ptr,
                     skip=0) -> float:
    """``x_new <- SOR(x_old)`` on a system in sweep order; returns ``||b - A x_old||^2``.

    Rows left of ``mid[i]`` read the new values, the others the old ones
    (see the Numba twin). The arithmetic follows the ordering, as there:
    natural (``color_ptr`` of length <= 1) sums the upper part first,
    coloured sums each row once in CSR order. ``skip=1``: the arrays are the
    whole matrix's, row ``i``'s diagonal entry at ``mid[i]`` (natural only).
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
        for jj in range(int(mid[i]) + skip, int(indptr[i + 1])):
            upper += float(data[jj]) * float(x_old[int(indices[jj])])
        total += (bi - di * xi - lower_old - upper) ** 2
        weight = omega / di  # the Numba twin's arithmetic: see its comment
        x_new[i] = ((1.0 - omega) * xi + weight * (bi - upper)) - weight * lower_new
    return total


def sor_reverse_sweep(indptr, indices, data, diag, b, x, omega, color_ptr) -> None:
    """One backward SOR sweep in place on a system in sweep order."""
    sor_sweep_backward(indptr, indices, data, diag, b, x, omega)


def sor_residual_norm2_ordered(indptr, mid, indices, data, diag, b, x, color_ptr,
                               skip=0) -> float:
    """``||b - (D + O) x||^2`` for a system in sweep order, in :func:`sor_lagged_sweep`'s arithmetic."""
    total = 0.0
    for i in range(b.shape[0]):
        if len(color_ptr) > 1:
            parts = [sum(float(data[jj]) * float(x[int(indices[jj])])
                         for jj in range(int(indptr[i]), int(indptr[i + 1])))]
        else:
            parts = [sum(float(data[jj]) * float(x[int(indices[jj])]) for jj in rows)
                     for rows in (range(int(indptr[i]), int(mid[i])),
                                  range(int(mid[i]) + skip, int(indptr[i + 1])))]
        residual = float(b[i]) - float(diag[i]) * float(x[i])
        for part in parts:
            residual -= part
        total += residual ** 2
    return total


def sor_run_lagged(indptr, mid, indices, data, diag, b, x, work, omega, symmetric, color_ptr,
                   tol, grow_limit, maxiter, norms, start=0, check_every=1,
                   measure_end=True, skip=0) -> int:
    """:func:`sor_run` with the residual of ``x_k`` taken from sweep ``k + 1`` (see the Numba twin).

    Measured for ``k`` a multiple of ``check_every`` (NaN otherwise) and at
    ``maxiter`` when ``measure_end``; a NaN ``norms[start]`` is measured too.
    """
    import math

    k = start
    while k < maxiter:
        r2 = sor_lagged_sweep(indptr, mid, indices, data, diag, b, x, work, omega, color_ptr,
                              skip)
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
        r2 = sor_residual_norm2_ordered(indptr, mid, indices, data, diag, b, x, color_ptr,
                                        skip) \
            if measure_end else float("nan")
        norms[k] = math.sqrt(r2) if r2 >= 0 else float("nan")
    return k
