"""Plain-Python twins of :mod:`cext.numba.coloring`: the same colours, by the same rules."""

from __future__ import annotations


def greedy_coloring(indptr, indices, n: int):
    """First-fit colouring in natural order (same rule as the Numba kernel)."""
    import numpy as np

    colors = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        taken = {int(colors[int(j)]) for j in indices[int(indptr[i]):int(indptr[i + 1])]
                 if int(j) != i and colors[int(j)] >= 0}
        c = 0
        while c in taken:
            c += 1
        colors[i] = c
    return colors


def two_coloring(indptr, indices, n: int):
    """Depth-parity colouring by breadth-first search; ``(colors, bipartite)``."""
    import collections

    import numpy as np

    colors = np.full(n, -1, dtype=np.int64)
    for root in range(n):
        if colors[root] >= 0:
            continue
        colors[root] = 0
        queue = collections.deque([root])
        while queue:
            i = queue.popleft()
            for j in indices[int(indptr[i]):int(indptr[i + 1])]:
                j = int(j)
                if j == i:
                    continue
                if colors[j] < 0:
                    colors[j] = 1 - colors[i]
                    queue.append(j)
                elif colors[j] == colors[i]:
                    return colors, False
    return colors, True
