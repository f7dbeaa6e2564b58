"""Array-API twins of :mod:`cext.numba.ordering`: breadth-first searches with a deque.

Plain loops over Python containers, written as the algorithm reads (the
bisection searches everything afresh, where the compiled one shares and
shortens its searches): the oracle the compiled kernels are tested against.
"""

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


def _search(indptr, indices, inside, sources) -> dict:
    """BFS levels from ``sources`` over the vertices ``inside`` (a set): vertex -> level."""
    found = {int(s): 0 for s in sources}
    queue = deque(found)
    while queue:
        v = queue.popleft()
        for p in range(int(indptr[v]), int(indptr[v + 1])):
            w = int(indices[p])
            if w in inside and w not in found:
                found[w] = found[v] + 1
                queue.append(w)
    return found


def graph_cuthill_mckee(indptr, indices, degree, seeds, order) -> None:
    """Cuthill-McKee order: a BFS from each unvisited seed, new neighbours sorted by degree."""
    n = order.shape[0]
    visited = [False] * n
    out = []
    for seed in seeds.tolist():
        if visited[seed]:
            continue
        visited[seed] = True
        out.append(seed)
        head = len(out) - 1
        while head < len(out):
            v = out[head]
            head += 1
            children = []
            for p in range(int(indptr[v]), int(indptr[v + 1])):
                w = int(indices[p])
                if not visited[w]:
                    visited[w] = True
                    children.append(w)
            out += sorted(children, key=lambda w: int(degree[w]))  # stable
    for k, v in enumerate(out):
        order[k] = v


def graph_bisect(indptr, indices, weight, part_of, part, left_code, right_code, separator_code,
                 next_part, distance) -> None:
    """One bisection of the part by a BFS level set: the search as first written (full
    searches for the components, the pseudo-peripheral vertex and the distances)."""
    n = part_of.shape[0]
    vertices = [v for v in range(n) if int(part_of[v]) == part]
    if not vertices:
        return
    inside = set(vertices)
    label, members = {}, []
    for v in vertices:
        if v not in label:
            component = sorted(_search(indptr, indices, inside, [v]))
            for u in component:
                label[u] = len(members)
            members.append(component)
    component_weight = [sum(int(weight[u]) for u in c) for c in members]
    total = sum(component_weight)
    largest = component_weight.index(max(component_weight))
    side = {v: 0 for v in vertices}
    free = [True] * len(members)
    left = right = 0
    separator = []
    if 2 * component_weight[largest] > total and len(vertices) > 2:
        def degree(u):
            return sum(1 for p in range(int(indptr[u]), int(indptr[u + 1]))
                       if int(indices[p]) != u and int(indices[p]) in inside)
        levels = _search(indptr, indices, inside, [members[largest][0]])
        for _ in range(8):
            depth = max(levels.values())
            last = sorted(u for u, level in levels.items() if level == depth)
            candidate = min(last, key=lambda u: (degree(u), u))
            trial = _search(indptr, indices, inside, [candidate])
            if max(trial.values()) <= depth:
                break
            levels = trial
        depth = max(levels.values())
        level_weight = [0] * (depth + 1)
        for u, level in levels.items():
            level_weight[level] += int(weight[u])
        rest = total - component_weight[largest]
        costs = []
        for k in range(depth + 1):
            a, s = sum(level_weight[:k]), level_weight[k]
            b = component_weight[largest] - a - s
            costs.append((max(max(a, b), (a + b + rest) / 2) + s, k, a, b))
        _, cut, left, right = min(costs)
        for u, level in levels.items():
            side[u] = 0 if level < cut else 2 if level == cut else 1
        separator = [u for u in levels if levels[u] == cut]
        free[largest] = False
    order = sorted(range(len(members)), key=lambda c: -component_weight[c])  # stable
    for c in order:
        if not free[c]:
            continue
        if left <= right:
            left += component_weight[c]
        else:
            right += component_weight[c]
            for u in members[c]:
                side[u] = 1
    reached = _search(indptr, indices, inside, separator) if separator else {}
    for v in vertices:
        next_part[v] = (left_code, right_code, separator_code)[side[v]]
        distance[v] = reached.get(v, len(vertices)) if separator else 0


def segment_order(cuthill_mckee, segment, distance, perm, segment_ptr) -> None:
    """Vertices by (segment, farthest first, reverse Cuthill-McKee): a sort."""
    n = perm.shape[0]
    rank = {int(v): n - 1 - k for k, v in enumerate(cuthill_mckee.tolist())}
    ordered = sorted(range(n), key=lambda v: (int(segment[v]), -int(distance[v]), rank[v]))
    for k, v in enumerate(ordered):
        perm[k] = v
    counts = [0] * (segment_ptr.shape[0] - 1)
    for v in range(n):
        counts[int(segment[v])] += 1
    segment_ptr[0] = 0
    for g, count in enumerate(counts):
        segment_ptr[g + 1] = segment_ptr[g] + count
