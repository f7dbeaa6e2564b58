"""A solve's bookkeeping: timer, counters, residual history, monitor, and its one result."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..result import SolveResult
from .monitor import Monitor
from .stopping import Stop


class SolveRecord:
    """What a solver accumulates while it iterates, turned into a :class:`SolveResult` at exit.

    Parameters
    ----------
    monitor : Monitor
        Reported to by :meth:`append`.
    start : float, optional
        ``time.perf_counter()`` when the call began (default: now).

    Attributes
    ----------
    norms : list of float
        The residual history, initial residual first.
    matvecs, psolves : int
        Products with ``A`` and applications of the preconditioner, counted
        by the solver as it spends them.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve.core.monitor import Monitor
    >>> from linsolve.core.stopping import Stop
    >>> record = SolveRecord(Monitor(False, "KSP"))
    >>> record.append(0, 1.0); record.append(1, 1e-9)
    >>> result = record.result(np.zeros(2), Stop("CONVERGED_RTOL", "met", 1e-9), 1)
    >>> result.converged, result.residual_norms.tolist()
    (True, [1.0, 1e-09])
    """

    def __init__(self, monitor: Monitor, *, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.monitor = monitor
        self.norms: list[float] = []
        self.matvecs = 0
        self.psolves = 0

    def append(self, k: int, rnorm: float) -> None:
        """Record iteration ``k``'s residual norm and report it."""
        self.norms.append(rnorm)
        self.monitor(k, rnorm)

    def extend(self, first: int, norms: Any) -> None:
        """Record the norms of iterations ``first, first + 1, ...`` (a compiled chunk's),
        reporting each where anyone listens."""
        values = norms.tolist()
        self.norms.extend(values)
        if self.monitor.listening:
            for k, rnorm in enumerate(values, start=first):
                self.monitor(k, rnorm)

    def result(self, x: Any, stop: Stop, iterations: int, *, norms: Any = None,
               matvecs: int | None = None, extra: dict | None = None,
               info_count: int | None = None) -> SolveResult:
        """The :class:`SolveResult` of a solve that ended with ``stop`` after ``iterations``.

        ``stop.true_residual_norm`` must be known (the solver recomputes it
        at exit where the verdict did not). ``norms`` and ``matvecs``
        override the recorded ones (solvers whose history lives in a
        compiled loop's buffer). ``info_count``: see :class:`SolveResult`.
        """
        if stop.true_residual_norm is None:
            raise ValueError("a verdict without its true residual norm cannot end a solve")
        return SolveResult(
            x=x, converged=stop.converged, reason=stop.reason, iterations=iterations,
            residual_norms=np.asarray(self.norms if norms is None else norms, dtype=np.float64),
            true_residual_norm=float(stop.true_residual_norm),
            matvecs=self.matvecs if matvecs is None else matvecs,
            time=time.perf_counter() - self.start, message=stop.message,
            psolves=self.psolves, extra={} if extra is None else extra, info_count=info_count)
