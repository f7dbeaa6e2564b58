"""M-FAC speed: ``solve`` and ``update`` against the bare passes over the window.

``solve`` reads the window twice (``G v``, then ``v - G'c``) and ``update``
once (the new Gram row), so the fair baselines are two and one BLAS
``gemv`` over the same window in its own dtype. The M-FAC passes read the
same bytes but accumulate in float64 (see :mod:`curvature.mfac`); the
ratios say what that precision and the m x m work cost. Targets (issue
15): solve <= 1.2x, update <= 1.3x (update timed with the O(m^3)
refactorisation it triggers). Both sides get every core: BLAS threads are
raised to the core count for the timing even inside ``python -m bench``'s
one-thread default, since the window passes run on all cores too.

Besides the two ratio rows, rows for each pass alone (``gemv``,
``gemv_t``, ``push``) and for the refactorisation (``refactor``, against
the one-pass baseline) say where ``update``'s time goes. Each row carries
the achieved window bandwidth (``gbps``: window bytes read per second),
the BLAS library, kernel architecture and thread count as threadpoolctl
reports them, and the thread count of the window passes. Samples are
interleaved (one of each per round) and the best of ``repeat`` rounds is
kept, so a burst of load elsewhere hits every row alike. Each round starts
after a pause (``SETTLE_SECONDS``): OpenBLAS's idle threads spin for about
0.1 s after a call, and a pass right behind one ran 1.3-1.5x slower
(``solve_after_blas``; d = 4e5, m = 256, 83.5 against 57-62 ms, busy
machine; 68 ms with ``OPENBLAS_THREAD_TIMEOUT=4`` in the environment),
then one untimed pass over the window: the first pass over memory left
untouched for that long is slower for BLAS and M-FAC alike (two BLAS
passes: 104 against 80-85 ms when hot), so every timed call finds the
window as the ones before it left it.

``python -m bench.mfac_speed [--d 1000000] [--m 256] [--dtype float32]
[--repeat 5]`` prints the table; ``python -m bench curvature`` includes the
rows (``--mfac-d``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from curvature.mfac import MFAC

TARGETS = {"solve": 1.2, "update": 1.3}


def blas_description() -> dict:
    """``blas`` (internal_api architecture, version) and ``blas_threads`` of NumPy's BLAS."""
    from threadpoolctl import threadpool_info

    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    if not pools:
        return {"blas": "unknown", "blas_threads": 0}
    pool = next((p for p in pools if "numpy" in p.get("filepath", "")), pools[0])
    name = f"{pool.get('internal_api')} {pool.get('architecture', '?')} {pool.get('version', '')}"
    return {"blas": name.strip(), "blas_threads": int(pool.get("num_threads", 0))}


SETTLE_SECONDS = 0.3
"""Pause after the BLAS calls of a round: OpenBLAS's idle workers spin for 2**28
cycles (``OPENBLAS_THREAD_TIMEOUT``, about 0.1 s) after each call, on the cores
the next pass needs."""


def _interleaved_best(functions: dict, blas: dict, after_blas: dict, repeat: int,
                      wake=None) -> dict:
    """Best time of each function over ``repeat`` rounds of one call each (after a warm-up).

    A round pauses ``SETTLE_SECONDS`` so that its ``functions`` do not
    share the cores with the previous round's spinning BLAS threads, calls
    ``wake`` untimed, then times ``functions``, then the ``blas``
    baselines, then ``after_blas`` (right behind a BLAS call, as in an
    optimiser step after a forward/backward pass). ``wake`` should read the
    window once without BLAS: the first pass over a window left untouched
    for a tenth of a second ran 10-25% slower than the next on the 2-core
    reference machine (``solve``, d = 1e6, m = 256, float32: 103-117 ms
    against 93-97 ms; 97-100 ms when an untimed window pass came first; a
    busy pass over other memory did not help), and without ``wake`` that
    cost fell on ``functions[0]`` alone, never on the baselines, which run
    behind other passes over the same window.
    """
    everything = {**functions, **blas, **after_blas}
    for func in everything.values():
        func()  # warm-up: Numba compilation, page faults
    best = {name: float("inf") for name in everything}
    for _ in range(repeat):
        time.sleep(SETTLE_SECONDS)
        if wake is not None:
            wake()
        for name, func in everything.items():
            start = time.perf_counter()
            func()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def run(d: int = 1_000_000, m: int = 256, dtype: str = "float32", repeat: int = 5,
        seed: int = 0) -> list[dict]:
    """Time ``MFAC.solve`` / ``update`` against ``gemv`` passes; one row each, then the parts.

    Returns rows with ``operation, d, m, dtype, seconds, baseline,
    baseline_seconds, ratio, target, gbps, baseline_gbps, blas,
    blas_threads, pass_threads``. The baseline of ``solve`` is ``G @ v``
    plus ``c @ G`` and that of ``update`` is ``G @ g`` (BLAS, window
    dtype); ``gemv``, ``gemv_t`` and ``push`` are the window kernels alone
    against the matching single BLAS pass, ``refactor`` the m x m
    factorisation after a push against one BLAS pass. ``solve_after_blas``
    is ``solve`` timed right behind the BLAS baselines (their threads still
    spinning), against the same baseline.

    Examples
    --------
    >>> rows = run(d=4000, m=8, repeat=1)
    >>> [row["operation"] for row in rows]
    ['solve', 'solve_after_blas', 'update', 'gemv', 'gemv_t', 'push', 'refactor']
    """
    from cext import kernels_for
    from cext.numba.mfac import _pass_threads
    from threadpoolctl import threadpool_limits

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

    kernels = kernels_for(mfac.xp)
    offsets = (0, d)
    gram = np.empty((1, m))
    coef = rng.standard_normal((1, m))
    out = np.empty(d, dtype=dtype)
    first_row = np.array(G[0])  # pushed back into slot 0: the window stays as it is

    def update():
        mfac.update(v)
        mfac._factors()  # the refactorisation a push triggers, counted here

    def push():  # the pass alone, on the raw window
        kernels.window_push_gemv(G, 0, first_row, offsets, gram)

    def refactor():
        mfac._factor = None
        mfac._factors()

    def gemv():  # the pass alone; also the untimed wake-up of each round (_interleaved_best)
        kernels.window_gemv(G, v, offsets, gram)

    with threadpool_limits(limits=os.cpu_count() or 1, user_api="blas"):
        blas = blas_description()
        best = _interleaved_best({
            "solve": lambda: mfac.solve(v),
            "update": update,
            "gemv": gemv,
            "gemv_t": lambda: kernels.window_axpy_gemv_t(G, coef, v, 1.0, -1.0, offsets, out),
            "push": push,
            "refactor": refactor,
        }, {
            "blas_gemv": lambda: G @ v,
            "blas_gemv_t": lambda: c @ G,
        }, {
            "solve_after_blas": lambda: mfac.solve(v),
        }, repeat, wake=gemv)
    window_gb = G.nbytes / 1e9
    common = {"d": d, "m": m, "dtype": dtype, **blas,
              "pass_threads": _pass_threads(G.size) if G.dtype == np.float32 else "blas"}
    two_passes = best["blas_gemv"] + best["blas_gemv_t"]
    plan = [  # operation, seconds, passes over the window, baseline name, baseline seconds
        ("solve", best["solve"], 2, "G@v + c@G", two_passes),
        ("solve_after_blas", best["solve_after_blas"], 2, "G@v + c@G", two_passes),
        ("update", best["update"], 1, "G@g", best["blas_gemv"]),
        ("gemv", best["gemv"], 1, "G@v", best["blas_gemv"]),
        ("gemv_t", best["gemv_t"], 1, "c@G", best["blas_gemv_t"]),
        ("push", best["push"], 1, "G@g", best["blas_gemv"]),
        ("refactor", best["refactor"], 0, "G@g", best["blas_gemv"]),
    ]
    rows = []
    for operation, seconds, passes, baseline, baseline_seconds in plan:
        rows.append({
            "operation": operation, **common, "seconds": seconds, "baseline": baseline,
            "baseline_seconds": baseline_seconds, "ratio": seconds / baseline_seconds,
            "target": TARGETS.get(operation, ""),
            "gbps": passes * window_gb / seconds if passes else "",
            "baseline_gbps": max(passes, 1) * window_gb / baseline_seconds,
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    """The rows as text lines, one per operation, then the BLAS and thread line."""
    lines = []
    for r in rows:
        gbps = f"{r['gbps']:5.1f} GB/s" if r["gbps"] != "" else "          "
        target = f"  (target <= {r['target']})" if r["target"] != "" else ""
        lines.append(f"{r['operation']:>16}  {r['seconds'] * 1e3:8.2f} ms {gbps}  vs "
                     f"{r['baseline']:>9} {r['baseline_seconds'] * 1e3:8.2f} ms "
                     f"{r['baseline_gbps']:5.1f} GB/s  ratio {r['ratio']:5.2f}{target}")
    if rows:
        r = rows[0]
        lines.append(f"d={r['d']} m={r['m']} {r['dtype']}; BLAS {r['blas']} on "
                     f"{r['blas_threads']} threads; window passes on {r['pass_threads']} "
                     f"threads; load average {os.getloadavg()[0]:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.mfac_speed",
        description="M-FAC solve/update against bare BLAS gemv passes over the window.")
    parser.add_argument("--d", type=float, default=1e6, help="gradient length (default 1e6)")
    parser.add_argument("--m", type=int, default=256, help="window length (default 256)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.d < 1 or args.m < 1 or args.repeat < 1:
        parser.error("--d, --m and --repeat must be at least 1")
    print(format_rows(run(d=int(args.d), m=args.m, dtype=args.dtype, repeat=args.repeat,
                          seed=args.seed)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
