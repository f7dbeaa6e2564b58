"""Bookkeeping of compiled loops that come up for air: chunk budgets and histories.

A compiled loop that can run for seconds is called in chunks, so Ctrl-C is
seen between them; its residual history grows with the iterations run,
never sized from ``maxiter`` (``maxiter=10**12`` once meant a 7 TiB
allocation). Shared by :func:`linsolve.sor`, :func:`linsolve.sketch_solve` and
:func:`linsolve.pcg`'s compiled chunks.
"""

from __future__ import annotations

import numpy as np

CHUNK_SECONDS = 0.1
"""Wall time one compiled call aims at."""


def next_budget(budget: int, elapsed: float, cap: int) -> int:
    """Steps for the next compiled call, from the last call's ``budget`` steps in ``elapsed`` s.

    Scaled towards :data:`CHUNK_SECONDS`, growing at most 4x a call so that
    one fast timing cannot overshoot, and within ``[1, cap]``.

    Examples
    --------
    >>> next_budget(10, 0.01, 1000)  # 10x too fast: grows, but only 4x
    40
    >>> next_budget(10, 1.0, 1000)
    1
    """
    return max(1, min(cap, 4 * budget, int(budget * CHUNK_SECONDS / max(elapsed, 1e-9))))


def grown_history(norms, filled: int, size: int):
    """``norms`` with room for ``size`` entries, doubling, the first ``filled`` kept.

    Examples
    --------
    >>> grown_history(np.arange(3.0), 3, 5).shape
    (6,)
    """
    if size <= norms.shape[0]:
        return norms
    grown = np.empty(max(2 * norms.shape[0], size))
    grown[:filled] = norms[:filled]
    return grown
