"""Block CG in its breakdown-free form: one Krylov space shared by every right-hand side.

Ji and Li, "A breakdown-free block conjugate gradient method", BIT 57 (2017),
Algorithm 3 (BFBCG), after O'Leary (1980): the search block is
orthonormalised, and the directions it has lost rank in are dropped, so a
block of dependent right-hand sides (repeated ones, or residuals that
become dependent as the systems converge) neither breaks the iteration nor
stalls it. Each system stops on its own true residual (the core's
:class:`~linsolve.core.stopping.ResidualTest`) and leaves the block
(deflation of the converged systems), the others go on in the space they
have built.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from cext.threads import kernel_threads

from ..core.monitor import Monitor
from ..core.record import SolveRecord
from ..core.setup import krylov_operators, settings
from ..core.stopping import Replacement, ResidualTest, Stop, Tolerance, b_verdict
from ..result import BatchSolveResult
from ..validation.inputs import (as_initial_block, as_rhs_block, check_maxiter,
                                 per_system_tolerance, working_dtype)


def _orthonormal(xp, W, drop: float):
    """An orthonormal basis of the columns of ``W`` (thin SVD), without the directions whose
    singular value is below ``drop`` times the largest (Ji and Li's rank-revealing ``orth``)."""
    if W.shape[1] == 0:
        return W
    U, S, _ = xp.linalg.svd(W, full_matrices=False)
    largest = float(S[0]) if S.shape[0] else 0.0
    if not math.isfinite(largest) or largest == 0.0:
        return U[:, :0]
    rank = int(xp.sum(xp.astype(S > drop * largest, xp.int64)))
    return U[:, :rank]


def block_cg(A: Any, B: Any, x0: Any = None, *, M: Any = None, rtol: Any = 1e-5,
             atol: Any = 0.0, maxiter: int | None = None,
             callback: Callable[[Any], None] | None = None, monitor: Any = False,
             **kwargs) -> BatchSolveResult:
    """Solve ``A X = B`` for SPD ``A`` and several right-hand sides in one shared Krylov space.

    Parameters
    ----------
    A : operator
        Anything :func:`linsolve.pcg` accepts.
    B : array of shape (..., n)
        The right-hand sides, one per row (scipy's batched convention).
    x0 : array of B's shape, optional
        Initial guesses (never modified); default zeros.
    M : operator, optional
        SPD preconditioner (applied column by column unless it has a block form).
    rtol, atol : float or array broadcastable to B's leading shape
        Each system stops at ``||b_j - A x_j|| <= max(rtol_j ||b_j||, atol_j)``.
    maxiter : int, optional
        Block iterations, default ``10 n``.
    callback : callable, optional
        ``callback(X)`` after every block iteration, ``X`` of ``B``'s shape.
    monitor : bool, file-like or callable
        As :func:`linsolve.pcg`; the norm reported is the largest residual
        norm among the systems still iterating.

    Returns
    -------
    BatchSolveResult
        One :class:`SolveResult` per system; ``iterations`` counts the block
        iterations it took part in, ``extra["block_size"]`` the width of the
        search block at each of them.

    Notes
    -----
    Each iteration multiplies ``A`` by the search block ``P`` (``s <= k``
    columns), solves two ``s x s`` systems with ``P'AP`` and orthonormalises
    ``Z + P beta`` by a thin SVD, dropping the directions below
    ``sqrt(eps)`` of the largest: the rank a dependent block has lost. The
    iteration count is at most the largest single system's and usually far
    below it, at ``O(n s^2)`` extra work per iteration.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import block_cg, pcg
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(60, 60), format="csr")
    >>> B = np.random.default_rng(0).standard_normal((4, 60))
    >>> result = block_cg(A, B, rtol=1e-8)
    >>> single = pcg(A, B[0], rtol=1e-8).iterations
    >>> bool(result.converged.all()), int(result.iterations.max()) < single
    (True, True)
    """
    start = time.perf_counter()
    per_system = np.ndim(rtol) > 0 or np.ndim(atol) > 0
    common = settings("block_cg", kwargs, rtol=0.0 if per_system else rtol,
                      atol=0.0 if per_system else atol, monitor=monitor, label="KSP",
                      callback=callback)
    xp, B, shape = as_rhs_block(B)
    count, n = B.shape
    rtols = per_system_tolerance("rtol", rtol, shape)
    atols = per_system_tolerance("atol", atol, shape)
    maxiter = check_maxiter(maxiter, 10 * n)
    dtype = working_dtype(xp, B, A)
    B = xp.astype(B, dtype)
    with kernel_threads((n + int(getattr(A, "nnz", 0) or 0)) * count):
        A_op, M_op = krylov_operators(A, M, xp, dtype, n)
        X0 = as_initial_block(x0, xp, B.shape, shape, dtype)
        solver = _BlockCG(A_op, M_op, B, X0, rtols, atols, maxiter, common, start)
        result = solver.run()
    return replace(result, shape=shape)


class _BlockCG:
    def __init__(self, A, M, B, X0, rtols, atols, maxiter, common, start):
        self.A, self.M, self.B = A, M, B
        self.xp = A.xp
        self.count, self.n = B.shape
        self.maxiter, self.common, self.start = maxiter, common, start
        self.X = [X0[j, :] for j in range(self.count)]
        self.results: list = [None] * self.count
        self.records = [SolveRecord(Monitor(False, "KSP", active=False), start=start)
                        for _ in range(self.count)]
        self.bnorms = [math.sqrt(A.kernels.dot(B[j, :], B[j, :])) for j in range(self.count)]
        self.tests = [ResidualTest(Tolerance.of(rtols[j], atols[j], self.bnorms[j]), maxiter,
                                   lambda j=j: self.true_residual(j), X0.dtype)
                      for j in range(self.count)]
        self.widths: list[int] = []
        eps = float(np.finfo(np.float32 if "float32" in str(X0.dtype) else np.float64).eps)
        self.drop = math.sqrt(eps)

    def true_residual(self, j: int):
        r = self.B[j, :] - self.A.matvec(self.X[j])
        self.records[j].matvecs += 1
        return r, math.sqrt(self.A.kernels.dot(r, r))

    def finish(self, j: int, stop: Stop, k: int) -> None:
        if stop.true_residual_norm is None:
            stop = replace(stop, true_residual_norm=self.true_residual(j)[1])
        self.results[j] = self.records[j].result(
            self.X[j], stop, k, extra={"block_size": list(self.widths[:k]),
                                       "residual_replacements": self.tests[j].replacements})

    def run(self) -> BatchSolveResult:
        xp, A, M = self.xp, self.A, self.M
        active = []
        residuals = {}
        for j in range(self.count):
            stop = b_verdict(self.bnorms[j])
            if stop is not None:
                if stop.converged:
                    self.X[j] = xp.zeros_like(self.X[j])
                self.records[j].norms.append(self.bnorms[j])
                self.finish(j, stop, 0)
                continue
            r = self.true_residual(j)[0] if bool(xp.any(self.X[j] != 0)) else self.B[j, :]
            residuals[j] = r
            active.append(j)
        rnorms = {j: math.sqrt(A.kernels.dot(residuals[j], residuals[j])) for j in active}
        self._report(0, active, rnorms)
        P = Q = PtQ = None  # the search block, A P and P'AP of the last iteration
        k = 0
        while active:
            for j in list(active):
                while True:
                    outcome = self.tests[j].check(k, rnorms[j])
                    if isinstance(outcome, Stop):
                        self.finish(j, outcome, k)
                        active.remove(j)
                    elif isinstance(outcome, Replacement):
                        residuals[j], rnorms[j] = outcome.r, outcome.rnorm
                        self.records[j].norms[-1] = outcome.rnorm
                        P = None  # a replaced residual restarts the search space
                        continue
                    break
            if not active:
                break
            R = xp.stack([residuals[j] for j in active], axis=1)
            Z = R if M is None else M.matmat(R)
            for j in active:
                self.records[j].psolves += 0 if M is None else 1
            if P is None:
                W = Z
            else:
                # beta = -(P'AP)^{-1} Q'Z, the new directions A-conjugate to P
                beta = -xp.linalg.solve(PtQ, xp.permute_dims(Q, (1, 0)) @ Z)
                W = Z + P @ beta
            P = _orthonormal(xp, W, self.drop)
            if P.shape[1] == 0:
                # no direction left: the residuals are zero or NaN
                for j in list(active):
                    self.finish(j, Stop("DIVERGED_BREAKDOWN" if math.isfinite(rnorms[j])
                                        else "DIVERGED_NANORINF",
                                        "the search block lost every direction"), k)
                active = []
                break
            Q = A.matmat(P)
            for j in active:
                self.records[j].matvecs += 1
            PtQ = xp.permute_dims(P, (1, 0)) @ Q
            PtQ = (PtQ + xp.permute_dims(PtQ, (1, 0))) / 2
            eigenvalues = xp.linalg.eigvalsh(PtQ)
            if not bool(xp.all(xp.isfinite(eigenvalues))) or float(eigenvalues[0]) <= 0.0:
                reason = ("DIVERGED_NANORINF" if not bool(xp.all(xp.isfinite(eigenvalues)))
                          else "DIVERGED_INDEFINITE_MAT")
                for j in list(active):
                    self.finish(j, Stop(reason, f"P'AP has the eigenvalue "
                                                f"{float(eigenvalues[0]):.3e} at iteration {k}: "
                                                "A is not positive definite"), k)
                active = []
                break
            alpha = xp.linalg.solve(PtQ, xp.permute_dims(P, (1, 0)) @ R)
            self.widths.append(int(P.shape[1]))
            step = P @ alpha
            change = Q @ alpha
            for i, j in enumerate(active):
                self.X[j] = self.X[j] + step[:, i]
                residuals[j] = residuals[j] - change[:, i]
                rr = A.kernels.dot(residuals[j], residuals[j])
                rnorms[j] = math.sqrt(rr) if rr >= 0 else float("nan")
            k += 1
            self._report(k, active, rnorms)
        return BatchSolveResult(tuple(self.results), time=time.perf_counter() - self.start)

    def _report(self, k: int, active: list, rnorms: dict) -> None:
        for j in active:
            self.records[j].norms.append(rnorms[j])
        if active:
            self.common.monitor(k, max(rnorms[j] for j in active))
        if k > 0 and self.common.callback is not None:
            xp = self.xp
            self.common.callback(xp.stack([self.X[j] if self.results[j] is None
                                           else self.results[j].x for j in range(self.count)]))
