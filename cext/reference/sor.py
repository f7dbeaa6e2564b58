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


def sor_split(indptr, indices, data, off_indptr, off_indices, off_data, diag, mid):
    """Plain-loop twin of :func:`cext.numba.sor.sor_split`: ``(row, finite)``."""
    import math

    n = indptr.shape[0] - 1
    off_indptr[0] = 0
    for i in range(n):
        start, end = int(indptr[i]), int(indptr[i + 1])
        columns = [int(j) for j in indices[start:end]]
        values = data[start:end]
        if (columns != sorted(set(columns)) or columns.count(i) != 1
                or any(float(v) == 0.0 for j, v in zip(columns, values) if j != i)):
            return i, False
        position = columns.index(i)
        if float(values[position]) == 0.0:
            return i, False
        diag[i] = values[position]
        if not math.isfinite(float(diag[i])):
            return i, False
        out = start - i
        for j, value in zip(columns, values):
            if j != i:
                off_indices[out] = j
                off_data[out] = value
                out += 1
        off_indptr[i + 1] = end - i - 1
        mid[i] = start - i + position
    finite = all(math.isfinite(float(v)) for v in off_data) and all(
        math.isfinite(float(v)) for v in diag)
    return n, finite


def sor_diagonal(indptr, indices, data, position, diag):
    """Plain-loop twin of :func:`cext.numba.sor.sor_diagonal`: ``(row, finite)``."""
    import math

    n = indptr.shape[0] - 1
    finite = all(math.isfinite(float(v)) for v in data[:int(indptr[-1])])
    for i in range(n):
        start, end = int(indptr[i]), int(indptr[i + 1])
        columns = [int(j) for j in indices[start:end]]
        if (columns != sorted(set(columns)) or i not in columns
                or any(float(v) == 0.0 for v in data[start:end])):
            return i, finite
        position[i] = start + columns.index(i)
        diag[i] = data[int(position[i])]
        if not math.isfinite(float(diag[i])):
            return i, finite
    return n, finite


def sor_split_full(indptr, indices, data, position, permutation, inverse, new_indptr, new_indices,
                   new_data, new_diag, new_mid, source, diag_source) -> int:
    """Plain-loop twin of :func:`cext.numba.sor.sor_split_full`."""
    import math

    new_indptr[0] = 0
    infinite = 0
    for k, i in enumerate(int(p) for p in permutation):
        entries = sorted((int(inverse[int(indices[jj])]), jj)
                         for jj in range(int(indptr[i]), int(indptr[i + 1]))
                         if jj != int(position[i]))
        first = int(new_indptr[k])
        for offset, (column, jj) in enumerate(entries):
            new_indices[first + offset] = column
            new_data[first + offset] = data[jj]
            source[first + offset] = jj
            infinite += not math.isfinite(float(new_data[first + offset]))
        new_indptr[k + 1] = first + len(entries)
        new_mid[k] = first + sum(column < k for column, _ in entries)
        new_diag[k] = data[int(position[i])]
        diag_source[k] = int(position[i])
    return infinite


def sor_gather_values(data, source, diag_source, off_data, diag):
    """Plain-loop twin of :func:`cext.numba.sor.sor_gather_values`: ``(zeros, infinite)``."""
    import math

    zeros = infinite = 0
    for out, positions in ((diag, diag_source), (off_data, source)):
        for k, position in enumerate(positions):
            out[k] = data[int(position)]
            zeros += float(data[int(position)]) == 0.0
            infinite += not math.isfinite(float(out[k]))
    return zeros, infinite
