"""Array-API twins of :mod:`cext.numba.sor` and :mod:`cext.cupy.sor`: SOR on rows stored by colour.

Plain loops, for small ``n``. The CSR arrays hold the off-diagonal entries
only, ``diag`` the diagonal; stored row ``k`` is unknown ``color_rows[k]``
(natural storage where ``color_rows`` is empty).
"""

from __future__ import annotations


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
