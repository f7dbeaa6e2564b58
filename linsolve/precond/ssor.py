"""Symmetric SOR as an SPD preconditioner, applied by two triangular sweeps."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace

from cext import kernels_for

from ._base import check_real, scipy_csr
from ._pattern import TriangularPattern, pattern_of
from ._triangular import (
    DEFAULT_NUM_DOMAINS,
    TriangularPair,
    _index_dtype,
    compact_index,
    matching_csr,
    pad_rows,
    permuted,
    row_width,
)


class _EisenstatFactors(NamedTuple):
    """SSOR's symmetric split as :mod:`linsolve.krylov.eisenstat` reads it (permuted numbering).

    ``lower`` and ``upper`` are ``(indptr, indices, data)`` of ``C`` and ``C^T``
    (rows padded where ``quad`` / ``upper_quad``); ``scale = D^{-1/2}``,
    ``root = 1 / scale``.
    """

    lower: tuple
    upper: tuple
    quad: bool
    upper_quad: bool
    scale: Any
    root: Any
    perm: Any
    segment_ptr: Any
    stage_ptr: Any
    omega: float


def _transposed_layout(pattern):
    """``C^T``'s padded CSR structure on ``pattern`` and, for each of its entries, the
    position in ``C``'s padded data (-1 for padding): pattern-only, built once."""
    if "transposed" not in pattern.derived:
        indptr, indices = pattern.strict_indptr, pattern.strict_indices
        stored = pattern.strict_from_lower >= 0
        n = pattern.shape[0]
        counted = np.concatenate(([0], np.cumsum(stored)))
        # the positions travel as the values (shifted by one: 0 is padding)
        positions = (np.flatnonzero(stored) + 1).astype(np.float64)
        C = sp.csr_array((positions, indices[stored], counted[indptr]), shape=(n, n))
        U = sp.csr_array(C.T.tocsr())
        U.sort_indices()
        width = row_width(U)
        u_indptr, u_indices, u_positions = pad_rows(U, width)
        index = np.result_type(indptr.dtype, _index_dtype(n + 1, int(u_indptr[-1])))
        pattern.derived["transposed"] = (
            np.ascontiguousarray(u_indptr, dtype=index),
            np.ascontiguousarray(u_indices, dtype=index),
            np.ascontiguousarray(u_positions, dtype=np.intp) - 1, width == 4)
    return pattern.derived["transposed"]


def _eisenstat_factors(M) -> _EisenstatFactors:
    indptr, indices, data = M._arrays[0:3]
    u_indptr, u_indices, u_source, upper_quad = _transposed_layout(M.pattern)
    u_data = np.empty(u_source.shape[0], dtype=data.dtype)
    ones = np.ones(M.shape[0], dtype=data.dtype)  # (1 * c) * 1 = c: a plain gather
    kernels_for(array_namespace(data)).csr_scaled_gather(u_indptr, u_indices, u_source, data,
                                                         ones, ones, u_data)
    scale = M._arrays[6]
    return _EisenstatFactors(
        lower=(indptr, indices, data), upper=(u_indptr, u_indices, u_data), quad=M._quad,
        upper_quad=upper_quad, scale=scale,
        root=np.ascontiguousarray(1 / scale, dtype=scale.dtype), perm=M._arrays[8],
        segment_ptr=M._arrays[9], stage_ptr=M._arrays[10], omega=float(M.omega))


class SSOR(TriangularPair):
    """Applies ``P^T M_B^{-1} P``, ``M_B = (D/w + L) D^{-1} (D/w + U) * w / (2 - w)``.

    ``B = A[perm][:, perm] = L + D + U``; built by :func:`ssor`.

    Attributes
    ----------
    omega : float
    perm : ndarray
        The ordering (``arange(n)`` for ``ordering="natural"``).
    ordering : str
        ``"natural"`` or ``"domains"`` (``"auto"`` resolved).
    num_domains : int
    """

    def __init__(self, csr, diagonal, omega, ordering, domains):
        # the general split from the permuted matrix (not symmetric, or a
        # diagonal entry <= 0): both factors stored, rows divided by D / w,
        # (D/w + L) = (D/w)(I + w D^{-1} L), likewise for U
        dtype = csr.dtype
        strict_lower = sp.tril(csr, -1, format="csr")
        strict_upper = sp.triu(csr, 1, format="csr")
        factor = np.asarray(omega * (2.0 - omega), dtype=dtype)
        row_scale = sp.diags_array((np.asarray(omega, dtype=dtype) / diagonal).astype(dtype))
        lower = sp.csr_array(row_scale @ strict_lower)
        upper = sp.csr_array(row_scale @ strict_upper)
        for part in (lower, upper):
            part.sort_indices()
        scale_in = np.ascontiguousarray(1 / diagonal, dtype=dtype)
        scale_out = np.full(diagonal.shape[0], factor, dtype=dtype)
        super().__init__(lower, upper, scale_in, scale_out, ordering, domains)
        self.omega = omega
        self.pattern = None
        self.symmetric = False
        self._eisenstat = None

    @classmethod
    def _symmetric(cls, pattern: TriangularPattern, lower, scale, omega: float) -> SSOR:
        """The split of ``B`` with ``D > 0`` on ``pattern``, from :func:`_symmetric_split`'s
        ``lower`` and ``scale``.

        With ``C = w D^{-1/2} L D^{-1/2}``,
        ``M_B^{-1} = w (2 - w) D^{-1/2} (I + C^T)^{-1} (I + C)^{-1} D^{-1/2}``,
        and ``I + C^T`` is read from ``C`` by columns: one factor stored.
        """
        self = cls.__new__(cls)
        factor = np.asarray(omega * (2.0 - omega), dtype=scale.dtype)
        factors = [(pattern.strict_indptr, pattern.strict_indices, lower), (None, None, None)]
        self._setup(factors, scale, factor * scale, pattern.ordering, pattern.domains,
                    pattern.quad, pattern.derived)
        self.omega = omega
        self.pattern = pattern
        self.symmetric = True
        self._eisenstat = None
        return self

    def built_from(self, A: Any) -> bool:
        """Whether this preconditioner is the SSOR of ``A``: ``ssor(A)`` with this one's
        ``omega`` and ordering would give it bit for bit (symmetric split only). The split
        of ``A`` is computed again (one pass over ``A``) and compared with the stored one.
        :func:`linsolve.pcg` asks before it applies Eisenstat's trick, which relies on it.
        """
        if self.pattern is None:
            return False
        try:
            csr = matching_csr(A, self.pattern)
        except (TypeError, ValueError):
            return False
        if csr.dtype != np.dtype(self.dtype):
            return False
        # The split compared, not A's values: no copy of A is kept at build (it would
        # cost every set-up a pass), and a split equal to this one's is this
        # preconditioner, whatever values rounded to it. One pass over A, no writes.
        first, source, mirror, diagonal, inverse = _split_layout(self.pattern)
        return kernels_for(array_namespace(csr.data)).ssor_symmetric_equal(
            self.pattern.strict_indptr, first, self.pattern.strict_indices, source, mirror,
            self.pattern.orphans, diagonal, inverse, csr.data, csr.dtype.type(self.omega),
            self._arrays[6], self._arrays[2])

    def eisenstat_factors(self) -> _EisenstatFactors:
        """The arrays :mod:`linsolve.krylov.eisenstat` runs on (symmetric split only);
        ``U = C^T`` is gathered on the first call (its layout once per pattern) and kept."""
        if self._eisenstat is None:
            self._eisenstat = _eisenstat_factors(self)
        return self._eisenstat

    def refactor(self, A: Any) -> SSOR:
        """SSOR of ``A`` (same sparsity pattern, new values) with this one's ``omega`` and
        ordering, reusing everything that depends on the pattern only.

        Raises
        ------
        ValueError
            ``A``'s pattern differs (build a new one with :func:`ssor`), or a
            diagonal entry is zero or not finite.

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp
        >>> from linsolve.precond import ssor
        >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4), format="csr")
        >>> M = ssor(A, 1.2)
        >>> M.refactor(2 * A).omega
        1.2
        """
        if self.pattern is None:
            return ssor(A, self.omega, ordering=self.ordering,
                        num_domains=int(self.domains.stage_ptr[1] - self.domains.stage_ptr[0]))
        return _numeric(matching_csr(A, self.pattern), self.pattern, self.omega)


def _equal(a, b) -> bool:
    """Whether sparse ``a`` and ``b`` hold the same values (stored zeros aside)."""
    return (sp.csr_array(a) != sp.csr_array(b)).nnz == 0


def ssor(A: Any, omega: float = 1.0, *, ordering: str = "auto",
         num_domains: int = DEFAULT_NUM_DOMAINS) -> SSOR:
    """Symmetric SOR preconditioner.

    With ``B = A[perm][:, perm] = L + D + U`` (strictly lower, diagonal,
    strictly upper), ``M_B = (D/w + L) D^{-1} (D/w + U) * w/(2-w)`` (Saad,
    eq. 4.16) is SPD for SPD ``A`` and ``0 < w < 2``; the returned operator
    applies ``P^T M_B^{-1} P``, i.e. a forward sweep with ``D/w + L``, a
    scaling by ``D``, a backward sweep with ``D/w + U`` and the factor
    ``(2-w)/w`` (computed as two unit triangular sweeps: for symmetric
    ``B`` with a positive diagonal, ``I + C`` and ``I + C^T`` with ``C = w
    D^{-1/2} L D^{-1/2}``, ``C`` stored once; otherwise the rows divided by
    ``D/w`` beforehand, both stored), so that in the natural ordering one
    application from zero equals one SSOR iteration of :func:`linsolve.sor`
    (to rounding). ``omega = 1`` is symmetric Gauss-Seidel. (SPEC section 3
    writes ``(D/w)^{-1}`` in the middle: ``w`` times this ``M_B``; a scalar
    that leaves PCG's iterates unchanged but not the stationary iteration.)

    Parameters
    ----------
    A : scipy sparse matrix (or NumPy array)
        Square; converted once to CSR with sorted indices (CPU only).
    omega : float
        Relaxation factor, ``0 < omega < 2``.
    ordering : {"auto", "natural", "domains"}
        As for :func:`linsolve.precond.ichol0`: ``"domains"`` sweeps
        ``num_domains`` uncoupled domains in parallel, separators last;
        ``"auto"`` (default) picks it when ``n + nnz >= 100_000``, the
        natural ordering below.
    num_domains : int
        Power of two; 1 gives the reverse Cuthill-McKee ordering.

    A second call on a matrix of the same sparsity pattern (and the same
    ``ordering`` and ``num_domains``) reuses the pattern's ordering and
    layout (:mod:`linsolve.precond._pattern`); :meth:`SSOR.refactor` does
    so explicitly. Symmetric ``A`` with a positive diagonal is what
    :func:`linsolve.pcg` solves by Eisenstat's trick
    (:mod:`linsolve.krylov.eisenstat`).

    Returns
    -------
    SSOR
        Operator with ``matvec``, ``shape``, ``dtype``, ``@``, ``perm`` and
        ``aslinearoperator()``; float32 ``A`` gives float32 sweeps.

    Raises
    ------
    ValueError
        ``omega`` outside ``(0, 2)``; a zero or non-finite diagonal entry
        (named); unknown ``ordering``; ``num_domains`` not a power of two.
    TypeError
        GPU (cupyx) or other non-scipy input.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import pcg
    >>> from linsolve.precond import ssor
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(50, 50), format="csr")
    >>> b = np.ones(50)
    >>> pcg(A, b, M=ssor(A, omega=1.5), rtol=1e-8).iterations < pcg(A, b, rtol=1e-8).iterations
    True
    """
    omega = check_real("omega", omega)
    if not 0.0 < omega < 2.0:
        raise ValueError(f"omega must satisfy 0 < omega < 2 (SSOR is SPD only there), got {omega}")
    csr = scipy_csr(A, copy=False)
    return _numeric(csr, pattern_of(csr, ordering, num_domains), omega)


def _diagonal(csr, diagonal):
    """``diagonal``, or ValueError naming the first zero or non-finite entry."""
    bad = ~np.isfinite(diagonal) | (diagonal == 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"A[{row}, {row}] = {diagonal[row]}: SSOR needs every diagonal entry "
                         "finite and nonzero")
    return diagonal


def _split_layout(pattern: TriangularPattern) -> tuple:
    """What the symmetric split reads of ``pattern`` besides its fields, built once: where
    each padded strict row's stored entries start, the positions in ``A`` of each strict
    entry, of its transpose and of ``A``'s diagonal (int32 where they fit), and the
    inverse permutation."""
    if "ssor split" not in pattern.derived:
        indptr = pattern.strict_indptr
        stored = np.concatenate(([0], np.cumsum(pattern.strict_source >= 0)))
        first = indptr[1:] - (stored[indptr[1:]] - stored[indptr[:-1]])
        perm = pattern.domains.perm
        inverse = np.empty(perm.shape[0], dtype=indptr.dtype)
        inverse[perm] = np.arange(perm.shape[0], dtype=indptr.dtype)
        pattern.derived["ssor split"] = (
            np.ascontiguousarray(first, dtype=indptr.dtype),
            compact_index(pattern, "strict_source"), compact_index(pattern, "mirror"),
            compact_index(pattern, "diagonal_source"), inverse)
    return pattern.derived["ssor split"]


def _symmetric_split(pattern: TriangularPattern, data, omega: float, scale, lower) -> int:
    """:func:`cext.numba.triangular.ssor_symmetric_numeric` of ``A``'s ``data`` on ``pattern``
    into ``scale`` and ``lower``: 0, or 1 (a diagonal entry not positive and finite) or 2
    (``B`` not symmetric)."""
    first, source, mirror, diagonal, inverse = _split_layout(pattern)
    return kernels_for(array_namespace(data)).ssor_symmetric_numeric(
        pattern.strict_indptr, first, pattern.strict_indices, source, mirror, pattern.orphans,
        diagonal, inverse, data, data.dtype.type(omega), scale, lower)


def _numeric(csr, pattern: TriangularPattern, omega: float) -> SSOR:
    """SSOR of canonical ``csr`` (read only) on ``pattern``.

    The symmetric split (the usual case) is one compiled pass: the diagonal,
    its scaling and the scaled strictly lower factor in the permuted layout,
    with the symmetry test on the way (:func:`_symmetric_split`). Where that
    pass says no, the diagonal is examined again here, for the error that
    names its entry or for the general split.
    """
    data = csr.data
    n = pattern.shape[0]
    scale = np.empty(n, dtype=data.dtype)
    lower = np.empty(pattern.strict_source.shape[0], dtype=data.dtype)
    if _symmetric_split(pattern, data, omega, scale, lower) == 0:
        return SSOR._symmetric(pattern, lower, scale, omega)
    has = pattern.diagonal_source >= 0
    diagonal = np.zeros(n, dtype=data.dtype)
    diagonal[has] = data[pattern.diagonal_source[has]]
    _diagonal(csr, diagonal)
    B = permuted(sp.csr_array(csr, copy=True), pattern.domains.perm, pattern.ordering == "natural")
    return SSOR(B, B.diagonal(), omega, pattern.ordering, pattern.domains)
