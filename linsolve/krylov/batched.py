"""Batched preconditioned CG: k systems with one matrix, iterating together.

Each system runs :func:`linsolve.pcg`'s recurrence with its own scalars and
its own stopping test (the core's :class:`~linsolve.core.stopping.ResidualTest`:
true-residual check, residual replacement, stagnation, breakdowns); what
they share is the pass over ``A`` (and over ``M``'s data where ``M`` has a
block form): one product of ``A`` with an ``(n, k)`` block per iteration
instead of ``k`` products with one vector. A system that stops leaves the
block at once: the remaining columns are copied into smaller blocks (a copy
costs about one iteration's vector updates once; a frozen column would cost
its share of every later product with ``A``).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..core.monitor import Monitor
from ..core.record import SolveRecord
from ..core.stopping import (Replacement, ResidualTest, Stop, Tolerance, b_verdict,
                             curvature_verdict, preconditioner_verdict)
from ..result import BatchSolveResult, SolveResult


def _columns_first(xp, B):
    """``B`` of shape ``(k, n)`` as a C-ordered ``(n, k)`` block (the kernels' layout)."""
    block = xp.permute_dims(B, (1, 0))
    contiguous = getattr(xp, "ascontiguousarray", None)
    return contiguous(block) if contiguous is not None else xp.asarray(block, copy=True)


def _column(xp, block, index: int):
    """Column ``index`` of an ``(n, k)`` block as a new contiguous vector."""
    return xp.asarray(block[:, index], copy=True)


def _host(values) -> np.ndarray:
    """A kernel's ``k`` inner products as a host float64 array, from any namespace."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    if hasattr(values, "tolist"):  # CuPy, JAX: one device-to-host copy, not k
        return np.asarray(values.tolist(), dtype=np.float64).reshape(-1)
    return np.asarray([float(values[i]) for i in range(values.shape[0])], dtype=np.float64)


def _set_column(xp, block, index: int, vector):
    """``block`` with column ``index`` replaced by ``vector`` (functional on every namespace)."""
    mask = xp.reshape(xp.arange(block.shape[1]) == index, (1, -1))
    return xp.where(mask, xp.reshape(vector, (-1, 1)), block)


class _Batch:
    """The active systems' blocks and per-system scalars; :meth:`run` is the iteration."""

    def __init__(self, A, M, B, X0, rtol, atol, maxiter, callback, monitor, check_every, start,
                 reduce=None):
        self.A, self.M = A, M
        # the sums over this process's rows -> the global sums (identity serially; an
        # Allreduce under MPI, one per iteration step for all the systems at once)
        self.reduce = (lambda values: values) if reduce is None else reduce
        self.xp = xp = A.xp
        self.kernels = A.kernels
        self.count, self.n = B.shape
        self.maxiter, self.callback, self.monitor = maxiter, callback, monitor
        self.check_every = check_every
        self.start = start
        self.B = B                      # (k, n): the right-hand sides, rows
        self.X = _columns_first(xp, X0)  # (n, a): the active systems' iterates
        self.active = list(range(self.count))
        self.results: list[SolveResult | None] = [None] * self.count
        self.records = [SolveRecord(Monitor(False, "KSP", active=False), start=start)
                        for _ in range(self.count)]
        bb = self.reduce(np.asarray([self.kernels.dot(B[j, :], B[j, :])
                                     for j in range(self.count)], dtype=np.float64))
        bnorms = [math.sqrt(value) if value >= 0 else float("nan") for value in bb]
        self.bnorms = bnorms
        self.tests = [ResidualTest(Tolerance.of(rtol[j], atol[j], bnorms[j]), maxiter,
                                   lambda j=j: self.true_residual(j), self.X.dtype)
                      for j in range(self.count)]

    # -- one system at a time --------------------------------------------------------
    def true_residual(self, j: int):
        """``(b_j - A x_j, its norm)`` for system ``j`` (one product with ``A``)."""
        x = _column(self.xp, self.X, self.active.index(j))
        r = self.B[j, :] - self.A.matvec(x)
        self.records[j].matvecs += 1
        rr = float(self.reduce(np.asarray([self.kernels.dot(r, r)]))[0])
        return r, math.sqrt(rr) if rr >= 0 else float("nan")

    def finish(self, j: int, stop: Stop, k: int, x=None) -> None:
        """System ``j`` ends with ``stop`` at iteration ``k``; it leaves at the next compaction."""
        if x is None:
            x = _column(self.xp, self.X, self.active.index(j))
        if stop.true_residual_norm is None:
            stop = replace(stop, true_residual_norm=self.true_residual(j)[1])
        self.results[j] = self.records[j].result(
            x, stop, k, extra={"residual_replacements": self.tests[j].replacements})

    def compact(self, blocks: dict[str, Any], scalars: dict[str, np.ndarray]):
        """Drop the finished systems' columns from every block and scalar array."""
        keep = [i for i, j in enumerate(self.active) if self.results[j] is None]
        if len(keep) == len(self.active):
            return blocks, scalars
        xp = self.xp
        index = xp.asarray(keep, dtype=xp.int64)
        self.active = [self.active[i] for i in keep]
        self.X = xp.take(self.X, index, axis=1)
        blocks = {name: (None if block is None else xp.take(block, index, axis=1))
                  for name, block in blocks.items()}
        scalars = {name: values[keep] for name, values in scalars.items()}
        return blocks, scalars

    def buffer(self, size: int):
        """A float64 vector of ``size`` in the blocks' namespace (the kernels' dot output)."""
        return self.xp.zeros((size,), dtype=self.xp.float64)

    def scalars(self, values: np.ndarray):
        """Per-system scalars (host float64) as the kernels take them, in the blocks' namespace."""
        return self.xp.asarray(values, dtype=self.xp.float64)

    def report(self, k: int, rnorm: np.ndarray) -> None:
        for i, j in enumerate(self.active):
            self.records[j].norms.append(float(rnorm[i]))
        if rnorm.size:
            self.monitor(k, float(np.max(rnorm)))
        if k > 0 and self.callback is not None:
            self.callback(self.current_x())

    def current_x(self):
        """Every system's iterate as ``(k, n)`` rows (finished ones at their final ``x``)."""
        xp = self.xp
        rows = []
        for j in range(self.count):
            if self.results[j] is not None:
                rows.append(self.results[j].x)
            else:
                rows.append(self.X[:, self.active.index(j)])
        return xp.stack(rows, axis=0)

    # -- the iteration ---------------------------------------------------------------
    def run(self, threads) -> BatchSolveResult:
        xp, K, A, M = self.xp, self.kernels, self.A, self.M
        # the systems that end before the first iteration: b = 0 or NaN in b
        for j in range(self.count):
            stop = b_verdict(self.bnorms[j])
            if stop is not None:
                x = xp.zeros((self.n,), dtype=self.X.dtype) if stop.converged else \
                    _column(xp, self.X, self.active.index(j))
                self.records[j].norms.append(self.bnorms[j])
                self.finish(j, stop, 0, x)
        blocks, scalars = self.compact({}, {})
        a = len(self.active)
        # b_j itself where x0_j = 0 (on every rank), as pcg (no product with A)
        nonzero = self.reduce(np.asarray([float(bool(xp.any(self.X[:, i] != 0)))
                                          for i in range(a)], dtype=np.float64))
        R = _columns_first(xp, xp.stack(
            [self.true_residual(j)[0] if nonzero[i] > 0 else self.B[j, :]
             for i, j in enumerate(self.active)], axis=0)) if a else xp.zeros_like(self.X)
        rr = self.reduce(_host(K.block_dots(R, R, self.buffer(a))))
        rnorm = np.where(rr >= 0, np.sqrt(np.abs(rr)), np.nan)
        self.report(0, rnorm)
        blocks = {"R": R, "P": xp.zeros_like(R), "Q": xp.zeros_like(R)}
        scalars = {"rr": rr, "rnorm": rnorm, "rho_prev": np.ones(a),
                   "restart": np.ones(a, dtype=bool)}
        k = 0
        while self.active:
            threads.refresh()
            for i, j in enumerate(self.active):
                while True:
                    outcome = self.tests[j].check(k, float(scalars["rnorm"][i]))
                    if isinstance(outcome, Stop):
                        self.finish(j, outcome, k)
                    elif isinstance(outcome, Replacement):
                        blocks["R"] = _set_column(xp, blocks["R"], i, outcome.r)
                        scalars["rnorm"][i] = outcome.rnorm
                        scalars["rr"][i] = outcome.rnorm * outcome.rnorm
                        scalars["restart"][i] = True
                        self.records[j].norms[-1] = outcome.rnorm
                        continue
                    break
            blocks, scalars = self.compact(blocks, scalars)
            if not self.active:
                break
            a = len(self.active)
            R = blocks["R"]
            if M is None:
                Z, rho = R, scalars["rr"].copy()
            else:
                Z = M.matmat(R)
                rho = self.reduce(_host(K.block_dots(R, Z, self.buffer(a))))
                for i, j in enumerate(self.active):
                    self.records[j].psolves += 1
                    stop = preconditioner_verdict(float(rho[i]), k)
                    if stop is not None:
                        self.finish(j, stop, k)
                blocks["Z"] = Z
                blocks, scalars = self.compact(blocks, {**scalars, "rho": rho})
                if not self.active:
                    break
                rho, Z = scalars.pop("rho"), blocks.pop("Z")
                a = len(self.active)
            beta = np.where(scalars["restart"], 0.0, rho / scalars["rho_prev"])
            # the scalars in float64, as pcg's: a float32 block's update rounds once
            P = K.block_update_p(blocks["P"], Z, self.scalars(beta))
            Q, pAp = A.matmat_dot(P, blocks["Q"], self.buffer(a))
            pAp = self.reduce(_host(pAp))
            for i, j in enumerate(self.active):
                self.records[j].matvecs += 1
                stop = curvature_verdict(float(pAp[i]), k)
                if stop is not None:
                    self.finish(j, stop, k)
            blocks.update(P=P, Q=Q)
            blocks, scalars = self.compact(blocks, {**scalars, "rho": rho, "pAp": pAp})
            if not self.active:
                break
            rho, pAp = scalars.pop("rho"), scalars.pop("pAp")
            alpha = rho / pAp
            self.X, R, rr = K.block_cg_update(self.X, blocks["R"], blocks["P"], blocks["Q"],
                                              self.scalars(alpha), self.buffer(len(self.active)))
            rr = self.reduce(_host(rr))
            scalars.update(rho_prev=rho, restart=np.zeros(len(self.active), dtype=bool), rr=rr)
            blocks["R"] = R
            k += 1
            rnorm = np.where(rr >= 0, np.sqrt(np.abs(rr)), np.nan)
            if self.check_every is not None and k % self.check_every == 0:
                for i, j in enumerate(self.active):
                    if not math.isfinite(rnorm[i]):
                        continue
                    drift = self.tests[j].drifted(float(rnorm[i]))
                    if drift is not None:
                        blocks["R"] = _set_column(xp, blocks["R"], i, drift.r)
                        rnorm[i] = drift.rnorm
                        scalars["rr"][i] = drift.rnorm * drift.rnorm
                        scalars["restart"][i] = True
            scalars["rnorm"] = rnorm
            self.report(k, rnorm)
        return BatchSolveResult(tuple(self.results), time=time.perf_counter() - self.start)
