"""Array-API twins of :mod:`cext.numba.ordering`: a breadth-first search with a deque."""

from __future__ import annotations

from collections import deque


def graph_bfs_levels(indptr, indices, sources, levels) -> None:
    """``levels[v]``: edges from the nearest of ``sources`` to ``v``, -1 if unreachable."""
    n = levels.shape[0]
    found = [-1] * n
    queue = deque()
    for s in sources.tolist():
        if found[s] < 0:
            found[s] = 0
            queue.append(s)
    while queue:
        v = queue.popleft()
        for p in range(int(indptr[v]), int(indptr[v + 1])):
            w = int(indices[p])
            if found[w] < 0:
                found[w] = found[v] + 1
                queue.append(w)
    for v in range(n):
        levels[v] = found[v]
