"""Graph searches for the orderings of the triangular preconditioners (Numba).

:func:`graph_bfs_levels` is the breadth-first search under the nested
dissection of :mod:`linsolve.precond._ordering`: the level structure from a
vertex, and the distance to a separator. A queue over the CSR graph, one
pass over the edges it reaches (scipy's unweighted ``dijkstra`` gives the
same integers through a heap, several times slower). Mirrors
:mod:`cext.reference.ordering`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_SEQ = dict(nogil=True, cache=True, boundscheck=False)


@nb.njit(**_SEQ)
def _bfs(indptr, indices, sources, levels):
    n = levels.shape[0]
    for v in range(n):
        levels[v] = -1
    queue = np.empty(n, dtype=np.int64)
    tail = 0
    for s in sources:
        if levels[s] < 0:
            levels[s] = 0
            queue[tail] = s
            tail += 1
    head = 0
    while head < tail:
        v = queue[head]
        head += 1
        next_level = levels[v] + 1
        for p in range(indptr[v], indptr[v + 1]):
            w = indices[p]
            if levels[w] < 0:
                levels[w] = next_level
                queue[tail] = w
                tail += 1


def graph_bfs_levels(indptr, indices, sources, levels) -> None:
    """``levels[v]``: the number of edges from the nearest of ``sources`` to ``v``, -1 if none.

    ``(indptr, indices)`` is the graph's adjacency in CSR form (a symmetric
    pattern for an undirected graph); ``levels`` is a signed integer array of
    length ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> levels = np.empty(4, np.int64)
    >>> graph_bfs_levels(np.array([0, 1, 3, 4, 4]), np.array([1, 0, 2, 1]), np.array([0]),
    ...                  levels)
    >>> levels.tolist()
    [0, 1, 2, -1]
    """
    _bfs(indptr, indices, sources, levels)
