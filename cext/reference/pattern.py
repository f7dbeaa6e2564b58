"""Array-API twins of :mod:`cext.numba.pattern`: plain loops, a dictionary of positions."""

from __future__ import annotations

from itertools import pairwise


def _positions(indptr, indices) -> dict:
    n = indptr.shape[0] - 1
    return {(i, int(indices[p])): p for i in range(n)
            for p in range(int(indptr[i]), int(indptr[i + 1]))}


def csr_pattern_mirror(indptr, indices, mirror, diagonal) -> bool:
    """Whether the pattern is symmetric with strictly increasing rows; then each entry's
    transpose (``mirror``) and each row's diagonal entry (``diagonal``, -1 if none)."""
    n = indptr.shape[0] - 1
    for i in range(n):
        row = [int(indices[p]) for p in range(int(indptr[i]), int(indptr[i + 1]))]
        if any(b <= a for a, b in pairwise(row)):
            return False
    where = _positions(indptr, indices)
    if any((j, i) not in where for (i, j) in where):
        return False
    for (i, j), p in where.items():
        mirror[p] = where[(j, i)]
    for i in range(n):
        diagonal[i] = where.get((i, i), -1)
    return True


def csr_lower_counts(indptr, indices, inverse, counts, diagonal) -> None:
    """Strictly lower length of each row of ``A[perm][:, perm]`` and its diagonal's position."""
    n = inverse.shape[0]
    perm = {int(inverse[r]): r for r in range(n)}
    for i in range(n):
        row = perm[i]
        entries = {int(inverse[int(indices[p])]): p
                   for p in range(int(indptr[row]), int(indptr[row + 1]))}
        counts[i] = sum(1 for j in entries if j < i)
        diagonal[i] = entries.get(i, -1)


def csr_lower_fill(indptr, indices, perm, inverse, mirror, lower_indptr, strict_indptr,
                   lower_indices, lower_source, strict_indices, strict_from_lower,
                   strict_source, strict_mirror) -> None:
    """``tril(A[perm][:, perm])`` and its padded strictly lower part (a sort of each row)."""
    n = inverse.shape[0]
    for i in range(n):
        row = int(perm[i])
        entries = sorted((int(inverse[int(indices[p])]), p)
                         for p in range(int(indptr[row]), int(indptr[row + 1])))
        strict = [(j, p) for j, p in entries if j < i]
        lower = strict + [(j, p) for j, p in entries if j == i]
        start = int(lower_indptr[i])
        for k, (j, p) in enumerate(lower):
            lower_indices[start + k] = j
            lower_source[start + k] = p
        to = int(strict_indptr[i])
        lead = int(strict_indptr[i + 1]) - to - len(strict)
        padding = [(strict[0][0] if strict else 0, -1, -1)] * lead
        for j, q, p in padding + [(j, start + k, p) for k, (j, p) in enumerate(strict)]:
            strict_indices[to] = j
            strict_from_lower[to] = q
            strict_source[to] = p
            strict_mirror[to] = -1 if p < 0 or mirror.shape[0] == 0 else mirror[p]
            to += 1
