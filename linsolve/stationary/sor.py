"""SOR and SSOR as solvers, with lexicographic, red-black and multicolour sweeps."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from cext import kernels_for
from cext.threads import kernel_threads

from ..core.chunks import grown_history, next_budget
from ..core.record import SolveRecord
from ..core.setup import settings
from ..core.stopping import Stop, Tolerance, b_verdict, verdict
from ..result import SolveResult
from ..validation.inputs import (as_initial_guess, as_rhs, check_maxiter, check_nonnegative,
                                 check_omega, check_period, working_dtype)
from .device import DeviceSorMatrix, host_matrix
from .sor_matrix import ORDERINGS, SorMatrix, sweep_matrix

__all__ = ["ORDERINGS", "SorMatrix", "sor"]

# The default check_every of a solve with rtol = atol = 0. Measuring the
# residual costs a fifth of a sweep on one core (the natural sweep's chain
# hides little of it; P1 triangles, n = 261k: 1.56 against 1.30 ms), which a
# fixed number of sweeps, with no tolerance to meet, need not pay every
# sweep; every 32nd keeps growth past dtol and NaN in sight at 1% of that.
FIXED_SWEEPS_CHECK = 32


def _on_device(xp) -> bool:
    """Whether ``b``'s namespace sweeps on the GPU (CuPy)."""
    return "cupy" in xp.__name__


def sor(A: Any, b: Any, omega: float = 1.0, x0: Any = None, *, rtol: float = 1e-8,
        atol: float = 0.0, maxiter: int | None = None, symmetric: bool = False,
        ordering: str = "natural", dtol: float = 1e5, check_every: int | None = None,
        callback: Callable[[Any], None] | None = None, monitor: Any = False,
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
    check_every : int, optional
        Measure the true residual (and test convergence) every
        ``check_every`` sweeps instead of every sweep. Default: every sweep
        (1) while a tolerance can stop the solve; with ``rtol = atol = 0``
        (a fixed number of sweeps, as a smoother runs them) every
        ``FIXED_SWEEPS_CHECK`` (32) sweeps, so growth past ``dtol`` and NaN
        are still seen, and at the last (pass ``check_every=1`` for the
        whole history). The sweeps between skip
        the residual arithmetic and run in place over one vector, so a
        sweep costs about what pyamg's ``sor`` does. The iterates
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
    monitor : bool, file-like or callable
        As :func:`linsolve.pcg` (the one monitor contract of every solver):
        ``True`` prints ``"%3d SOR Residual norm %14.12e"`` lines, a stream
        receives them, a callable gets ``monitor(k, rnorm)``; each line also
        goes to the ``"linsolve"`` logger at DEBUG level (when only the
        logger listens, the lines of a compiled chunk are logged after it,
        NaN for the sweeps ``check_every`` leaves unmeasured).

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
    common = settings("sor", kwargs, rtol=rtol, atol=atol, monitor=monitor, label="SOR",
                      callback=callback)
    dtol = check_nonnegative("dtol", dtol)
    check_every = check_period("check_every", check_every, optional=True)
    omega = check_omega(omega)
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
        S = sweep_matrix(A, working_dtype(xp, b, A), ordering, symmetric=symmetric,
                         borrow=callback is None)
    if S.shape != (n, n):
        raise ValueError(f"A has shape {S.shape}, expected ({n}, {n}) to match b")
    record = SolveRecord(common.monitor, start=start)
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
            # ~0.1 s after a call and took the cores from the first sweeps
            bnorm = math.sqrt(kernels_for(np).dot(b, b))
            if not math.isfinite(bnorm):  # overflow of the squares, or NaN/Inf in b
                bnorm = float(np.linalg.norm(b.astype(np.float64)))
        x = as_initial_guess(x0, xp, n, S.dtype)
        stop = b_verdict(bnorm)
        if stop is not None:
            if stop.converged:  # b = 0: x = 0 is exact, whatever x0 is (as pcg, scipy)
                x = xp.zeros_like(x)
            record.append(0, bnorm)
            return record.result(x, stop, 0, matvecs=0)
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
        tolerance = Tolerance.of(common.rtol, common.atol, bnorm)
        tol = tolerance.tol
        if check_every is None:
            # no tolerance to meet: the history only watches for growth and NaN
            fixed = common.rtol == 0 and common.atol == 0
            check_every = FIXED_SWEEPS_CHECK if fixed else 1
        rnorm = (S.residual_norm(b_swept, x_swept, ordered=True) if math.isfinite(bnorm)
                 else float("nan"))
        grow_limit = dtol * rnorm
        k = 0
        common.monitor(0, rnorm)
        # Sweeps per compiled call ("compiled loops come up for air"): one when
        # the caller watches every iterate; otherwise a budget that returns to
        # Python (where Ctrl-C is seen) about every CHUNK_SECONDS. The first
        # budget guesses from the size (~2**24 matrix entries read), later ones
        # scale by the measured time (next_budget). Small systems (the omega
        # tuners solve thousands) still finish in one call; the cap bounds the
        # spare norms. The iteration does not depend on where a chunk ends.
        max_budget = 2**16
        entries_per_sweep = (S.off_data.shape[0] + n) * (2 if symmetric else 1)
        watched = callback is not None or common.monitor.watching
        budget = 1 if watched else min(max_budget, max(1, 2**24 // max(entries_per_sweep, 1)))
        # the history grows (doubling) with the sweeps run, never sized from maxiter
        norms = np.empty(min(budget, maxiter) + 1)
        norms[0] = rnorm
        if math.isfinite(rnorm) and rnorm > tol:
            while k < maxiter:
                end = min(k + budget, maxiter)
                norms = grown_history(norms, k + 1, end + 1)
                tic = time.perf_counter()
                # a chunk that ends before maxiter, unwatched, leaves its last residual
                # to the next chunk's first sweep (no extra pass over A)
                measure_end = watched or end == maxiter
                began, k = k, S.run(b_swept, x_swept, work, omega, symmetric=symmetric, tol=tol,
                                    grow_limit=grow_limit, maxiter=end, norms=norms, start=k,
                                    check_every=check_every, measure_end=measure_end)
                elapsed = time.perf_counter() - tic
                for sweep in range(began + 1, k + 1):  # NaN: a sweep not measured
                    common.monitor(sweep, norms[sweep])
                if callback is not None:
                    callback(S.from_sweep_order(x_swept, out=x))
                # stop on a residual measured at the chunk's end (NaN: left to the next chunk)
                measured = measure_end or not math.isnan(norms[k])
                if k < end or (measured and not (tol < norms[k] <= grow_limit)):
                    break
                if not watched:  # the call ran its whole budget
                    budget = next_budget(budget, elapsed, max_budget)
                threads.refresh()  # follows the machine's load during long solves
        norms = norms[:k + 1].copy()  # not a view holding on to the spare entries
        if x_swept is not x:
            S.from_sweep_order(x_swept, out=x)
        stop = sor_verdict(float(norms[-1]), k, tolerance, maxiter, grow_limit, omega)
        measured = ~np.isnan(norms)
        measured[-1] = True  # the last is always measured (NaN there is a NaN residual)
        return record.result(x, stop, k, norms=norms, matvecs=int(measured.sum()))


def sor_verdict(rnorm: float, k: int, tolerance: Tolerance, maxiter: int, grow_limit: float,
                omega: float) -> Stop:
    """The verdict of an SOR solve that stopped at sweep ``k`` with measured ``||r|| = rnorm``.

    Shared by :func:`sor` and :func:`linsolve.mpi.sor`: the core's
    :func:`~linsolve.core.stopping.verdict`, naming ``omega`` when the
    residual grew past ``dtol ||r_0||``.

    Examples
    --------
    >>> sor_verdict(1e-9, 12, Tolerance.of(1e-8, 0.0, 1.0), 100, 1e4, 1.5).reason
    'CONVERGED_RTOL'
    >>> sor_verdict(1e5, 3, Tolerance.of(1e-8, 0.0, 1.0), 100, 1e4, 1.95).message
    '||r|| grew to 1.000e+05 > dtol * ||r0||; omega = 1.95 diverges'
    """
    return verdict(rnorm, k, tolerance, maxiter, grow_limit=grow_limit,
                   diverged=f"; omega = {omega} diverges")
