"""Array-API twins of :mod:`cext.numba.triangular`: triangular solves and IC(0).

Plain loops, one row at a time. :func:`csr_triangular_pair_solve` runs in the
order the Numba kernel's one-thread sweep uses (which the parallel one
matches bit for bit).
"""

from __future__ import annotations


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

    Dictionary-per-row version of the Numba kernel's sums.
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


def csr_triangular_pair_solve(lower_indptr, lower_indices, lower_data, upper_indptr,
                              upper_indices, upper_data, scale_in, scale_out, perm, segment_ptr,
                              stage_ptr, b, work, out, quad=False) -> None:
    """``out = P^T S_out (I + U)^{-1} (I + L)^{-1} S_in P b`` with plain loops.

    ``L``/``U``: CSR, strictly lower/upper entries only, in the permuted
    numbering; ``(P b)[i] = b[perm[i]]``. ``upper_*`` all None: ``U = L^T``,
    the backward sweep reading ``L`` by columns (rows of ``L`` from the last,
    each subtracting its final value from the rows it names). The stages are
    laid out in row order, so a sweep over all rows is the staged solve
    (``segment_ptr``, ``stage_ptr`` and ``quad``, the compiled kernel's
    unrolling hint, are accepted for the shared signature). Sums run in CSR
    order in the dtype of the arrays (Python floats for float64).

    Examples
    --------
    >>> import numpy as np
    >>> out, work = np.empty(2), np.empty(2)
    >>> one = np.ones(2)
    >>> csr_triangular_pair_solve(np.array([0, 0, 1]), np.array([0]), np.array([0.5]),
    ...                           np.array([0, 1, 1]), np.array([1]), np.array([0.5]),
    ...                           one, one, np.array([0, 1]), np.array([0, 2]), np.array([0, 1]),
    ...                           np.array([1.0, 1.5]), work, out)
    >>> out.tolist()
    [0.5, 1.0]
    """
    del segment_ptr, stage_ptr, quad
    transposed = upper_indptr is None
    if transposed != (upper_indices is None) or transposed != (upper_data is None):
        raise ValueError("upper_indptr, upper_indices and upper_data: all arrays or all None")
    n = work.shape[0]
    for i in range(n):
        acc = scale_in[i] * b[int(perm[i])]
        for jj in range(int(lower_indptr[i]), int(lower_indptr[i + 1])):
            acc = acc - lower_data[jj] * work[int(lower_indices[jj])]
        work[i] = acc
    if transposed:
        for k in range(n):
            i = n - 1 - k
            x = work[i]
            out[int(perm[i])] = scale_out[i] * x
            for jj in range(int(lower_indptr[i]), int(lower_indptr[i + 1])):
                j = int(lower_indices[jj])
                work[j] = work[j] - lower_data[jj] * x
        return
    for k in range(n):
        i = n - 1 - k
        acc = work[i]
        for jj in range(int(upper_indptr[i]), int(upper_indptr[i + 1])):
            acc = acc - upper_data[jj] * work[int(upper_indices[jj])]
        work[i] = acc
        out[int(perm[i])] = scale_out[i] * acc


def csr_triangular_pair_solve_block(lower_indptr, lower_indices, lower_data, upper_indptr,
                                    upper_indices, upper_data, scale_in, scale_out, perm,
                                    segment_ptr, stage_ptr, B, work, out, quad=False) -> None:
    """:func:`csr_triangular_pair_solve` on each column of the ``(n, k)`` block ``B``.

    One column after the other through the vector solve (which defines what
    each column must be); ``work`` and ``out`` are ``(n, k)``, written in place.

    Examples
    --------
    >>> import numpy as np
    >>> one, B = np.ones(2), np.array([[1.0, 2.0], [1.5, 3.0]])
    >>> out, work = np.empty_like(B), np.empty_like(B)
    >>> csr_triangular_pair_solve_block(np.array([0, 0, 1]), np.array([0]), np.array([0.5]),
    ...                                 None, None, None, one, one, np.array([0, 1]),
    ...                                 np.array([0, 2]), np.array([0, 1]), B, work, out)
    >>> out.tolist()
    [[0.5, 1.0], [1.0, 2.0]]
    """
    from array_api_compat import array_namespace

    xp = array_namespace(B)
    n = work.shape[0]
    for c in range(B.shape[1]):
        column_work = xp.zeros_like(work[:, c])
        column_out = xp.zeros_like(out[:, c])
        csr_triangular_pair_solve(lower_indptr, lower_indices, lower_data, upper_indptr,
                                  upper_indices, upper_data, scale_in, scale_out, perm,
                                  segment_ptr, stage_ptr, B[:, c], column_work, column_out, quad)
        for i in range(n):
            out[i, c] = column_out[i]
            work[i, c] = column_work[i]


def csr_ichol0_domains(indptr, indices, data, segment_ptr, stage_ptr) -> int:
    """:func:`csr_ichol0`, one row after the other (the domains give the same result)."""
    del segment_ptr, stage_ptr
    return csr_ichol0(indptr, indices, data)


def csr_permuted_lower(indptr, indices, perm, inverse, lower_indptr, lower_indices,
                       lower_source, lower_mirror) -> None:
    """The pattern of ``tril(A[perm][:, perm])``, each entry's position in ``A`` and its
    transpose's (-1 where not stored, and on the diagonal).

    Plain loops (a sort of each row, a dictionary of positions); see
    :func:`cext.numba.triangular.csr_permuted_lower`.
    """
    n = perm.shape[0]
    where = {}
    for r in range(n):
        for p in range(int(indptr[r]), int(indptr[r + 1])):
            where[(r, int(indices[p]))] = p
    lower_indptr[0] = 0
    at = 0
    for i in range(n):
        row = int(perm[i])
        entries = sorted((int(inverse[int(indices[p])]), p)
                         for p in range(int(indptr[row]), int(indptr[row + 1])))
        for j, p in entries:
            if j <= i:
                lower_indices[at] = j
                lower_source[at] = p
                lower_mirror[at] = -1 if j == i else where.get((int(perm[j]), row), -1)
                at += 1
        lower_indptr[i + 1] = at


def csr_strict_padded(lower_indptr, lower_indices, strict_indptr, strict_indices,
                      strict_from_lower, strict_rows) -> None:
    """Strict lower part of sorted lower CSR with each row padded at its start (plain loops)."""
    n = lower_indptr.shape[0] - 1
    for i in range(n):
        start, end = int(lower_indptr[i]), int(lower_indptr[i + 1])
        if end > start and int(lower_indices[end - 1]) == i:
            end -= 1
        at = int(strict_indptr[i])
        lead = int(strict_indptr[i + 1]) - at - (end - start)
        for q in [start] * lead + list(range(start, end)):
            strict_indices[at] = lower_indices[q]
            strict_from_lower[at] = -1 if at - int(strict_indptr[i]) < lead else q
            strict_rows[at] = i
            at += 1


def csr_scaled_gather(indptr, indices, source, values, left, right, out) -> None:
    """``out[p] = (left[i] * values[source[p]]) * right[indices[p]]``, 0 for ``source < 0``."""
    n = indptr.shape[0] - 1
    for i in range(n):
        for p in range(int(indptr[i]), int(indptr[i + 1])):
            s = int(source[p])
            out[p] = 0 if s < 0 else (left[i] * values[s]) * right[int(indices[p])]


def csr_symmetric_scaled_gather(indptr, indices, source, mirror, orphans, values, left, right,
                                out) -> bool:
    """:func:`csr_scaled_gather` and whether the sourced values equal their mirrors' (0 where
    none) with every orphan zero."""
    csr_scaled_gather(indptr, indices, source, values, left, right, out)
    for s, m in zip(source.tolist(), mirror.tolist()):
        if s >= 0 and float(values[s]) != (float(values[m]) if m >= 0 else 0.0):
            return False
    return all(float(values[p]) == 0.0 for p in orphans.tolist())


def csr_mirror(indptr, indices, mirror) -> None:
    """``mirror[p]``: position of ``A[j, i]`` for entry ``p = (i, j)``, or -1 (a dictionary)."""
    n = indptr.shape[0] - 1
    where = {}
    for i in range(n):
        for p in range(int(indptr[i]), int(indptr[i + 1])):
            where[(i, int(indices[p]))] = p
    for (i, j), p in where.items():
        mirror[p] = where.get((j, i), -1)


def ssor_symmetric_numeric(strict_indptr, strict_first, strict_indices, strict_source, mirror,
                           orphans, diagonal_source, inverse, data, omega, scale, lower) -> int:
    """SSOR's symmetric split from ``A``'s values (plain loops): 0, 1 (a diagonal entry not
    positive and finite) or 2 (not symmetric); see
    :func:`cext.numba.triangular.ssor_symmetric_numeric`."""
    import math

    del strict_first  # the padding is where strict_source < 0
    n = scale.shape[0]
    for r in range(n):
        s = int(diagonal_source[r])
        d = float(data[s]) if s >= 0 else 0.0
        if not (d > 0.0 and math.isfinite(d)):
            return 1
        scale[int(inverse[r])] = 1.0 / math.sqrt(d)
    symmetric = csr_symmetric_scaled_gather(strict_indptr, strict_indices, strict_source,
                                            mirror, orphans, data, omega * scale, scale, lower)
    return 0 if symmetric else 2


def ssor_symmetric_equal(strict_indptr, strict_first, strict_indices, strict_source, mirror,
                         orphans, diagonal_source, inverse, data, omega, scale, lower) -> bool:
    """Whether :func:`ssor_symmetric_numeric` of ``data`` returns 0 with exactly ``scale`` and
    ``lower`` (computed into new arrays, then compared)."""
    import numpy as np

    fresh_scale, fresh_lower = np.empty_like(scale), np.empty_like(lower)
    return (ssor_symmetric_numeric(strict_indptr, strict_first, strict_indices, strict_source,
                                   mirror, orphans, diagonal_source, inverse, data, omega,
                                   fresh_scale, fresh_lower) == 0
            and np.array_equal(fresh_scale, scale) and np.array_equal(fresh_lower, lower))


def csr_ichol0_numeric(indptr, indices, source, data, shift, segment_ptr, stage_ptr, values,
                       strict_indptr, inverse_diagonal, strict) -> int:
    """IC(0) of ``tril(B)`` gathered from ``data`` and its unit-scaled padded strict part
    (plain loops over :func:`csr_ichol0`); see :func:`cext.numba.triangular.csr_ichol0_numeric`."""
    del segment_ptr, stage_ptr
    n = indptr.shape[0] - 1
    for p in range(values.shape[0]):
        values[p] = data[int(source[p])]
    if shift:
        for i in range(n):
            last = int(indptr[i + 1]) - 1
            if last >= int(indptr[i]) and int(indices[last]) == i:
                values[last] += shift * values[last]
    failed = csr_ichol0(indptr, indices, values)
    if failed >= 0:
        return failed
    for i in range(n):
        start, diag = int(indptr[i]), int(indptr[i + 1]) - 1
        inverse_diagonal[i] = 1 / values[diag]
        at = int(strict_indptr[i])
        lead = int(strict_indptr[i + 1]) - at - (diag - start)
        for t in range(lead):
            strict[at + t] = 0
        for p in range(start, diag):
            strict[at + lead + p - start] = inverse_diagonal[i] * values[p]
    return -1
