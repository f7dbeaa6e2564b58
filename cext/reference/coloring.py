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


def pattern_symmetric(indptr, indices, n: int) -> bool:
    """Whether the pattern (rows sorted, no duplicates) is symmetric: every (i, j) has (j, i)."""
    entries = {(i, int(j)) for i in range(n) for j in indices[int(indptr[i]):int(indptr[i + 1])]}
    return all((j, i) in entries for i, j in entries)


def rcm_order(indptr, indices, degree, seeds):
    """scipy's reverse Cuthill-McKee search, written out (twin of the Numba kernel)."""
    import numpy as np

    n = len(degree)
    visited = [False] * n
    order = []
    for seed in (int(s) for s in seeds):
        if visited[seed]:
            continue
        visited[seed] = True
        order.append(seed)
        head = len(order) - 1
        while head < len(order):
            i = order[head]
            head += 1
            new = []
            for j in (int(j) for j in indices[int(indptr[i]):int(indptr[i + 1])]):
                if not visited[j]:
                    visited[j] = True
                    new.append(j)
            order.extend(sorted(new, key=lambda node: int(degree[node])))  # stable
    return np.array(order[::-1], dtype=np.int64)


def color_buckets(order, colors, n_colors: int):
    """``(permutation, color_ptr)``: unknowns grouped by colour, in ``order`` within one."""
    import numpy as np

    order = np.asarray(order)
    permutation = order[np.argsort(np.asarray(colors)[order], kind="stable")]
    counts = np.bincount(np.asarray(colors), minlength=n_colors)
    return permutation, np.concatenate(([0], np.cumsum(counts))).astype(np.int64)


def sweep_order(indptr, indices, degree, seeds, redblack: bool, permutation, inverse):
    """Twin of :func:`cext.numba.coloring.sweep_order`: ``(symmetric, bipartite, color_ptr)``."""
    import numpy as np

    n = len(degree)
    if not pattern_symmetric(indptr, indices, n):
        return False, True, np.zeros(1, dtype=np.int64)
    if redblack:
        colors, bipartite = two_coloring(indptr, indices, n)
        if not bipartite:
            return True, False, np.zeros(1, dtype=np.int64)
    else:
        colors = greedy_coloring(indptr, indices, n)
    n_colors = int(colors.max()) + 1 if n else 0
    grouped, color_ptr = color_buckets(rcm_order(indptr, indices, degree, seeds), colors,
                                       n_colors)
    permutation[:] = grouped
    inverse[grouped] = np.arange(n)
    return True, True, color_ptr
