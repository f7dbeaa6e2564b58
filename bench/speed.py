"""The performance check: SpMV and CG time per iteration, ours against scipy, same run.

On 2-D Poisson (default N = 1000, n = 10^6):

(a) SpMV: scipy's ``A @ x`` against the Numba CSR kernel and the layout
    our pcg picks automatically (row-aligned DIA when
    :func:`cext.csr_to_dia` accepts the matrix, CSR otherwise), on the same
    matrix. Reported: median ms, speed-up ``scipy / ours``, achieved GB/s
    (minimum bytes moved / time) and its fraction of the measured triad
    bandwidth.
(b) CG: ``scipy.sparse.linalg.cg(A, b, rtol=tiny, maxiter=k)`` against
    ``linsolve.pcg(A, b, rtol=tiny, maxiter=k)``; time per iteration is the
    call's wall time over the iterations done (setup such as the DIA
    conversion is included, amortised over ``k``). Target: ours / scipy <= 0.5.
(c) SOR: one forward sweep of pyamg's ``sor`` against ours in natural,
    red-black and multicolour order (the ``speedup_vs_scipy`` column is
    against pyamg here). Target: multicolour at least 2x faster.

The machine is shared and noisy, so every timing is the median of
``repeat`` samples, and the implementations are interleaved (one sample of
each in turn, order rotated every round) so a slow spell hits all of them.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .bandwidth import csr_spmv_bytes, dia_spmv_bytes, stream_bandwidth
from .problems import poisson2d

SPEED_COLUMNS = ("benchmark", "implementation", "n", "nnz", "median_ms", "min_ms",
                 "speedup_vs_scipy", "ours_over_scipy", "GBps", "fraction_of_triad")
"""Columns of the speed table. ``median_ms`` is per SpMV or per CG iteration."""

TINY_RTOL = 1e-300  # never met: both solvers run exactly maxiter iterations

PCG_TARGET = 0.5  # ours / scipy time per iteration, from the issue
SOR_TARGET = 2.0  # pyamg sweep / our multicolour sweep, from the SOR issue


@dataclass
class SpeedRecord:
    """Rows of the speed table, the bandwidth measured with them, and whether Ctrl-C cut it short."""

    rows: list[dict] = field(default_factory=list)
    bandwidth: dict = field(default_factory=dict)
    interrupted: bool = False


def _calibrate(call: Callable[[], object], target_seconds: float = 0.02) -> int:
    """Calls per sample so one sample lasts about ``target_seconds`` (timer noise negligible)."""
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    return int(min(10_000, max(1, math.ceil(target_seconds / max(elapsed, 1e-9)))))


def interleaved_medians(calls: dict[str, Callable[[], object]], repeat: int,
                        per_call: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Seconds per unit of work of each call, sampled ``repeat`` times in rotating order.

    ``per_call[name]`` units of work are done by one call (e.g. CG
    iterations); default 1. Returns the samples; callers take the median.
    """
    per_call = per_call or {}
    inner = {name: _calibrate(call) for name, call in calls.items()}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_index in range(repeat):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            start = time.perf_counter()
            for _ in range(inner[name]):
                call()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed / inner[name] / per_call.get(name, 1))
    return samples


def spmv_rows(A, repeat: int, triad_GBps: float) -> list[dict]:
    """SpMV rows: scipy, Numba CSR, and the automatically chosen layout."""
    from cext import csr_to_dia
    from cext.numba import csr_spmv, dia_spmv

    n = A.shape[0]
    x = np.random.default_rng(1).standard_normal(n)
    out_csr = np.empty(n)
    out_auto = np.empty(n)
    layout = csr_to_dia(A.indptr, A.indices, A.data, n)
    calls = {
        "scipy A @ x": lambda: A @ x,
        "numba csr_spmv": lambda: csr_spmv(A.indptr, A.indices, A.data, x, out_csr),
    }
    bytes_moved = {"scipy A @ x": csr_spmv_bytes(A), "numba csr_spmv": csr_spmv_bytes(A)}
    if layout is not None:
        auto = "auto: dia_spmv (%d diagonals)" % len(layout.offsets)
        calls[auto] = lambda: dia_spmv(layout.offsets, layout.values, x, out_auto)
        bytes_moved[auto] = dia_spmv_bytes(layout.values)
    else:
        auto = "auto: csr_spmv (DIA refused)"
    for call in calls.values():  # compile and check before timing anything
        call()
    expected = A @ x
    for name, out in (("numba csr_spmv", out_csr), (auto, out_auto)):
        if name in calls and not np.allclose(out, expected, rtol=1e-12, atol=1e-12):
            raise AssertionError(f"{name} disagrees with scipy's SpMV")
    samples = interleaved_medians(calls, repeat)
    scipy_median = float(np.median(samples["scipy A @ x"]))
    rows = []
    for name, seconds in samples.items():
        median = float(np.median(seconds))
        achieved = bytes_moved[name] / median / 1e9
        rows.append({"benchmark": "spmv", "implementation": name, "n": n, "nnz": A.nnz,
                     "median_ms": 1e3 * median, "min_ms": 1e3 * float(np.min(seconds)),
                     "speedup_vs_scipy": scipy_median / median,
                     "ours_over_scipy": median / scipy_median,
                     "GBps": achieved, "fraction_of_triad": achieved / triad_GBps})
    return rows


def pcg_rows(A, iterations: int, repeat: int) -> list[dict]:
    """CG time-per-iteration rows: scipy's cg and our pcg, no preconditioner."""
    from scipy.sparse.linalg import cg

    from linsolve import pcg

    n = A.shape[0]
    b = np.random.default_rng(0).standard_normal(n)
    pcg(A, b, rtol=TINY_RTOL, maxiter=2)  # compile outside the timing
    done = {"scipy cg": iterations, "linsolve pcg": pcg(A, b, rtol=TINY_RTOL,
                                                        maxiter=iterations).iterations}
    calls = {"scipy cg": lambda: cg(A, b, rtol=TINY_RTOL, atol=0.0, maxiter=iterations),
             "linsolve pcg": lambda: pcg(A, b, rtol=TINY_RTOL, maxiter=iterations)}
    samples = interleaved_medians(calls, repeat, per_call=done)
    scipy_median = float(np.median(samples["scipy cg"]))
    rows = []
    for name, seconds in samples.items():
        median = float(np.median(seconds))
        rows.append({"benchmark": f"cg iteration (k={done[name]})", "implementation": name,
                     "n": n, "nnz": A.nnz, "median_ms": 1e3 * median,
                     "min_ms": 1e3 * float(np.min(seconds)),
                     "speedup_vs_scipy": scipy_median / median,
                     "ours_over_scipy": median / scipy_median,
                     "GBps": math.nan, "fraction_of_triad": math.nan})
    return rows


def sor_rows(A, repeat: int, omega: float = 1.5) -> list[dict]:
    """One SOR sweep: pyamg's ``sor`` (sequential C++) against ours, natural and coloured."""
    try:
        from pyamg.relaxation.relaxation import sor as pyamg_sor
    except ImportError:  # the [amg] extra is optional
        return []
    from linsolve import SorMatrix

    n = A.shape[0]
    b = np.random.default_rng(2).standard_normal(n)
    prepared = {ordering: SorMatrix(A, ordering=ordering)
                for ordering in ("natural", "redblack", "multicolor")}
    x_ref = np.zeros(n)
    xs = {ordering: np.zeros(n) for ordering in prepared}
    calls = {"pyamg sor (forward)": lambda: pyamg_sor(A, x_ref, b, omega, iterations=1,
                                                      sweep="forward")}
    for ordering, S in prepared.items():
        calls[f"linsolve {ordering} sweep"] = (lambda S=S, x=xs[ordering]: S.sweep(b, x, omega))
    # the natural sweep is the same computation as pyamg's: check it first
    check, check_ref = np.zeros(n), np.zeros(n)
    prepared["natural"].sweep(b, check, omega)
    pyamg_sor(A, check_ref, b, omega, iterations=1, sweep="forward")
    if not np.allclose(check, check_ref, rtol=1e-12, atol=1e-12):
        raise AssertionError("natural SOR sweep disagrees with pyamg's")
    samples = interleaved_medians(calls, repeat)
    reference = float(np.median(samples["pyamg sor (forward)"]))
    rows = []
    for name, seconds in samples.items():
        median = float(np.median(seconds))
        rows.append({"benchmark": "sor sweep", "implementation": name, "n": n, "nnz": A.nnz,
                     "median_ms": 1e3 * median, "min_ms": 1e3 * float(np.min(seconds)),
                     "speedup_vs_scipy": reference / median,
                     "ours_over_scipy": median / reference,
                     "GBps": math.nan, "fraction_of_triad": math.nan})
    return rows


def run_speed(size: int = 1000, repeat: int = 7, iterations: int = 100,
              stream_n: int = 10_000_000, progress: bool | None = None) -> SpeedRecord:
    """Measure bandwidth, SpMV and CG per iteration on 2-D Poisson of grid size ``size``.

    Ctrl-C stops between stages and keeps the rows already measured.
    """
    from tqdm import tqdm

    record = SpeedRecord()
    stages = ["bandwidth", "matrix", "spmv", "cg", "sor"]
    bar = tqdm(stages, disable=None if progress is None else not progress, file=sys.stderr,
               leave=False)
    A = None
    try:
        for stage in bar:
            bar.set_description(f"speed: {stage}")
            if stage == "bandwidth":
                record.bandwidth = {"stream_n": stream_n, **stream_bandwidth(stream_n)}
            elif stage == "matrix":
                A = poisson2d(size)
            elif stage == "spmv":
                record.rows += spmv_rows(A, repeat, record.bandwidth["triad_GBps"])
            elif stage == "cg":
                record.rows += pcg_rows(A, iterations, repeat)
            else:
                record.rows += sor_rows(A, repeat)
    except KeyboardInterrupt:
        record.interrupted = True
    finally:
        bar.close()
    return record


def summary_lines(record: SpeedRecord) -> list[str]:
    """Bandwidth line and the PCG target verdict, for printing under the table."""
    lines = []
    if record.bandwidth:
        lines.append("measured bandwidth (2 cores, Numba prange, n=%d): copy %.1f GB/s, "
                     "triad %.1f GB/s" % (record.bandwidth["stream_n"],
                                         record.bandwidth["copy_GBps"],
                                         record.bandwidth["triad_GBps"]))
    for row in record.rows:
        if row["implementation"] == "linsolve multicolor sweep":
            verdict = "met" if row["speedup_vs_scipy"] >= SOR_TARGET else "NOT met"
            lines.append(f"multicolour SOR sweep speed-up over pyamg = "
                         f"{row['speedup_vs_scipy']:.2f} (target >= {SOR_TARGET}): {verdict}")
        if row["implementation"] == "linsolve pcg":
            verdict = "met" if row["ours_over_scipy"] <= PCG_TARGET else "NOT met"
            lines.append(f"pcg time per iteration ours/scipy = {row['ours_over_scipy']:.3f} "
                         f"(target <= {PCG_TARGET}): {verdict}")
    if record.interrupted:
        lines.append("interrupted: the rows above are the ones finished before Ctrl-C")
    return lines
