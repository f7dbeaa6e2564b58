"""Twins of :mod:`cext.numba.sketch` and :mod:`cext.cupy.sketch`: Kaczmarz steps and CountSketch.

Plain loops, for small ``n``.
"""

from __future__ import annotations

from array_api_compat import array_namespace


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
