"""Zero-fill incomplete LU, ILU(0): ``M = P^T (L U)^{-1} P``, ``L U = P A P^T`` on A's pattern."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace

from cext import kernels_for

from ._base import check_real, scipy_csr
from ._triangular import DEFAULT_NUM_DOMAINS, TriangularPair, choose_ordering, permuted


class ILU0(TriangularPair):
    """``M r = P^T U^{-1} L^{-1} P r``; built by :func:`ilu0`. Not symmetric.

    Attributes
    ----------
    L : scipy.sparse.csr_array
        Unit lower triangular (its unit diagonal stored), on the pattern of
        the permuted matrix's strictly lower triangle.
    U : scipy.sparse.csr_array
        Upper triangular, on the pattern of the permuted matrix's upper
        triangle: ``(L U)_ij = A[perm][:, perm]_ij`` wherever that matrix
        stores ``(i, j)``.
    perm : ndarray
        The ordering (``arange(n)`` for ``ordering="natural"``).
    ordering : str
        ``"natural"`` or ``"domains"`` (``"auto"`` resolved).
    num_domains : int
    shift : float
    symmetric : bool
        False: ``M`` is not symmetric (for GMRES and BiCGStab; a solver that
        needs an SPD ``M`` can refuse it by this attribute).
    """

    symmetric = False

    def __init__(self, factor, diagonal_at, shift, ordering, domains):
        # factor: L - I strictly below the diagonal, U on and above it (the
        # layout of the factorisation kernel), canonical CSR in the permuted
        # numbering; diagonal_at[i] the position of (i, i) in it.
        # U = D + U_s = (I + U_s D^{-1}) D with D = diag(U), so
        # U^{-1} = D^{-1} (I + U_s D^{-1})^{-1}: the strictly upper part with its
        # columns divided by the pivots, and D^{-1} applied on the way out,
        # which is the unit-diagonal pair of sweeps TriangularPair runs
        # (no division in the backward sweep). L is unit lower already.
        dtype = factor.dtype
        n = factor.shape[0]
        indptr, indices, data = factor.indptr, factor.indices, factor.data
        inverse_diagonal = np.ascontiguousarray(1 / data[diagonal_at], dtype=dtype)
        # split each sorted row at its diagonal with masks (scipy's tril/triu
        # go through COO: most of the set-up time at n = 250 000)
        rows = np.repeat(np.arange(n), np.diff(indptr))
        position = np.arange(indices.shape[0])
        below, above = position < diagonal_at[rows], position > diagonal_at[rows]
        lower_counts = diagonal_at - indptr[:-1]
        lower = sp.csr_array((data[below], indices[below],
                              np.concatenate(([0], np.cumsum(lower_counts)))), shape=(n, n))
        upper_counts = np.diff(indptr) - lower_counts - 1
        upper = sp.csr_array((data[above] * inverse_diagonal[indices[above]], indices[above],
                              np.concatenate(([0], np.cumsum(upper_counts)))), shape=(n, n))
        super().__init__(lower, upper, np.ones(n, dtype=dtype), inverse_diagonal, ordering,
                         domains)
        self._factor = factor
        self._inverse_diagonal = inverse_diagonal
        self._transpose = None
        self.shift = shift

    @property
    def L(self):
        n = self.shape[0]
        unit = sp.eye_array(n, dtype=self._factor.dtype, format="csr")
        L = sp.csr_array(sp.tril(self._factor, -1, format="csr") + unit)
        L.sort_indices()
        return L

    @property
    def U(self):
        U = sp.csr_array(sp.triu(self._factor, format="csr"))
        U.sort_indices()
        return U

    def rmatvec(self, r):
        """``M^T r = P^T L^{-T} U^{-T} P r`` (for :meth:`aslinearoperator`'s adjoint).

        ``U^T = D (I + D^{-1} U_s^T)``, so the forward sweep is the transpose of
        the stored scaled upper part with ``D^{-1}`` on the way in, the backward
        sweep ``L^T``; both transposes are built on the first call.

        Examples
        --------
        >>> import numpy as np
        >>> M = ilu0(np.array([[2.0, 1.0], [4.0, 5.0]]))
        >>> M.rmatvec(np.array([2.0, 1.0])).tolist()  # (L U)^{-T} = [[5, -4], [-1, 2]] / 6
        [1.0, 0.0]
        """
        if self._transpose is None:
            scaled_upper = sp.triu(self._factor, 1, format="csr") \
                @ sp.diags_array(self._inverse_diagonal)
            lower = sp.csr_array(scaled_upper.T)
            upper = sp.csr_array(sp.tril(self._factor, -1, format="csr").T)
            for part in (lower, upper):
                part.sort_indices()
            ones = np.ones(self.shape[0], dtype=self._inverse_diagonal.dtype)
            self._transpose = TriangularPair(lower, upper, self._inverse_diagonal, ones,
                                             self.ordering, self.domains)
        return self._transpose.matvec(r)

    def aslinearoperator(self):
        """This preconditioner as a :class:`scipy.sparse.linalg.LinearOperator`.

        ``matvec`` applies ``M``, ``rmatvec`` its transpose (ILU(0) is not
        symmetric). For scipy's non-symmetric solvers, e.g.
        ``scipy.sparse.linalg.gmres(A, b, M=M.aslinearoperator())``.
        """
        from scipy.sparse.linalg import LinearOperator

        def apply(x):
            return self.matvec(np.reshape(np.asarray(x), (-1,)))

        def apply_transpose(x):
            return self.rmatvec(np.reshape(np.asarray(x), (-1,)))

        return LinearOperator(self.shape, matvec=apply, rmatvec=apply_transpose,
                              dtype=np.dtype(self.dtype))


def ilu0(A: Any, shift: float = 0.0, *, ordering: str = "auto",
         num_domains: int = DEFAULT_NUM_DOMAINS) -> ILU0:
    """Zero-fill incomplete LU preconditioner, the non-symmetric counterpart of ``ichol0``.

    Computes unit lower-triangular ``L`` and upper-triangular ``U`` with the
    sparsity patterns of the strictly lower and the upper triangle of
    ``B = A[perm][:, perm]``, such that ``(L U)_ij = B_ij`` wherever ``B``
    stores an entry (no fill-in; Saad, *Iterative Methods for Sparse Linear
    Systems*, 2nd ed., Alg. 10.4), and applies ``M = P^T (L U)^{-1} P`` by a
    forward solve with ``L`` and a backward solve with ``U``. Where ``A``'s
    LU factors have no fill (a tridiagonal matrix in the natural ordering)
    ILU(0) is the exact LU factorisation (without pivoting).

    ``M`` is not symmetric: it is a preconditioner for GMRES and BiCGStab
    (or scipy's ``gmres``/``bicgstab``/``lgmres`` through
    :meth:`ILU0.aslinearoperator`), not for ``pcg`` or ``minres``, which need
    a symmetric positive definite ``M`` (use :func:`ichol0` for SPD ``A``).

    Parameters
    ----------
    A : scipy sparse matrix (or NumPy array)
        Square, real, finite; every diagonal entry stored. Converted once to
        CSR with sorted indices (CPU only); the caller's matrix is not
        modified.
    shift : float
        Factor ``A + shift * diag(A)`` instead, the usual cure when ILU(0)
        of ``A`` meets a zero (or tiny) pivot.
    ordering : {"auto", "natural", "domains"}
        As for :func:`linsolve.precond.ichol0`: ``"natural"`` keeps ``A``'s
        numbering (sequential solves); ``"domains"`` renumbers symmetrically
        into ``num_domains`` uncoupled domains, separators last, and solves
        the domains in parallel (a different preconditioner: ILU(0) of the
        permuted matrix); ``"auto"`` (default) picks ``"domains"`` when
        ``n + nnz >= 100_000``, the natural ordering below.
    num_domains : int
        Power of two; 1 gives the reverse Cuthill-McKee ordering.

    Returns
    -------
    ILU0
        Operator with ``matvec``, ``rmatvec``, ``shape``, ``dtype``, ``@``,
        ``aslinearoperator()``, the factors ``L``, ``U`` and ``perm``; float32
        ``A`` gives float32 factors and float32 solves.

    Raises
    ------
    ValueError
        A diagonal entry not stored, a zero or non-finite pivot (named by its
        row of ``A``; retry with e.g. ``shift=0.1`` or another ``ordering``);
        a non-finite entry of ``A``; negative ``shift``; unknown
        ``ordering``; ``num_domains`` not a power of two.
    TypeError
        Complex, GPU (cupyx) or other non-scipy input.

    Notes
    -----
    scipy's closest incomplete factorisation, ``spilu(A, drop_tol=0,
    fill_factor=1)``, is a different one: SuperLU's ILUTP orders the
    columns (COLAMD), pivots by rows (threshold partial pivoting) and drops
    entries by magnitude until ``nnz(L) + nnz(U)`` is about ``nnz(A)``
    (its ``L`` stores the unit diagonal, so it drops entries even where the
    exact factors have no fill). ILU(0) keeps exactly ``A``'s pattern, with
    no pivoting and no permutation but ``perm``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.precond.ilu0 import ilu0
    >>> A = sp.diags([-1.3, 2.0, -0.7], [-1, 0, 1], shape=(5, 5), format="csr")
    >>> M = ilu0(A)
    >>> bool(np.allclose(M @ (A @ np.arange(5.0)), np.arange(5.0)))  # exact on tridiagonals
    True
    """
    shift = check_real("shift", shift)
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    csr = scipy_csr(A)
    if not np.isfinite(csr.data).all():
        position = int(np.argmin(np.isfinite(csr.data)))
        row = int(np.searchsorted(csr.indptr, position, side="right") - 1)
        raise ValueError(f"A[{row}, {int(csr.indices[position])}] = {csr.data[position]}: "
                         "ILU(0) needs a finite matrix")
    ordering, domains = choose_ordering(csr, ordering, num_domains)
    # a symmetric renumbering keeps the diagonal on the diagonal
    factor = permuted(csr, domains.perm, ordering == "natural")
    n = factor.shape[0]
    indptr = np.ascontiguousarray(factor.indptr)
    indices = np.ascontiguousarray(factor.indices)
    data = np.array(factor.data, dtype=csr.dtype, copy=True)  # scipy_csr's copy is ours too
    diagonal_at = _diagonal_positions(indptr, indices)
    if shift:
        stored = diagonal_at >= 0
        data[diagonal_at[stored]] += np.asarray(shift, dtype=data.dtype) * \
            data[diagonal_at[stored]]
    failed = kernels_for(array_namespace(data)).csr_ilu0(indptr, indices, data)
    if failed < 0 and not np.isfinite(data).all():
        # an overflowing multiplier need not reach a later pivot: name its row
        failed = int(np.searchsorted(indptr, int(np.argmin(np.isfinite(data))), side="right") - 1)
    if failed >= 0:
        row = int(domains.perm[failed])
        if diagonal_at[failed] < 0:
            raise ValueError(f"ILU(0) needs every diagonal entry of A stored: A[{row}, {row}] is "
                             f"not (nor is a zero of a dense A), so U[{row}, {row}] has no place "
                             "in the pattern; reorder the unknowns so that the diagonal has no "
                             "zeros, or use another preconditioner")
        if factor.data[diagonal_at[failed]] == 0:  # a shift of diag(A) leaves it zero
            cure = ("A's own diagonal entry there is zero, which shift (a multiple of diag(A)) "
                    "cannot change: reorder the unknowns, or use another preconditioner")
        else:
            cure = ("retry with shift=0.1 or larger, which factors A + shift*diag(A), or with "
                    "another ordering")
        raise ValueError(
            f"incomplete LU ILU(0) broke down at row {row}: the pivot U[{row}, {row}] is zero or "
            f"not finite (ILU(0) is unstable for this A in the {ordering!r} ordering); {cure}")
    factor = sp.csr_array((data, indices, indptr), shape=(n, n))
    return ILU0(factor, diagonal_at, shift, ordering, domains)


def _diagonal_positions(indptr, indices) -> np.ndarray:
    """Position of ``(i, i)`` in canonical CSR, ``-1`` where row ``i`` does not store it."""
    n = indptr.shape[0] - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    at = np.full(n, -1, dtype=np.int64)
    on_diagonal = np.flatnonzero(indices == rows)
    at[rows[on_diagonal]] = on_diagonal
    return at
