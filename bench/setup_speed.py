"""Preconditioner set-up and SSOR-PCG by Eisenstat's trick, in plain pcg iterations.

Each figure is a ratio taken in one process against plain :func:`linsolve.pcg`
on the same matrix: set-up time over the time of one plain iteration, and
time per iteration over the plain one. Everything is interleaved (one
repetition of every case per round) and the best of the rounds is kept;
OpenBLAS runs at one thread (threadpoolctl), the kernels under the library's
thread policy. The time of one iteration is the difference of two solves
(``maxiter`` 20 and 120, ``rtol = 0``) over 100, so fixed costs drop out.

Rows (scikit-fem matrices, :mod:`bench.fem`):

- ``ichol0``, ``ssor``: from scratch (a pattern not seen before), and again
  on the same pattern (the numeric part only: the plain call finds the
  pattern remembered); symbolic = scratch - numeric.
- ``chebyshev``: the Lanczos bounds (degree 4).
- ``pcg+ssor`` and ``eisenstat`` per iteration (``pcg`` with
  ``M = precond.ssor(A)`` the ordinary way, and by Eisenstat's trick), and
  the fixed cost of the trick per preconditioner (checking that ``M`` is
  ``A``'s SSOR, gathering ``C^T``).

Run ``python -m bench.setup_speed`` (``--quick`` for small meshes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

ROUNDS = 5


def _best(cases: dict, rounds: int = ROUNDS) -> dict:
    """Best wall time of each callable, the cases interleaved round by round."""
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _per_iteration(solve, rounds: int = ROUNDS) -> float:
    times = _best({20: lambda: solve(20), 120: lambda: solve(120)}, rounds)
    return (times[120] - times[20]) / 100


def setup_rows(name: str, refine: int | None = None, rounds: int = ROUNDS) -> list[dict]:
    """Set-up of IC(0), SSOR and Chebyshev on the matrix ``name``, in plain iterations."""
    from linsolve import pcg, precond
    from linsolve.precond._pattern import clear_pattern_cache

    from .fem import fem_matrix

    A = fem_matrix(name, refine)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    plain = _per_iteration(lambda k: pcg(A, b, rtol=0.0, maxiter=k), rounds)

    def scratch(build):
        def run():
            clear_pattern_cache()
            build(A)
        return run

    builds = {"ichol0": precond.ichol0, "ssor": precond.ssor}
    for build in builds.values():  # compile, and remember the pattern for the numeric rows
        build(A)
    cases = {f"{key} scratch": scratch(build) for key, build in builds.items()}
    cases.update({f"{key} numeric": (lambda build=build: build(A)) for key, build in builds.items()})
    cases["chebyshev"] = lambda: precond.chebyshev(A, 4)
    # the numeric rows need the pattern remembered: run them after a scratch build each round
    times = {}
    for _ in range(rounds):
        for case, run in cases.items():
            if case.endswith("numeric"):
                builds[case.split()[0]](A)  # the pattern back in the cache
            start = time.perf_counter()
            run()
            times[case] = min(times.get(case, float("inf")), time.perf_counter() - start)
    rows = []
    for key in builds:
        total, numeric = times[f"{key} scratch"], times[f"{key} numeric"]
        rows.append({"matrix": name, "n": A.shape[0], "what": f"{key} symbolic",
                     "ms": 1e3 * (total - numeric), "plain_iterations": (total - numeric) / plain})
        rows.append({"matrix": name, "n": A.shape[0], "what": f"{key} numeric",
                     "ms": 1e3 * numeric, "plain_iterations": numeric / plain})
        rows.append({"matrix": name, "n": A.shape[0], "what": f"{key} from scratch",
                     "ms": 1e3 * total, "plain_iterations": total / plain})
    rows.append({"matrix": name, "n": A.shape[0], "what": "chebyshev(4) bounds",
                 "ms": 1e3 * times["chebyshev"], "plain_iterations": times["chebyshev"] / plain})
    rows.append({"matrix": name, "n": A.shape[0], "what": "plain pcg iteration",
                 "ms": 1e3 * plain, "plain_iterations": 1.0})
    return rows


def eisenstat_rows(name: str = "p1tri", refine: int | None = None,
                   rounds: int = ROUNDS) -> list[dict]:
    """pcg + SSOR per iteration, the ordinary way and by Eisenstat's trick, over plain pcg's."""
    from linsolve import pcg, precond
    from linsolve.krylov.eisenstat import eisenstat_solve

    from .fem import fem_matrix

    A = fem_matrix(name, refine)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    M = precond.ssor(A)
    solves = {
        "plain pcg": lambda k: pcg(A, b, rtol=0.0, maxiter=k),
        "pcg + ssor": lambda k: pcg(A, b, M=M, rtol=0.0, maxiter=k, check_symmetric=False),
        "pcg + ssor, Eisenstat": lambda k: eisenstat_solve(A, b, M=M, rtol=0.0, maxiter=k),
    }
    for solve in solves.values():
        solve(2)
    # interleaved: each round times every solve at both lengths
    best = {(key, k): float("inf") for key in solves for k in (20, 120)}
    for _ in range(rounds):
        for key, solve in solves.items():
            for k in (20, 120):
                start = time.perf_counter()
                solve(k)
                best[key, k] = min(best[key, k], time.perf_counter() - start)
    per = {key: (best[key, 120] - best[key, 20]) / 100 for key in solves}
    rows = [{"matrix": name, "n": A.shape[0], "what": f"{key} per iteration",
             "ms": 1e3 * per[key], "plain_iterations": per[key] / per["plain pcg"]}
            for key in solves]
    # what a solve pays before its first Eisenstat iteration, on a new M of a known
    # pattern: the check that M is A's SSOR and the gather of C^T
    fixed = float("inf")
    for _ in range(rounds):
        fresh = M.refactor(A)
        start = time.perf_counter()
        fresh.built_from(A)
        fresh.eisenstat_factors()
        fixed = min(fixed, time.perf_counter() - start)
    rows.append({"matrix": name, "n": A.shape[0], "what": "Eisenstat check + C^T (per M)",
                 "ms": 1e3 * fixed, "plain_iterations": fixed / per["plain pcg"]})
    return rows


def main(argv=None) -> list[dict]:
    """Print the rows (and return them)."""
    parser = argparse.ArgumentParser(prog="python -m bench.setup_speed", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small meshes (a smoke run)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    sizes = ({"p1tet": 3, "p2tet": 2, "p1tri": 5} if args.quick
             else {"p1tet": None, "p2tet": 4, "p1tri": None})
    rows = []
    with threadpool_limits(1):
        rows += setup_rows("p1tet", sizes["p1tet"], args.rounds)
        rows += [row for row in setup_rows("p2tet", sizes["p2tet"], args.rounds)
                 if row["what"].startswith("ichol0")]
        rows += eisenstat_rows("p1tri", sizes["p1tri"], args.rounds)
    print(f"{'matrix':8s} {'n':>8s}  {'what':32s} {'ms':>9s} {'plain its':>10s}")
    for row in rows:
        print(f"{row['matrix']:8s} {row['n']:8d}  {row['what']:32s} {row['ms']:9.2f} "
              f"{row['plain_iterations']:10.2f}")
    return rows


if __name__ == "__main__":
    main()
