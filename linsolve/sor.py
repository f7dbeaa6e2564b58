"""SOR and SSOR as solvers, with lexicographic, red-black and multicolour sweeps."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from cext import kernels_for
from cext.threads import kernel_threads

from ._sor_device import DeviceSorMatrix, host_matrix
from ._sparse import checked_csr
from ._validate import (as_initial_guess, as_rhs, check_maxiter, check_nonnegative,
                        check_real_numeric, reject_unknown_keywords, stopping_tolerance,
                        working_dtype)
from ._chunks import grown_history, next_budget
from .result import SolveResult

ORDERINGS = ("natural", "redblack", "multicolor")

_MONITOR_FORMAT = "%3d SOR Residual norm %14.12e"


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
    sweep gathered them at random: 1.3-1.8x pyamg's sequential sweep on
    scikit-fem matrices, two threads.)

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


def _on_device(xp) -> bool:
    """Whether ``b``'s namespace sweeps on the GPU (CuPy)."""
    return "cupy" in xp.__name__


def sor(A: Any, b: Any, omega: float = 1.0, x0: Any = None, *, rtol: float = 1e-8,
        atol: float = 0.0, maxiter: int | None = None, symmetric: bool = False,
        ordering: str = "natural", dtol: float = 1e5, check_every: int = 1,
        callback: Callable[[Any], None] | None = None, monitor: bool = False,
        **kwargs) -> SolveResult:
    """Solve ``A x = b`` by successive over-relaxation (SOR) or symmetric SOR.

    One iteration is one sweep ``x <- x + (D/w + L)^{-1} (b - A x)`` over the
    rows in the chosen order (SSOR: followed by the backward sweep with
    ``(D/w + U)``). Stops at the first ``k`` with
    ``||b - A x_k|| <= max(rtol ||b||, atol)``, the true residual.

    Parameters
    ----------
    A : scipy sparse matrix, 2-D NumPy array, or :class:`SorMatrix`
        Square with a nonzero diagonal (SPD for guaranteed convergence with
        ``0 < omega < 2``).
    b : NumPy or CuPy array of shape (n,) or (n, 1)
        CuPy: the coloured sweeps run on the GPU (``A`` may then be a CuPy
        or ``cupyx`` matrix; the colouring is built on the host), every
        sweep measured; the natural ordering has no GPU sweep and raises.
    omega : float
        Relaxation factor, ``0 < omega < 2``; 1 is Gauss-Seidel.
    x0 : array, optional
        Initial guess (not modified). Default zeros.
    rtol, atol : float
        Tolerances on the residual norm, scipy's rule. ``rtol`` defaults to
        1e-8, not :func:`linsolve.pcg`'s 1e-5 (scipy's ``cg`` default): SOR
        converges linearly at a known rate, and 1e-8 is the accuracy at
        which the omega tuners count iterations (Khodak et al.), so a solve
        and a tuned solve stop at the same point.
    maxiter : int, optional
        Sweep limit, default ``10 n``.
    symmetric : bool
        SSOR: forward then backward sweep per iteration.
    ordering : {"natural", "redblack", "multicolor"}
        ``natural``: sequential lexicographic sweep. ``redblack``: two
        colours (grid stencils; raises if the graph is not bipartite).
        ``multicolor``: greedy colouring of the graph. Coloured sweeps update
        the rows of one colour in parallel; they are SOR for the permuted
        matrix, so iterates differ from natural ordering but, for
        consistently ordered matrices, the convergence factor does not.
    dtol : float
        ``DIVERGED_DTOL`` when ``||r_k|| > dtol ||r_0||``.
    check_every : int
        Measure the true residual (and test convergence) every
        ``check_every`` sweeps instead of every sweep. The sweeps between skip
        the residual arithmetic -- on two threads, the natural ordering's
        second core, which otherwise measures it beside the sweep -- so a
        sweep costs about what pyamg's ``sor`` does (issue 15). The iterates
        are the same; the returned one's residual is still measured
        exactly: the solve stops at the first multiple of ``check_every``
        whose residual meets the tolerance -- usually within
        ``check_every - 1`` sweeps of the every-sweep count, later only where
        the residual rises again after meeting it (SOR's residual need not
        decrease monotonically) -- and ``residual_norms`` holds NaN for the
        sweeps not measured. Growth past ``dtol`` is seen at measured sweeps
        only. A ``callback`` or ``monitor`` watches, and measures, every
        sweep.
    callback : callable, optional
        ``callback(x)`` after every iteration.
    monitor : bool
        Print ``"%3d SOR Residual norm %14.12e"`` lines.

    Returns
    -------
    SolveResult
        ``matvecs`` counts residual evaluations (one per iteration with
        ``check_every=1``).

    Raises
    ------
    ValueError
        Zero or missing diagonal entry, ``omega`` outside (0, 2), unknown
        ordering, shape mismatch, bad tolerances, the natural ordering on
        the GPU.
    TypeError
        ``tol=``, operators without entries, arrays of another library.

    Notes
    -----
    The sweeps run in compiled calls of about 0.1 s each, so Ctrl-C raises
    ``KeyboardInterrupt`` promptly however large ``maxiter`` is; ``A``,
    ``b`` and ``x0`` are never modified. The residual history grows with
    the sweeps run.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(20, 20), format="csr")
    >>> result = sor(A, np.ones(20), omega=1.7, rtol=1e-10)
    >>> result.converged, result.reason
    (True, 'CONVERGED_RTOL')
    >>> bool(np.linalg.norm(np.ones(20) - A @ result.x) <= 1e-10 * np.sqrt(20))
    True
    """
    start = time.perf_counter()
    reject_unknown_keywords("sor", kwargs)
    rtol = check_nonnegative("rtol", rtol)
    atol = check_nonnegative("atol", atol)
    dtol = check_nonnegative("dtol", dtol)
    if isinstance(check_every, bool) or not isinstance(check_every, (int, np.integer)) \
            or check_every < 1:
        raise ValueError(f"check_every must be a positive int, got {check_every!r}")
    if not isinstance(omega, (int, float)) or isinstance(omega, bool) or not 0.0 < omega < 2.0:
        raise ValueError(f"omega must be a real number in (0, 2), got {omega!r}")
    xp, b = as_rhs(b)
    device = _on_device(xp)
    if not device and "numpy" not in xp.__name__:
        raise TypeError(f"sor takes NumPy arrays (CPU) or CuPy arrays (GPU), got {xp.__name__}")
    n = b.shape[0]
    maxiter = check_maxiter(maxiter, 10 * n)
    if isinstance(A, SorMatrix):
        S = A
        if S.ordering != ordering and ordering != "natural":
            raise ValueError(f"SorMatrix was built for ordering={S.ordering!r}")
    else:
        A = host_matrix(A) if device else A  # the colouring is built on the host
        S = SorMatrix(A, dtype=working_dtype(xp, b, A), ordering=ordering)
    if S.shape != (n, n):
        raise ValueError(f"A has shape {S.shape}, expected ({n}, {n}) to match b")
    # one thread policy for the whole solve (each kernel call applying it cost
    # about 0.2 ms), re-applied between compiled chunks
    with kernel_threads(S.kernel_work) as threads:
        if device:
            S = DeviceSorMatrix(S, xp)
            b = xp.astype(b, S.dtype)
            bnorm = float(xp.linalg.vector_norm(xp.astype(b, xp.float64)))
        else:
            b = np.ascontiguousarray(b, dtype=S.dtype)
            # the kernels' dot (float64 sums), not BLAS: OpenBLAS's threads spin for
            # ~0.1 s after a call and took the cores from the first sweeps (2-5x slower)
            bnorm = math.sqrt(kernels_for(np).dot(b, b))
            if not math.isfinite(bnorm):  # overflow of the squares, or NaN/Inf in b
                bnorm = float(np.linalg.norm(b.astype(np.float64)))
        x = as_initial_guess(x0, xp, n, S.dtype)
        # The sweeps run on b and x in sweep order (x a copy: x0 is never written).
        # The natural ordering is that order already: b is read in place (unless
        # read-only, which would compile the kernels anew), and x, fresh, is swept
        # itself unless a callback is to see it apart from the iterate.
        natural = not device and S.permutation is None
        b_swept = b if natural and b.flags.writeable else S.to_sweep_order(b)
        if natural and callback is None:
            x_swept = x
        else:
            # zeros need no gather (a random one costs about a sweep on a coloured ordering)
            x_swept = xp.zeros_like(b_swept) if x0 is None else S.to_sweep_order(x)
        work = xp.empty_like(x_swept)
        tol, reason_converged = stopping_tolerance(rtol, atol, bnorm)

        def finish(reason, k, norms, message):
            if x_swept is not x:
                S.from_sweep_order(x_swept, out=x)
            norms = np.asarray(norms, dtype=np.float64)
            measured = ~np.isnan(norms)
            measured[-1] = True  # the last is always measured (NaN there is a NaN residual)
            return SolveResult(x=x, converged=reason.startswith("CONVERGED"), reason=reason,
                               iterations=k, residual_norms=norms,
                               true_residual_norm=float(norms[-1]), matvecs=int(measured.sum()),
                               time=time.perf_counter() - start, message=message)

        rnorm = (S.residual_norm(b_swept, x_swept, ordered=True) if math.isfinite(bnorm)
                 else float("nan"))
        grow_limit = dtol * rnorm
        k = 0
        if monitor:
            print(_MONITOR_FORMAT % (0, rnorm), file=sys.stdout)
        # Sweeps per compiled call ("compiled loops come up for air"): one when
        # the caller watches every iterate; otherwise a budget that returns to
        # Python (where Ctrl-C is seen) about every CHUNK_SECONDS. The first
        # budget guesses from the size (~2**24 matrix entries read, ~25 ms),
        # later ones scale by the measured time (next_budget). Small systems (the omega tuners solve
        # thousands) still finish in one call; the cap bounds the spare norms.
        # The iteration does not depend on where a chunk ends.
        max_budget = 2**16
        entries_per_sweep = (S.off_data.shape[0] + n) * (2 if symmetric else 1)
        watched = callback is not None or monitor
        budget = 1 if watched else min(max_budget, max(1, 2**24 // max(entries_per_sweep, 1)))
        # the history grows (doubling) with the sweeps run, never sized from maxiter
        norms = np.empty(min(budget, maxiter) + 1)
        norms[0] = rnorm
        if math.isfinite(rnorm) and rnorm > tol:
            while k < maxiter:
                stop = min(k + budget, maxiter)
                norms = grown_history(norms, k + 1, stop + 1)
                tic = time.perf_counter()
                # a chunk that ends before maxiter, unwatched, leaves its last residual
                # to the next chunk's first sweep (no extra pass over A)
                measure_end = watched or stop == maxiter
                k = S.run(b_swept, x_swept, work, omega, symmetric=symmetric, tol=tol,
                          grow_limit=grow_limit, maxiter=stop, norms=norms, start=k,
                          check_every=int(check_every), measure_end=measure_end)
                elapsed = time.perf_counter() - tic
                if monitor:
                    print(_MONITOR_FORMAT % (k, norms[k]), file=sys.stdout)
                if callback is not None:
                    callback(S.from_sweep_order(x_swept, out=x))
                # stop on a residual measured at the chunk's end (NaN: left to the next chunk)
                measured = measure_end or not math.isnan(norms[k])
                if k < stop or (measured and not (tol < norms[k] <= grow_limit)):
                    break
                if not watched:  # the call ran its whole budget
                    budget = next_budget(budget, elapsed, max_budget)
                threads.refresh()  # follows the machine's load during long solves
        norms = norms[:k + 1].copy()  # not a view holding on to the spare entries
        rnorm = float(norms[-1])
        reason, message = sor_verdict(rnorm, k, tol, reason_converged, grow_limit, omega, maxiter)
        return finish(reason, k, norms, message)


def sor_verdict(rnorm: float, k: int, tol: float, reason_converged: str, grow_limit: float,
                omega: float, maxiter: int) -> tuple[str, str]:
    """``(reason, message)`` of an SOR solve that stopped at iteration ``k`` with ``||r|| = rnorm``.

    Shared by :func:`sor` and :func:`linsolve.mpi.sor`.

    Examples
    --------
    >>> sor_verdict(1e-9, 12, 1e-8, "CONVERGED_RTOL", 1e4, 1.5, 100)
    ('CONVERGED_RTOL', '||r|| = 1.000e-09 <= 1.000e-08')
    """
    if not math.isfinite(rnorm):
        return "DIVERGED_NANORINF", f"residual norm is {rnorm} at iteration {k}"
    if rnorm <= tol:
        return reason_converged, f"||r|| = {rnorm:.3e} <= {tol:.3e}"
    if rnorm > grow_limit:
        return ("DIVERGED_DTOL",
                f"||r|| grew to {rnorm:.3e} > dtol * ||r0||; omega = {omega} diverges")
    return "DIVERGED_ITS", f"reached maxiter = {maxiter} with ||r|| = {rnorm:.3e}"
