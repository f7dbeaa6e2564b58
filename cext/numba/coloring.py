"""Colourings of a symmetric CSR graph, which order the rows of the coloured SOR sweeps (Numba).

Adjacent rows (``a_ij != 0`` stored, ``i != j``) get different colours, so
the rows of one colour can be relaxed in parallel
(:mod:`cext.numba.sor`, :mod:`cext.numba.sor_lagged`); ``sweep_order``
checks the pattern's symmetry, colours it and orders each colour by reverse
Cuthill-McKee (as scipy does) in one call. Mirrored by
:mod:`cext.reference.coloring`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .spmv import unsigned_view

_SEQ = dict(nogil=True, cache=True, boundscheck=False)


@nb.njit(**_SEQ)
def _greedy_colors(indptr, indices, n):
    colors = np.full(n, -1, dtype=np.int64)
    used = np.full(n + 1, -1, dtype=np.int64)  # used[c] == i: colour c taken by a neighbour of i
    for i in range(n):
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            if j != i and colors[j] >= 0:
                used[colors[j]] = i
        c = 0
        while used[c] == i:
            c += 1
        colors[i] = c
    return colors


def greedy_coloring(indptr, indices, n: int) -> np.ndarray:
    """Greedy (first-fit, natural order) colouring of the symmetric CSR graph.

    Adjacent rows (a_ij != 0 stored, i != j) get different colours; at most
    ``max degree + 1`` colours.
    """
    return _greedy_colors(unsigned_view(indptr), unsigned_view(indices), n)


@nb.njit(**_SEQ)
def _two_colors(indptr, indices, n):
    # Breadth-first search per connected component: colour = depth parity.
    colors = np.full(n, -1, dtype=np.int64)
    queue = np.empty(n, dtype=np.int64)
    for root in range(n):
        if colors[root] >= 0:
            continue
        colors[root] = 0
        head, tail = 0, 1
        queue[0] = root
        while head < tail:
            i = queue[head]
            head += 1
            for jj in range(indptr[i], indptr[i + 1]):
                j = indices[jj]
                if j == i:
                    continue
                if colors[j] < 0:
                    colors[j] = 1 - colors[i]
                    queue[tail] = j
                    tail += 1
                elif colors[j] == colors[i]:
                    return colors, False
    return colors, True


def two_coloring(indptr, indices, n: int):
    """Red-black colouring of a symmetric CSR graph: ``(colors, ok)``; ok is False if not bipartite."""
    return _two_colors(unsigned_view(indptr), unsigned_view(indices), n)


# --- The sweep order of the coloured orderings, in compiled code ---------------
#
# SorMatrix orders the unknowns colour by colour and, within a colour, by
# reverse Cuthill-McKee. With scipy (symmetrised pattern A + A^T, RCM,
# lexsort) that set-up cost most of 60-70 of pyamg's sweeps on P1 triangles
# (n = 261k); here each search is one pass over the pattern (sweep_order).

@nb.njit(nogil=True, cache=True, boundscheck=False)
def _mirrored_rows(indptr, indices, lo, hi):
    """``(unmatched, balance)`` over rows ``lo:hi``: upper entries without a mirror, and
    upper minus lower entries."""
    unmatched = 0
    balance = 0
    for i in range(lo, hi):
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            if j < i:
                balance -= 1
                continue
            if j == i:
                continue
            balance += 1
            first = indptr[j]
            last = indptr[j + 1]
            while first < last:  # binary search of the sorted row j
                middle = (first + last) // 2
                if indices[middle] < i:
                    first = middle + 1
                else:
                    last = middle
            unmatched += first == indptr[j + 1] or indices[first] != i
    return unmatched, balance


def pattern_symmetric(indptr, indices, n: int) -> bool:
    """Whether the pattern of a CSR structure with sorted rows, no duplicates, is symmetric.

    Every stored ``(i, j)`` with ``j > i`` has its mirror ``(j, i)``;
    distinct upper entries have distinct mirrors, so with as many entries
    below the diagonal as above, the lower ones are all mirrors too.
    """
    unmatched, balance = _mirrored_rows(indptr, indices, 0, n)
    return unmatched == 0 and balance == 0


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _rcm(indptr, indices, degree, seeds, n):
    # scipy.sparse.csgraph.reverse_cuthill_mckee (symmetric_mode=True), step for
    # step: a breadth-first search from the unvisited node first in ``seeds``
    # (scipy's argsort of the degrees), each node's new neighbours (in CSR
    # order) sorted stably by degree (insertion sort); the order reversed
    order = np.empty(n, dtype=np.int64)
    visited = np.zeros(n, dtype=np.bool_)
    count = 0
    for zz in range(n):
        seed = seeds[zz]
        if visited[seed]:
            continue
        order[count] = seed
        visited[seed] = True
        count += 1
        level_start = count - 1
        level_end = count
        while level_start < level_end:
            for ii in range(level_start, level_end):
                i = order[ii]
                first = count
                for jj in range(indptr[i], indptr[i + 1]):
                    j = indices[jj]
                    if not visited[j]:
                        visited[j] = True
                        order[count] = j
                        count += 1
                for kk in range(first + 1, count):
                    node = order[kk]
                    key = degree[node]
                    ll = kk
                    while ll > first and key < degree[order[ll - 1]]:
                        order[ll] = order[ll - 1]
                        ll -= 1
                    order[ll] = node
            level_start = level_end
            level_end = count
        if count == n:
            break
    return order[::-1].copy()


def rcm_order(indptr, indices, degree, seeds) -> np.ndarray:
    """Reverse Cuthill-McKee order of a symmetric pattern, as scipy computes it.

    ``degree`` is scipy's node degree (row length, plus one more where the
    row stores its diagonal) and ``seeds`` its ``numpy.argsort`` (the
    caller sorts: the order among equal degrees is numpy's, and scipy's
    BFS starts each component from the first unvisited node in it). The
    rows' neighbours are visited in CSR order, so rows must be sorted.
    """
    n = degree.shape[0]
    return _rcm(indptr, indices, degree, seeds, n)


@nb.njit(nogil=True, cache=True, boundscheck=False)
def _buckets(order, colors, n_colors):
    color_ptr = np.zeros(n_colors + 1, dtype=np.int64)
    for i in range(order.shape[0]):
        color_ptr[colors[i] + 1] += 1
    for c in range(n_colors):
        color_ptr[c + 1] += color_ptr[c]
    fill = color_ptr[:-1].copy()
    permutation = np.empty(order.shape[0], dtype=order.dtype)
    for p in range(order.shape[0]):
        node = order[p]
        c = colors[node]
        permutation[fill[c]] = node
        fill[c] += 1
    return permutation, color_ptr


def color_buckets(order, colors, n_colors: int):
    """``(permutation, color_ptr)``: the unknowns grouped by colour, in ``order`` within one.

    The same as ``numpy.lexsort((rank, colors))`` with ``rank`` the position
    in ``order``, by counting (one pass).
    """
    return _buckets(order, colors, n_colors)


@nb.njit(nogil=True, cache=True, boundscheck=False, parallel=True)
def _sweep_order(indptr, indices, degree, seeds, redblack, permutation, inverse):
    # The three searches are sequential and independent: the mirror check and
    # the colouring on one thread, the reverse Cuthill-McKee search on the
    # other (on one thread, one after the other).
    n = degree.shape[0]
    colors = np.zeros(n, dtype=np.int64)
    order = np.zeros(n, dtype=np.int64)
    checks = np.zeros(3, dtype=np.int64)  # unmatched, balance, not bipartite
    for role in nb.prange(2):
        if role == 0:
            unmatched, balance = _mirrored_rows(indptr, indices, 0, n)
            checks[0] = unmatched
            checks[1] = balance
            if redblack:
                two, bipartite = _two_colors(indptr, indices, n)
                colors[:] = two
                checks[2] = not bipartite
            else:
                colors[:] = _greedy_colors(indptr, indices, n)
        else:
            order[:] = _rcm(indptr, indices, degree, seeds, n)
    symmetric = checks[0] == 0 and checks[1] == 0
    if not symmetric or checks[2] or n == 0:
        return symmetric, checks[2] == 0, np.zeros(1, dtype=np.int64)
    n_colors = 0
    for i in range(n):
        n_colors = max(n_colors, colors[i] + 1)
    grouped, color_ptr = _buckets(order, colors, n_colors)
    for k in range(n):
        permutation[k] = grouped[k]
        inverse[grouped[k]] = k
    return symmetric, True, color_ptr


def sweep_order(indptr, indices, degree, seeds, redblack: bool, permutation, inverse):
    """The coloured sweep order of a pattern: ``(symmetric, bipartite, color_ptr)``.

    Checks that the pattern (CSR, rows sorted, no duplicates) is symmetric,
    colours it (greedy, or red-black when ``redblack``) and orders the
    unknowns colour by colour, by :func:`rcm_order` within a colour
    (``degree`` and ``seeds`` as there), into ``permutation`` (and its
    inverse into ``inverse``): what :func:`color_buckets` makes of
    :func:`rcm_order` and :func:`greedy_coloring` or :func:`two_coloring`.
    Where the pattern is not symmetric, or not bipartite for ``redblack``,
    ``permutation`` and ``inverse`` are not written.
    """
    return _sweep_order(indptr, indices, degree, seeds, bool(redblack), permutation, inverse)
