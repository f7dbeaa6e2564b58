"""Weak and strong scaling of distributed CG on 1, 2, 4 ranks, and a paper estimate beyond.

``python -m bench scaling [--ranks 1,2,4] [--modes strong,weak] [--strong-size 512]
[--weak-size 256] [--iterations 50]`` launches ``mpiexec -n P python -m mpi4py
bench/_scaling_worker.py`` per rank count and mode, prints the measured
table and an estimate for many nodes, and writes ``results/scaling.csv``,
``results/scaling-estimate.csv`` and ``results/scaling.json``.

Every rank runs single-threaded (Numba, BLAS), so one rank is the serial
baseline. Rank counts above the machine's cores are oversubscribed: the
results still check correctness and communication volume, but their times
measure time-sharing, and the table marks them.

The estimate (a performance model, not a measurement) for ``P`` ranks:

``t_iter(P) = c * n_local + 2 (alpha + m / beta) + 2 t_allreduce(P)``

with ``c`` the measured single-rank time per row and iteration; ``alpha``,
``beta`` the measured neighbour latency and bandwidth; ``m`` the bytes of
one ghost strip (grid width times 8); two ``Allreduce`` per iteration
(scipy's recurrence) with ``t_allreduce(P) = a + b log2 P`` fitted to the
measured 2- and 4-rank latencies. Measured on one node through shared
memory: an interconnect's latency (1-5 us) and bandwidth (10-25 GB/s) are
worse; pass ``--latency-us``/``--bandwidth-gbs`` to use those.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys

from .table import format_table, write_csv, write_json

COLUMNS = ("mode", "ranks", "grid", "n", "n_local", "iterations", "time_per_iteration_ms",
           "speedup", "efficiency", "halo_us", "local_spmv_us", "off_spmv_us", "allreduce_us",
           "ghosts_max", "oversubscribed")
ESTIMATE_COLUMNS = ("mode", "ranks", "n", "n_local", "compute_ms", "halo_ms", "allreduce_ms",
                    "time_per_iteration_ms", "speedup", "efficiency")
ESTIMATE_RANKS = (16, 64, 256, 1024, 4096)

_WORKER = pathlib.Path(__file__).resolve().with_name("_scaling_worker.py")
_ROOT = _WORKER.parent.parent


def scaling_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Weak and strong scaling of distributed CG (mpiexec), "
                               "with an estimate for many nodes.")
    parser.add_argument("--ranks", default="1,2,4", help="comma-separated rank counts "
                        "(default 1,2,4; the first is the baseline)")
    parser.add_argument("--modes", default="strong,weak",
                        help="comma-separated subset of strong,weak (default both)")
    parser.add_argument("--strong-size", type=int, default=512,
                        help="strong scaling: N x N grid (default 512)")
    parser.add_argument("--weak-size", type=int, default=256,
                        help="weak scaling: N x N unknowns per rank (default 256)")
    parser.add_argument("--iterations", type=int, default=50, help="CG iterations timed")
    parser.add_argument("--repeat", type=int, default=3, help="samples per timing (best kept)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds before one mpiexec launch is killed")
    parser.add_argument("--latency-us", type=float, default=None,
                        help="neighbour latency for the estimate (default: measured)")
    parser.add_argument("--bandwidth-gbs", type=float, default=None,
                        help="neighbour bandwidth for the estimate (default: measured)")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--name", default="scaling", help="stem of the output files")
    return parser


def _mpiexec() -> pathlib.Path:
    path = pathlib.Path(sys.executable).parent / "mpiexec"
    if not path.exists():
        raise FileNotFoundError(f"no mpiexec next to {sys.executable}: "
                                "pip install -e '.[mpi]' (mpi4py and the mpich wheel)")
    return path


def launch_worker(ranks: int, mode: str, size: int, iterations: int, repeat: int,
                  timeout: float) -> dict:
    """Run one measurement under ``mpiexec -n ranks``; the worker's JSON row."""
    env = dict(os.environ)
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH", "")]))
    command = [str(_mpiexec()), "-n", str(ranks), sys.executable, "-m", "mpi4py", str(_WORKER),
               "--mode", mode, "--size", str(size), "--iterations", str(iterations),
               "--repeat", str(repeat)]
    completed = subprocess.run(command, cwd=_ROOT, env=env, capture_output=True, text=True,
                               timeout=timeout)
    for line in completed.stdout.splitlines():
        if line.startswith("SCALING-RESULT "):
            return json.loads(line[len("SCALING-RESULT "):])
    raise RuntimeError(f"mpiexec -n {ranks} ({mode}) failed with status {completed.returncode}: "
                       f"{(completed.stderr or completed.stdout).strip()[-800:]}")


def table_rows(measured: list[dict], cores: int) -> list[dict]:
    """Measured rows with speed-up and efficiency against each mode's first rank count."""
    rows = []
    for mode in ("strong", "weak"):
        runs = [m for m in measured if m["mode"] == mode]
        if not runs:
            continue
        base = runs[0]
        for m in runs:
            ratio = base["time_per_iteration_s"] / m["time_per_iteration_s"]
            scale = m["ranks"] / base["ranks"]
            # strong: speed-up t1/tP, efficiency speed-up/P; weak: efficiency t1/tP
            speedup = ratio if mode == "strong" else ratio * scale
            rows.append({"mode": mode, "ranks": m["ranks"], "grid": m["grid"], "n": m["n"],
                         "n_local": m["n_local"], "iterations": m["iterations"],
                         "time_per_iteration_ms": 1e3 * m["time_per_iteration_s"],
                         "speedup": speedup, "efficiency": speedup / scale,
                         "halo_us": 1e6 * m["halo_s"] if m["ranks"] > 1 else 0.0,
                         "local_spmv_us": 1e6 * m["local_spmv_s"],
                         "off_spmv_us": 1e6 * m["off_spmv_s"],
                         "allreduce_us": 1e6 * m["allreduce_s"], "ghosts_max": m["ghosts_max"],
                         "oversubscribed": m["ranks"] > cores})
    return rows


def _link_parameters(measured: list[dict], latency_s: float | None,
                     bandwidth_Bps: float | None, cores: int | None):
    """The multi-rank runs the model uses, and its neighbour latency and bandwidth.

    Runs that fit in ``cores`` (oversubscribed ones only when there are no
    others); the least latency and the greatest bandwidth measured unless given.
    """
    multi = [m for m in measured if m["ranks"] > 1]
    if cores is not None and any(m["ranks"] <= cores for m in multi):
        multi = [m for m in multi if m["ranks"] <= cores]
    if not multi:
        return multi, latency_s, bandwidth_Bps
    alpha = latency_s if latency_s is not None else \
        min(m["exchange_latency_s"] for m in multi)
    beta = bandwidth_Bps if bandwidth_Bps is not None else \
        max(m["exchange_bandwidth_Bps"] for m in multi)
    return multi, alpha, beta


def estimate(measured: list[dict], *, latency_s: float | None = None,
             bandwidth_Bps: float | None = None, ranks=ESTIMATE_RANKS,
             cores: int | None = None) -> list[dict]:
    """The performance model of the module docstring, for strong and weak scaling.

    Communication costs come from the multi-rank runs that fit in ``cores``
    (oversubscribed runs only when there are no others).

    Examples
    --------
    >>> base = dict(ranks=1, time_per_iteration_s=1e-3, n=10000, grid="100x100",
    ...             allreduce_s=0.0, exchange_latency_s=float("nan"),
    ...             exchange_bandwidth_Bps=float("nan"))
    >>> two = dict(base, ranks=2, allreduce_s=1e-6, exchange_latency_s=1e-6,
    ...            exchange_bandwidth_Bps=1e10)
    >>> rows = estimate([dict(base, mode="strong"), dict(two, mode="strong")], ranks=(4,))
    >>> round(rows[0]["time_per_iteration_ms"], 4)   # 0.25 compute + 0.00216 halo + 0.004 Allreduce
    0.2562
    """
    multi, alpha, beta = _link_parameters(measured, latency_s, bandwidth_Bps, cores)
    if not multi:
        return []
    # Allreduce latency a + b log2(P), fitted to the measured rank counts
    # (the least of the runs at one rank count: noise from other load only adds)
    best: dict[int, float] = {}
    for m in multi:
        best[m["ranks"]] = min(best.get(m["ranks"], math.inf), m["allreduce_s"])
    points = sorted(best.items())
    if len(points) >= 2:
        (p1, t1), (p2, t2) = points[0], points[-1]
        slope = max((t2 - t1) / (math.log2(p2) - math.log2(p1)), 0.0)
        intercept = max(t1 - slope * math.log2(p1), 0.0)
    else:
        # one rank count p: t_allreduce(P) = b log2 P through (p, t), so b = t / log2 p
        intercept, slope = 0.0, points[0][1] / math.log2(points[0][0])
    rows = []
    for mode in ("strong", "weak"):
        base = [m for m in measured if m["mode"] == mode and m["ranks"] == 1]
        if not base:
            continue
        base = base[0]
        per_row = base["time_per_iteration_s"] / base["n"]
        width = int(base["grid"].split("x")[0])
        halo = 2 * (alpha + 8 * width / beta)  # two neighbour strips (both ways overlap)
        for P in ranks:
            n = base["n"] if mode == "strong" else base["n"] * P
            n_local = n / P
            compute = per_row * n_local
            allreduce = 2 * (intercept + slope * math.log2(P))
            t = compute + halo + allreduce
            t1 = per_row * n
            speedup = t1 / t if mode == "strong" else P * base["time_per_iteration_s"] / t
            rows.append({"mode": mode, "ranks": P, "n": int(n), "n_local": int(n_local),
                         "compute_ms": 1e3 * compute, "halo_ms": 1e3 * halo,
                         "allreduce_ms": 1e3 * allreduce, "time_per_iteration_ms": 1e3 * t,
                         "speedup": speedup, "efficiency": speedup / P})
    return rows


def run_scaling_command(args: argparse.Namespace) -> int:
    """The ``scaling`` command: measure, print, write CSV and JSON; exit status."""
    try:
        ranks = [int(r) for r in str(args.ranks).split(",") if r.strip()]
    except ValueError:
        print(f"error: --ranks must be comma-separated integers, got {args.ranks!r}",
              file=sys.stderr)
        return 2
    if not ranks or any(r < 1 for r in ranks) or min(args.strong_size, args.weak_size,
                                                     args.iterations, args.repeat) < 1 \
            or not args.timeout > 0:
        print("error: ranks, sizes, iterations, repeat and timeout must be positive",
              file=sys.stderr)
        return 2
    modes = [m.strip() for m in str(args.modes).split(",") if m.strip()]
    if not modes or any(m not in ("strong", "weak") for m in modes):
        print(f"error: --modes must name strong and/or weak, got {args.modes!r}", file=sys.stderr)
        return 2
    try:
        _mpiexec()
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from ._progress import progress_bar

    cores = os.cpu_count() or 1
    measured = []
    launches = [(mode, size, P) for mode, size in (("strong", args.strong_size),
                                                   ("weak", args.weak_size))
                if mode in modes for P in ranks]
    interrupted = False
    # Ctrl-C (or SIGTERM, see bench._progress) keeps the finished launches;
    # subprocess.run kills the running mpiexec on the way out.
    try:
        with progress_bar(total=len(launches), desc="scaling") as bar:
            for mode, size, P in launches:
                print(f"mpiexec -n {P}: {mode} scaling ...", file=sys.stderr, flush=True)
                try:
                    measured.append(launch_worker(P, mode, size, args.iterations, args.repeat,
                                                  args.timeout))
                except (RuntimeError, subprocess.TimeoutExpired) as error:
                    print(f"error: {error}", file=sys.stderr)
                    return 1
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    rows = table_rows(measured, cores)
    print(f"Distributed CG, 2-D Poisson (5-point), strips of rows; {args.iterations} iterations, "
          f"best of {args.repeat}; one thread per rank; {cores} cores")
    print(format_table(rows, COLUMNS))
    if any(r["oversubscribed"] for r in rows):
        print(f"note: runs with more ranks than the {cores} cores are oversubscribed: their "
              "times measure time-sharing (and MPICH's busy-waiting), not scaling.")
    latency = None if args.latency_us is None else 1e-6 * args.latency_us
    bandwidth = None if args.bandwidth_gbs is None else 1e9 * args.bandwidth_gbs
    estimated = estimate(measured, latency_s=latency, bandwidth_Bps=bandwidth, cores=cores)
    if estimated:
        _, alpha, beta = _link_parameters(measured, latency, bandwidth, cores)
        print()
        print(f"Estimate for many ranks (model, not measured): neighbour latency "
              f"{1e6 * alpha:.2f} us, bandwidth {beta / 1e9:.2f} GB/s, Allreduce fitted as "
              "a + b log2 P (a single rank count: b log2 P); 2 Allreduce and 1 halo exchange "
              "per iteration; oversubscribed runs left out of the fit")
        print(format_table(estimated, ESTIMATE_COLUMNS))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"{args.name}.csv", rows, COLUMNS)
    if estimated:
        write_csv(out / f"{args.name}-estimate.csv", estimated, ESTIMATE_COLUMNS)
    write_json(out / f"{args.name}.json", {"measured": measured, "rows": rows,
                                           "estimate": estimated, "cores": cores,
                                           "interrupted": interrupted})
    return 130 if interrupted else 0


def main(argv=None) -> int:
    return run_scaling_command(scaling_parser("python -m bench.scaling").parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
