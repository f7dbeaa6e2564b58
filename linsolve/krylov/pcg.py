"""Preconditioned conjugate gradients with scipy's semantics and PETSc's reasons."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from cext.registry import writes_in_place
from cext.threads import kernel_threads

from ..core.chunks import grown_history, next_budget
from ..core.record import SolveRecord
from ..core.setup import (check_x0, initial_iterate, krylov_operators, rhs_and_dtype,
                          settings)
from ..core.stopping import (Replacement, ResidualTest, Stop, Tolerance, b_verdict,
                             curvature_verdict, preconditioner_verdict)
from ..result import SolveResult
from ..validation.inputs import (as_initial_block, as_rhs_block, check_maxiter,
                                 check_period, dtype_name, is_batch, per_system_tolerance,
                                 working_dtype)
from .batched import _Batch
from .eisenstat import eisenstat_pcg


def pcg(A: Any, b: Any, x0: Any = None, *, M: Any = None, rtol: float = 1e-5,
        atol: float = 0.0, maxiter: int | None = None,
        callback: Callable[[Any], None] | None = None, monitor: Any = False,
        check_every: int | None = None, check_symmetric: bool = True,
        **kwargs) -> SolveResult:
    """Solve ``A x = b`` for symmetric (Hermitian) positive definite ``A`` by (preconditioned) CG.

    Same keywords, stopping rule and (with ``M=None``) the same iterates as
    :func:`scipy.sparse.linalg.cg`, with failures reported as values and a
    guarantee scipy lacks: ``converged`` is True only if the *true*
    residual ``||b - A x||`` meets the tolerance.

    Parameters
    ----------
    A : array, sparse matrix, LinearOperator, object with ``matvec``, or callable
        SPD (or complex Hermitian positive definite) operator; ``numpy.matrix``
        too. Real scipy CSR input on NumPy runs on fused Numba kernels (DIA
        storage when the matrix has few diagonals); complex input runs on the
        array-API reference kernels, whose dot products conjugate.
    b : array or array-like of shape (n,) or (n, 1)
        Right-hand side; its namespace (NumPy, CuPy, any array-API library)
        decides where the solve runs; lists and ``numpy.matrix`` become NumPy
        arrays. Integer input is promoted to float64; float32 in gives
        float32 out, complex64 in complex64 out; complex ``A`` or ``b`` makes
        the solve complex.
    x0 : array, array-like or ``'Mb'``, optional
        Initial guess (never modified). Default zeros; ``'Mb'`` starts from
        ``M @ b`` (``b`` without ``M``), as in scipy.
    M : operator-like, optional
        SPD preconditioner approximating ``A^{-1}``, applied as ``M @ r``;
        accepts everything ``A`` does, pyamg ``aspreconditioner()``, and
        objects with ``solve`` (curvature approximations of ``A``).
    rtol, atol : float
        Stop at the first ``k`` with ``||r_k|| <= max(rtol * ||b||, atol)``.
    maxiter : int, optional
        Iteration limit, default ``10 * n``.
    callback : callable, optional
        ``callback(x)`` after every iteration (``x`` is the live iterate: copy
        it to keep it). The iterations then return to Python one at a time,
        as scipy's do (see Notes).
    monitor : bool, file-like or callable
        ``True`` prints PETSc ``-ksp_monitor`` lines,
        ``"%3d KSP Residual norm %14.12e"``, to stdout; an object with
        ``write`` receives the same lines; a callable is called as
        ``monitor(k, rnorm)``. Each line is also logged at DEBUG level to the
        ``"linsolve"`` logger (whatever ``monitor`` is).
    check_every : int, optional
        Also recompute ``b - A x`` every ``check_every`` iterations; if it has
        drifted above twice the recursive residual, continue from it with a
        restart (guards long float32 runs). Default: only at exit.
    check_symmetric : bool
        For dense and sparse ``A``, probe ``|x^H A y - conj(y^H A x)|`` with
        a seeded random pair before solving and warn (``UserWarning``) when it
        exceeds ``sqrt(eps)`` relative to ``||A x|| ||y||``: CG's answer for
        a non-symmetric ``A`` is meaningless. Two products, not counted in
        ``matvecs``; skipped for matrix-free operators.

    Returns
    -------
    SolveResult
        Unpacks as ``x, info`` like scipy. ``reason`` is one of
        ``CONVERGED_RTOL``, ``CONVERGED_ATOL``, ``DIVERGED_ITS``,
        ``DIVERGED_NANORINF`` (NaN/Inf met, within one iteration),
        ``DIVERGED_INDEFINITE_MAT`` (``p'Ap <= 0``),
        ``DIVERGED_INDEFINITE_PC`` (``r'Mr <= 0``), ``DIVERGED_BREAKDOWN``
        (the true residual stagnated above the tolerance). ``extra`` holds
        ``residual_replacements`` and ``threads``, the kernel threads in use
        at exit (:func:`linsolve.set_num_threads`; fewer while other
        processes keep cores busy).

    Raises
    ------
    TypeError
        ``tol=`` or another unknown keyword; mixed backends; a ``monitor``
        that is none of the accepted kinds; a real-only preconditioner on a
        complex system.
    ValueError
        Shapes that do not match; negative or non-numeric ``rtol``/``atol``;
        bad ``maxiter``; a string ``x0`` other than ``'Mb'``.

    Warns
    -----
    UserWarning
        ``A`` is visibly not symmetric (Hermitian); see ``check_symmetric``.

    Notes
    -----
    ``tol=`` is refused (scipy renamed it ``rtol``), except in pyamg's
    accelerator call ``pcg(A, b, x0=, tol=, maxiter=, M=, callback=,
    residuals=)`` made by ``MultilevelSolver.solve(accel=pcg)``: there
    ``tol`` is the relative tolerance and ``residuals`` (a list) receives
    the residual norms.

    When the recursive residual meets the tolerance, the true residual is
    recomputed. If it does not meet it too, CG restarts from ``x`` with the
    true residual (residual replacement). If a second replacement does not
    halve the true residual, the solve stops with ``DIVERGED_BREAKDOWN``:
    the tolerance is below the attainable accuracy of the dtype.

    On real CSR or DIA systems (NumPy, no ``M`` or a Jacobi ``M``) the
    iterations run in compiled chunks that return to Python about every
    0.1 s (Ctrl-C, the thread policy) and wherever the stopping test needs
    the solver core: the iterates, history and verdict are those of the
    one-iteration-a-call loop, bit for bit. A ``callback``, or a
    ``monitor`` that prints or calls, keeps that loop, so that each sees
    every iterate as it comes; monitor lines for the ``"linsolve"`` logger
    alone are written after each chunk.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import pcg
    >>> n = 50
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    >>> b = np.ones(n)
    >>> result = pcg(A, b, rtol=1e-10)
    >>> result.converged, result.reason, result.iterations
    (True, 'CONVERGED_RTOL', 25)
    >>> bool(np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b))
    True
    """
    start = time.perf_counter()
    # pyamg's accelerator call (see Notes): its tol is relative, our rtol
    pyamg_call = "tol" in kwargs and "residuals" in kwargs
    if pyamg_call:
        rtol, residuals = kwargs.pop("tol"), kwargs.pop("residuals")
    batch = is_batch(b)
    per_system = batch and (np.ndim(rtol) > 0 or np.ndim(atol) > 0)
    common = settings("pcg", kwargs, rtol=0.0 if per_system else rtol,
                      atol=0.0 if per_system else atol, monitor=monitor, label="KSP",
                      callback=callback)
    check_every = check_period("check_every", check_every, optional=True)
    check_x0(x0)
    if batch:
        return _batched(A, b, x0, M, rtol, atol, maxiter, common, check_every,
                        check_symmetric, start)
    xp, b, n, dtype = rhs_and_dtype(A, b, allow_complex=True)
    maxiter = check_maxiter(maxiter, 10 * n)
    with kernel_threads(n + int(getattr(A, "nnz", 0) or 0)) as threads:
        A_op, M_op = krylov_operators(A, M, xp, dtype, n)
        if check_symmetric and A_op.layout != "function":
            _warn_if_not_hermitian(A_op, xp, dtype, n)
        record = SolveRecord(common.monitor, start=start)
        x = initial_iterate(x0, b, M_op, xp, n, dtype, record)
        # M = precond.ssor(A): SSOR-PCG by Eisenstat's trick (None where it does not apply)
        result = eisenstat_pcg(A, M, A_op, b, x, common, maxiter, check_every, record, threads)
        if result is None:
            solver = _PCG(A_op, M_op, b, x, common, maxiter, check_every, record,
                          _jacobi_scale(M, A_op, dtype))
            result = solver.run(threads)
    if pyamg_call and residuals is not None:
        residuals[:] = result.residual_norms.tolist()
    return result


def _batched(A, B, x0, M, rtol, atol, maxiter, common, check_every, check_symmetric, start):
    """:func:`pcg` on ``B`` of shape ``(..., n)``: the systems iterate together (``batched``)."""
    xp, B, shape = as_rhs_block(B, allow_complex=True)
    count, n = B.shape
    rtols = per_system_tolerance("rtol", rtol, shape)
    atols = per_system_tolerance("atol", atol, shape)
    maxiter = check_maxiter(maxiter, 10 * n)
    dtype = working_dtype(xp, B, A, allow_complex=True)
    B = xp.astype(B, dtype)
    with kernel_threads((n + int(getattr(A, "nnz", 0) or 0)) * max(count, 1)) as threads:
        A_op, M_op = krylov_operators(A, M, xp, dtype, n)
        if check_symmetric and A_op.layout != "function":
            _warn_if_not_hermitian(A_op, xp, dtype, n)
        if isinstance(x0, str):  # 'Mb': each system from M @ b
            X0 = B if M_op is None else xp.stack([M_op.matvec(B[j, :]) for j in range(count)])
        else:
            X0 = as_initial_block(x0, xp, B.shape, shape, dtype)
        run = _Batch(A_op, M_op, B, xp.astype(X0, dtype, copy=True), rtols, atols, maxiter,
                     common.callback, common.monitor, check_every, start)
        result = run.run(threads)
    return replace(result, shape=shape)


def _jacobi_scale(M, A_op, dtype):
    """``1 / diag(A)`` in the working dtype when ``M`` is a Jacobi preconditioner that the
    fused update ``cg_update_xrz`` can apply (compiled kernels, real dtype), else None."""
    if M is None:
        return None
    from ..precond.jacobi import Jacobi  # the package imports pcg: not at module level

    if not isinstance(M, Jacobi) or A_op.kernels.backend != "numba":
        return None
    xp = A_op.xp
    if dtype not in (xp.float32, xp.float64) or M.inverse_diagonal.shape != (A_op.shape[0],):
        return None
    return xp.astype(M.inverse_diagonal, dtype, copy=False)


def _warn_if_not_hermitian(A, xp, dtype, n: int) -> None:
    """Warn when ``x^H A y`` and ``conj(y^H A x)`` visibly differ for a seeded random pair.

    For a Hermitian ``A`` they differ by rounding only, about ``sqrt(n) eps``
    relative to ``||A x|| ||y||``; the threshold ``sqrt(eps)`` leaves room for
    that and still catches any asymmetry that would mislead CG.
    """
    if n == 0:
        return
    # Uniform draws in the working precision and the kernels' fused dot: the
    # probe costs about two products (normal float64 draws plus casts and
    # temporaries cost 5-10 CG iterations at n = 1e6).
    rng = np.random.default_rng(0)
    name = dtype_name(dtype)
    is_complex = "complex" in name
    real = np.float32 if name.endswith(("float32", "complex64")) else np.float64

    if not is_complex and A.kernels.backend == "numba" and A.layout in ("csr", "dia"):
        # the pair drawn at once, then both products and the six inner products in
        # one compiled pass: as separate calls they cost a small solve (n ~ 1e3) as
        # much as its iterations
        x, y = rng.random((2, n), dtype=real) - real(0.5)
        if A.layout == "csr":
            sums = A.kernels.csr_symmetry_probe(A.indptr, A.indices, A.data, x, y)
        else:
            sums = A.kernels.dia_symmetry_probe(A.offsets, A.values, x, y)
        xAy, yAx, AxAx, AyAy, xx, yy = sums
        defect = abs(xAy - yAx)
        scale = max(math.sqrt(AxAx * yy), math.sqrt(AyAy * xx))
    else:
        def draw():
            u = rng.random(n, dtype=real) - real(0.5)
            return u + 1j * (rng.random(n, dtype=real) - real(0.5)) if is_complex else u

        x, y = (xp.astype(xp.asarray(draw()), dtype) for _ in range(2))
        Ax, Ay = A.matvec(x), A.matvec(y)

        def vdot(u, v):
            return complex(xp.sum(xp.conj(u) * v)) if is_complex else float(A.kernels.dot(u, v))

        def norm(u):
            return math.sqrt(abs(vdot(u, u)))

        defect = abs(vdot(x, Ay) - vdot(y, Ax).conjugate())
        scale = max(norm(Ax) * norm(y), norm(Ay) * norm(x))
    if not (math.isfinite(defect) and math.isfinite(scale)) or scale == 0.0:
        return  # NaN/Inf are reported by the solve itself
    threshold = math.sqrt(float(xp.finfo(dtype).eps))
    if defect > threshold * scale:
        warnings.warn(f"A does not look symmetric (Hermitian): |x'Ay - y'Ax| = "
                      f"{defect / scale:.1e} relative to |Ax||y| for a random pair, above "
                      f"{threshold:.1e}; CG needs a symmetric positive definite A "
                      "(check_symmetric=False silences this check)", UserWarning, stacklevel=3)


class _PCG:
    """The iteration's state; ``run`` is scipy's ``cg`` loop with fused kernels."""

    def __init__(self, A, M, b, x, common, maxiter, check_every, record, jacobi_scale):
        self.A, self.M, self.b, self.x = A, M, b, x
        self.xp = A.xp
        self.kernels = A.kernels
        self.maxiter, self.callback = maxiter, common.callback
        self.check_every = check_every
        self.record = record
        self.jacobi_scale = jacobi_scale  # 1/diag(A) for a Jacobi M on the compiled kernels
        self.bnorm = math.sqrt(self.kernels.dot(b, b))
        self.tolerance = Tolerance.of(common.rtol, common.atol, self.bnorm)
        self.test = ResidualTest(self.tolerance, maxiter, self.true_residual, x.dtype)

    def true_residual(self):
        """``(b - A x, ||b - A x||)``, one product with ``A``."""
        r = self.b - self.A.matvec(self.x)
        self.record.matvecs += 1
        return r, math.sqrt(self.kernels.dot(r, r))

    def finish(self, stop: Stop, iterations: int) -> SolveResult:
        if stop.true_residual_norm is None:
            stop = replace(stop, true_residual_norm=self.true_residual()[1])
        return self.record.result(self.x, stop, iterations,
                                  extra={"residual_replacements": self.test.replacements,
                                         "threads": self.threads.threads})

    def run(self, threads) -> SolveResult:
        self.threads = threads
        xp, K, A, M = self.xp, self.kernels, self.A, self.M
        record, test = self.record, self.test
        x = self.x
        # NumPy, CuPy, array_api_strict: the fused kernels update x, r, p in the
        # solver's own buffers (x is a copy of x0). JAX arrays are immutable: the
        # same recurrences build new arrays (the kernels return p; x, r below).
        in_place = writes_in_place(xp)
        stop = b_verdict(self.bnorm)
        if stop is not None:
            if stop.converged:  # scipy returns zeros for b = 0, whatever x0 is: exact
                self.x = xp.zeros_like(x)
            record.append(0, self.bnorm)
            return self.finish(stop, 0)
        if bool(xp.any(x != 0)):
            r = self.true_residual()[0]
        else:
            r = xp.astype(self.b, self.b.dtype, copy=True)
        rr = K.dot(r, r)
        rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
        record.append(0, rnorm)
        p = xp.empty_like(r)
        q = xp.empty_like(r)
        # A diagonal M (Jacobi) is fused into the update: z = scale * r and r'z
        # come out of the pass that updates r (pending holds r'z, scaled z).
        scale = self.jacobi_scale if in_place else None
        scaled = xp.empty_like(r) if scale is not None else None
        chunks = self._chunks(in_place, p, q, scale, scaled)
        pending = None
        rho_prev = 1.0
        restart = True
        k = 0
        while True:
            threads.refresh()  # follows the machine's load during long solves
            outcome = test.check(k, rnorm)
            if isinstance(outcome, Stop):
                return self.finish(outcome, k)
            if isinstance(outcome, Replacement):
                # continue from x with the true residual, fresh directions
                r, rnorm = outcome.r, outcome.rnorm
                rr = rnorm * rnorm
                record.norms[-1] = rnorm
                restart = True
                pending = None
                continue
            if chunks is not None and (M is None or pending is not None):
                # the same iterations, compiled: back here where the test fails or
                # a check is due (a fused Jacobi M needs its first z from above)
                k, r, rnorm, rr, rho_prev, restart, pending, stop = chunks.run(
                    k, r, rnorm, rr, rho_prev, restart, pending)
                if stop is not None:
                    return self.finish(stop, k)
                continue
            if M is None:
                z, rho = r, rr
            else:
                if pending is not None:  # z and r'z from the fused Jacobi update
                    z, rho, pending = scaled, pending, None
                else:
                    z = M.matvec(r)
                    rho = K.dot(r, z)
                record.psolves += 1
                stop = preconditioner_verdict(rho, k)
                if stop is not None:
                    return self.finish(stop, k)
            if restart:
                if in_place:
                    p[...] = z
                else:
                    p = z
                restart = False
            else:
                p = K.cg_update_p(p, z, rho / rho_prev)
            q, pAp = A.matvec_dot(p, q)
            record.matvecs += 1
            stop = curvature_verdict(pAp, k)
            if stop is not None:
                return self.finish(stop, k)
            alpha = rho / pAp
            if scale is not None:
                rr, pending = K.cg_update_xrz(x, r, p, q, alpha, scale, scaled)
            elif in_place:
                rr = K.cg_update_xr(x, r, p, q, alpha)
            else:
                x, r = x + alpha * p, r - alpha * q
                self.x = x
                rr = K.dot(r, r)
            rho_prev = rho
            k += 1
            rnorm = math.sqrt(rr) if rr >= 0 else float("nan")
            if self.check_every is not None and k % self.check_every == 0 and math.isfinite(rnorm):
                drift = self.drift_check(rnorm)
                if drift is not None:
                    r, rnorm, restart = drift.r, drift.rnorm, True
                    rr = rnorm * rnorm
                    pending = None
            record.append(k, rnorm)
            if self.callback is not None:
                self.callback(x)

    def drift_check(self, rnorm: float) -> Replacement | None:
        """The periodic ``check_every`` check at a recursive norm ``rnorm``."""
        # the recursion may have drifted from b - Ax: continue from the true
        # residual, restarting the directions (keeping p with a replaced r
        # can diverge once the gap is large)
        return self.test.drifted(rnorm)

    def _chunks(self, in_place, p, q, scale, scaled) -> "_Chunks | None":
        """The compiled loop for this solve, or None where iterations stay in Python.

        Compiled: real CSR/DIA ``A`` on the Numba kernels, no ``M`` or a fused
        Jacobi one. In Python, one iteration a call, as scipy: a callback or
        a monitor watching every line (each sees every iterate as it comes),
        any other ``M``, dense and matrix-free ``A``, other namespaces.
        """
        A = self.A
        if (not in_place or self.kernels.backend != "numba" or A.layout not in ("csr", "dia")
                or self.callback is not None or self.record.monitor.watching
                or (self.M is not None and scale is None)):
            return None
        return _Chunks(self, p, q, scale, scaled)


class _Chunks:
    """:class:`_PCG`'s iterations run by :func:`cext.numba.cg_loop.cg_run_csr` (or ``_dia``).

    Each call runs until the core's test would stop or replace, until a
    ``check_every`` check is due, or until its budget of iterations is
    spent: a budget sized to return to Python about every
    :data:`~linsolve.core.chunks.CHUNK_SECONDS` (Ctrl-C, the thread policy's
    refresh). The verdicts are the core's, taken here from the state the
    loop hands back.
    """

    # statuses of cext.numba.cg_loop
    AT_TEST, PC_FAILED, CURVATURE_FAILED, DRIFT_CHECK = 0, 1, 2, 3
    MAX_BUDGET = 2**16

    def __init__(self, solver: _PCG, p, q, scale, scaled):
        self.solver = solver
        A, K = solver.A, solver.kernels
        if A.layout == "csr":
            matrix, self.kernel = (A.indptr, A.indices, A.data), K.cg_run_csr
            entries = A.data.shape[0] + A.shape[0]
        else:
            matrix, self.kernel = (A.offsets, A.values), K.cg_run_dia
            entries = A.values.size
        self.matrix = matrix
        self.jacobi = scale is not None
        empty = np.empty(0, dtype=solver.x.dtype)
        self.scale = scale if self.jacobi else empty
        self.scaled = scaled if self.jacobi else empty
        self.p, self.q = p, q  # the Python iterations' buffers: either may run next
        self.scalars = np.zeros(5)
        self.counters = np.zeros(3, dtype=np.int64)
        # the first budget reads about 2**24 matrix entries; later ones scale by time
        self.budget = min(self.MAX_BUDGET, max(1, 2**24 // max(entries, 1)))
        self.norms = np.empty(min(self.budget, solver.maxiter) + 1)

    def run(self, k, r, rnorm, rr, rho_prev, restart, pending):
        """One compiled call from iteration ``k``'s state (its test passed); the state after,
        and the verdict where the loop stopped on a failed ``r'z`` or ``p'Ap``."""
        solver = self.solver
        record = solver.record
        scalars, counters = self.scalars, self.counters
        scalars[0], scalars[1], scalars[2] = rnorm, rr, rho_prev
        scalars[3] = 0.0 if pending is None else pending
        counters[0], counters[1], counters[2] = k, int(restart), 0
        end = min(k + self.budget, solver.maxiter)
        norms = self.norms = grown_history(self.norms, 0, end - k)
        tol = solver.test.tol
        check_every = 0 if solver.check_every is None else solver.check_every
        tic = time.perf_counter()
        self.kernel(*self.matrix, solver.x, r, self.p, self.q, self.scale, self.scaled, scalars,
                    counters, norms, tol, solver.maxiter, end, check_every)
        elapsed = time.perf_counter() - tic
        began, k, status = k, int(counters[0]), int(counters[2])
        done = k - began
        rnorm, rr, rho_prev = float(scalars[0]), float(scalars[1]), float(scalars[2])
        restart = bool(counters[1])
        pending = float(scalars[3]) if self.jacobi else None
        stored = done - (status == self.DRIFT_CHECK)
        record.extend(began + 1, norms[:stored])
        record.matvecs += done + (status == self.CURVATURE_FAILED)
        if self.jacobi:
            record.psolves += done + (status in (self.PC_FAILED, self.CURVATURE_FAILED))
        stop = None
        if status == self.PC_FAILED:
            stop = preconditioner_verdict(float(scalars[4]), k)
        elif status == self.CURVATURE_FAILED:
            stop = curvature_verdict(float(scalars[4]), k)
        elif status == self.DRIFT_CHECK:
            drift = solver.drift_check(rnorm)
            if drift is not None:
                r, rnorm, restart = drift.r, drift.rnorm, True
                rr = rnorm * rnorm
                pending = None
            record.append(k, rnorm)
        elif k == end and end < solver.maxiter:  # the call ran its whole budget
            self.budget = next_budget(self.budget, elapsed, self.MAX_BUDGET)
        return k, r, rnorm, rr, rho_prev, restart, pending, stop
