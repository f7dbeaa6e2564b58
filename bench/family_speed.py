"""``python -m bench family``: the Krylov family and batched solves against their peers.

Rows, each a ratio of medians over interleaved samples (BLAS held to one
thread on both sides, :func:`bench._threads.blas_one_thread`):

- ``minres``, ``bicgstab``, ``gmres(restart=30)``: time per iteration, ours
  over scipy's same method, both run a fixed number of iterations (a
  tolerance never met); targets 0.5, 0.5 and 0.6.
- ``gmres+ilu0``: ours with :func:`linsolve.precond.ilu0` over scipy's
  ``gmres`` with ``spilu(drop_tol=0, fill_factor=1)`` as a LinearOperator,
  per iteration; target 0.2.
- ``batched pcg (k)``: the time to solve ``k`` right-hand sides to
  ``rtol = 1e-8`` in one ``pcg(A, B)`` over ``k`` separate ``pcg`` calls
  (targets 0.55 on P1 tetrahedra, 0.4 on 3-D elasticity), with the achieved
  GB/s of each (the bytes of ``A`` and of the vectors every iteration must
  move, over the time); ``block_cg`` over the batched mode, with its
  iteration count against the largest single one.

The matrices: 2-D convection-diffusion (upwind, cell Peclet 1, ``N x N``) for
the non-symmetric methods, the same grid's Laplacian shifted to indefinite
for MINRES, and the scikit-fem matrices of :mod:`bench.fem` for the batched
rows.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

FAMILY_COLUMNS = ("benchmark", "matrix", "n", "nnz", "ours_ms", "theirs_ms", "ratio", "target",
                  "verdict", "note")
TARGETS = {"minres": 0.5, "bicgstab": 0.5, "gmres(30)": 0.6, "gmres+ilu0": 0.2}
BATCH_TARGETS = {"p1tet": 0.55, "elasticity3d": 0.4}
NEVER = 1e-300  # a tolerance no iteration meets: every run does its full maxiter


def _median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def _interleaved(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Median of each run's returned seconds, one sample of each in turn, order rotated."""
    names = list(runs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            samples[name].append(runs[name]())
    return {name: _median_ms(values) for name, values in samples.items()}


def _per_iteration(call: Callable[[], int]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        iterations = call()
        return (time.perf_counter() - start) / max(iterations, 1)
    return run


def _row(benchmark, matrix, A, ours, theirs, target, note=""):
    ratio = ours / theirs
    return {"benchmark": benchmark, "matrix": matrix, "n": A.shape[0], "nnz": A.nnz,
            "ours_ms": round(ours, 3), "theirs_ms": round(theirs, 3), "ratio": round(ratio, 3),
            "target": target, "verdict": "met" if ratio <= target else "not met", "note": note}


def method_rows(N: int, iterations: int, repeat: int,
                methods: tuple[str, ...] = tuple(TARGETS)) -> list[dict]:
    """The per-iteration rows of minres, bicgstab, gmres(30) and gmres+ilu0 against scipy
    (those named in ``methods``)."""
    import scipy.sparse.linalg as sla

    from linsolve import bicgstab, gmres, minres, precond

    from .problems import convdiff2d

    A = convdiff2d(N, 1.0)
    laplacian = convdiff2d(N, 0.0)
    shifted = (laplacian - 0.05 * sp.eye(N * N)).tocsr()
    b = np.random.default_rng(0).standard_normal(N * N)
    cycles = max(1, iterations // 30)
    if "gmres+ilu0" in methods:
        ilu = precond.ilu0(A)
        spilu = sla.spilu(A.tocsc(), drop_tol=0.0, fill_factor=1)
        spilu_op = sla.LinearOperator(A.shape, matvec=spilu.solve, dtype=np.float64)
    else:
        ilu = spilu_op = None
    counted: list[int] = []

    def scipy_counted(solver, *args, **kwargs):
        counted.clear()
        solver(*args, callback=lambda *_: counted.append(1), **kwargs)
        return len(counted)

    cases = {
        "minres": (shifted, lambda: minres(shifted, b, rtol=NEVER, maxiter=iterations).iterations,
                   lambda: scipy_counted(sla.minres, shifted, b, rtol=NEVER, maxiter=iterations)),
        "bicgstab": (A, lambda: bicgstab(A, b, rtol=NEVER, maxiter=iterations).iterations,
                     lambda: scipy_counted(sla.bicgstab, A, b, rtol=NEVER, maxiter=iterations)),
        "gmres(30)": (A, lambda: gmres(A, b, rtol=NEVER, restart=30, maxiter=cycles).iterations,
                      lambda: scipy_counted(sla.gmres, A, b, rtol=NEVER, restart=30,
                                            maxiter=cycles, callback_type="pr_norm")),
        "gmres+ilu0": (A, lambda: gmres(A, b, M=ilu, rtol=NEVER, restart=30,
                                        maxiter=cycles).iterations,
                       lambda: scipy_counted(sla.gmres, A, b, M=spilu_op, rtol=NEVER, restart=30,
                                             maxiter=cycles, callback_type="pr_norm")),
    }
    rows = []
    for name, (matrix, ours, theirs) in cases.items():
        if name not in methods:
            continue
        ours(), theirs()  # compile and warm up
        medians = _interleaved({"ours": _per_iteration(ours), "theirs": _per_iteration(theirs)},
                               repeat)
        label = "shifted laplacian" if name == "minres" else "convdiff2d(Pe=1)"
        note = "spilu(drop_tol=0, fill_factor=1)" if name == "gmres+ilu0" else ""
        rows.append(_row(name, label, matrix, medians["ours"], medians["theirs"], TARGETS[name],
                         note))
    return rows


def batched_rows(matrices: tuple[str, ...], k: int, repeat: int) -> list[dict]:
    """Batched pcg over ``k`` separate calls, and block_cg over batched, on scikit-fem matrices."""
    from linsolve import block_cg, pcg

    from .bandwidth import csr_spmv_bytes
    from .fem import fem_matrix

    rows = []
    for name in matrices:
        A = fem_matrix(name)
        n = A.shape[0]
        B = np.random.default_rng(1).standard_normal((k, n))
        pcg(A, B, rtol=1e-8, maxiter=3), pcg(A, B[0], rtol=1e-8, maxiter=3)  # compile
        iterations = {}

        def batched():
            start = time.perf_counter()
            iterations["batched"] = int(pcg(A, B, rtol=1e-8).iterations.max())
            return time.perf_counter() - start

        def separate():
            start = time.perf_counter()
            iterations["separate"] = max(pcg(A, B[j], rtol=1e-8).iterations for j in range(k))
            return time.perf_counter() - start

        medians = _interleaved({"batched": batched, "separate": separate}, repeat)
        # per iteration each system moves A's share and about 10 of its vectors' passes
        vectors = 10 * 8 * n
        moved_batched = iterations["batched"] * (csr_spmv_bytes(A) + k * vectors)
        moved_separate = k * iterations["separate"] * (csr_spmv_bytes(A) + vectors)
        note = (f"k={k}; GB/s batched {moved_batched / medians['batched'] / 1e6:.1f}, "
                f"separate {moved_separate / medians['separate'] / 1e6:.1f}")
        rows.append(_row("batched pcg / separate", name, A, medians["batched"],
                         medians["separate"], BATCH_TARGETS.get(name, 1.0), note))
        start = time.perf_counter()
        block = block_cg(A, B, rtol=1e-8)
        block_ms = 1e3 * (time.perf_counter() - start)
        rows.append(_row("block_cg / batched pcg", name, A, block_ms, medians["batched"],
                         float("inf"),
                         f"iterations {int(block.iterations.max())} against "
                         f"{iterations['batched']} (largest single system)"))
    return rows


def run(N: int = 500, iterations: int = 60, matrices: tuple[str, ...] = ("p1tet", "elasticity3d"),
        k: int = 8, repeat: int = 5, methods: tuple[str, ...] = tuple(TARGETS)) -> list[dict]:
    """Every row (the per-iteration rows of ``methods``), BLAS at one thread.

    Examples
    --------
    >>> rows = run(N=24, iterations=4, matrices=(), repeat=1)
    >>> [row["benchmark"] for row in rows]
    ['minres', 'bicgstab', 'gmres(30)', 'gmres+ilu0']
    """
    from ._threads import blas_one_thread

    with blas_one_thread():
        return method_rows(N, iterations, repeat, tuple(methods)) + \
            batched_rows(tuple(matrices), k, repeat)


def family_parser(prog: str):
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500,
                        help="N of the N x N convection-diffusion grid (default 500)")
    parser.add_argument("--iterations", type=int, default=60,
                        help="iterations per timed call of the per-iteration rows")
    parser.add_argument("--matrices", default="p1tet,elasticity3d",
                        help="scikit-fem matrices of the batched rows ('' for none)")
    parser.add_argument("--methods", default=",".join(TARGETS),
                        help=f"per-iteration rows to run, from {','.join(TARGETS)} ('' for "
                        "none; default all)")
    parser.add_argument("--rhs", type=int, default=8, help="right-hand sides k of the batch")
    parser.add_argument("--repeat", type=int, default=5, help="samples per timing (median)")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--name", default="family", help="stem of the output files")
    return parser


def run_family_command(args) -> int:
    import os
    import sys

    from .environment import environment, environment_line
    from .table import format_table, write_csv, write_json

    matrices = tuple(name for name in args.matrices.split(",") if name.strip())
    methods = tuple(name.strip() for name in args.methods.split(",") if name.strip())
    if args.size < 4 or args.iterations < 1 or args.rhs < 1 or args.repeat < 1:
        print("error: --size must be >= 4 and --iterations, --rhs, --repeat >= 1",
              file=sys.stderr)
        return 2
    unknown = [name for name in methods if name not in TARGETS]
    if unknown:
        print(f"error: --methods {','.join(unknown)}: unknown; choose from "
              f"{','.join(TARGETS)}", file=sys.stderr)
        return 2
    rows = run(args.size, args.iterations, matrices, args.rhs, args.repeat, methods)
    env = environment()
    print(environment_line(env))
    print(format_table(rows, FAMILY_COLUMNS))
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, f"{args.name}.csv"), rows, FAMILY_COLUMNS)
    write_json(os.path.join(args.out, f"{args.name}.json"), {"rows": rows, "environment": env})
    print(f"wrote {args.out}/{args.name}.csv, {args.out}/{args.name}.json")
    return 0
