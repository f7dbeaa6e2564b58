"""Batched inverse roots against bare batched ``numpy.linalg.eigh``.

The issue's target: ``inverse_root`` of 64 SPD blocks of size 256 within
1.1x the time of ``numpy.linalg.eigh`` on the same stack, measured in the
same run. The root costs one eigh plus a symmetrisation pass and one
``(Q s)(Q s)'`` product (a BLAS rank-k update, ``n^3`` flops per block,
against roughly ``9 n^3`` for eigh with vectors), so about 1.1x is the floor
of any eigh-based root on one core.

Use :func:`run`; ``python -m bench curvature`` prints its rows.
"""

from __future__ import annotations

import time

import numpy as np

from curvature.shampoo.roots import inverse_root

__all__ = ["run", "spd_stack"]


def spd_stack(blocks: int, size: int, seed: int = 0) -> np.ndarray:
    """``blocks`` SPD matrices ``G G' / size + 1e-3 I`` (Wishart-like spectra)."""
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((blocks, size, size))
    return G @ np.swapaxes(G, -1, -2) / size + 1e-3 * np.eye(size)


def _best_time(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(sizes=(256,), blocks: int = 64, p: int = 4, repeats: int = 5,
        methods=("eigh",), seed: int = 0) -> list[dict]:
    """Time ``inverse_root`` per method against bare batched eigh.

    Parameters
    ----------
    sizes : sequence of int
        Block sizes n.
    blocks : int
        Blocks in the stack.
    p : int
        Root.
    repeats : int
        Each timing is the best of this many runs; the baseline and the roots
        alternate within a repeat so that load from other processes hits
        both alike.
    methods : sequence of str
        ``inverse_root`` methods ("eigh", "newton"); Newton on the CPU is
        many matrix products per block and far slower.

    Returns
    -------
    list of dict
        Rows with ``method, blocks, size, time`` (seconds) and ``ratio``
        (time / bare eigh time); the baseline row is
        ``"numpy.linalg.eigh"`` with ratio 1.

    Examples
    --------
    >>> from bench.roots_speed import run
    >>> rows = run(sizes=(8,), blocks=4, repeats=1)
    >>> [row["method"] for row in rows]
    ['numpy.linalg.eigh', 'inverse_root(eigh)']
    """
    rows = []
    for size in sizes:
        A = spd_stack(blocks, size, seed)
        timers = {"numpy.linalg.eigh": lambda: np.linalg.eigh(A)}
        for method in methods:
            timers[f"inverse_root({method})"] = (
                lambda method=method: inverse_root(A, p, method=method))
        for fn in timers.values():      # warm-up (BLAS threads, page faults)
            fn()
        best = {name: np.inf for name in timers}
        for _ in range(repeats):
            for name, fn in timers.items():
                best[name] = min(best[name], _best_time(fn, 1))
        base = best["numpy.linalg.eigh"]
        for name, seconds in best.items():
            rows.append({"method": name, "blocks": blocks, "size": size,
                         "time": seconds, "ratio": seconds / base})
    return rows
