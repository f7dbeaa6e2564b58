"""Whole-solve time on small systems and per-iteration time at mid size: pcg against scipy's cg.

Two kinds of rows, ours and scipy's in the same process, interleaved (one
sample of each in turn, the order alternating), BLAS at one thread on both
sides (:func:`bench._threads.blas_one_thread`):

- ``solve``: the time from calling ``pcg(A, b, rtol=1e-8)`` to holding the
  result, every set-up included (argument checks, structure check, DIA
  conversion, symmetry probe, thread policy), against ``scipy.sparse.linalg.cg``
  to the same tolerance; n = 1k-4k (2-D Poisson 32^2 and 64^2, P1 triangles,
  3-D elasticity). Target ours / scipy at most :data:`SOLVE_TARGET`.
- ``per-iteration``: both run exactly ``k`` iterations (``rtol`` far below
  reach, ``maxiter=k``), time over ``k``; n = 12k-24k (P2 tetrahedra, 3-D
  elasticity). Target at most :data:`ITERATION_TARGET`.

Each figure is the best and the median of ``repeats`` samples; the ratio
is best over best (the least disturbed sample of each) with the median
ratio beside it. The machine may be shared: the load average is printed.

At n = 1k-4k the thread policy keeps one thread (below
:data:`cext.threads.MIN_WORK_PER_THREAD` twice over), and an iteration
costs about one SpMV; ``--min-work-per-thread`` lowers the threshold for
the run, to measure two threads there on a quiet machine.

``--clock thread`` times CPU time of the calling thread with every
kernel on it: one-thread figures that a busy machine disturbs less.

Run: ``python -m bench.small_systems [--repeats R] [--quick] [--clock wall|thread]
[--min-work-per-thread W]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SOLVE_TARGET = 0.4
"""Whole-solve time ours / scipy on the small systems."""
ITERATION_TARGET = 0.5
"""Time per iteration ours / scipy at mid size."""
SOLVE_RTOL = 1e-8


@dataclass(frozen=True)
class Row:
    """One matrix's figures: seconds (best, median) for ours and scipy's, and the ratios."""

    kind: str
    name: str
    n: int
    nnz: int
    iterations: int
    ours: tuple[float, float]
    scipy: tuple[float, float]

    @property
    def ratio(self) -> float:
        return self.ours[0] / self.scipy[0]

    @property
    def median_ratio(self) -> float:
        return self.ours[1] / self.scipy[1]

    @property
    def target(self) -> float:
        return SOLVE_TARGET if self.kind == "solve" else ITERATION_TARGET


def small_matrices(quick: bool = False) -> dict:
    """The ``solve`` rows' matrices, by name (scikit-fem assembles the finite-element ones)."""
    from bench.fem import fem_matrix
    from bench.problems import poisson2d

    matrices = {"poisson2d-32": poisson2d(32).tocsr(), "p1tri-5": fem_matrix("p1tri", 5),
                "elasticity3d-3": fem_matrix("elasticity3d", 3)}
    if not quick:
        matrices["poisson2d-64"] = poisson2d(64).tocsr()
        matrices["p1tri-6"] = fem_matrix("p1tri", 6)
    return matrices


def mid_matrices(quick: bool = False) -> dict:
    """The ``per-iteration`` rows' matrices, by name."""
    from bench.fem import fem_matrix

    matrices = {"elasticity3d-4": fem_matrix("elasticity3d", 4)}
    if not quick:
        matrices["p2tet-4"] = fem_matrix("p2tet", 4)
    return matrices


def _interleaved(first: Callable[[], object], second: Callable[[], object], repeats: int,
                 clock: Callable[[], float] = time.perf_counter):
    """Seconds of ``repeats`` calls of each, alternating which goes first."""
    times: tuple[list[float], list[float]] = ([], [])
    for round_ in range(repeats):
        order = (0, 1) if round_ % 2 == 0 else (1, 0)
        for which in order:
            call = (first, second)[which]
            tic = clock()
            call()
            times[which].append(clock() - tic)
    return [(min(t), statistics.median(t)) for t in times]


def measure(repeats: int = 31, quick: bool = False, clock: str = "wall") -> list[Row]:
    """Every row, ours against scipy's, interleaved.

    ``clock="thread"`` times the calling thread's CPU time instead of wall
    time, with our kernels held to that thread too (so the CPU time is all
    of it): on a busy machine it leaves out the time other processes took,
    and measures one-thread figures only.
    """
    import contextlib

    import scipy.sparse.linalg as spla

    from bench._threads import blas_one_thread
    from linsolve import num_threads, pcg

    timer = time.thread_time if clock == "thread" else time.perf_counter
    one_thread = num_threads(1) if clock == "thread" else contextlib.nullcontext()
    rows = []
    with blas_one_thread(), one_thread:
        for name, A in small_matrices(quick).items():
            n = A.shape[0]
            b = np.random.default_rng(0).standard_normal(n)
            result = pcg(A, b, rtol=SOLVE_RTOL)  # compiles, and counts the iterations
            spla.cg(A, b, rtol=SOLVE_RTOL, maxiter=10 * n)
            ours, theirs = _interleaved(
                lambda A=A, b=b: pcg(A, b, rtol=SOLVE_RTOL),
                lambda A=A, b=b, n=n: spla.cg(A, b, rtol=SOLVE_RTOL, maxiter=10 * n),
                repeats, timer)
            rows.append(Row("solve", name, n, A.nnz, result.iterations, ours, theirs))
        for name, A in mid_matrices(quick).items():
            n = A.shape[0]
            b = np.random.default_rng(0).standard_normal(n)
            k = 50
            pcg(A, b, rtol=1e-30, maxiter=k)
            ours, theirs = _interleaved(
                lambda A=A, b=b: pcg(A, b, rtol=1e-30, maxiter=k),
                lambda A=A, b=b: spla.cg(A, b, rtol=1e-30, maxiter=k),
                max(5, repeats // 3), timer)
            rows.append(Row("per-iteration", name, n, A.nnz, k,
                            tuple(t / k for t in ours), tuple(t / k for t in theirs)))
    return rows


def report(rows: list[Row]) -> list[str]:
    """The table's lines."""
    lines = [f"{'kind':<14}{'matrix':<16}{'n':>7}{'nnz':>9}{'its':>5}{'ours us':>11}"
             f"{'scipy us':>11}{'ratio':>7}{'median':>8}{'target':>8}"]
    for row in rows:
        met = "met" if row.ratio <= row.target else "MISSED"
        lines.append(f"{row.kind:<14}{row.name:<16}{row.n:>7}{row.nnz:>9}{row.iterations:>5}"
                     f"{row.ours[0] * 1e6:>11.1f}{row.scipy[0] * 1e6:>11.1f}{row.ratio:>7.3f}"
                     f"{row.median_ratio:>8.3f}{row.target:>6.2f} {met}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit status 0 (the targets are reported, not enforced)."""
    parser = argparse.ArgumentParser(prog="python -m bench.small_systems",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=31,
                        help="samples of each side per small matrix (a third at mid size)")
    parser.add_argument("--quick", action="store_true", help="fewer matrices")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="wall time (default), or the calling thread's CPU time with "
                             "every kernel on that thread (one-thread figures on a busy "
                             "machine)")
    parser.add_argument("--min-work-per-thread", type=int, default=None,
                        help="override cext.threads.MIN_WORK_PER_THREAD for this run (the "
                             "policy's threshold for a second thread; n = 1k-4k stays on one "
                             "thread at the default)")
    options = parser.parse_args(argv)
    if options.min_work_per_thread is not None:
        from cext import threads

        threads.MIN_WORK_PER_THREAD = options.min_work_per_thread
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average before: {load[0]:.2f}; BLAS 1 thread; {options.clock} clock; ours / "
          f"scipy, best of {options.repeats} interleaved (median ratio beside)")
    for line in report(measure(options.repeats, options.quick, options.clock)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
