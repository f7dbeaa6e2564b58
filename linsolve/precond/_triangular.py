"""What IC(0) and SSOR share: ``M^{-1} = P^T S_out (I + U)^{-1} (I + L)^{-1} S_in P``.

Both preconditioners apply two sparse triangular solves. The factors are
stored in the form the solves read fastest: the strictly lower part ``L``
as CSR arrays scaled to a unit diagonal (no per-entry column test and no
division in the loop), the diagonal scalings ``S_in``/``S_out`` apart, and
float32 data kept float32. Where ``U = L^T`` (IC(0), and SSOR of a
symmetric matrix with a positive diagonal, scaled symmetrically) ``U`` is
not stored: the backward sweep reads ``L`` by columns, which halves the
factor's memory and the bytes an iteration streams. SSOR of a
non-symmetric matrix, or of one with a negative diagonal entry, stores
``U`` as well. ``P`` is the ordering
(:mod:`linsolve.precond._ordering`): with ``ordering="domains"`` the
domains of each stage are solved in parallel, with the gather ``P r`` and
the scatter ``P^T z`` fused into the first and last sweep
(:func:`cext.numba.triangular.csr_triangular_pair_solve`).

Rows padded to a multiple of four (:func:`pad_rows`, leading explicit
zeros) when their lengths vary (:func:`row_width`): the sweeps then take
four entries a step, and the loop exit a row ends on is predictable. Every
sum of finite values is unchanged (each zero subtracts ``0 * w`` at the
start of the row; an infinite ``w`` makes it NaN, as it makes the row).

Which ordering. pcg iterations to ``rtol = 1e-8`` (random ``b``)
with IC(0) / SSOR(omega = 1): natural; ``"domains"`` with 1 (reverse
Cuthill-McKee), 2 and 4 domains. Benchmark-size scikit-fem matrices
(``bench.fem``) and a lexicographic grid:

==============================  =========  =====================  =====================
matrix                          n          IC(0) nat/1/2/4        SSOR nat/1/2/4
==============================  =========  =====================  =====================
P1 triangles (``p1tri``)        261 121    638 / 270 / 293 / 503  653 / 566 / 583 / 592
P1 tetrahedra (``p1tet``)       206 367    77 / 64 / 70 / 73      88 / 83 / 86 / 86
P2 tetrahedra (``p2tet``)       206 367    89 / 64 / 69 / 71      102 / 93 / 97 / 99
elasticity (``elasticity3d``)   88 176     226 / 159 / 210 / 193  271 / 240 / 257 / 246
2-D Poisson, N = 512            262 144    438 / 438 / 516 / 544  519 / 519 / 565 / 590
==============================  =========  =====================  =====================

At small sizes the same picture (p1tri refine 8: 333 / 140 / 153 / 252;
2-D Poisson N = 128: 124 / 124 / 138 / 142; anisotropic Poisson N = 128:
60 / 60 / 61 / 85). scikit-fem numbers refined meshes level by level, an
ordering IC(0) likes badly; the level (RCM) order inside the domains more
than pays for the separators there. On a lexicographic grid, already a
level ordering, two domains cost 2-18 % more iterations. Four domains lose
more (they are ordered towards one separator only), so two is the default:
``"auto"`` takes two domains where two threads would pay, the natural
ordering below (small problems run on one thread and keep the iterates
they always had).

What the sweeps are bound by (P1 tetrahedra, 2 threads): one
application alone takes 2.5 ms (about 37 cycles a row and sweep per
thread, 15 GB/s of factor), but adds 4.6 ms to a pcg iteration, because
the factor's stream pushes ``A`` out of the cache the plain iteration
keeps it in (P2 tetrahedra: an SpMV right after another took 2.9 ms,
right after the pair solve 4.8 ms; the reference machine streams 57 GB/s
from up to 48 MB, 29 GB/s from 512 MB). A float32 copy of the
factor (8 instead of 12 bytes an entry, an SPD preconditioner still) did
not change that: 6.89 against 6.74 ms per iteration, the same 70
iterations. What does: Eisenstat's trick for SSOR (the SpMV folded into
the two sweeps, so an iteration reads ``A`` about once),
:mod:`linsolve.krylov.eisenstat`, which :func:`linsolve.pcg` runs for
``M = ssor(A)``.

Batched pcg hands the preconditioner its ``(n, k)`` residual block:
``matmat`` runs the block form of the pair solve
(:func:`cext.numba.triangular.csr_triangular_pair_solve_block`), which
reads the factor once for all ``k`` columns instead of ``k`` times, each
column bit-identical to ``matvec`` on it (so each system keeps the iterates
of its single solve with the same ``M``).

Everything here that depends on the sparsity pattern only (the ordering,
the permuted lower triangle, the padded layout) is built once per pattern
and reused (:mod:`linsolve.precond._pattern`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace

from cext import kernels_for
from cext.threads import MIN_WORK_PER_THREAD

from ._base import Preconditioner
from ._ordering import DomainOrdering, domain_ordering, natural_ordering

ORDERINGS = ("auto", "natural", "domains")

DEFAULT_NUM_DOMAINS = 2
"""Domains of ``ordering="domains"``: a property of the preconditioner, not of the machine."""

AUTO_MIN_WORK = 2 * MIN_WORK_PER_THREAD
"""``ordering="auto"`` picks ``"domains"`` from ``n + nnz`` of this size on: the size
from which the thread policy (:mod:`cext.threads`) gives a solve two threads."""


def check_ordering(ordering: str, num_domains: int) -> None:
    """ValueError unless ``ordering`` is one of :data:`ORDERINGS` and ``num_domains`` a power of 2."""
    if not isinstance(ordering, str) or ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
    if isinstance(num_domains, bool) or not isinstance(num_domains, (int, np.integer)) \
            or num_domains < 1 or num_domains & (num_domains - 1):
        raise ValueError(f"num_domains must be a power of two >= 1, got {num_domains!r}")


def choose_ordering(csr, ordering: str, num_domains: int, graph=None
                    ) -> tuple[str, DomainOrdering]:
    """The ordering's name (``"auto"`` resolved) and its permutation for the canonical ``csr``
    (``graph``: its :func:`~linsolve.precond._ordering.pattern_graph`, when already at hand)."""
    check_ordering(ordering, num_domains)
    n = csr.shape[0]
    if ordering == "auto":
        ordering = "domains" if n + csr.nnz >= AUTO_MIN_WORK else "natural"
    if ordering == "natural":
        return ordering, natural_ordering(n)
    return ordering, domain_ordering(csr, int(num_domains), graph)


def permuted(csr, perm: np.ndarray, natural: bool):
    """``csr[perm][:, perm]`` as canonical CSR (``csr`` itself when ``natural``)."""
    if natural:
        return csr
    out = sp.csr_array(csr[perm][:, perm])
    out.sum_duplicates()
    out.sort_indices()
    return out


def _index_dtype(*sizes: int):
    return np.int32 if max(sizes) < np.iinfo(np.int32).max else np.int64


ROW_WIDTH_SPREAD = 0.9
"""Rows are padded (:func:`row_width` 4) unless this fraction of the nonempty rows share a length."""


def row_width(csr) -> int:
    """4 when the lengths of ``csr``'s nonempty rows vary, else 1.

    A sweep's inner loop ends once per row; when the trip count changes from
    row to row the branch predictor misses that exit about every row, which
    on a latency-bound triangular sweep costs more than the sums. Padded to a
    multiple of four the trip count is one or two for mesh matrices. Measured
    per pcg + IC(0) iteration (``python -m bench speed``): P1 tetrahedra (row
    lengths 1-15 below the diagonal) 5.1 -> 4.3 ms; P1 triangles (99 % of
    rows of length 3, so no padding) would lose 1 %.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> row_width(sp.csr_array(sp.tril(sp.random(50, 50, 0.2, random_state=0), -1)))
    4
    >>> row_width(sp.csr_array(sp.eye(5, k=-1)))
    1
    """
    counts = np.diff(csr.indptr)
    counts = counts[counts > 0]
    if counts.size == 0:
        return 1
    return 1 if np.bincount(counts).max() >= ROW_WIDTH_SPREAD * counts.size else 4


def pad_rows(csr, width: int):
    """``(indptr, indices, data)`` of ``csr`` with every row padded to a multiple of ``width``.

    The padding comes first in the row: explicit zeros whose column repeats
    the row's first stored column (read, never an unset entry). Empty rows
    stay empty. The matrix is unchanged.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> indptr, indices, data = pad_rows(sp.csr_array(np.array([[0, 0], [2.0, 0]])), 4)
    >>> indptr.tolist(), indices.tolist(), data.tolist()
    ([0, 0, 4], [0, 0, 0, 0], [0.0, 0.0, 0.0, 2.0])
    """
    indptr, indices, data = csr.indptr, csr.indices, csr.data
    n = indptr.shape[0] - 1
    counts = np.diff(indptr)
    if width == 1:
        return indptr, indices, data
    padded = -(-counts // width) * width
    # int64: the padding may take the count past int32 (the caller picks the dtype)
    new_ptr = np.concatenate(([0], np.cumsum(padded, dtype=np.int64)))
    lead = padded - counts
    rows = np.repeat(np.arange(n), counts)
    at = new_ptr[rows] + lead[rows] + (np.arange(indices.shape[0]) - indptr[rows])
    new_indices = np.empty(int(new_ptr[-1]), dtype=indices.dtype)
    new_data = np.zeros(int(new_ptr[-1]), dtype=data.dtype)
    new_indices[at] = indices
    new_data[at] = data
    pad_row = np.repeat(np.arange(n), lead)
    first_pad = np.repeat(np.cumsum(lead) - lead, lead)
    new_indices[new_ptr[pad_row] + (np.arange(pad_row.shape[0]) - first_pad)] = \
        indices[indptr[pad_row]]
    return new_ptr, new_indices, new_data


class TriangularPair(Preconditioner):
    """Applies ``P^T S_out (I + U)^{-1} (I + L)^{-1} S_in P r`` (see the module notes).

    Parameters
    ----------
    lower : scipy.sparse CSR
        Strictly lower, in the permuted numbering, sorted indices, the data
        in the preconditioner's dtype.
    upper : scipy.sparse CSR or None
        Strictly upper, likewise; None for ``U = L^T`` (read from ``lower``).
    scale_in, scale_out : ndarray
        Diagonal scalings, length ``n``, same dtype.
    ordering : str
        ``"natural"`` or ``"domains"``.
    domains : DomainOrdering

    Attributes
    ----------
    ordering : str
    perm : ndarray
        Row ``i`` of the permuted numbering is row ``perm[i]`` of ``A``.
    domains : DomainOrdering
        ``perm`` with the segments and stages the solves run by.
    num_domains : int
        Segments of the first stage (1 for the natural ordering).
    """

    def __init__(self, lower, upper, scale_in, scale_out, ordering: str,
                 domains: DomainOrdering):
        width = max(row_width(part) for part in (lower, upper) if part is not None)
        factors = [pad_rows(lower, width)]
        factors.append((None, None, None) if upper is None else pad_rows(upper, width))
        self._setup(factors, scale_in, scale_out, ordering, domains, width == 4)

    def _setup(self, factors, scale_in, scale_out, ordering: str, domains: DomainOrdering,
               quad: bool, derived: dict | None = None) -> None:
        """Store the sweeps' arrays: ``factors`` is ``[(indptr, indices, data)] * 2``
        (lower; upper or three None), rows padded to a multiple of four where ``quad``.

        ``derived``: the ``derived`` dict of the :class:`~linsolve.precond._pattern.
        TriangularPattern` the factors' structure comes from. The ordering's arrays in
        the sweeps' index dtype are then kept there (made once per pattern, not once
        per numeric set-up), and the padding, which the pattern made, is not checked.
        """
        xp = array_namespace(scale_in)
        n = scale_in.shape[0]
        Preconditioner.__init__(self, (n, n), scale_in.dtype, xp)
        self.ordering = ordering
        self.perm = domains.perm
        self.domains = domains
        self.num_domains = int(domains.stage_ptr[1] - domains.stage_ptr[0])
        index = _index_dtype(n + 1, *(f[0][-1] for f in factors if f[0] is not None))

        def indexes(a):  # one index dtype for every index array: each dtype pair compiles once
            return None if a is None else np.ascontiguousarray(a, dtype=index)

        def values(a):
            return None if a is None else np.ascontiguousarray(a)

        key = ("sweep ordering", np.dtype(index).name)
        if derived is not None and key in derived:
            ordering_arrays = derived[key]
        else:
            ordering_arrays = tuple(indexes(a) for a in (domains.perm, domains.segment_ptr,
                                                         domains.stage_ptr))
            if derived is not None:
                derived[key] = ordering_arrays
        self._arrays = (
            *(convert(a) for f in factors for convert, a in zip((indexes, indexes, values), f)),
            np.ascontiguousarray(scale_in),
            np.ascontiguousarray(scale_out),
            *ordering_arrays,
        )
        self._quad = bool(quad)
        if self._quad and derived is None:  # the kernel reads four entries a step without looking
            for f in factors:
                assert f[0] is None or not np.any(np.diff(f[0]) % 4)
        kernels = kernels_for(xp)
        self._solve = kernels.csr_triangular_pair_solve  # under the thread policy
        # the block solve reads the factor once for all k columns; other backends
        # (no compiled block kernel) keep the column loop
        self._solve_block = kernels.csr_triangular_pair_solve_block \
            if kernels.backend == "numba" else None

    def _apply(self, r):
        r = np.ascontiguousarray(r)
        work = np.empty_like(r)
        z = np.empty_like(r)
        self._solve(*self._arrays, r, work, z, self._quad)
        return z

    def _apply_block(self, R):
        if self._solve_block is None:
            return None
        R = np.ascontiguousarray(R)
        work = np.empty_like(R)
        Z = np.empty_like(R)
        self._solve_block(*self._arrays, R, work, Z, self._quad)
        return Z


def matching_csr(A, pattern):
    """``A`` as canonical CSR with ``pattern``'s sparsity, or ValueError where it has another.

    A float scipy CSR ``A`` whose ``indptr`` and ``indices`` equal the
    pattern's copies is returned as it is: that comparison is the one pass
    over the index arrays a refactor needs, and it proves the structure
    canonical and valid (the pattern was built from a checked matrix), so
    the structure check of :func:`~linsolve.precond._base.scipy_csr` is not
    run a second time. Anything else goes through that check first.
    """
    from ._pattern import same_pattern  # _pattern imports this module

    data = getattr(A, "data", None)
    if (getattr(A, "format", None) == "csr" and isinstance(data, np.ndarray)
            and data.dtype in (np.float32, np.float64) and data.ndim == 1
            and data.flags.c_contiguous and data.shape == pattern.indices.shape
            and pattern.matches(A)):
        return A
    return same_pattern(A, pattern)


def compact_index(pattern, name: str) -> np.ndarray:
    """``pattern``'s position array ``name`` as int32 where ``A``'s positions fit (else as it
    is), made once and kept in ``pattern.derived``: half the bytes a numeric set-up reads."""
    key = f"int32 {name}"
    if key not in pattern.derived:
        positions = getattr(pattern, name)
        fits = pattern.indices.shape[0] < np.iinfo(np.int32).max
        pattern.derived[key] = np.ascontiguousarray(positions, dtype=np.int32) if fits \
            else positions
    return pattern.derived[key]
