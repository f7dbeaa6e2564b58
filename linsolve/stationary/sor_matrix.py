"""The matrix SOR sweeps: a CSR system with its diagonal checked and its sweep order cached."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from cext import kernels_for
from cext.threads import kernel_threads

from ..validation.inputs import check_real_numeric
from ..validation.sparse import checked_csr

ORDERINGS = ("natural", "redblack", "multicolor")


class SorMatrix:
    """A CSR matrix prepared for SOR sweeps: diagonal checked, sweep order cached.

    Build it once when the same matrix is swept many times (a preconditioner,
    a sequence of right-hand sides).

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

    def __init__(self, A: Any, dtype=None, ordering: str = "natural"):
        if ordering not in ORDERINGS:
            raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
        if not sp.issparse(A):
            if type(A).__module__.startswith("cupy"):
                raise TypeError("SorMatrix is built on the host: pass a scipy.sparse matrix "
                                "(sor() copies a CuPy A there itself)")
            A = np.asarray(A)
            check_real_numeric("A", A.dtype)
            if A.ndim != 2:
                raise ValueError(f"A must be a square matrix, got shape {A.shape}")
            # as pcg: booleans, integers and float16 (which scipy.sparse cannot
            # hold) are solved in float64
            A = sp.csr_matrix(A if A.dtype in (np.float32, np.float64) else A.astype(np.float64))
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be square, got shape {A.shape}")
        check_real_numeric("A", A.dtype)
        if dtype is None:
            dtype = np.float32 if A.dtype == np.float32 else np.float64
        csr = checked_csr(A, canonical=True)  # never the caller's arrays when it rewrites
        if csr.dtype not in (np.float32, np.float64):
            # a boolean A is its 0/1 values, as in pcg (and scipy); astype copies
            csr = csr.astype(np.float64)
        n = csr.shape[0]
        self.shape = csr.shape
        self.dtype = np.dtype(dtype)
        self.ordering = ordering
        diagonal = csr.diagonal()
        bad = np.flatnonzero(~(diagonal != 0))
        if bad.size:
            raise ValueError(f"SOR needs a nonzero diagonal; A[{bad[0]}, {bad[0]}] = "
                             f"{diagonal[bad[0]]} ({bad.size} such rows)")
        self.permutation = None
        self.color_ptr = np.zeros(1, dtype=np.int64)  # one sequential sweep
        self.n_colors = 1
        if ordering != "natural":
            self.permutation, self.color_ptr = self._color(csr, n)
            self.n_colors = self.color_ptr.shape[0] - 1
            csr = csr[self.permutation][:, self.permutation].tocsr()
            diagonal = csr.diagonal()
        # the sweep kernels take the off-diagonal part and the diagonal apart
        off = (csr - sp.diags(diagonal)).tocsr()
        off.eliminate_zeros()
        off.sort_indices()  # rows split at the diagonal by mid: columns ascending
        index_dtype = np.int32 if off.nnz < 2**31 - 1 else np.int64
        self.off_indptr = np.ascontiguousarray(off.indptr, dtype=index_dtype)
        self.off_indices = np.ascontiguousarray(off.indices, dtype=index_dtype)
        self.off_data = np.ascontiguousarray(off.data, dtype=dtype)
        self.diag = np.ascontiguousarray(diagonal, dtype=dtype)
        rows = np.repeat(np.arange(n, dtype=index_dtype), np.diff(self.off_indptr))
        lower = np.bincount(rows[self.off_indices < rows], minlength=n)
        self.mid = (self.off_indptr[:-1] + lower).astype(index_dtype)
        # the residual of x = 0 is b only where every 0 * a_ij is 0 (residual_norm)
        self._finite = bool(np.isfinite(self.off_data).all() and np.isfinite(self.diag).all())
        self._no_couplings = None

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
                                   self.diag, b, x, self.color_ptr)
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
                                              measure_end)
