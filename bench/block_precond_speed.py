"""IC(0)/SSOR applied to an (n, k) block: the block kernel against k vector applications.

``python -m bench.block_precond_speed [--matrix p1tet] [--k 8] [--repeat 15] [--threads 1,2]``:
the preconditioner application ``M.matmat(R)`` and batched ``pcg(A, B, M=...)`` with the block
kernel and with the column loop it replaces (same factor, results asserted equal).

Interleaved samples, best and median of --repeat, BLAS at one thread; the
kernels under a fixed thread ceiling (--threads) so runs are comparable.
"""
import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from bench.fem import fem_matrix
from cext.threads import num_threads
from linsolve.core.operators import Operator
from linsolve.precond import ichol0, ssor


def main(argv: list[str] | None = None) -> int:
    """Print the two comparisons; returns 0."""
    p = argparse.ArgumentParser(prog="python -m bench.block_precond_speed")
    p.add_argument("--matrix", default="p1tet")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--threads", default="1,2")
    a = p.parse_args(argv)
    A = fem_matrix(a.matrix)
    n = A.shape[0]
    R = np.ascontiguousarray(np.random.default_rng(0).standard_normal((n, a.k)))
    print(f"{a.matrix}: n={n} nnz={A.nnz} k={a.k}")
    with threadpool_limits(1):
        for threads in [int(t) for t in a.threads.split(",")]:
            with num_threads(threads):
                for name, M in (("ichol0", ichol0(A)), ("ssor", ssor(A))):
                    block = lambda: M.matmat(R)
                    columns = lambda: Operator.matmat(M, R)  # the column loop it replaces
                    assert np.array_equal(block(), columns())
                    samples = {"block": [], "columns": []}
                    for r in range(a.repeat):
                        for key, f in ((("block", block), ("columns", columns)) if r % 2 == 0
                                       else (("columns", columns), ("block", block))):
                            t = time.perf_counter(); f(); samples[key].append(time.perf_counter() - t)
                    best = {k: min(v) for k, v in samples.items()}
                    med = {k: statistics.median(v) for k, v in samples.items()}
                    print(f"  threads<={threads} {name:6s} ordering={M.ordering:8s} "
                          f"block {1e3*best['block']:.2f} ms (median {1e3*med['block']:.2f}), "
                          f"{a.k} columns {1e3*best['columns']:.2f} ms (median {1e3*med['columns']:.2f}); "
                          f"block/columns best {best['block']/best['columns']:.3f}, "
                          f"median {med['block']/med['columns']:.3f}")

    if a.repeat:  # batched pcg to rtol 1e-8: the block solve against the column loop it replaces
        from linsolve import pcg
        B = np.ascontiguousarray(R.T)
        with threadpool_limits(1), num_threads(max(int(t) for t in a.threads.split(","))):
            for name, M in (("ichol0", ichol0(A)), ("ssor", ssor(A))):
                loop = type(M).__new__(type(M)); loop.__dict__.update(M.__dict__)
                loop._solve_block = None  # same factor, column-by-column matmat
                samples = {"block": [], "columns": []}
                iters = {}
                for r in range(3):
                    for key, P in ((("block", M), ("columns", loop)) if r % 2 == 0
                                   else (("columns", loop), ("block", M))):
                        t = time.perf_counter()
                        res = pcg(A, B, M=P, rtol=1e-8, check_symmetric=False)
                        samples[key].append(time.perf_counter() - t)
                        iters[key] = np.ravel(res.iterations).tolist()
                assert iters["block"] == iters["columns"]
                print(f"  batched pcg {name:6s} k={a.k}: block {min(samples['block']):.3f} s, "
                      f"columns {min(samples['columns']):.3f} s, ratio "
                      f"{min(samples['block'])/min(samples['columns']):.3f} (best of 3), "
                      f"iterations {iters['block']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
