"""Graph searches for the orderings of the triangular preconditioners (Numba).

The nested dissection of :mod:`linsolve.precond._ordering`, in compiled
passes over the CSR graph (a symmetric pattern; a stored diagonal is
harmless, a vertex is visited before its own row is read):

- :func:`graph_bfs_levels`: the level structure from a set of vertices.
  A queue, one pass over the edges it reaches (scipy's unweighted
  ``dijkstra`` gives the same integers through a heap, several times slower).
- :func:`graph_cuthill_mckee`: the Cuthill-McKee order, step for step as
  scipy's ``reverse_cuthill_mckee`` takes it (the children of each vertex
  sorted by degree, stable; each component from the next unvisited vertex
  of the caller's ``np.argsort`` of the degrees), reversed by the caller.
- :func:`graph_bisect`: one bisection of a part of the graph by a BFS
  level set: its components, the pseudo-peripheral search, the cut, the
  placement of the other components and each vertex's distance to the
  separator, in one call (the searches share their queue and levels).
- :func:`segment_order`: the final numbering, segment by segment, farthest
  from the separator first, ties in reverse Cuthill-McKee order: a stable
  counting sort (distances are small integers), not a ``lexsort``.

Everything is serial: each search follows a queue. The caller runs the
Cuthill-McKee order and the bisection on two threads at once where two
cores are free (they do not depend on each other). Mirrors
:mod:`cext.reference.ordering`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_SEQ = dict(nogil=True, cache=True, boundscheck=False)

PERIPHERAL_SEARCHES = 8
"""Restarts of the pseudo-peripheral search at most (George and Liu, 1979)."""


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
    _search(indptr, indices, queue, 0, tail, levels)


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


@nb.njit(**_SEQ)
def _cuthill_mckee(indptr, indices, degree, seeds, order):
    n = order.shape[0]
    visited = np.zeros(n, dtype=np.bool_)
    tail = 0
    for s in range(n):
        seed = seeds[s]
        if visited[seed]:
            continue
        visited[seed] = True
        order[tail] = seed
        tail += 1
        head = tail - 1
        while head < tail:
            v = order[head]
            head += 1
            first = tail
            for p in range(indptr[v], indptr[v + 1]):
                w = indices[p]
                if not visited[w]:
                    visited[w] = True
                    order[tail] = w
                    tail += 1
            # the new children by degree, stable (an insertion sort, as scipy's)
            for k in range(first + 1, tail):
                w = order[k]
                d = degree[w]
                q = k
                while q > first and d < degree[order[q - 1]]:
                    order[q] = order[q - 1]
                    q -= 1
                order[q] = w
        if tail == n:
            break


def graph_cuthill_mckee(indptr, indices, degree, seeds, order) -> None:
    """The Cuthill-McKee order of the graph (``order``, length ``n``; reverse it for RCM).

    Each component is searched from the first vertex of ``seeds`` not yet
    visited; the unvisited neighbours of a vertex join the queue sorted by
    ``degree`` (stable). With ``degree`` the graph's degrees and
    ``seeds = np.argsort(degree)`` (in the degree's dtype) this is the order
    ``scipy.sparse.csgraph.reverse_cuthill_mckee(graph, symmetric_mode=True)``
    returns, reversed.

    Examples
    --------
    >>> import numpy as np
    >>> indptr, indices = np.array([0, 1, 4, 5, 6]), np.array([1, 0, 2, 3, 1, 1])
    >>> degree = np.diff(indptr)
    >>> order = np.empty(4, np.int64)
    >>> graph_cuthill_mckee(indptr, indices, degree, np.argsort(degree), order)
    >>> order.tolist()
    [0, 1, 2, 3]
    """
    _cuthill_mckee(indptr, indices, degree, seeds, order)


OUTSIDE = -2
"""The level of a vertex outside the part searched: a search visits the vertices at -1 only
(one test an edge, not two)."""


@nb.njit(**_SEQ)
def _search(indptr, indices, queue, head, tail, levels):
    """Continue a BFS from ``queue[head:tail]`` over the vertices at level -1; the new tail."""
    while head < tail:
        v = queue[head]
        head += 1
        next_level = levels[v] + 1
        for p in range(indptr[v], indptr[v + 1]):
            w = indices[p]
            if levels[w] == -1:
                levels[w] = next_level
                queue[tail] = w
                tail += 1
    return tail


@nb.njit(**_SEQ)
def _degree_within(indptr, indices, part_of, part, v):
    count = 0
    for p in range(indptr[v], indptr[v + 1]):
        w = indices[p]
        if w != v and part_of[w] == part:
            count += 1
    return count


@nb.njit(**_SEQ)
def _bisect(indptr, indices, weight, part_of, part, left_code, right_code, separator_code,
            next_part, distance):
    n = part_of.shape[0]
    # vertex numbers and levels in part_of's dtype (int32 where it fits: half the bytes)
    label = np.full(n, -1, dtype=part_of.dtype)
    levels = np.empty(n, dtype=part_of.dtype)
    for v in range(n):
        levels[v] = -1 if part_of[v] == part else OUTSIDE
    queue = np.empty(n, dtype=part_of.dtype)
    component_weight = np.zeros(n, dtype=np.int64)
    component_start = np.zeros(n + 1, dtype=np.int64)
    # components, numbered by their first vertex; levels from that vertex
    size = 0
    count = 0
    tail = 0
    for v in range(n):
        if part_of[v] != part:
            continue
        size += 1
        if label[v] >= 0:
            continue
        start = tail
        levels[v] = 0
        queue[tail] = v
        tail = _search(indptr, indices, queue, tail, tail + 1, levels)
        total = 0
        for k in range(start, tail):
            u = queue[k]
            label[u] = count
            total += weight[u]
        component_weight[count] = total
        component_start[count + 1] = tail
        count += 1
    if size == 0:
        return
    total = 0
    largest = 0
    for c in range(count):
        total += component_weight[c]
        if component_weight[c] > component_weight[largest]:
            largest = c
    side = np.zeros(count, dtype=np.int8)  # of each component: 0 left, 1 right
    free = np.ones(count, dtype=np.bool_)
    left = 0
    right = 0
    cut = -1
    lo = component_start[largest]
    hi = component_start[largest + 1]
    if 2 * component_weight[largest] > total and size > 2:
        # the pseudo-peripheral search (George and Liu): restart from a vertex of least
        # degree (the first such) in the last level while that lengthens the structure
        members = queue[lo:hi].copy()  # the queue is reused below
        trial_queue = np.empty(hi - lo, dtype=part_of.dtype)
        # outside the component at OUTSIDE in both arrays: levels has its other
        # components' levels, but no edge leads there
        trial = np.full(n, OUTSIDE, dtype=part_of.dtype)
        depth = levels[members[hi - lo - 1]]
        for _ in range(PERIPHERAL_SEARCHES):
            candidate = -1
            least = 0
            k = hi - lo - 1
            while k >= 0 and levels[members[k]] == depth:
                u = members[k]
                d = _degree_within(indptr, indices, part_of, part, u)
                if candidate < 0 or d < least or (d == least and u < candidate):
                    candidate = u
                    least = d
                k -= 1
            for k in range(hi - lo):
                trial[members[k]] = -1
            trial[candidate] = 0
            trial_queue[0] = candidate
            _search(indptr, indices, trial_queue, 0, 1, trial)
            trial_depth = trial[trial_queue[hi - lo - 1]]
            if trial_depth <= depth:
                break
            levels, trial = trial, levels
            members, trial_queue = trial_queue, members
            depth = trial_depth
        # the level set that minimises max(w(left), w(right)) + w(separator), the other
        # components counted on the lighter side (twice the cost: integers throughout)
        level_weight = np.zeros(depth + 1, dtype=np.int64)
        for k in range(hi - lo):
            u = members[k]
            level_weight[levels[u]] += weight[u]
        rest = total - component_weight[largest]
        before = 0
        best = 0
        for k in range(depth + 1):
            s = level_weight[k]
            b = component_weight[largest] - before - s
            cost = max(2 * max(before, b), before + b + rest) + 2 * s
            if cut < 0 or cost < best:
                cut = k
                best = cost
                left = before
                right = b
            before += s
        free[largest] = False
        # distances to the separator: a vertex beyond it is its level minus the cut
        # away (its BFS parents lead there); one before it is searched from the
        # separator through the vertices before it only (a shortest path never
        # crosses the separator twice)
        head = 0
        tail = 0
        for k in range(hi - lo):
            u = members[k]
            level = levels[u]
            if level < cut:
                next_part[u] = left_code
                distance[u] = -1
            elif level == cut:
                next_part[u] = separator_code
                distance[u] = 0
                queue[tail] = u
                tail += 1
            else:
                next_part[u] = right_code
                distance[u] = level - cut
        while head < tail:
            v = queue[head]
            head += 1
            next_distance = distance[v] + 1
            for p in range(indptr[v], indptr[v + 1]):
                w = indices[p]
                # -1 marks the unreached vertices before the separator; every other
                # vertex an edge of the component leads to has a distance >= 0 already
                if distance[w] < 0:
                    distance[w] = next_distance
                    queue[tail] = w
                    tail += 1
    # the other components, heaviest first (ties by number), each to the lighter side
    for c in np.argsort(-component_weight[:count], kind="mergesort"):
        if not free[c]:
            continue
        if left <= right:
            left += component_weight[c]
        else:
            right += component_weight[c]
            side[c] = 1
    unreachable = size if cut >= 0 else 0
    for v in range(n):
        if part_of[v] != part:
            continue
        c = label[v]
        if cut >= 0 and c == largest:
            continue
        next_part[v] = right_code if side[c] else left_code
        distance[v] = unreachable


def graph_bisect(indptr, indices, weight, part_of, part, left_code, right_code, separator_code,
                 next_part, distance) -> None:
    """Split the vertices ``v`` with ``part_of[v] == part`` in two and a separator.

    The subgraph is the graph restricted to those vertices. Chooses the
    split that minimises ``max(w(left), w(right)) + w(separator)`` (integer
    ``weight``; the time of two parallel solves followed by the sequential
    separator): components are placed whole, heaviest first, each on the
    lighter side; the largest component, when it outweighs all the others
    together (and the part has more than two vertices), is cut at a level
    set of the BFS from a pseudo-peripheral vertex (the first vertex of
    least degree in the last level, while that lengthens the structure, at
    most :data:`PERIPHERAL_SEARCHES` times, from the component's first
    vertex). Writes, for the part's vertices, ``next_part`` (``left_code``,
    ``right_code`` or ``separator_code``) and ``distance``: edges to the
    nearest separator vertex (the part's size where none is reachable, 0
    everywhere when there is no separator). ``distance`` must hold no negative
    value outside the part (the search marks its unreached vertices by -1).

    Examples
    --------
    >>> import numpy as np
    >>> n = 7  # a path 0 - 1 - ... - 6
    >>> indptr = np.array([0, 1, 3, 5, 7, 9, 11, 12], np.int32)
    >>> indices = np.array([1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 6, 5], np.int32)
    >>> weight = np.diff(indptr).astype(np.int64) + 2
    >>> next_part, distance = np.zeros(n, np.int32), np.zeros(n, np.int32)
    >>> graph_bisect(indptr, indices, weight, np.zeros(n, np.int32), 0, 0, 1, -1, next_part,
    ...              distance)
    >>> next_part.tolist(), distance.tolist()
    ([0, 0, 0, -1, 1, 1, 1], [3, 2, 1, 0, 1, 2, 3])
    """
    _bisect(indptr, indices, weight, part_of, part, left_code, right_code, separator_code,
            next_part, distance)


@nb.njit(**_SEQ)
def _segment_order(cuthill_mckee, segment, distance, perm, segment_ptr):
    n = perm.shape[0]
    num_segments = segment_ptr.shape[0] - 1
    farthest = np.zeros(num_segments, dtype=np.int64)
    for v in range(n):
        g = segment[v]
        farthest[g] = max(farthest[g], distance[v])
    # one bucket per (segment, distance), farthest first within a segment
    first_bucket = np.zeros(num_segments + 1, dtype=np.int64)
    for g in range(num_segments):
        first_bucket[g + 1] = first_bucket[g] + farthest[g] + 1
    at = np.zeros(first_bucket[num_segments] + 1, dtype=np.int64)
    for v in range(n):
        g = segment[v]
        at[first_bucket[g] + farthest[g] - distance[v] + 1] += 1
    for k in range(first_bucket[num_segments]):
        at[k + 1] += at[k]
    for g in range(num_segments + 1):
        segment_ptr[g] = at[first_bucket[g]]
    # stable: the vertices arrive in reverse Cuthill-McKee order
    for k in range(n - 1, -1, -1):
        v = cuthill_mckee[k]
        g = segment[v]
        bucket = first_bucket[g] + farthest[g] - distance[v]
        perm[at[bucket]] = v
        at[bucket] += 1


def segment_order(cuthill_mckee, segment, distance, perm, segment_ptr) -> None:
    """Number the vertices segment by segment, the farthest first, ties in reverse Cuthill-McKee.

    ``perm`` (length ``n``) lists segment 0's vertices first, then segment 1's,
    ...; inside a segment by decreasing ``distance`` (non-negative integers),
    ties in the reverse of ``cuthill_mckee`` (a permutation of the vertices).
    ``segment_ptr`` (length ``num_segments + 1``) gets the segments' bounds.

    Examples
    --------
    >>> import numpy as np
    >>> perm, ptr = np.empty(5, np.int64), np.empty(3, np.int64)
    >>> segment_order(np.arange(5), np.array([0, 1, 0, 1, 0]), np.array([1, 0, 1, 0, 2]),
    ...               perm, ptr)
    >>> perm.tolist(), ptr.tolist()
    ([4, 2, 0, 3, 1], [0, 3, 5])
    """
    _segment_order(cuthill_mckee, segment, distance, perm, segment_ptr)
