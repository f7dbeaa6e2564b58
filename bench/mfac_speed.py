"""M-FAC speed: ``solve`` and ``update`` against the bare passes over the window.

``solve`` reads the window twice (``G v``, then ``v - G'c``) and ``update``
once (the new Gram row), so the fair baselines are two and one BLAS
``gemv`` over the same window in its own dtype. The M-FAC passes read the
same bytes but accumulate in float64 (see :mod:`curvature.mfac`); the
ratios say what that precision and the m x m work cost. Targets: solve
<= 1.3x, update <= 1.5x (update timed with the O(m^3) refactorisation it
triggers). Both sides get every core: BLAS threads are raised to the core
count for the timing even inside ``python -m bench``'s one-thread default,
since the Numba passes run on all cores too.
"""

from __future__ import annotations

import os
import time

import numpy as np

from curvature.mfac import MFAC


def _best(func, repeat: int) -> float:
    func()  # warm-up: Numba compilation, page faults
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def run(d: int = 1_000_000, m: int = 256, dtype: str = "float32", repeat: int = 5,
        seed: int = 0) -> list[dict]:
    """Time ``MFAC.solve`` / ``update`` against ``gemv`` passes; one row each.

    Returns rows with ``operation, d, m, dtype, seconds, baseline_seconds,
    ratio, target``, where the baseline of ``solve`` is ``G @ v`` plus
    ``c @ G`` and that of ``update`` is ``G @ g`` (BLAS, window dtype).

    Examples
    --------
    >>> rows = run(d=4000, m=8, repeat=1)
    >>> [row["operation"] for row in rows]
    ['solve', 'update']
    """
    rng = np.random.default_rng(seed)
    mfac = MFAC(d, m, damping=1e-4, dtype=dtype)
    row = np.empty(d, dtype=dtype)
    for _ in range(m):  # fill the window without a (d, m) temporary
        row[:] = rng.standard_normal(d)
        mfac.update(row)
    G = mfac.window
    v = rng.standard_normal(d).astype(dtype)
    c = rng.standard_normal(m).astype(dtype)
    mfac.solve(v)  # factor once, so solve is timed as in an optimiser step

    def update():
        mfac.update(v)
        mfac._factors()  # the refactorisation a push triggers, counted here

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=os.cpu_count() or 1, user_api="blas"):
        solve_s = _best(lambda: mfac.solve(v), repeat)
        update_s = _best(update, repeat)
        two_passes = _best(lambda: (G @ v, c @ G), repeat)
        one_pass = _best(lambda: G @ v, repeat)
    common = {"d": d, "m": m, "dtype": dtype}
    return [
        {"operation": "solve", **common, "seconds": solve_s, "baseline": "G@v + c@G",
         "baseline_seconds": two_passes, "ratio": solve_s / two_passes, "target": 1.3},
        {"operation": "update", **common, "seconds": update_s, "baseline": "G@g",
         "baseline_seconds": one_pass, "ratio": update_s / one_pass, "target": 1.5},
    ]


if __name__ == "__main__":  # pragma: no cover
    for r in run():
        print(f"{r['operation']:>6}  d={r['d']} m={r['m']} {r['dtype']}: "
              f"{r['seconds'] * 1e3:8.1f} ms vs {r['baseline']} {r['baseline_seconds'] * 1e3:8.1f} ms"
              f"  ratio {r['ratio']:.2f} (target <= {r['target']})")
