"""Orderings for the triangular-solve preconditioners: independent domains plus separators.

A forward (backward) triangular solve is sequential because row ``i``
needs the rows before (after) it. If the rows are renumbered so that the
matrix graph falls into ``P`` domains with no coupling between them,
followed by the separator rows that couple them, the domains can be solved
at the same time and the separator after them (before them, backwards).
Nested dissection applies that recursively (George, "Nested dissection of a
regular finite element mesh", SIAM J. Numer. Anal. 10, 1973); here the
separators are BFS level sets (the level structure of Gibbs, Poole and
Stockmeyer / reverse Cuthill-McKee, SIAM J. Numer. Anal. 13, 1976), which
need nothing beyond scipy and split finite-element meshes well: a level set
of a connected graph cuts it in two.

The ordering is laid out in *stages*: stage 0 holds the ``P`` leaf domains,
stage ``s`` the separators found at depth ``log2(P) - s`` of the recursion,
the last stage the top separator. Each domain or separator is a contiguous
*segment* of the new numbering; segments of one stage have no coupling
between them, and a row is coupled only to its own segment and to segments
of other stages. Inside a segment the rows run from the farthest to the
nearest to its separator (ties in reverse Cuthill-McKee order), so each
domain is swept towards the separator with local neighbours.

The ordering depends on the matrix and the number of domains only, never on
the machine's thread count: a preconditioner is the same operator on every
machine.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace
from scipy.sparse import csgraph

from cext import kernels_for


class DomainOrdering(NamedTuple):
    """A symmetric permutation into independent segments, stage by stage.

    Attributes
    ----------
    perm : ndarray of intp
        ``perm[k]`` is the original index of the ``k``-th row of the new
        numbering (the matrix in this ordering is ``A[perm][:, perm]``).
    segment_ptr : ndarray of intp
        Segment ``g`` is rows ``segment_ptr[g]:segment_ptr[g + 1]`` of the new
        numbering (possibly empty).
    stage_ptr : ndarray of intp
        Stage ``s`` is segments ``stage_ptr[s]:stage_ptr[s + 1]``.
    """

    perm: np.ndarray
    segment_ptr: np.ndarray
    stage_ptr: np.ndarray


def natural_ordering(n: int) -> DomainOrdering:
    """The identity: one stage of one segment.

    Examples
    --------
    >>> natural_ordering(3).perm.tolist(), natural_ordering(3).stage_ptr.tolist()
    ([0, 1, 2], [0, 1])
    """
    return DomainOrdering(np.arange(n, dtype=np.intp), np.array([0, n], dtype=np.intp),
                          np.array([0, 1], dtype=np.intp))


def symmetric_pattern(A) -> sp.csr_array:
    """The graph of ``A``: the pattern of ``A + A^T`` without the diagonal, entries 1."""
    n = A.shape[0]
    pattern = sp.csr_array((np.ones(A.nnz, dtype=np.int8), A.indices, A.indptr), shape=(n, n))
    graph = sp.csr_array(pattern + pattern.T)
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.data[:] = 1
    graph.sort_indices()
    return graph


def _search(graph: sp.csr_array, sources) -> np.ndarray:
    """BFS level of every vertex from the nearest of ``sources`` (-1 where unreachable)."""
    levels = np.empty(graph.shape[0], dtype=np.intp)
    # one index dtype: the compiled search compiles once
    _kernels().graph_bfs_levels(np.ascontiguousarray(graph.indptr, dtype=np.intp),
                                np.ascontiguousarray(graph.indices, dtype=np.intp),
                                np.atleast_1d(np.asarray(sources, dtype=np.intp)), levels)
    return levels


def _kernels():
    return kernels_for(array_namespace(np.empty(0)))


def _levels(graph: sp.csr_array, start: int) -> np.ndarray:
    """BFS level of every vertex from ``start`` (-1 where unreachable)."""
    return _search(graph, start)


def _peripheral_levels(graph: sp.csr_array, start: int) -> np.ndarray:
    """Levels from a pseudo-peripheral vertex of ``start``'s component (George and Liu, 1979).

    Restart from a vertex of least degree in the last level while that
    lengthens the level structure (at most a few BFS).
    """
    degree = np.diff(graph.indptr)
    levels = _levels(graph, start)
    for _ in range(8):
        depth = levels.max()
        last = np.flatnonzero(levels == depth)
        candidate = int(last[np.argmin(degree[last])])
        trial = _levels(graph, candidate)
        if trial.max() <= depth:
            break
        levels = trial
    return levels


def _bisect(graph: sp.csr_array, weight: np.ndarray):
    """Split the vertices ``0..m-1`` of ``graph`` into (left, right, separator) index arrays.

    Chooses the split that minimises ``max(w(left), w(right)) + w(separator)``
    (the time of two parallel solves followed by the sequential separator):
    components are placed whole where they fit; the largest component, when
    it outweighs all the others together, is cut at a BFS level set.
    """
    m = graph.shape[0]
    if m == 0:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty
    count, label = csgraph.connected_components(graph, directed=False)
    component_weight = np.bincount(label, weights=weight, minlength=count)
    total = component_weight.sum()
    largest = int(np.argmax(component_weight))
    side = np.zeros(m, dtype=np.int8)  # 0 left, 1 right, 2 separator
    free = np.ones(count, dtype=bool)
    left = right = 0.0
    if 2 * component_weight[largest] > total and m > 2:
        inside = np.flatnonzero(label == largest)
        levels = _peripheral_levels(graph, int(inside[0]))
        depth = int(levels.max())
        level_weight = np.bincount(levels[inside], weights=weight[inside], minlength=depth + 1)
        before = np.concatenate(([0.0], np.cumsum(level_weight)))  # weight of levels < k
        rest = total - component_weight[largest]
        k = np.arange(depth + 1)
        a, s = before[k], level_weight[k]
        b = component_weight[largest] - a - s
        cost = np.maximum(np.maximum(a, b), (a + b + rest) / 2) + s
        cut = int(k[np.argmin(cost)])
        side[inside] = np.where(levels[inside] < cut, 0, np.where(levels[inside] == cut, 2, 1))
        left, right = float(a[cut]), float(b[cut])
        free[largest] = False
    # the remaining components, heaviest first, each to the lighter side
    for component in np.argsort(-component_weight, kind="stable"):
        if not free[component]:
            continue
        if left <= right:
            left += component_weight[component]
        else:
            right += component_weight[component]
            side[label == component] = 1
    return (np.flatnonzero(side == 0), np.flatnonzero(side == 1), np.flatnonzero(side == 2))


def _distance_to(graph: sp.csr_array, sources: np.ndarray) -> np.ndarray:
    """BFS distance of every vertex to the nearest of ``sources`` (a large value if unreachable)."""
    m = graph.shape[0]
    if not len(sources) or not m:
        return np.zeros(m)
    levels = _search(graph, sources)
    distance = levels.astype(np.float64)
    distance[levels < 0] = m
    return distance


def domain_ordering(A, num_domains: int = 2) -> DomainOrdering:
    """Nested dissection into ``num_domains`` independent domains by BFS level-set separators.

    Inside each domain the rows are ordered by their distance to the
    separator that cut it off last, farthest first (ties in reverse
    Cuthill-McKee order), so that every domain's sweep moves *towards* its
    separator: a "twisted" factorisation, which is what keeps IC(0) and
    SSOR in this ordering about as good as in the reverse Cuthill-McKee
    ordering (the iteration counts are in the preconditioners' module notes).
    Separator rows keep the reverse Cuthill-McKee order.

    Parameters
    ----------
    A : scipy sparse matrix, square
        Only its pattern is read (symmetrised: ``A + A^T``).
    num_domains : int
        A power of two, at least 1; 1 gives the reverse Cuthill-McKee
        ordering (one segment: sequential solves).

    Returns
    -------
    DomainOrdering
        ``log2(num_domains) + 1`` stages; stage 0 has ``num_domains``
        segments (the domains), stage ``s`` has ``num_domains / 2**s``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> path = sp.diags([1.0, 2.0, 1.0], [-1, 0, 1], shape=(7, 7), format="csr")
    >>> o = domain_ordering(path, 2)
    >>> o.perm.tolist(), o.segment_ptr.tolist(), o.stage_ptr.tolist()
    ([0, 1, 2, 6, 5, 4, 3], [0, 3, 6, 7], [0, 2, 3])
    """
    num_domains = int(num_domains)
    if num_domains < 1 or num_domains & (num_domains - 1):
        raise ValueError(f"num_domains must be a power of two >= 1, got {num_domains}")
    n = A.shape[0]
    graph = symmetric_pattern(sp.csr_array(A))
    rank = np.empty(n, dtype=np.intp)
    if n:
        rank[csgraph.reverse_cuthill_mckee(graph, symmetric_mode=True)] = np.arange(n)
    # a row's solve costs its stored entries plus a constant
    weight = np.diff(graph.indptr).astype(np.float64) + 2.0
    distance = np.zeros(n)  # to the separator that last cut a vertex's part off
    depth = num_domains.bit_length() - 1
    # separators[d]: the separators found at recursion depth d, left to right
    separators: list[list[np.ndarray]] = [[] for _ in range(depth)]
    parts = [np.arange(n, dtype=np.intp)]
    for d in range(depth):
        next_parts = []
        for vertices in parts:
            sub = sp.csr_array(graph[vertices][:, vertices])
            left, right, separator = _bisect(sub, weight[vertices])
            distance[vertices] = _distance_to(sub, separator)
            next_parts += [vertices[left], vertices[right]]
            separators[d].append(vertices[separator])
        parts = next_parts
    segments = [part[np.lexsort((rank[part], -distance[part]))] for part in parts]
    stages = [segments] + [[s[np.argsort(rank[s])] for s in separators[d]]
                           for d in reversed(range(depth))]
    flat = [segment for stage in stages for segment in stage]
    perm = np.concatenate(flat).astype(np.intp)
    segment_ptr = np.concatenate(([0], np.cumsum([len(s) for s in flat]))).astype(np.intp)
    stage_ptr = np.concatenate(([0], np.cumsum([len(stage) for stage in stages]))).astype(np.intp)
    return DomainOrdering(perm, segment_ptr, stage_ptr)


def check_independent(A, ordering: DomainOrdering) -> None:
    """Raise AssertionError unless ``ordering`` is fit for the parallel triangular sweeps.

    Two segments of one stage must not be coupled in ``A`` (either
    direction), and no row may be coupled to two segments of one later stage
    (the column sweep of ``L^T`` writes into a row from the later stages'
    segments, one thread each). Used by the tests; O(nnz log nnz).
    """
    n = A.shape[0]
    perm, segment_ptr, stage_ptr = ordering
    assert np.array_equal(np.sort(perm), np.arange(n)), "perm is not a permutation"
    segment_of = np.empty(n, dtype=np.intp)  # new row -> segment
    segment_of[:] = np.repeat(np.arange(len(segment_ptr) - 1), np.diff(segment_ptr))
    stage_of_segment = np.repeat(np.arange(len(stage_ptr) - 1), np.diff(stage_ptr))
    inverse = np.empty(n, dtype=np.intp)
    inverse[perm] = np.arange(n)
    coo = sp.coo_array(A)
    gi, gj = segment_of[inverse[coo.row]], segment_of[inverse[coo.col]]
    clash = (gi != gj) & (stage_of_segment[gi] == stage_of_segment[gj])
    assert not clash.any(), (f"{int(clash.sum())} couplings between segments of one stage, "
                             f"e.g. rows {coo.row[clash][:3]} and {coo.col[clash][:3]}")
    later = stage_of_segment[gj] > stage_of_segment[gi]
    row, stage, segment = inverse[coo.row][later], stage_of_segment[gj][later], gj[later]
    links = np.unique(np.stack([row, stage, segment]), axis=1)  # distinct (row, stage, segment)
    _, count = np.unique(links[:2], axis=1, return_counts=True)
    assert np.all(count <= 1), (f"{int(np.sum(count > 1))} rows coupled to two segments of one "
                                "later stage")
