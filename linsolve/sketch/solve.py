"""Sketch-and-project solvers for consistent linear systems (randomized Kaczmarz and block sketches).

Gower and Richtarik, "Randomized iterative methods for linear systems"
(SIAM J. Matrix Anal. Appl. 2015): with a random sketch ``S`` (m x s), one
step projects the iterate onto the solution set of the sketched system,

    x <- x + (S'A)' ((S'A)(S'A)')^+ S'(b - A x),

the least-norm correction that makes ``S'A x = S'b``. With ``S`` a single
coordinate vector sampled with probability ``||a_i||^2 / ||A||_F^2`` this is
the randomized Kaczmarz method of Strohmer and Vershynin, whose expected
squared error contracts per step by at least ``1 - sigma_min(A)^2 /
||A||_F^2`` for a consistent system of full column rank. The residual
``r = b - A x`` is kept up to date incrementally (``r -= A delta``), so
each step also yields ``||r||`` for scipy's stopping rule.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from array_api_compat import array_namespace, is_array_api_obj

from cext import kernels_for

from ..core.chunks import grown_history, next_budget
from ..core.record import SolveRecord
from ..core.setup import settings
from ..core.stopping import Stop, Tolerance, b_verdict, verdict
from ..result import SolveResult
from ..validation.inputs import (as_initial_guess, as_rhs, check_maxiter, check_period,
                                 working_dtype)
from ..validation.sparse import checked_csr

SKETCHES = ("rows", "gaussian", "countsketch")
SAMPLINGS = ("norms", "uniform")

_CHUNK = 4096  # random rows drawn per compiled call of the Kaczmarz kernel


def as_generator(seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``None``, an int or a Generator (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:  # numpy's "expected non-negative integer" names nothing
            raise ValueError(f"seed must be an int >= 0 (or None, or a numpy.random.Generator), "
                             f"got {seed!r}")
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be None, an int or a numpy.random.Generator, got {seed!r}")


class _System:
    """``A`` held once in the layouts the steps need (CSR/CSC on the host, or dense)."""

    def __init__(self, A, xp, dtype):
        self.xp = xp
        host = "numpy" in xp.__name__
        if sp.issparse(A):
            if not host:
                raise TypeError("a scipy.sparse A needs numpy arrays b (and x0)")
            # a new matrix object: its index arrays are rebound to int64 below
            csr = sp.csr_matrix(checked_csr(A, canonical=True), dtype=np.float64)
            self.dense = None
        else:
            if not is_array_api_obj(A):
                if callable(A) or hasattr(A, "matvec"):
                    raise TypeError("sketch_solve needs the entries of A: pass a dense array or a "
                                    "scipy.sparse matrix, not an operator")
                A = np.asarray(A)
            if array_namespace(A).__name__ != xp.__name__:
                raise TypeError(f"A is a {array_namespace(A).__name__} array but b is "
                                f"{xp.__name__}; use one namespace")
            if A.ndim != 2:
                raise ValueError(f"A must be a 2-D matrix, got shape {A.shape}")
            self.dense = xp.astype(A, dtype) if A.dtype != dtype else A
            csr = sp.csr_matrix(np.asarray(A, dtype=np.float64)) if host else None
        self.shape = tuple(int(v) for v in A.shape)
        self.csr = csr
        if csr is not None:
            if not np.all(np.isfinite(csr.data)):
                raise ValueError("A contains NaN or Inf")
            csr.indptr = csr.indptr.astype(np.int64)
            csr.indices = csr.indices.astype(np.int64)
            self.row_norms2 = np.asarray(csr.multiply(csr).sum(axis=1), dtype=np.float64).ravel()
        else:
            if not bool(xp.all(xp.isfinite(self.dense))):
                raise ValueError("A contains NaN or Inf")
            self.row_norms2 = np.asarray(
                xp.sum(xp.astype(self.dense, xp.float64) ** 2, axis=1).get()
                if hasattr(self.dense, "get") else
                xp.sum(xp.astype(self.dense, xp.float64) ** 2, axis=1), dtype=np.float64)
        self._csc = None

    @property
    def csc(self):
        if self._csc is None:
            csc = self.csr.tocsc()
            csc.sort_indices()
            csc.indptr = csc.indptr.astype(np.int64)
            csc.indices = csc.indices.astype(np.int64)
            self._csc = csc
        return self._csc

    def matvec(self, v):
        if self.dense is not None:
            return self.dense @ v
        return self.csr @ v

    def rows(self, index):
        """Dense ``A[index, :]`` in the working namespace."""
        if self.dense is not None:
            return self.xp.take(self.dense, self.xp.asarray(index), axis=0)
        return self.csr[index].toarray()

    def sketched(self, S):
        """``S' A`` for a dense host ``S`` (m x s)."""
        if self.dense is not None:
            return self.xp.asarray(S.T, dtype=self.dense.dtype) @ self.dense
        return np.asarray((self.csr.T @ S).T)

    def countsketched(self, buckets, signs, s):
        xp = self.xp
        kernels = kernels_for(xp)
        if self.dense is not None:
            out = xp.zeros((s, self.shape[1]), dtype=xp.float64)
            dense = self.dense
            if "cupy" in xp.__name__:
                dense = xp.ascontiguousarray(dense)
                kernels.countsketch_dense(dense, xp.asarray(buckets), xp.asarray(signs), out)
            elif "numpy" in xp.__name__:
                kernels.countsketch_dense(np.ascontiguousarray(dense), buckets, signs, out)
            else:
                kernels.countsketch_dense(dense, buckets, signs, out)
            return xp.astype(out, self.dense.dtype)
        out = np.zeros((s, self.shape[1]))
        kernels.countsketch_csr(self.csr.indptr, self.csr.indices, self.csr.data, buckets, signs,
                                out)
        return out


def _least_norm_step(xp, SA, Sr):
    """``pinv(SA) @ Sr``: the least-norm solution of the sketched system."""
    if "numpy" in xp.__name__:
        return np.linalg.lstsq(SA, Sr, rcond=None)[0]
    return xp.linalg.pinv(SA) @ Sr


def sketch_solve(A: Any, b: Any, x0: Any = None, *, sketch: str = "rows", sketch_size: int = 1,
                 sampling: str = "norms", seed=None, rtol: float = 1e-8, atol: float = 0.0,
                 maxiter: int | None = None, check_every: int | None = None,
                 callback: Callable[[Any], None] | None = None, monitor: Any = False,
                 **kwargs) -> SolveResult:
    """Solve a consistent system ``A x = b`` by sketch-and-project.

    ``A`` may be square or overdetermined (``m >= n`` rows, or any shape
    when the system is consistent), symmetric indefinite (a KKT matrix) or
    not. Each step draws a sketch ``S`` (m x s) and moves ``x`` to the
    closest point with ``S'A x = S'b``. One iteration is one step.

    Parameters
    ----------
    A : 2-D array (any array-API namespace) or scipy.sparse matrix, shape (m, n)
    b : array of shape (m,) or (m, 1)
    x0 : array of shape (n,), optional
        Initial guess (not modified); default zeros.
    sketch : {"rows", "gaussian", "countsketch"}
        ``rows``: ``sketch_size`` rows of A sampled (without replacement
        within a step) -- with ``sketch_size=1`` randomized Kaczmarz, run in
        compiled code on the CPU. ``gaussian``: ``S`` with i.i.d.
        ``N(0, 1/s)`` entries. ``countsketch``: each row of A hashed to one
        of ``s`` buckets with a random sign (O(nnz) to apply).
    sketch_size : int
        Columns ``s`` of the sketch, ``1 <= s <= m``; with ``sketch="rows"``
        and ``sampling="norms"`` at most the number of nonzero rows of A
        (rows are drawn without replacement, zero rows never).
    sampling : {"norms", "uniform"}
        Row probabilities for ``sketch="rows"``: proportional to the
        squared row norms (Strohmer-Vershynin) or uniform. Uniform sampling
        also draws zero rows of A; such a draw changes nothing but still
        counts as a step (in ``iterations`` and ``extra["row_steps"]``).
    seed : None, int or numpy.random.Generator
        The only source of randomness; a Generator is advanced in place.
    rtol, atol : float
        Stop at the first step with ``||b - A x|| <= max(rtol ||b||, atol)``.
    maxiter : int, optional
        Step limit, default ``100 m / sketch_size`` (at least 1000).
        Inconsistent systems never meet the tolerance and stop here with
        ``DIVERGED_ITS``.
    check_every : int, optional
        Recompute the true residual ``b - A x`` (replacing the
        incrementally updated one) every this many steps; default ``m``.
    callback : callable, optional
        ``callback(x)`` after every step (a copy of the iterate in the
        working dtype on the compiled Kaczmarz path, which then runs one step
        per compiled call).
    monitor : bool, file-like or callable
        As :func:`linsolve.pcg`: ``True`` prints
        ``"%3d SKETCH Residual norm %14.12e"`` lines, a stream receives
        them, a callable gets ``monitor(k, rnorm)``, and the ``"linsolve"``
        logger gets them at DEBUG level (the compiled Kaczmarz steps report
        after each block of steps).

    Returns
    -------
    SolveResult
        ``residual_norms`` has one entry per step (the incrementally updated
        residual, refreshed from the true residual every ``check_every``
        steps); ``converged`` requires the true residual at exit to meet the
        tolerance. ``matvecs`` counts full products with ``A`` (sketch
        applications and residual refreshes), ``extra["row_steps"]`` the rows
        drawn (``iterations * sketch_size`` for ``sketch="rows"``, including
        zero rows drawn under uniform sampling; the steps otherwise).
        Reasons: ``CONVERGED_RTOL``/``CONVERGED_ATOL``; ``DIVERGED_ITS`` at
        ``maxiter``; ``DIVERGED_NANORINF``; ``DIVERGED_BREAKDOWN`` when the
        float64 Kaczmarz iteration met the tolerance but ``x`` rounded to a
        float32 working dtype misses it (a tolerance below float32's reach).

    Raises
    ------
    ValueError
        Shape mismatch, NaN/Inf in ``A`` or ``b``, bad ``sketch``,
        ``sampling``, ``sketch_size`` or tolerances, an all-zero ``A``.
    TypeError
        ``tol=``, operators without entries, mixed namespaces, complex data.

    Notes
    -----
    The compiled Kaczmarz steps run in calls of about 0.1 s each, so Ctrl-C
    raises ``KeyboardInterrupt`` promptly however large ``maxiter`` is;
    ``A``, ``b`` and ``x0`` are never modified. The residual history grows
    with the steps run.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0], [1.0, -1.0]])
    >>> b = A @ np.array([1.0, -2.0])
    >>> result = sketch_solve(A, b, seed=0, rtol=1e-10)
    >>> result.converged, np.allclose(result.x, [1.0, -2.0])
    (True, True)
    >>> sketch_solve(A, b, sketch="gaussian", sketch_size=2, seed=1).reason
    'CONVERGED_RTOL'
    """
    start = time.perf_counter()
    common = settings("sketch_solve", kwargs, rtol=rtol, atol=atol, monitor=monitor,
                      label="SKETCH", callback=callback)
    if sketch not in SKETCHES:
        raise ValueError(f"sketch must be one of {SKETCHES}, got {sketch!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    rng = as_generator(seed)
    xp, b = as_rhs(b)
    m = b.shape[0]
    dtype = working_dtype(xp, b, A)
    system = _System(A, xp, dtype)
    if system.shape[0] != m:
        raise ValueError(f"A has shape {system.shape} but b has {m} entries")
    n = system.shape[1]
    if (isinstance(sketch_size, bool) or not isinstance(sketch_size, numbers.Integral)
            or not 1 <= sketch_size <= max(m, 1)):
        raise ValueError(f"sketch_size must be an integer in [1, m = {m}], got {sketch_size!r}")
    sketch_size = int(sketch_size)
    maxiter = check_maxiter(maxiter, max(1000, 100 * m // sketch_size))
    check_every = check_period("check_every", check_every, optional=True)
    check_every = max(m, 1) if check_every is None else check_every
    b = xp.astype(b, dtype)
    if not bool(xp.all(xp.isfinite(b))):
        raise ValueError("b contains NaN or Inf")
    x = as_initial_guess(x0, xp, n, dtype)
    if x0 is not None and not bool(xp.all(xp.isfinite(x))):
        raise ValueError("x0 contains NaN or Inf")
    bnorm = float(xp.linalg.vector_norm(xp.astype(b, xp.float64)))
    tolerance = Tolerance.of(common.rtol, common.atol, bnorm)
    tol = tolerance.tol
    record = SolveRecord(common.monitor, start=start)
    if bnorm == 0.0:  # x = 0 is exact, whatever x0 is (as pcg, scipy)
        record.append(0, 0.0)
        return record.result(xp.zeros_like(x), b_verdict(bnorm), 0, matvecs=0,
                             extra={"row_steps": 0, "sketch": sketch, "sketch_size": sketch_size})
    total = float(system.row_norms2.sum())
    if m and n and total == 0.0 and bnorm > tol:
        raise ValueError("A is zero: no sketch can make progress")

    host_kaczmarz = (sketch == "rows" and sketch_size == 1 and system.csr is not None)
    if sampling == "norms":
        nonzero_rows = int(np.count_nonzero(system.row_norms2))
        if sketch == "rows" and sketch_size > nonzero_rows and total > 0:
            raise ValueError(f"sketch_size = {sketch_size} exceeds the {nonzero_rows} nonzero rows "
                             "of A: sampling='norms' draws rows without replacement and never a "
                             f"zero row; use sketch_size <= {nonzero_rows} or sampling='uniform'")
        probabilities = system.row_norms2 / total if total > 0 else np.full(m, 1.0 / max(m, 1))
    else:
        probabilities = np.full(m, 1.0 / max(m, 1))

    k = 0
    record.matvecs = 1
    norms = np.empty(min(maxiter, _CHUNK) + 1)
    if host_kaczmarz:
        # The compiled row steps run in float64 whatever the input dtype (one
        # kernel signature, no float32 drift in the updated residual); x is
        # cast back to the working dtype at exit.
        x64 = np.asarray(x, dtype=np.float64).copy()
        b64 = np.asarray(b, dtype=np.float64)
        r = b64 - system.csr @ x64
        norms[0] = float(np.linalg.norm(r))
    else:
        r = b - system.matvec(x)
        norms[0] = float(xp.linalg.vector_norm(xp.astype(r, xp.float64)))
    common.monitor(0, norms[0])
    kernels = kernels_for(np)
    # Kaczmarz steps per compiled call: the rows are drawn in blocks of
    # _CHUNK as always (the generator's stream and the refresh points stay
    # put), but a block is swept in slices sized to return to Python (and
    # Ctrl-C) about every CHUNK_SECONDS: a step costs up to a row's nonzeros
    # times their columns' (dense A: m n), so the first slice is a guess
    # from that (~2**22 entries) and later ones scale by the measured time
    # (next_budget). ``running`` carries the kernel's running
    # ||r||^2 across the slices of a block, so the slicing changes no bit.
    if host_kaczmarz:
        nnz = system.csr.nnz
        step_entries = (nnz // max(m, 1) + 1) * (nnz // max(n, 1) + 1)
        # a callback sees every step: slices of one
        budget = 1 if callback is not None else min(_CHUNK, max(1, 2**22 // step_entries))
        running = np.full(1, -1.0)
    while k < maxiter and norms[k] > tol and math.isfinite(norms[k]):
        if host_kaczmarz:
            count = min(_CHUNK, maxiter - k, check_every - k % check_every)
            rows = rng.choice(m, size=count, p=probabilities).astype(np.int64)
            csc = system.csc
            norms = grown_history(norms, k + 1, k + count + 1)
            running[0] = -1.0  # a block starts from the exact ||r||^2
            position = 0
            while position < count:
                take = min(budget, count - position)
                tic = time.perf_counter()
                done = kernels.kaczmarz_run(system.csr.indptr, system.csr.indices,
                                            system.csr.data, csc.indptr, csc.indices, csc.data,
                                            system.row_norms2, rows[position:position + take],
                                            x64, r, tol, check_every, norms, k, running)
                elapsed = time.perf_counter() - tic
                k += done
                position += done
                if callback is not None and done:
                    callback(xp.asarray(x64, dtype=dtype))
                if not running[0] > tol * tol:  # the kernel's own stop: converged or NaN
                    break
                if callback is None:
                    budget = next_budget(budget, elapsed, _CHUNK)
            if k % check_every == 0 or norms[k] <= tol:
                r = b64 - system.csr @ x64  # the true residual replaces the updated one
                record.matvecs += 1
                norms[k] = float(np.linalg.norm(r))
            for step in range(k - position + 1, k + 1):
                common.monitor(step, norms[step])
            continue
        if sketch == "rows":
            index = np.sort(rng.choice(m, size=sketch_size, replace=False, p=probabilities))
            SA = system.rows(index)
            Sr = xp.take(r, xp.asarray(index), axis=0)
        elif sketch == "gaussian":
            S = rng.standard_normal((m, sketch_size)) / math.sqrt(sketch_size)
            SA = system.sketched(S)
            Sr = xp.asarray(S.T, dtype=dtype) @ r
            record.matvecs += 1
        else:
            buckets = rng.integers(0, sketch_size, size=m).astype(np.int64)
            signs = rng.choice(np.array([-1.0, 1.0]), size=m)
            SA = system.countsketched(buckets, signs, sketch_size)
            r_host = np.asarray(r.get() if hasattr(r, "get") else r, dtype=np.float64)
            Sr = xp.asarray(np.bincount(buckets, weights=signs * r_host, minlength=sketch_size),
                            dtype=dtype)
            record.matvecs += 1
        delta = _least_norm_step(xp, xp.asarray(SA, dtype=dtype), Sr)
        x = x + xp.astype(delta, dtype)
        norms = grown_history(norms, k + 1, k + 2)
        k += 1
        if k % check_every == 0:
            r = b - system.matvec(x)
        else:
            r = r - system.matvec(xp.astype(delta, dtype))
        record.matvecs += 1
        norms[k] = float(xp.linalg.vector_norm(xp.astype(r, xp.float64)))
        if norms[k] <= tol and k % check_every != 0:
            r = b - system.matvec(x)
            record.matvecs += 1
            norms[k] = float(xp.linalg.vector_norm(xp.astype(r, xp.float64)))
        common.monitor(k, norms[k])
        if callback is not None:
            callback(x)
    if host_kaczmarz:
        x = xp.asarray(x64, dtype=dtype)
    true_norm = float(xp.linalg.vector_norm(xp.astype(b - system.matvec(x), xp.float64)))
    record.matvecs += 1
    norms = norms[:k + 1].copy()  # not a view holding on to the spare entries
    stop = verdict(true_norm, k, tolerance, maxiter)
    if stop.reason == "DIVERGED_ITS" and k < maxiter:
        # Kaczmarz iterates in float64 and stopped on the tolerance; x rounded to
        # the working dtype misses it: the tolerance is below that dtype's reach.
        stop = Stop("DIVERGED_BREAKDOWN",
                    f"the float64 iteration met the tolerance after {k} steps, but x in "
                    f"{x.dtype} gives ||b - A x|| = {true_norm:.3e} > {tol:.3e}: the "
                    "tolerance is below what this dtype can represent; raise rtol/atol or "
                    "solve in float64", true_norm)
    elif stop.reason == "DIVERGED_ITS":
        stop = Stop(stop.reason, stop.message + "; if the system is inconsistent, "
                    "sketch-and-project only reaches a neighbourhood of the least-squares "
                    "solution and never meets the tolerance", true_norm)
    return record.result(x, stop, k, norms=norms,
                         extra={"row_steps": k * sketch_size if sketch == "rows" else k,
                                "sketch": sketch, "sketch_size": sketch_size})
