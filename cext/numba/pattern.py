"""The pattern-only (symbolic) layout of IC(0) and SSOR, built once per pattern (Numba).

:mod:`linsolve.precond._pattern` derives from ``A``'s pattern and an
ordering ``perm`` the lower triangle of ``B = A[perm][:, perm]`` and the
padded strictly lower layout the sweeps read. Here that is three passes
over ``A``'s own ``indptr``/``indices`` (any integer dtype, no copies):

- :func:`csr_pattern_mirror`: whether the pattern is symmetric (rows
  sorted, no duplicates), the position of each entry's transpose and of
  each diagonal entry. One pass (parallel over row blocks), no searches:
  row ``i``'s entries are matched, ``i`` rising, against the next unmatched
  entry of each row they point to, which in a symmetric pattern is always
  column ``i``.
- :func:`csr_lower_counts`: each row's strictly lower length in ``B`` and
  where its diagonal sits in ``A`` (parallel over rows).
- :func:`csr_lower_fill`: each row of ``tril(B)``, sorted (rows are short:
  an insertion sort), written at once in both layouts with its positions
  in ``A``, its padding and its mirrors (parallel over rows; rows write
  disjoint ranges).

Which order to walk in. The count reads ``A`` in its own row order (its
rows in ``perm``'s order are a random walk through memory: several times
slower). The fill walks ``B``'s rows in order, gathering ``A``'s, and writes
each row's six outputs where the previous row's ended: written in ``A``'s
order instead, the same rows scattered their stores over the outputs, and
stores that miss the cache fill the store buffer and stall the loop (P1
tetrahedra, one thread: 65-70 against 55 ms; P2 tetrahedra 11 against
7 ms, CPU time). Inside a row the entries left of the diagonal are kept
without a branch (whether one is, is a coin toss) and sorted in a small
buffer.

The parallel kernels are handed out wrapped by
:func:`cext.threads.managed`. Mirrors :mod:`cext.reference.pattern`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_SEQ = dict(nogil=True, cache=True, boundscheck=False)
_PAR = dict(_SEQ, parallel=True)


@nb.njit(**_PAR)
def _pattern_mirror(indptr, indices, mirror, diagonal, threads):
    n = indptr.shape[0] - 1
    nnz = indptr[n]
    chunks = max(1, min(threads, n))
    # rows split at equal shares of the entries; each chunk keeps its own cursors
    bounds = np.empty(chunks + 1, dtype=np.int64)
    bounds[0] = 0
    for t in range(1, chunks):
        bounds[t] = np.searchsorted(indptr, (nnz * t) // chunks)
    bounds[chunks] = n
    failed = np.zeros(chunks, dtype=np.bool_)
    for t in prange(chunks):
        lo = bounds[t]
        hi = bounds[t + 1]
        # cursor[j]: the next entry of row j to be matched by this chunk's rows, from the
        # first entry of row j at column lo or after
        cursor = np.empty(n, dtype=indptr.dtype)
        for j in range(n):
            q = indptr[j]
            top = indptr[j + 1]
            if lo > 0:
                while q < top:
                    mid = (q + top) // 2
                    if indices[mid] < lo:
                        q = mid + 1
                    else:
                        top = mid
            cursor[j] = q
        i = lo
        while i < hi and not failed[t]:
            previous = -1
            diagonal[i] = -1
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if j <= previous:
                    failed[t] = True
                    break
                previous = j
                if j == i:
                    diagonal[i] = p
                q = cursor[j]
                if q >= indptr[j + 1] or indices[q] != i:
                    failed[t] = True
                    break
                mirror[p] = q
                cursor[j] = q + 1
            i += 1
    return not failed.any()


def csr_pattern_mirror(indptr, indices, mirror, diagonal) -> bool:
    """Whether the CSR pattern is symmetric with strictly increasing rows; if so, the mirrors.

    Writes ``mirror[p]`` (length ``nnz``), the position of ``A[j, i]`` for
    the entry ``p = (i, j)``, and ``diagonal[i]`` (length ``n``), the
    position of ``A[i, i]`` or -1; where the answer is False their contents
    are undefined. Row ``i``'s entries are matched, ``i`` rising, against
    the next unmatched entry of each row they point to, which in a symmetric
    pattern is always column ``i``: no searches, except one a row for
    each thread after the first, where its rows start.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[1.0, 2.0], [2.0, 0.0]]))
    >>> A.eliminate_zeros()
    >>> mirror, diagonal = np.empty(3, np.int64), np.empty(2, np.int64)
    >>> csr_pattern_mirror(A.indptr, A.indices, mirror, diagonal)
    True
    >>> mirror.tolist(), diagonal.tolist()
    ([0, 2, 1], [0, -1])
    >>> B = sp.csr_array(np.array([[1.0, 2.0], [0.0, 3.0]]))
    >>> csr_pattern_mirror(B.indptr, B.indices, np.empty(3, np.int64), diagonal)
    False
    """
    return bool(_pattern_mirror(indptr, indices, mirror, diagonal, nb.get_num_threads()))


@nb.njit(**_PAR)
def _lower_counts(indptr, indices, inverse, counts, diagonal):
    n = inverse.shape[0]
    for row in prange(n):
        i = inverse[row]
        count = 0
        where = -1
        for p in range(indptr[row], indptr[row + 1]):
            j = inverse[indices[p]]
            count += j < i  # no branch: whether an entry is left of the diagonal is a coin toss
            if j == i:
                where = p
        counts[i] = count
        diagonal[i] = where


def csr_lower_counts(indptr, indices, inverse, counts, diagonal) -> None:
    """Row ``i`` of ``B = A[perm][:, perm]``: its strictly lower length and its diagonal in ``A``.

    ``inverse[perm[i]] = i``. Writes ``counts[i]`` (entries of ``B``'s row
    ``i`` left of the diagonal) and ``diagonal[i]`` (the position of
    ``A[perm[i], perm[i]]`` in ``A``'s ``indices``, -1 if not stored). Reads
    ``A`` in its own row order: its rows taken in ``perm``'s order (a
    random walk through memory) took several times as long.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[4.0, 1.0, 0.0], [1.0, 4.0, 2.0], [0.0, 2.0, 0.0]]))
    >>> perm = np.array([2, 0, 1]); inverse = np.argsort(perm)
    >>> counts, diagonal = np.empty(3, np.int64), np.empty(3, np.int64)
    >>> csr_lower_counts(A.indptr, A.indices, inverse, counts, diagonal)
    >>> counts.tolist(), diagonal.tolist()
    ([0, 0, 2], [-1, 0, 3])
    """
    _lower_counts(indptr, indices, inverse, counts, diagonal)


@nb.njit(**_PAR)
def _lower_fill(indptr, indices, perm, inverse, mirror, lower_indptr, strict_indptr,
                lower_indices, lower_source, strict_indices, strict_from_lower, strict_source,
                strict_mirror, threads):
    n = perm.shape[0]
    longest = 0
    for row in range(n):
        longest = max(longest, indptr[row + 1] - indptr[row])
    have_mirror = mirror.shape[0] > 0
    chunks = max(1, min(threads, n))
    for t in prange(chunks):
        # one row at a time in the thread's own buffer, then written out in order
        columns = np.empty(longest + 1, dtype=np.int64)
        sources = np.empty(longest + 1, dtype=np.int64)
        for i in range((n * t) // chunks, (n * (t + 1)) // chunks):
            row = perm[i]
            count = 0
            where = -1
            for p in range(indptr[row], indptr[row + 1]):
                j = inverse[indices[p]]
                # every entry is stored, the ones left of the diagonal kept: no branch on
                # what is a coin toss
                columns[count] = j
                sources[count] = p
                count += j < i
                if j == i:
                    where = p
            for k in range(1, count):  # insertion sort: the rows are short
                j = columns[k]
                p = sources[k]
                q = k
                while q > 0 and columns[q - 1] > j:
                    columns[q] = columns[q - 1]
                    sources[q] = sources[q - 1]
                    q -= 1
                columns[q] = j
                sources[q] = p
            start = lower_indptr[i]
            for k in range(count):
                lower_indices[start + k] = columns[k]
                lower_source[start + k] = sources[k]
            if where >= 0:
                lower_indices[start + count] = i
                lower_source[start + count] = where
            # the strict part, padded at its start with the row's first column
            to = strict_indptr[i]
            lead = strict_indptr[i + 1] - to - count
            for k in range(lead):
                strict_indices[to + k] = columns[0]
                strict_from_lower[to + k] = -1
                strict_source[to + k] = -1
                strict_mirror[to + k] = -1
            to += lead
            for k in range(count):
                p = sources[k]
                strict_indices[to + k] = columns[k]
                strict_from_lower[to + k] = start + k
                strict_source[to + k] = p
                strict_mirror[to + k] = mirror[p] if have_mirror else -1


def csr_lower_fill(indptr, indices, perm, inverse, mirror, lower_indptr, strict_indptr,
                   lower_indices, lower_source, strict_indices, strict_from_lower,
                   strict_source, strict_mirror) -> None:
    """``tril(B)``, ``B = A[perm][:, perm]``, and its strictly lower part padded at row starts.

    ``A`` is canonical CSR; ``inverse[perm[i]] = i``; ``lower_indptr`` and
    ``strict_indptr`` (each row's strict length rounded up as the caller
    pads) are given; ``mirror`` is each entry's transpose in ``A`` (-1 where
    not stored), or empty where unknown. Writes ``lower_indices`` (sorted in
    each row, the diagonal last where stored) and ``lower_source`` (each
    entry's position in ``A``); and for the padded strict layout
    ``strict_indices`` (padding repeats the row's first column),
    ``strict_from_lower`` (the position in the lower arrays),
    ``strict_source`` (in ``A``) and ``strict_mirror`` (the transpose's
    position in ``A``), -1 for padding.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.csr_array(np.array([[4.0, 1.0, 0.0], [1.0, 4.0, 2.0], [0.0, 2.0, 4.0]]))
    >>> perm = np.array([2, 0, 1]); inverse = np.argsort(perm)
    >>> lower_indptr, strict_indptr = np.array([0, 1, 2, 5]), np.array([0, 0, 0, 4])
    >>> lower = [np.empty(5, np.int64) for _ in range(2)]
    >>> strict = [np.empty(4, np.int64) for _ in range(4)]
    >>> mirror = np.array([0, 2, 1, 3, 5, 4, 6])
    >>> csr_lower_fill(A.indptr, A.indices, perm, inverse, mirror, lower_indptr,
    ...                strict_indptr, *lower, *strict)
    >>> [a.tolist() for a in lower]
    [[0, 1, 0, 1, 2], [6, 0, 4, 2, 3]]
    >>> [a.tolist() for a in strict]
    [[0, 0, 0, 1], [-1, -1, 2, 3], [-1, -1, 4, 2], [-1, -1, 5, 1]]
    """
    _lower_fill(indptr, indices, perm, inverse, mirror, lower_indptr, strict_indptr,
                lower_indices, lower_source, strict_indices, strict_from_lower, strict_source,
                strict_mirror, nb.get_num_threads())
