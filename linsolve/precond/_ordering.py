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
need nothing but breadth-first searches and split finite-element meshes
well: a level set of a connected graph cuts it in two.

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

How it is computed. The searches are compiled (:mod:`cext.numba.ordering`)
and read ``A``'s own ``indptr``/``indices`` when its pattern is symmetric
(one pass tells, :func:`pattern_graph`; ``A + A^T`` is built only where it
is not). A bisection is one kernel: the components and the first level
structure in one search, the pseudo-peripheral restarts, and the distances
to the separator from the levels already found (beyond the separator a
vertex's distance is its level minus the cut's; only the side before it is
searched again). The reverse Cuthill-McKee order that breaks the ties is
scipy's, step for step (its ``argsort`` of the degrees picks the same
starting vertices), searched on a second thread beside the bisections; the
final numbering is a counting sort by segment and distance. The result is
the one the scipy-based construction gave, bit for bit.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace

from cext import kernels_for
from cext.threads import threads_for


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


class PatternGraph(NamedTuple):
    """The graph the ordering searches, and what a symmetric pattern gives for free.

    Attributes
    ----------
    indptr, indices : ndarray
        The adjacency: ``A``'s own arrays when its pattern is symmetric (its
        diagonal entries are harmless: a vertex is visited before its row is
        read), else those of :func:`symmetric_pattern`.
    degree : ndarray
        Neighbours of each vertex (the diagonal not counted), in the integer
        dtype scipy's graph would have: its ``argsort`` seeds the reverse
        Cuthill-McKee order exactly as scipy's does.
    mirror, diagonal : ndarray or None
        Where ``A`` is symmetric: the position of each entry's transpose and of
        each row's diagonal entry (-1 if none), from
        :func:`cext.numba.pattern.csr_pattern_mirror`; None otherwise.
    """

    indptr: np.ndarray
    indices: np.ndarray
    degree: np.ndarray
    mirror: np.ndarray | None
    diagonal: np.ndarray | None


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


def pattern_graph(A, mirror: np.ndarray | None = None,
                  diagonal: np.ndarray | None = None) -> PatternGraph:
    """The :class:`PatternGraph` of square CSR ``A`` (its pattern is read, never changed).

    One pass over ``A`` tells whether its pattern is symmetric (rows sorted,
    no duplicates); only where it is not is ``A + A^T`` built. A caller that
    has made that pass already (:func:`cext.numba.pattern.csr_pattern_mirror`
    answered True) hands its ``mirror`` and ``diagonal`` over.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> graph = pattern_graph(sp.csr_array(sp.diags([1.0, 2.0, 1.0], [-1, 0, 1], shape=(3, 3))))
    >>> graph.degree.tolist(), graph.mirror.tolist(), graph.diagonal.tolist()
    ([1, 2, 1], [0, 2, 1, 3, 5, 4, 6], [0, 3, 6])
    """
    n = A.shape[0]
    indptr, indices = A.indptr, A.indices
    if mirror is None or diagonal is None:
        nnz = indices.shape[0]
        mirror = np.empty(nnz, dtype=np.int32 if nnz < np.iinfo(np.int32).max else np.intp)
        diagonal = np.empty(n, dtype=np.intp)
        if not _kernels().csr_pattern_mirror(indptr, indices, mirror, diagonal):
            graph = symmetric_pattern(A)
            return PatternGraph(graph.indptr, graph.indices,
                                np.diff(graph.indptr).astype(graph.indices.dtype), None, None)
    # scipy's graph (pattern + pattern.T) keeps A's index dtype
    dtype = np.result_type(indptr.dtype, indices.dtype)
    degree = np.diff(indptr).astype(dtype, copy=False)
    degree -= (diagonal >= 0).astype(dtype)
    return PatternGraph(indptr, indices, degree, mirror, diagonal)


def _kernels():
    return kernels_for(array_namespace(np.empty(0)))


def _cuthill_mckee(graph: PatternGraph) -> np.ndarray:
    """The Cuthill-McKee order (reversed: scipy's ``reverse_cuthill_mckee``)."""
    order = np.empty(graph.degree.shape[0], dtype=np.intp)
    # scipy seeds each component with the first unvisited vertex of this argsort
    seeds = np.argsort(graph.degree)
    _kernels().graph_cuthill_mckee(graph.indptr, graph.indices, graph.degree, seeds, order)
    return order


class _Beside(threading.Thread):
    """``function(*args)`` on a thread of its own (the compiled kernels release the GIL)."""

    def __init__(self, function, *args):
        super().__init__(daemon=True)
        self._call = (function, args)
        self._value = self._error = None
        self.start()

    def run(self) -> None:
        function, args = self._call
        try:
            self._value = function(*args)
        except Exception as error:  # noqa: BLE001 -- handed to the caller by result()
            self._error = error

    def result(self):
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def _dissection(graph: PatternGraph, depth: int):
    """Segment of each vertex (stage-major numbering) and its distance to its last separator."""
    n = graph.degree.shape[0]
    kernels = _kernels()
    num_domains = 1 << depth
    # a row's solve costs its stored entries plus a constant
    weight = graph.degree.astype(np.int64) + 2
    # int32 where the vertices fit: the searches move half the bytes
    index = np.int32 if n < np.iinfo(np.int32).max // 2 else np.int64
    part_of = np.zeros(n, dtype=index)  # the part a vertex is in; -1 - segment once cut off
    next_part = np.zeros(n, dtype=index)
    distance = np.zeros(n, dtype=index)  # to the separator that last cut a vertex's part off
    # stage s holds num_domains >> s segments, left to right; the separators found at
    # recursion depth d form stage depth - d
    stage_start = [0]
    for s in range(depth + 1):
        stage_start.append(stage_start[-1] + (num_domains >> s))
    for d in range(depth):
        next_part[:] = part_of  # the separators found so far stay cut off
        for part in range(1 << d):
            separator = -1 - (stage_start[depth - d] + part)
            kernels.graph_bisect(graph.indptr, graph.indices, weight, part_of, part, 2 * part,
                                 2 * part + 1, separator, next_part, distance)
        part_of, next_part = next_part, part_of
    # leaves: part p of the last depth is segment p
    segment = np.where(part_of >= 0, part_of, -1 - part_of)
    return segment, distance, stage_start


def domain_ordering(A, num_domains: int = 2, graph: PatternGraph | None = None) -> DomainOrdering:
    """Nested dissection into ``num_domains`` independent domains by BFS level-set separators.

    Inside each domain the rows are ordered by their distance to the
    separator that cut it off last, farthest first (ties in reverse
    Cuthill-McKee order), so that every domain's sweep moves *towards* its
    separator: a "twisted" factorisation, which is what keeps IC(0) and
    SSOR in this ordering about as good as in the reverse Cuthill-McKee
    ordering (the iteration counts are in the preconditioners' module notes).
    Separator rows keep the reverse Cuthill-McKee order.

    The searches run compiled (:mod:`cext.numba.ordering`); the reverse
    Cuthill-McKee order, which only breaks ties, is searched on a second
    thread beside the bisections where two cores are free.

    Parameters
    ----------
    A : scipy sparse matrix, square
        Only its pattern is read (symmetrised: ``A + A^T``).
    num_domains : int
        A power of two, at least 1; 1 gives the reverse Cuthill-McKee
        ordering (one segment: sequential solves).
    graph : PatternGraph, optional
        :func:`pattern_graph` of ``A`` where the caller has it already.

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
    A = sp.csr_array(A)
    n = A.shape[0]
    if graph is None:
        graph = pattern_graph(A)
    depth = num_domains.bit_length() - 1
    beside = None
    if depth and threads_for(n + graph.indices.shape[0]) > 1:
        beside = _Beside(_cuthill_mckee, graph)
    try:
        segment, distance, stage_start = _dissection(graph, depth)
    finally:
        order = beside.result() if beside is not None else None
    if order is None:
        order = _cuthill_mckee(graph)
    perm = np.empty(n, dtype=np.intp)
    segment_ptr = np.empty(stage_start[-1] + 1, dtype=np.intp)
    _kernels().segment_order(order, segment, distance, perm, segment_ptr)
    stage_ptr = np.asarray(stage_start, dtype=np.intp)
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
