"""Array-API reference of :func:`cext.numba.triangular.csr_triangular_pair_solve`.

Kept apart from :mod:`cext.reference` while that module is edited
elsewhere; :mod:`cext.reference` re-exports it so that the registry can
fall back to it. Plain loops, one row at a time, in the order the Numba
kernel's one-thread sweep uses (which the parallel one matches bit for bit):
the test oracle, and the fallback for namespaces without compiled kernels.
"""

from __future__ import annotations


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
