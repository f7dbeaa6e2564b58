"""Sketch-and-project kernels (Numba): randomized Kaczmarz steps and CountSketch.

``kaczmarz_run`` performs row-action steps of randomized Kaczmarz on a CSR
matrix and keeps the residual ``r = b - A x`` up to date *incrementally*:
the step ``x += alpha a_i`` changes the residual by ``-alpha A a_i``, which
touches the columns of ``A`` in the support of row ``i`` (the CSC copy), so a
step costs O(nnz(row i) + nnz of those columns) <= O(nnz), never a full
product, and the squared residual norm is updated with the same touches.
The running ``||r||^2`` is refreshed from ``r`` every ``refresh`` steps and
before any convergence verdict, so the cancellation of the incremental
update cannot fake convergence. Mirrors :mod:`cext.cupy.sketch` (CountSketch
of a dense matrix) and :mod:`cext.reference.sketch`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_SEQ = dict(nogil=True, cache=True, boundscheck=False)


@nb.njit(**_SEQ)
def _sum_squares(r):
    total = 0.0
    for i in range(r.shape[0]):
        total += r[i] * r[i]
    return total


@nb.njit(**_SEQ)
def _kaczmarz_run(indptr, indices, data, col_indptr, col_indices, col_data, row_norms2,
                  rows, x, r, tol, refresh, norms, start, running):
    norm2 = running[0] if running[0] >= 0.0 else _sum_squares(r)
    tol2 = tol * tol
    done = 0
    for step in range(rows.shape[0]):
        i = rows[step]
        rn = row_norms2[i]
        if rn > 0.0:
            alpha = r[i] / rn
            for jj in range(indptr[i], indptr[i + 1]):
                j = indices[jj]
                coeff = alpha * data[jj]
                x[j] += coeff
                for kk in range(col_indptr[j], col_indptr[j + 1]):
                    row = col_indices[kk]
                    old = r[row]
                    new = old - coeff * col_data[kk]
                    norm2 += new * new - old * old
                    r[row] = new
        done += 1
        if (start + done) % refresh == 0 or not (norm2 > tol2):
            norm2 = _sum_squares(r)  # exact again: also the verdict below
        norms[start + done] = np.sqrt(norm2) if norm2 > 0.0 else (0.0 if norm2 == 0.0 else norm2)
        if not (norm2 > tol2):  # converged, or NaN
            break
    running[0] = norm2
    return done


def kaczmarz_run(indptr, indices, data, col_indptr, col_indices, col_data, row_norms2, rows,
                 x, r, tol, refresh, norms, start, running=None) -> int:
    """Randomized Kaczmarz steps on rows ``rows[0], rows[1], ...`` (float64, int64 indices).

    Each step projects ``x`` onto ``{y : a_i y = b_i}`` using the stored
    residual entry ``r[i] = b_i - a_i x`` and updates ``x`` and ``r`` in
    place. ``norms[start + k]`` receives ``||r||`` after step ``k``. Stops
    early when ``||r|| <= tol`` (recomputed exactly from ``r``) or at NaN;
    returns the number of steps done. A row with zero norm leaves ``x`` and
    ``r`` unchanged but still counts as a step (the caller's ``row_steps``
    count the rows drawn, as uniform sampling draws them).

    ``running``, a float64 array of one entry, carries the incrementally
    updated ``||r||^2`` from one call to the next: read at entry unless
    negative (then computed from ``r``, as without ``running``), written at
    exit. A run split into several calls on consecutive slices of ``rows``
    then gives the same bits as one call, so a caller can return to Python
    (Ctrl-C) between slices without changing the iteration.
    """
    if running is None:
        running = np.full(1, -1.0)
    return _kaczmarz_run(indptr, indices, data, col_indptr, col_indices, col_data, row_norms2,
                         rows, x, r, float(tol), max(int(refresh), 1), norms, int(start),
                         running)


@nb.njit(**_SEQ)
def _countsketch_csr(indptr, indices, data, buckets, signs, out):
    for i in range(indptr.shape[0] - 1):
        b = buckets[i]
        s = signs[i]
        for jj in range(indptr[i], indptr[i + 1]):
            out[b, indices[jj]] += s * data[jj]


def countsketch_csr(indptr, indices, data, buckets, signs, out) -> None:
    """``out += S' A`` for the CountSketch ``S`` (row ``i`` of A goes to ``buckets[i]`` times ``signs[i]``).

    ``A`` in CSR (int64 indices, float64 data); ``out`` is a dense
    ``(s, n)`` float64 array, zeroed by the caller. O(nnz).
    """
    _countsketch_csr(indptr, indices, data, buckets, signs, out)


@nb.njit(**_SEQ)
def _countsketch_dense(A, buckets, signs, out):
    for i in range(A.shape[0]):
        b = buckets[i]
        s = signs[i]
        for j in range(A.shape[1]):
            out[b, j] += s * A[i, j]


def countsketch_dense(A, buckets, signs, out) -> None:
    """``out += S' A`` for a dense row-major ``A`` (see :func:`countsketch_csr`)."""
    _countsketch_dense(A, buckets, signs, out)
