"""The matrix SOR sweeps: a CSR system with its diagonal checked and its sweep order cached."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from cext import kernels_for
from cext.threads import kernel_threads

from ..validation.sparse import checked_csr
from .sor_setup import Split, checked_system, fast_colored, fast_split, own_arrays

ORDERINGS = ("natural", "redblack", "multicolor")


class SorMatrix:
    """A CSR matrix prepared for SOR sweeps: diagonal checked, sweep order cached.

    Build it once when the same matrix is swept many times (a preconditioner,
    a sequence of right-hand sides); for a sequence of matrices with one
    sparsity pattern, :meth:`refactor` reuses the sweep order (the
    colouring and permutation) and splits only the new values.

    The system is held in *sweep order*: natural, or, for the coloured
    orderings, permuted so that each colour's unknowns are contiguous
    (``permutation[k]`` is the unknown at position ``k``; within a colour, in
    reverse Cuthill-McKee order, for locality). A coloured sweep
    is then the lexicographic sweep of the permuted matrix, whose rows
    within a colour are independent and run in parallel, and every array
    the sweep reads is contiguous per colour. (With the rows merely stored
    by colour and ``x``, ``b`` and the diagonal left in natural order, the
    sweep gathered them at random and was slower than pyamg's sequential
    sweep; the measurements are in ``docs/sor.md``.)

    Parameters
    ----------
    A : scipy sparse matrix or 2-D NumPy array, square, nonzero diagonal
    dtype : numpy dtype, optional
        float32 or float64 (default: float64 unless A is float32). :func:`sor`
        sweeps a float32 system in float32 arithmetic; :meth:`sweep` in the
        natural ordering sums rows in float64.
    ordering : {"natural", "redblack", "multicolor"}

    Attributes
    ----------
    off_indptr, off_indices, off_data : ndarray
        The off-diagonal entries in sweep order, columns sorted.
    mid : ndarray
        ``mid[k]``: the first entry of stored row ``k`` right of the diagonal.
    diag : ndarray
        The diagonal in sweep order.
    permutation : ndarray or None
        Sweep position to unknown; None for the natural ordering.
    color_ptr : ndarray of int64
        Colour ``c`` occupies positions ``color_ptr[c]:color_ptr[c + 1]``
        (a single entry for the natural ordering).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(5, 5))
    >>> S = SorMatrix(A, ordering="redblack")
    >>> S.n_colors, S.permutation.tolist()
    (2, [4, 2, 0, 3, 1])
    >>> x = np.zeros(5)
    >>> S.sweep(np.ones(5), x, 1.0)  # one Gauss-Seidel sweep, red then black
    >>> x.tolist()
    [0.5, 1.0, 0.5, 1.0, 0.5]
    """

    # 1: the off-diagonal arrays are a whole matrix's, each row's diagonal entry
    # stored at mid[i] and skipped (sweep_matrix's natural plain call only)
    _skip = 0

    def __init__(self, A: Any, dtype=None, ordering: str = "natural"):
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
        csr, dtype = checked_system(A, dtype)
        self._build(csr, dtype, ordering)

    def _build(self, csr, dtype, ordering):
        """Split ``csr`` (structure checked, real float) into the sweep order's arrays."""
        self.shape = csr.shape
        self.dtype = np.dtype(dtype)
        self.ordering = ordering
        self.permutation = None
        self.color_ptr = np.zeros(1, dtype=np.int64)  # one sequential sweep
        self.n_colors = 1
        self._no_couplings = None
        self._pattern = None
        n = csr.shape[0]
        with kernel_threads(csr.indices.shape[0] + n + 1):
            if ordering == "natural":
                split = fast_split(csr, self.dtype)
            else:
                split = fast_colored(csr, self.dtype, ordering)
        if split is None:  # rows unsorted, a zero stored, or a diagonal zero or missing
            split = self._general_split(csr, n)
        (self.off_indptr, self.off_indices, self.off_data, self.diag, self.mid,
         self._finite) = split.arrays
        if split.permutation is not None:
            self.permutation, self.color_ptr = split.permutation, split.color_ptr
            self.n_colors = self.color_ptr.shape[0] - 1
        self._pattern = split.pattern

    def _general_split(self, csr, n) -> "Split":
        """The split by scipy, for any matrix (and the error for a bad diagonal)."""
        csr = checked_csr(csr, canonical=True)  # a copy where it rewrites
        diagonal = csr.diagonal()
        bad = np.flatnonzero(~(diagonal != 0))
        if bad.size:
            raise ValueError(f"SOR needs a nonzero diagonal; A[{bad[0]}, {bad[0]}] = "
                             f"{diagonal[bad[0]]} ({bad.size} such rows)")
        permutation = color_ptr = None
        if self.ordering != "natural":
            permutation, color_ptr = self._color(csr, n)
            csr = csr[permutation][:, permutation].tocsr()
            diagonal = csr.diagonal()
        # the sweep kernels take the off-diagonal part and the diagonal apart
        off = (csr - sp.diags(diagonal)).tocsr()
        off.eliminate_zeros()
        off.sort_indices()  # rows split at the diagonal by mid: columns ascending
        index_dtype = np.int32 if off.nnz < 2**31 - 1 else np.int64
        off_indptr = np.ascontiguousarray(off.indptr, dtype=index_dtype)
        off_indices = np.ascontiguousarray(off.indices, dtype=index_dtype)
        off_data = np.ascontiguousarray(off.data, dtype=self.dtype)
        diag = np.ascontiguousarray(diagonal, dtype=self.dtype)
        rows = np.repeat(np.arange(n, dtype=index_dtype), np.diff(off_indptr))
        lower = np.bincount(rows[off_indices < rows], minlength=n)
        mid = (off_indptr[:-1] + lower).astype(index_dtype)
        # the residual of x = 0 is b only where every 0 * a_ij is 0 (residual_norm)
        finite = bool(np.isfinite(off_data).all() and np.isfinite(diag).all())
        return Split((off_indptr, off_indices, off_data, diag, mid, finite), permutation,
                      color_ptr, None)

    def _color(self, csr, n):
        """``(permutation, color_ptr)``: unknowns grouped by colour, RCM order within one."""
        kernels = kernels_for(np)
        # colour the symmetrised pattern: no row may read an unknown of its own colour
        pattern = (abs(csr) + abs(csr.T)).tocsr()
        index_dtype = np.int32 if pattern.nnz < 2**31 - 1 else np.int64
        indptr = pattern.indptr.astype(index_dtype)
        indices = pattern.indices.astype(index_dtype)
        if self.ordering == "redblack":
            colors, bipartite = kernels.two_coloring(indptr, indices, n)
            if not bipartite:
                raise ValueError("the graph of A is not two-colourable (not a red-black "
                                 "stencil); use ordering='multicolor'")
        else:
            colors = kernels.greedy_coloring(indptr, indices, n)
        n_colors = int(colors.max()) + 1 if n else 0
        # Within a colour the order of the rows does not change the iteration
        # (they are uncoupled): they follow the reverse Cuthill-McKee order, so
        # the neighbours a colour's rows read in the other colours advance
        # together. Finite-element numberings are far from local (P1
        # triangles: mean |i - j| = 77 000 over the entries, 195 after RCM),
        # and the coloured sweep gathered at random (P1 triangles, n = 261k,
        # two threads: 1.69 -> 1.48 ms per sweep; pyamg's sweep 1.7-1.8 ms).
        rank = np.empty(n, dtype=np.int64)
        rank[reverse_cuthill_mckee(pattern, symmetric_mode=True)] = np.arange(n)
        permutation = np.lexsort((rank, colors)).astype(index_dtype)
        color_ptr = np.searchsorted(colors[permutation], np.arange(n_colors + 1)).astype(np.int64)
        return permutation, color_ptr

    def refactor(self, A: Any) -> "SorMatrix":
        """This matrix's sweep order for a matrix ``A`` of the same sparsity pattern.

        A sequence of systems with one pattern (time steps, ``A + c I``,
        Newton steps) pays for the symbolic set-up -- the structure checks,
        the colouring, the permutation -- once: ``A``'s stored structure
        (``indptr`` and ``indices`` of its CSR form) is compared with the one
        this matrix was built from, and its values are split (and permuted)
        in one pass. The result is the matrix ``SorMatrix(A, ordering=...)``
        would build, to the bit; where the patterns differ, or ``A`` stores
        a zero or non-finite diagonal entry where this matrix did not, it is
        that build. This matrix is not modified.

        Parameters
        ----------
        A : scipy sparse matrix or 2-D NumPy array
            Of this matrix's shape; swept in this matrix's ``dtype``.

        Returns
        -------
        SorMatrix

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp
        >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(6, 6), format="csr")
        >>> S = SorMatrix(A, ordering="multicolor")
        >>> S2 = S.refactor(A + 0.5 * sp.eye(6, format="csr"))
        >>> S2.permutation is S.permutation, S2.diag.tolist()
        (True, [2.5, 2.5, 2.5, 2.5, 2.5, 2.5])
        """
        csr, _ = checked_system(A, self.dtype, check=False)
        if csr.shape != self.shape:
            raise ValueError(f"A has shape {csr.shape}, this SorMatrix {self.shape}")
        pattern = self._pattern
        # (the natural ordering has no symbolic part to share: its split is one pass)
        if pattern is None or not pattern.matches(csr):
            return SorMatrix(A, dtype=self.dtype, ordering=self.ordering)
        S = object.__new__(SorMatrix)
        S.__dict__.update(self.__dict__)  # the pattern's arrays, shared (never written)
        S._no_couplings = None
        S.off_data = np.empty(self.off_indices.shape[0], dtype=self.dtype)
        S.diag = np.empty(self.shape[0], dtype=self.dtype)
        with kernel_threads(csr.indices.shape[0] + self.shape[0] + 1):
            finite = pattern.split_values(csr.data, S.off_data, S.diag)
        if finite is None:  # a zero where the pattern had none: the general build
            return SorMatrix(A, dtype=self.dtype, ordering=self.ordering)
        S._finite = finite
        return S

    @property
    def kernel_work(self) -> int:
        """The work :mod:`cext.threads` sizes a sweep's threads by: its largest array."""
        return max(self.off_data.shape[0], self.shape[0] + 1)

    def to_sweep_order(self, v: np.ndarray) -> np.ndarray:
        """``v`` permuted into sweep order, as a new contiguous array of the working dtype."""
        if self.permutation is None:
            return np.array(v, dtype=self.dtype, copy=True)
        return np.ascontiguousarray(v[self.permutation], dtype=self.dtype)

    def from_sweep_order(self, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The inverse of :meth:`to_sweep_order` (into ``out`` when given)."""
        if out is None:
            out = np.empty_like(v)
        if self.permutation is None:
            out[...] = v
        else:
            out[self.permutation] = v
        return out

    def sweep(self, b, x, omega: float, *, backward: bool = False) -> None:
        """One SOR sweep on ``x`` in place (forward, or backward for SSOR's second half).

        ``b`` and ``x`` are in the natural order of the unknowns.
        """
        if self._skip:  # sweep_matrix's view of a caller's matrix, never handed out
            raise RuntimeError("this SorMatrix views a caller's matrix for one solve only")
        kernels = kernels_for(np)
        if self.permutation is None:
            args = (self.off_indptr, self.off_indices, self.off_data, self.diag, b, x, omega)
            (kernels.sor_sweep_backward if backward else kernels.sor_sweep_forward)(*args)
            return
        bs, xs = self.to_sweep_order(b), self.to_sweep_order(x)
        if backward:
            kernels.sor_reverse_sweep(self.off_indptr, self.off_indices, self.off_data,
                                      self.diag, bs, xs, omega, self.color_ptr)
        else:
            new = np.empty_like(xs)
            kernels.sor_lagged_sweep(self.off_indptr, self.mid, self.off_indices, self.off_data,
                                     self.diag, bs, xs, new, omega, self.color_ptr)
            xs = new
        self.from_sweep_order(xs, out=x)

    def residual_norm(self, b, x, *, ordered: bool = False) -> float:
        """``||b - A x||``; ``ordered=True`` when ``b`` and ``x`` are in sweep order.

        The sweeps' arithmetic and summation order (so the value equals the
        one they would report, bit for bit). A zero ``x`` of a finite ``A``
        costs a pass over ``b`` only, not over ``A`` (a solve from a zero
        initial guess starts with it).
        """
        if not ordered and self.permutation is not None:
            b, x = self.to_sweep_order(b), self.to_sweep_order(x)
        residual_norm2 = kernels_for(np).sor_residual_norm2_ordered
        if getattr(self, "_finite", False) and not np.any(x):
            # every product a_ij x_j is a zero, so the same kernel over the
            # diagonal alone adds the same terms in the same order -- on the
            # thread count the full pass would get (coloured sums are per thread)
            n = self.shape[0]
            if getattr(self, "_no_couplings", None) is None:
                self._no_couplings = (np.zeros(n + 1, dtype=self.off_indptr.dtype),
                                      np.zeros(n, dtype=self.mid.dtype),
                                      np.zeros(0, dtype=self.off_indices.dtype),
                                      np.zeros(0, dtype=self.off_data.dtype))
            with kernel_threads(self.kernel_work):
                value = residual_norm2(*self._no_couplings, self.diag, b, x, self.color_ptr)
        else:
            value = residual_norm2(self.off_indptr, self.mid, self.off_indices, self.off_data,
                                   self.diag, b, x, self.color_ptr, skip=self._skip)
        return math.sqrt(value) if value >= 0 else float("nan")

    def run(self, b, x, work, omega, *, symmetric, tol, grow_limit, maxiter, norms,
            start=0, check_every=1, measure_end=True) -> int:
        """Sweep in compiled code until converged, diverged or ``maxiter`` (``cext`` ``sor_run_lagged``).

        ``b``, ``x`` (updated in place) and the scratch ``work`` are in sweep
        order. One uninterruptible call: ``norms`` needs ``maxiter + 1``
        entries, and a caller with a large ``maxiter`` resumes it in chunks
        (``start`` = the last return) so that Ctrl-C is seen, as :func:`sor`.
        The residual is measured every ``check_every`` sweeps (``norms`` NaN
        between) and at ``maxiter`` when ``measure_end`` (else NaN there,
        measured by the resuming call).
        """
        return kernels_for(np).sor_run_lagged(self.off_indptr, self.mid, self.off_indices,
                                              self.off_data, self.diag, b, x, work, omega,
                                              symmetric, self.color_ptr, tol, grow_limit,
                                              maxiter, norms, start, check_every,
                                              measure_end, skip=self._skip)


# The plain call sor(A, b, ordering="multicolor") on a sequence of matrices of
# one pattern (time steps, A + c I) would otherwise colour and permute each
# anew: it keeps the symbolic part of its last coloured build, per ordering
# and dtype, and a new matrix whose stored structure equals it (one compiled
# comparison, the cost of the structure check it replaces) is split by
# SorMatrix.refactor. A cache, not state: what it holds never changes a
# result (refactor builds what SorMatrix(A) would, to the bit), entries are
# replaced whole (one dict assignment under the GIL), and it holds one
# pattern per ordering and dtype: the structure copies, the permuted pattern
# and the gather map, about 2.5 times A's index arrays.
_RECENT: dict = {}


def sweep_matrix(A: Any, dtype, ordering: str, *, symmetric: bool = False,
                 borrow: bool = True) -> SorMatrix:
    """The :class:`SorMatrix` of ``A`` for :func:`linsolve.sor`, reusing the last coloured
    pattern where ``A`` has it (see ``_RECENT``); for the natural forward sweep of a CSR
    matrix, ``A``'s own arrays (:func:`~linsolve.stationary.sor_setup.own_arrays`: for this
    solve only, as ``A`` is the caller's; :meth:`SorMatrix.sweep` does not take them).
    ``borrow=False`` copies, as a solve whose callback could write ``A`` needs."""
    if (borrow and ordering == "natural" and not symmetric and sp.issparse(A)
            and A.format == "csr"):
        csr, dtype = checked_system(A, dtype)
        with kernel_threads(csr.indices.shape[0] + csr.shape[0] + 1):
            split = own_arrays(csr, dtype)
        if split is None:
            return SorMatrix(csr, dtype=dtype, ordering=ordering)
        S = object.__new__(SorMatrix)
        S.shape, S.dtype, S.ordering = csr.shape, np.dtype(dtype), ordering
        S.permutation, S.color_ptr, S.n_colors = None, np.zeros(1, dtype=np.int64), 1
        S._no_couplings = S._pattern = None
        (S.off_indptr, S.off_indices, S.off_data, S.diag, S.mid, S._finite) = split.arrays
        S._skip = 1
        return S
    if ordering == "natural" or not (sp.issparse(A) and A.format == "csr"):
        return SorMatrix(A, dtype=dtype, ordering=ordering)
    key = (ordering, np.dtype(dtype).str)
    recent = _RECENT.get(key)
    if recent is not None and recent.shape == A.shape:
        S = recent.refactor(A)
    else:
        S = SorMatrix(A, dtype=dtype, ordering=ordering)
    if S._pattern is not None and S._pattern is not getattr(recent, "_pattern", None):
        shell = object.__new__(SorMatrix)
        shell.__dict__.update(S.__dict__)
        shell.off_data = shell.diag = shell._no_couplings = None  # the pattern only
        _RECENT[key] = shell
    return S
