"""What IC(0) and SSOR compute from the sparsity pattern alone, kept for the next matrix.

A sequence of systems with one pattern (time steps, ``A + c I``, Newton
steps) changes only the values. Everything the triangular preconditioners
derive from the pattern -- the ordering (:mod:`linsolve.precond._ordering`),
the pattern of ``tril(P A P^T)``, where each of its entries sits in ``A``,
the padded layout of the strictly lower factor the sweeps read, the mirror
of each entry for the symmetry test -- is a :class:`TriangularPattern`,
built once (:func:`triangular_pattern`). The numeric part is then a
gather, the factorisation (IC(0)) or a scaling (SSOR).

The build reads ``A``'s own index arrays (no copies but the cache key) in
three compiled passes (:mod:`cext.numba.pattern`): one that tells whether
the pattern is symmetric and finds every entry's transpose (shared with the
ordering), one that counts each permuted row, and one that writes each
sorted row of ``tril(B)`` and its padded strict part together.

Reuse is explicit (``M.refactor(A_new)``) or automatic: :func:`cached_pattern`
keeps the most recent patterns and hands one back when ``indptr`` and
``indices`` of the new matrix equal the stored copies -- a comparison at
memory speed (one pass over ``indices``), safe also when the caller has
rewritten the arrays in place.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from array_api_compat import array_namespace

from cext import kernels_for

from ._base import scipy_csr
from ._ordering import DomainOrdering, pattern_graph
from ._triangular import _index_dtype, check_ordering, choose_ordering, row_width

PATTERN_CACHE_SIZE = 2
"""Patterns the plain calls remember: each holds integer arrays of about six times the
size of ``A``'s ``indices`` (its copy of the pattern, the permuted layout, the maps);
:func:`clear_pattern_cache` releases them."""


@dataclass(frozen=True, eq=False)
class TriangularPattern:
    """The value-independent part of IC(0) and SSOR for one pattern and ordering.

    Attributes
    ----------
    shape : tuple of int
    indptr, indices : ndarray
        Copies of the canonical pattern of ``A`` it was built from (the cache key).
    ordering : str
        ``"natural"`` or ``"domains"``.
    requested : tuple
        ``(ordering, num_domains)`` as asked for (``"auto"`` unresolved).
    domains : DomainOrdering
    diagonal_source : ndarray of intp
        Position in ``A.data`` of ``A[i, i]`` (original numbering), -1 if not stored.
    lower_indptr, lower_indices, lower_source : ndarray
        ``tril(B)``, ``B = A[perm][:, perm]``: sorted rows, the diagonal last
        where stored, and the position in ``A.data`` of each entry.
    strict_indptr, strict_indices : ndarray
        The strictly lower part of ``tril(B)``, each row padded to a multiple
        of four with leading entries (``quad``) when row lengths vary, in
        the sweeps' index dtype.
    strict_from_lower : ndarray of intp
        Position in ``lower_*`` of each strict entry, -1 for padding.
    strict_source : ndarray of intp
        Position in ``A.data`` of each strict entry, -1 for padding.
    mirror : ndarray of intp
        For each strict entry, the position in ``A.data`` of its transpose
        (``A[perm[j], perm[i]]``), -1 when not stored or padding.
    orphans : ndarray of intp
        Positions in ``A.data`` of strictly upper entries of ``B`` whose
        transpose is not stored (they must be zero for ``B`` to be symmetric).
    quad : bool
    derived : dict
        Further pattern-only layouts, built on first use by those who need
        them (the transposed factor of :mod:`linsolve.krylov.eisenstat`).
    """

    shape: tuple
    indptr: np.ndarray
    indices: np.ndarray
    ordering: str
    requested: tuple
    domains: DomainOrdering
    diagonal_source: np.ndarray
    lower_indptr: np.ndarray
    lower_indices: np.ndarray
    lower_source: np.ndarray
    strict_indptr: np.ndarray
    strict_indices: np.ndarray
    strict_from_lower: np.ndarray
    strict_source: np.ndarray
    mirror: np.ndarray
    orphans: np.ndarray
    quad: bool
    derived: dict = field(default_factory=dict, repr=False)

    def matches(self, csr) -> bool:
        """Whether canonical ``csr`` has exactly this pattern (one pass over its indices)."""
        return (tuple(csr.shape) == self.shape and csr.indices.shape == self.indices.shape
                and np.array_equal(csr.indptr, self.indptr)
                and np.array_equal(csr.indices, self.indices))


def triangular_pattern(csr, ordering: str, requested: tuple, domains: DomainOrdering,
                       mirror: np.ndarray | None = None) -> TriangularPattern:
    """Build the :class:`TriangularPattern` of canonical ``csr`` in the ordering ``domains``.

    ``mirror``: the position of each entry's transpose in ``csr``, where the
    caller knows its pattern to be symmetric
    (:func:`cext.numba.pattern.csr_pattern_mirror`); None otherwise.
    """
    n = csr.shape[0]
    kernels = kernels_for(array_namespace(np.empty(0)))
    # A's own arrays, whatever their integer dtype: no copies
    indptr, indices = csr.indptr, csr.indices
    nnz = indices.shape[0]
    perm = np.ascontiguousarray(domains.perm, dtype=np.intp)
    inverse = np.empty(n, dtype=np.intp)
    inverse[perm] = np.arange(n, dtype=np.intp)
    counts = np.empty(n, dtype=np.intp)  # strictly lower, in B = A[perm][:, perm]
    diagonal = np.empty(n, dtype=np.intp)  # of B's row i, in A
    kernels.csr_lower_counts(indptr, indices, inverse, counts, diagonal)
    has_diagonal = diagonal >= 0
    lower_indptr = np.zeros(n + 1, dtype=np.intp)
    np.cumsum(counts + has_diagonal, out=lower_indptr[1:])

    # the strictly lower part, each row padded at its start (see _triangular.pad_rows)
    width = row_width(_Counts(counts))
    padded = -(-counts // width) * width if width > 1 else counts
    strict_indptr = np.zeros(n + 1, dtype=np.intp)
    np.cumsum(padded, out=strict_indptr[1:])
    total = int(strict_indptr[-1])
    index = _index_dtype(n + 1, total)
    strict_indptr = np.ascontiguousarray(strict_indptr, dtype=index)
    symmetric = mirror is not None
    if not symmetric:
        mirror = np.empty(nnz, dtype=np.intp)
        kernels.csr_mirror(indptr, indices, mirror)
    m = int(lower_indptr[-1])
    lower_indices = np.empty(m, dtype=np.intp)
    lower_source = np.empty(m, dtype=np.intp)
    strict_indices = np.empty(total, dtype=index)
    strict_from_lower, strict_source, strict_mirror = (np.empty(total, dtype=np.intp)
                                                       for _ in range(3))
    kernels.csr_lower_fill(indptr, indices, perm, inverse, mirror, lower_indptr, strict_indptr,
                           lower_indices, lower_source, strict_indices, strict_from_lower,
                           strict_source, strict_mirror)
    diagonal_source = np.empty(n, dtype=np.intp)
    diagonal_source[perm] = diagonal
    # strictly upper entries of B whose transpose is not stored: only where the
    # pattern is not symmetric (fewer mirrors found than off-diagonal entries / 2)
    off_diagonal = nnz - int(np.count_nonzero(has_diagonal))
    if symmetric or 2 * int(np.count_nonzero(strict_mirror >= 0)) == off_diagonal:
        orphans = np.zeros(0, dtype=np.intp)
    else:
        in_lower = np.zeros(nnz, dtype=bool)
        in_lower[lower_source] = True
        orphans = np.flatnonzero(~in_lower & (mirror < 0))
    return TriangularPattern(
        shape=(n, n), indptr=np.array(csr.indptr, copy=True),
        indices=np.array(csr.indices, copy=True), ordering=ordering, requested=requested,
        domains=domains, diagonal_source=diagonal_source, lower_indptr=lower_indptr,
        lower_indices=lower_indices, lower_source=lower_source, strict_indptr=strict_indptr,
        strict_indices=strict_indices, strict_from_lower=strict_from_lower,
        strict_source=strict_source, mirror=strict_mirror, orphans=orphans, quad=width == 4)


class _Counts:
    """Row lengths in the form :func:`row_width` reads (an ``indptr``)."""

    def __init__(self, counts):
        self.indptr = np.concatenate(([0], np.cumsum(counts)))


def pattern_of(csr, ordering: str, num_domains: int) -> TriangularPattern:
    """The :class:`TriangularPattern` of canonical ``csr``: remembered, or built and remembered.

    Built from one pass that tells whether the pattern is symmetric and finds
    each entry's transpose, shared by the ordering and the layout.
    """
    check_ordering(ordering, num_domains)
    requested = (ordering, int(num_domains))

    def build():
        n = csr.shape[0]
        nnz = csr.indices.shape[0]
        # positions in A: int32 where they fit (half the bytes to write and read back)
        mirror = np.empty(nnz, dtype=np.int32 if nnz < np.iinfo(np.int32).max else np.intp)
        diagonal = np.empty(n, dtype=np.intp)
        symmetric = kernels_for(array_namespace(np.empty(0))).csr_pattern_mirror(
            csr.indptr, csr.indices, mirror, diagonal)
        graph = pattern_graph(csr, mirror, diagonal) if symmetric else None
        name, domains = choose_ordering(csr, ordering, num_domains, graph)
        return triangular_pattern(csr, name, requested, domains, mirror if symmetric else None)

    return cached_pattern(csr, requested, build)


def same_pattern(A, pattern: TriangularPattern):
    """``A`` as canonical CSR (read only), or ValueError when its pattern is not ``pattern``'s."""
    csr = scipy_csr(A, copy=False)
    if not pattern.matches(csr):
        raise ValueError(f"A (shape {tuple(csr.shape)}, {csr.nnz} stored entries) does not have "
                         "the sparsity pattern this preconditioner was built on; refactor() "
                         "reuses a pattern only: build a new preconditioner from A instead")
    return csr


_lock = threading.Lock()
_recent: list[TriangularPattern] = []


def cached_pattern(csr, requested: tuple, build) -> TriangularPattern:
    """The remembered pattern of ``csr`` for ``requested`` (``(ordering, num_domains)``),
    or ``build()``'s, which is then remembered (the :data:`PATTERN_CACHE_SIZE` most recent,
    a small fixed number: the one pattern of a sequence of systems, plus one).

    The cache holds index arrays only (no values), so a pattern hit is a
    preconditioner identical to one built from scratch.
    """
    with _lock:
        for k, pattern in enumerate(_recent):
            if pattern.requested == requested and pattern.matches(csr):
                _recent.insert(0, _recent.pop(k))
                return pattern
    pattern = build()
    with _lock:
        _recent.insert(0, pattern)
        del _recent[PATTERN_CACHE_SIZE:]
    return pattern


def clear_pattern_cache() -> None:
    """Forget the remembered patterns (their memory is released)."""
    with _lock:
        _recent.clear()
