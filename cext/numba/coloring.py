"""Colourings of a symmetric CSR graph, which order the rows of the coloured SOR sweeps (Numba).

Adjacent rows (``a_ij != 0`` stored, ``i != j``) get different colours, so
the rows of one colour can be relaxed in parallel
(:mod:`cext.numba.sor`, :mod:`cext.numba.sor_lagged`). Mirrored by
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
