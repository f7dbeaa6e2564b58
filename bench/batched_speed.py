"""``python -m bench.batched_speed``: batched ``pcg(A, B)`` against ``k`` separate calls, alone.

The ``rhs`` rows of ``bench speed`` (:mod:`bench.rhs_speed`) without the
block CG runs, which take several times longer than both: the time to all
``k`` solutions to ``rtol = 1e-8`` on the scikit-fem matrices, batched over
separate, interleaved samples (one of each in turn), BLAS at one thread, and
optionally the kernels held to ``--threads`` (a fixed count makes runs on a
shared machine comparable; the default follows the library's load policy).
Each row gives the medians, the best samples' ratio beside the medians', the
achieved GB/s of both runs under the bandwidth model of :mod:`bench.rhs_speed`
(float64 values, int32 indices, fused updates) and that model's floor, and
whether every system took the same iterations both ways (the largest
difference: the batch sums its inner products in another order than the
single-vector kernels, and over hundreds of iterations of an ill-conditioned
system that moves the last few iterations).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np

from .rhs_speed import K, RHS_MATRICES, RTOL, TARGETS, VECTOR_PASSES, floor_ratio, matrix_bytes


def batched_row(A, name: str, k: int = K, repeat: int = 5, clock=time.perf_counter) -> dict:
    """One row: batched over separate on ``A`` with ``k`` seeded right-hand sides.

    ``clock``: ``time.perf_counter`` (wall time) or ``time.process_time``
    (CPU time: on a shared, oversubscribed machine it leaves out the time
    the process waits for a core; meaningful with the kernels on one thread,
    since idle OpenMP threads spin).

    Examples
    --------
    >>> from bench.fem import fem_matrix
    >>> row = batched_row(fem_matrix("p1tet", 3), "p1tet", k=2, repeat=1)
    >>> row["same_iterations"], row["target"]
    (True, 0.55)
    """
    from linsolve import pcg

    n = A.shape[0]
    B = np.random.default_rng(1).standard_normal((k, n))
    options = dict(rtol=RTOL, check_symmetric=False)
    pcg(A, B, rtol=0.5, maxiter=5, check_symmetric=False)  # compile outside the timing
    pcg(A, B[0], rtol=0.5, maxiter=5, check_symmetric=False)
    counts: dict[str, list[int]] = {}
    samples: dict[str, list[float]] = {"batched": [], "separate": []}

    def separate() -> None:
        start = clock()
        results = [pcg(A, B[j], **options) for j in range(k)]
        samples["separate"].append(clock() - start)
        counts["separate"] = [int(result.iterations) for result in results]

    def batched() -> None:
        start = clock()
        result = pcg(A, B, **options)
        samples["batched"].append(clock() - start)
        counts["batched"] = [int(c) for c in np.ravel(result.iterations)]

    for round_ in range(repeat):
        for run in ((batched, separate) if round_ % 2 == 0 else (separate, batched)):
            run()
    medians = {key: statistics.median(values) for key, values in samples.items()}
    a, v = matrix_bytes(A), VECTOR_PASSES * 8 * n
    moved_separate = sum(counts["separate"]) * (a + v)
    moved_batched = max(counts["batched"]) * a + sum(counts["batched"]) * v
    return {"matrix": name, "n": n, "nnz": A.nnz, "k": k,
            "batched_s": round(medians["batched"], 3),
            "separate_s": round(medians["separate"], 3),
            "ratio": round(medians["batched"] / medians["separate"], 3),
            "best_ratio": round(min(samples["batched"]) / min(samples["separate"]), 3),
            "target": TARGETS.get(name), "floor": round(floor_ratio(A, k), 3),
            "batched_GBps": round(moved_batched / medians["batched"] / 1e9, 1),
            "separate_GBps": round(moved_separate / medians["separate"] / 1e9, 1),
            "iterations": max(counts["batched"]),
            "same_iterations": counts["batched"] == counts["separate"],
            "iteration_gap": max(abs(b - s) for b, s in zip(counts["batched"],
                                                            counts["separate"]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batched_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--matrices", default=",".join(RHS_MATRICES),
                        help="scikit-fem matrices (bench.fem names), comma-separated")
    parser.add_argument("--refine", type=int, default=None,
                        help="refinement level of every matrix (default: the benchmark sizes)")
    parser.add_argument("--rhs", type=int, default=K, help="right-hand sides k (default 8)")
    parser.add_argument("--repeat", type=int, default=5, help="samples of each (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads on both sides (default: the library's policy)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default) or process CPU time (a shared machine, "
                             "--threads 1)")
    args = parser.parse_args(argv)
    if args.rhs < 1 or args.repeat < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--rhs, --repeat and --threads must be at least 1")
    from linsolve import num_threads

    from ._threads import blas_one_thread
    from .fem import fem_matrix

    held = num_threads(args.threads) if args.threads else contextlib.nullcontext()
    with blas_one_thread(), held:
        for name in (name.strip() for name in args.matrices.split(",") if name.strip()):
            row = batched_row(fem_matrix(name, args.refine), name, args.rhs, args.repeat,
                              time.process_time if args.clock == "cpu" else time.perf_counter)
            print("  ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
