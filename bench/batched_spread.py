"""Batched pcg against the single solves at bench scale, beside the single solve's thread spread.

``python -m bench.batched_spread [--matrices p1tet,elasticity3d] [--rhs 8]``: for ``k`` seeded
right-hand sides, the single-vector ``pcg`` on one and on two threads and the batched
``pcg(A, B)``, to rtol 1e-8: iteration counts and the largest relative difference of the
solutions. The batched inner products are summed in another order than the single-vector
kernels', so on ill-conditioned systems the two part at rounding level and stop a few
iterations apart, each at its own verified true residual.
"""

from __future__ import annotations

import argparse

import numpy as np
from threadpoolctl import threadpool_limits

RTOL = 1e-8


def spread(A, k: int = 8, seed: int = 1) -> dict:
    """Counts and solution differences of single (1 and 2 threads) and batched solves."""
    from cext.threads import num_threads
    from linsolve import pcg

    B = np.random.default_rng(seed).standard_normal((k, A.shape[0]))
    options = dict(rtol=RTOL, check_symmetric=False)
    with threadpool_limits(1):
        single = {}
        for threads in (1, 2):
            with num_threads(threads):
                single[threads] = [pcg(A, B[j], **options) for j in range(k)]
        with num_threads(2):
            batch = pcg(A, B, **options)

    def relative(x, y):
        return float(np.linalg.norm(x - y) / np.linalg.norm(y))

    return {"single_1": [r.iterations for r in single[1]],
            "single_2": [r.iterations for r in single[2]],
            "batched": [int(i) for i in np.ravel(batch.iterations)],
            "threads_x": max(relative(a.x, b.x) for a, b in zip(single[1], single[2])),
            "batched_x": max(relative(batch.x[j], single[2][j].x) for j in range(k)),
            "converged": all(r.converged for r in single[1] + single[2])
            and bool(np.all(batch.converged))}


def main(argv: list[str] | None = None) -> int:
    """Print :func:`spread` for each matrix; returns 0."""
    from .fem import fem_matrix

    parser = argparse.ArgumentParser(prog="python -m bench.batched_spread")
    parser.add_argument("--matrices", default="p1tet,elasticity3d")
    parser.add_argument("--rhs", type=int, default=8, help="right-hand sides k (default 8)")
    args = parser.parse_args(argv)
    for name in args.matrices.split(","):
        A = fem_matrix(name)
        row = spread(A, args.rhs)
        gap = max(abs(a - b) for a, b in zip(row["batched"], row["single_2"]))
        print(f"{name} n={A.shape[0]}: single 1 thread {row['single_1']}, 2 threads "
              f"{row['single_2']}, batched {row['batched']} (counts within {gap}); "
              f"max relative difference of x: threads {row['threads_x']:.1e}, batched "
              f"{row['batched_x']:.1e}; all converged {row['converged']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
