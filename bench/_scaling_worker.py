"""One scaling measurement; run as ``mpiexec -n P python -m mpi4py bench/_scaling_worker.py``.

Rank 0 prints one line ``SCALING-RESULT {json}``. Problem: the 5-point
Laplacian on an ``N x M`` grid, rows split in strips (PETSc's contiguous
ownership ranges); strong scaling keeps ``M = N``, weak scaling gives each
rank ``N x N`` unknowns (``M = P N``). Timed: ``iterations`` CG iterations
(best of ``repeat``), the ghost exchange alone, the local block product,
the off-process block's product with the ghosts in place (its compressed
rows only), ``Allreduce`` of two doubles, and a neighbour exchange of 8 bytes and of
1 MiB (latency and bandwidth for the many-node estimate).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.sparse as sp

from linsolve.mpi import DistCSR, pcg, world


def grid_laplacian(nx: int, ny: int) -> sp.csr_matrix:
    """5-point Laplacian on an ``nx`` (fast index) by ``ny`` interior grid."""
    Tx = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(nx, nx))
    Ty = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(ny, ny))
    return (sp.kron(sp.eye(ny), Tx) + sp.kron(Ty, sp.eye(nx))).tocsr()


def _best(func, repeat: int, inner: int) -> float:
    """Best over ``repeat`` samples of the mean time of ``inner`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            func()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def measure(mode: str, size: int, iterations: int, repeat: int) -> dict | None:
    comm = world()
    P, rank = comm.size, comm.rank
    ny = size * P if mode == "weak" else size
    A = grid_laplacian(size, ny) if rank == 0 else None
    start = time.perf_counter()
    D = DistCSR.from_global(A, comm)
    setup = comm.allreduce_sum(np.array([time.perf_counter() - start]))[0] / P
    b = np.ones(D.n_local)
    pcg(D, b, rtol=0.0, maxiter=2)  # warm-up (Numba cache load)

    def solve():
        comm.barrier()
        pcg(D, b, rtol=0.0, maxiter=iterations)
    t_iter = _best(solve, repeat, 1) / iterations
    x = np.ones(D.n_local)
    t_halo = _best(lambda: D.update_ghosts(x), repeat, 20)
    indptr, indices, data = D._diag
    out = np.empty(D.n_local)
    t_local = _best(lambda: D._kernels.csr_spmv(indptr, indices, data, x, out), repeat, 20)
    D.update_ghosts(x)
    t_off = _best(lambda: D._add_off(out), repeat, 20)
    pair = np.ones(2)
    t_allreduce = _best(lambda: comm.allreduce_sum(pair), repeat, 200)
    latency = bandwidth = float("nan")
    if P > 1:
        partner = rank ^ 1
        if partner < P:
            small_out, small_in = np.ones(1), np.empty(1)
            big_out, big_in = np.ones(1 << 17), np.empty(1 << 17)
        else:
            small_out = small_in = big_out = big_in = None

        def exchange(send, recv):
            if send is None:
                return
            comm.start_exchange([(partner, send)], [(partner, recv)]).wait()
        comm.barrier()
        latency = _best(lambda: exchange(small_out, small_in), repeat, 100)
        comm.barrier()
        big = _best(lambda: exchange(big_out, big_in), repeat, 10)
        bandwidth = big_out.nbytes / max(big - latency, 1e-9) if big_out is not None else float("nan")
        both = comm.allgather((latency, bandwidth))
        latency = float(np.nanmax([v[0] for v in both]))
        bandwidth = float(np.nanmin([v[1] for v in both]))
    # the slowest rank sets the pace
    worst = comm.allgather((t_iter, t_halo, t_local, t_off, t_allreduce, D.garray.size))
    if rank != 0:
        return None
    return {"mode": mode, "ranks": P, "n": int(D.shape[0]), "n_local": int(D.shape[0] // P),
            "grid": f"{size}x{ny}", "iterations": iterations, "setup_s": float(setup),
            "time_per_iteration_s": max(w[0] for w in worst),
            "halo_s": max(w[1] for w in worst), "local_spmv_s": max(w[2] for w in worst),
            "off_spmv_s": max(w[3] for w in worst), "allreduce_s": max(w[4] for w in worst),
            "ghosts_max": int(max(w[5] for w in worst)),
            "exchange_latency_s": latency, "exchange_bandwidth_Bps": bandwidth}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("strong", "weak"), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    row = measure(args.mode, args.size, args.iterations, args.repeat)
    if row is not None:
        print("SCALING-RESULT " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
