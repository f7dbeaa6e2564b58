"""The performance check: SpMV and CG time per iteration, ours against scipy, same run.

On 2-D Poisson (default N = 1000, n = 10^6) and on the finite-element
matrices of :mod:`bench.fem` (P1 triangles, P1 and P2 tetrahedra, 3-D
elasticity; n about 0.1 to 0.26 million, unstructured), each in turn:

(a) SpMV: scipy's ``A @ x`` against the Numba CSR kernel and the layout
    our pcg picks automatically (row-aligned DIA when
    :func:`cext.csr_to_dia` accepts the matrix, CSR otherwise), on the same
    matrix, and the structure check every solve pays once before its
    kernels read the matrix (:func:`cext.check_csr_structure`; budget:
    half an SpMV). Reported: median ms, speed-up ``scipy / ours``, achieved
    GB/s (minimum bytes moved / time) and its fraction of the measured
    triad bandwidth.
(b) CG: ``scipy.sparse.linalg.cg(A, b, rtol=tiny, maxiter=k)`` against
    ``linsolve.pcg(A, b, rtol=tiny, maxiter=k)``; time per iteration is the
    call's wall time over the iterations done (setup such as the DIA
    conversion is included, amortised over ``k``). Targets for ours / scipy
    (:func:`pcg_target`): quiet, <= 0.4 on Poisson and <= 0.5 on the
    finite-element matrices; with busy processes beside it, <= 0.9 (one),
    <= 1.0 (two), <= 1.1 (three or more).
(c) Preconditioned CG: pcg with Jacobi, IC(0), SSOR and Chebyshev (degree
    4) against plain pcg, time per iteration (``ours_over_scipy`` is the
    ratio to plain pcg here). Targets (:data:`PRECOND_TARGETS`): 1.15, 2.5,
    2.5 and 5.5.
(d) SOR: time per sweep of pyamg's ``sor`` against :func:`linsolve.sor` in
    natural, red-black (stencils only: a finite-element graph is not
    two-colourable) and multicolour order, the residual checked after every
    sweep on our side, and natural and multicolour again with the residual
    checked every :data:`SOR_CHECK_EVERY` sweeps (``sor(check_every=8)``;
    the ``speedup_vs_scipy`` column is against pyamg here). Targets
    (:data:`SOR_TARGETS`): natural at most 1.0x pyamg's time, multicolour
    at most 0.6x (0.5x on the Poisson stencil).
(e) M-FAC (``mfac_d > 0``, after the matrices): ``MFAC.solve`` and
    ``update`` on a window of ``mfac_d`` x 256 float32 against bare BLAS
    ``gemv`` passes over the same window (:func:`bench.mfac_speed.run`:
    best of ``repeat`` interleaved rounds, BLAS and the window passes on
    every core for these rows); targets 1.2 and 1.3
    (:data:`bench.mfac_speed.TARGETS`). The window takes ``mfac_d`` KiB.

These are the ``kernels`` rows. The other row groups (:data:`ROW_GROUPS`,
``--rows``) follow on matrices of their own: ``family`` (MINRES, BiCGStab,
GMRES(30) and GMRES + ILU(0) per iteration against scipy,
:mod:`bench.family_rows`), ``rhs`` (k = 8 right-hand sides, batched and
block CG against separate calls, with achieved GB/s,
:mod:`bench.rhs_speed`) and ``solution`` (time to solution: set-up in
iterations, SOR from a scipy matrix, whole small solves,
:mod:`bench.solution_speed`). Every row carries its ``target``.

BLAS is held to one thread on both sides (:func:`bench._threads.blas_one_thread`),
``contention`` busy processes (:func:`bench.contention.busy_processes`) run
beside the whole measurement, and the record keeps the environment
(:func:`bench.environment.environment`): Numba threads and layer, BLAS
pools, load average before and after.

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

from ._threads import blas_one_thread
from .bandwidth import csr_spmv_bytes, dia_spmv_bytes, stream_bandwidth
from .contention import busy_processes
from .environment import environment, environment_line, loadavg
from .fem import DEFAULT_REFINE, FEM_MATRICES, fem_matrix
from .problems import poisson2d

SPEED_COLUMNS = ("matrix", "benchmark", "implementation", "n", "nnz", "median_ms", "min_ms",
                 "speedup_vs_scipy", "ours_over_scipy", "target", "GBps", "fraction_of_triad")
"""Columns of the speed table. ``median_ms`` is per SpMV or per CG iteration (per
the unit the ``benchmark`` names); ``ours_over_scipy`` is the ratio to the
reference the ``benchmark`` names (scipy, pyamg, plain pcg), and ``target``
the most that ratio may be (empty where there is none)."""

ROW_GROUPS = ("kernels", "family", "rhs", "solution")
"""Row groups of ``bench speed --rows``: ``kernels`` (SpMV, CG, preconditioned CG
and SOR on each of ``--matrices``, and M-FAC), ``family`` (MINRES, BiCGStab,
GMRES per iteration against scipy, :mod:`bench.family_rows`), ``rhs`` (k
right-hand sides, :mod:`bench.rhs_speed`) and ``solution`` (time to solution,
set-up included, :mod:`bench.solution_speed`). The last three use their own
matrices."""

TINY_RTOL = 1e-300  # never met: both solvers run exactly maxiter iterations

MATRICES = ("poisson2d",) + FEM_MATRICES
"""Matrices of the speed table, in order; ``--matrices`` picks a subset."""

MATRIX_ALIASES = {"elasticity": "elasticity3d"}  # the short name, accepted as well

PCG_TARGET = 0.5  # ours / scipy time per iteration (quiet, FEM matrices)
POISSON_PCG_TARGET = 0.4  # quiet, on the 2-D Poisson stencil, from the FEM/contention issue
CONTENTION_PCG_TARGETS = {1: 0.9, 2: 1.0, 3: 1.1}  # K busy processes -> target; K >= 3 is 1.1
SOR_TARGETS = {"natural": 1.0, "multicolor": 0.6}
"""Ours / pyamg time per SOR sweep, residual checking included (2 threads)."""
POISSON_SOR_TARGETS = {"natural": 1.0, "redblack": 0.5, "multicolor": 0.5}
"""On the Poisson stencil the coloured sweep was to be 2x faster than pyamg's."""
SOR_CHECK_EVERY = 8
"""The ``check_every`` of the SOR rows that measure the residual every few sweeps."""
PRECOND_TARGETS = {"jacobi": 1.15, "ichol0": 2.5, "ssor": 2.5, "chebyshev(4)": 5.5}
"""pcg + M / plain pcg time per iteration (the bandwidth floor of each M)."""


@dataclass
class SpeedRecord:
    """Rows of the speed table, the bandwidth measured with them, and whether Ctrl-C cut it short."""

    rows: list[dict] = field(default_factory=list)
    bandwidth: dict = field(default_factory=dict)
    interrupted: bool = False
    contention: int = 0
    matrices: list[dict] = field(default_factory=list)  # name, size, n, nnz, build seconds
    environment: dict = field(default_factory=dict)


def parse_groups(text: str | None) -> tuple[str, ...]:
    """Row groups from a comma-separated list (None or empty: all of :data:`ROW_GROUPS`).

    Examples
    --------
    >>> parse_groups("solution, family")
    ('family', 'solution')
    """
    if not text:
        return ROW_GROUPS
    names = {word.strip() for word in text.split(",") if word.strip()}
    unknown = sorted(names - set(ROW_GROUPS))
    if unknown or not names:
        raise ValueError(f"unknown row group(s) {unknown or text!r}; --rows takes a subset of "
                         f"{', '.join(ROW_GROUPS)}")
    return tuple(group for group in ROW_GROUPS if group in names)


def ratio_row(matrix: str, benchmark: str, implementation: str, A, seconds: float,
              reference: float, target: float = math.nan, *, GBps: float = math.nan,
              min_seconds: float = math.nan, group: str = "") -> dict:
    """One row of the speed table: ``seconds`` against the ``reference``'s, and the target.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> row = ratio_row("m", "solve", "ours", sp.identity(3, format="csr"), 0.002, 0.004, 0.6)
    >>> row["ours_over_scipy"], row["speedup_vs_scipy"], row["median_ms"], row["target"]
    (0.5, 2.0, 2.0, 0.6)
    """
    return {"matrix": matrix, "benchmark": benchmark, "implementation": implementation,
            "n": A.shape[0], "nnz": A.nnz, "median_ms": 1e3 * seconds,
            "min_ms": 1e3 * min_seconds, "speedup_vs_scipy": reference / seconds,
            "ours_over_scipy": seconds / reference, "target": target, "GBps": GBps,
            "fraction_of_triad": math.nan, "group": group}


def kernel_target(row: dict, matrix: str, contention: int) -> float:
    """The target of a ``kernels`` row (NaN where it has none), as :func:`summary_lines` judges it.

    Examples
    --------
    >>> kernel_target({"implementation": "linsolve pcg"}, "p1tet", 0)
    0.5
    >>> kernel_target({"implementation": "scipy cg"}, "p1tet", 0)
    nan
    """
    implementation = row["implementation"]
    if implementation == "linsolve pcg":
        return pcg_target(matrix, contention)
    if implementation.startswith("linsolve pcg + "):
        return PRECOND_TARGETS.get(implementation.removeprefix("linsolve pcg + "), math.nan)
    if implementation.startswith("linsolve sor "):
        targets = POISSON_SOR_TARGETS if matrix == "poisson2d" else SOR_TARGETS
        return targets.get(implementation.split()[2], math.nan)
    if implementation.startswith("M-FAC "):
        from .mfac_speed import TARGETS as mfac_targets

        return mfac_targets.get(implementation.removeprefix("M-FAC "), math.nan)
    return math.nan


def parse_matrices(text: str | None) -> tuple[str, ...]:
    """Matrix names from a comma-separated list (None or empty: all of :data:`MATRICES`).

    Raises
    ------
    ValueError
        An unknown name; the message lists the known ones.

    Examples
    --------
    >>> parse_matrices("poisson2d, elasticity")
    ('poisson2d', 'elasticity3d')
    """
    if not text:
        return MATRICES
    names = []
    for word in text.split(","):
        name = MATRIX_ALIASES.get(word.strip(), word.strip())
        if name not in MATRICES:
            raise ValueError(f"unknown matrix {word.strip()!r}; choose from {', '.join(MATRICES)}")
        if name not in names:
            names.append(name)
    return tuple(names)


def pcg_target(matrix: str, contention: int) -> float:
    """Target of pcg / scipy cg time per iteration on ``matrix``, ``contention`` busy processes.

    Quiet, our parallel kernels should win outright; with busy processes
    sharing the cores they may not win, but must not lose by much.

    Examples
    --------
    >>> pcg_target("poisson2d", 0), pcg_target("p1tet", 0), pcg_target("p1tet", 1)
    (0.4, 0.5, 0.9)
    >>> pcg_target("poisson2d", 2), pcg_target("p2tet", 8)
    (1.0, 1.1)
    """
    if contention <= 0:
        return POISSON_PCG_TARGET if matrix == "poisson2d" else PCG_TARGET
    return CONTENTION_PCG_TARGETS[min(contention, max(CONTENTION_PCG_TARGETS))]


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
    from cext import check_csr_structure, csr_to_dia, kernels_for

    # the registry's kernels: what the solvers call, with the thread policy
    # of cext.threads (fewer threads while other processes keep cores busy)
    kernels = kernels_for(np)
    csr_spmv, dia_spmv = kernels.csr_spmv, kernels.dia_spmv

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
    # the structure gate every solve pays once (linsolve.validation.sparse.checked_csr):
    # reads indptr and indices only; its budget is half an SpMV
    # (ranges only for pcg; with the order for SOR and the preconditioners)
    for check, order in (("csr structure check (pcg, once per solve)", False),
                         ("csr structure check with order (sor, precond)", True)):
        calls[check] = (lambda order=order: check_csr_structure(A.indptr, A.indices, A.data,
                                                                A.shape, check_order=order))
        bytes_moved[check] = A.indptr.nbytes + A.indices.nbytes
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
    # the symmetry probe off: scipy's cg has none, and the matrices are SPD
    options = dict(rtol=TINY_RTOL, maxiter=iterations, check_symmetric=False)
    pcg(A, b, **{**options, "maxiter": 2})  # compile outside the timing
    done = {"scipy cg": iterations, "linsolve pcg": pcg(A, b, **options).iterations}
    calls = {"scipy cg": lambda: cg(A, b, rtol=TINY_RTOL, atol=0.0, maxiter=iterations),
             "linsolve pcg": lambda: pcg(A, b, **options)}
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


def sor_sweep_bytes(S) -> int:
    """Bytes one SOR sweep must move at least: the off-diagonal CSR, the diagonal, ``b``, ``x`` read and written.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from linsolve import SorMatrix
    >>> sor_sweep_bytes(SorMatrix(sp.identity(4, format="csr")))  # 5*4 + 4*8 * 4
    148
    """
    n = S.shape[0]
    return (S.off_data.nbytes + S.off_indices.nbytes + S.off_indptr.nbytes
            + 4 * n * S.diag.itemsize)


def sor_rows(A, repeat: int, sweeps: int = 50, omega: float = 1.5) -> list[dict]:
    """SOR time per sweep: pyamg's ``sor`` (sequential C++) against :func:`linsolve.sor`.

    Both run ``sweeps`` forward sweeps in one call, so per-call overhead is
    amortised alike. Ours is the solver as users call it: every sweep's true
    residual is measured (pyamg measures none), the system is permuted into
    sweep order and back, and the history is kept; the ``check_every`` rows
    measure it every :data:`SOR_CHECK_EVERY` sweeps instead. The ``GBps``
    column counts :func:`sor_sweep_bytes` per sweep.
    """
    try:
        from pyamg.relaxation.relaxation import sor as pyamg_sor
    except ImportError:  # the [amg] extra is optional
        return []
    from linsolve import SorMatrix, sor

    n = A.shape[0]
    b = np.random.default_rng(2).standard_normal(n)
    prepared = {}
    for ordering in ("natural", "redblack", "multicolor"):
        try:
            prepared[ordering] = SorMatrix(A, ordering=ordering)
        except ValueError:
            # a finite-element graph has odd cycles (triangles): it has no
            # red-black ordering, and the natural one raised first on real faults
            if ordering != "redblack":
                raise
    x_ref = np.zeros(n)

    def run_pyamg():
        x_ref[...] = 0.0
        pyamg_sor(A, x_ref, b, omega, iterations=sweeps, sweep="forward")

    calls = {"pyamg sor (forward)": run_pyamg}
    for ordering, S in prepared.items():
        calls[f"linsolve sor {ordering}"] = (
            lambda S=S, ordering=ordering: sor(S, b, omega, rtol=TINY_RTOL, maxiter=sweeps,
                                               ordering=ordering))
    for ordering in ("natural", "multicolor"):
        calls[f"linsolve sor {ordering} (check_every={SOR_CHECK_EVERY})"] = (
            lambda S=prepared[ordering], ordering=ordering: sor(
                S, b, omega, rtol=TINY_RTOL, maxiter=sweeps, ordering=ordering,
                check_every=SOR_CHECK_EVERY))
    # the natural sweeps are pyamg's computation: check the iterate first
    ours = calls["linsolve sor natural"]()
    run_pyamg()
    if ours.iterations != sweeps or not np.allclose(ours.x, x_ref, rtol=1e-10, atol=1e-10):
        raise AssertionError("natural SOR disagrees with pyamg's")
    samples = interleaved_medians(calls, repeat, per_call=dict.fromkeys(calls, sweeps))
    reference = float(np.median(samples["pyamg sor (forward)"]))
    nbytes = sor_sweep_bytes(prepared["natural"])
    rows = []
    for name, seconds in samples.items():
        median = float(np.median(seconds))
        checked = ("residual every %d sweeps" % SOR_CHECK_EVERY if "check_every" in name
                   else "residual checked")
        rows.append({"benchmark": f"sor sweep (k={sweeps}, {checked})",
                     "implementation": name, "n": n, "nnz": A.nnz,
                     "median_ms": 1e3 * median, "min_ms": 1e3 * float(np.min(seconds)),
                     "speedup_vs_scipy": reference / median,
                     "ours_over_scipy": median / reference,
                     "GBps": nbytes / median / 1e9, "fraction_of_triad": math.nan})
    return rows


PRECONDITIONERS = ("jacobi", "ichol0", "ssor", "chebyshev(4)")
"""Preconditioners timed by :func:`precond_rows`, as ``M`` of :func:`linsolve.pcg`."""


def _preconditioner(name: str, A):
    from linsolve import precond

    if name == "chebyshev(4)":
        return precond.chebyshev(A, 4)
    return getattr(precond, name)(A)


def precond_rows(A, iterations: int, repeat: int) -> list[dict]:
    """pcg time per iteration with each of :data:`PRECONDITIONERS` against plain pcg, same run.

    The preconditioner is built once, outside the timing (its set-up is a
    one-off per matrix); ``ours_over_scipy`` holds the ratio to a plain pcg
    iteration here.
    """
    from linsolve import pcg

    n = A.shape[0]
    b = np.random.default_rng(0).standard_normal(n)
    options = dict(rtol=TINY_RTOL, maxiter=iterations, check_symmetric=False)
    preconditioners = {name: _preconditioner(name, A) for name in PRECONDITIONERS}
    calls = {"linsolve pcg (plain)": lambda: pcg(A, b, **options)}
    for name, M in preconditioners.items():
        calls[f"linsolve pcg + {name}"] = lambda M=M: pcg(A, b, M=M, **options)
    done = {name: call().iterations for name, call in calls.items()}  # compiles, too
    samples = interleaved_medians(calls, repeat, per_call=done)
    plain = float(np.median(samples["linsolve pcg (plain)"]))
    rows = []
    for name, seconds in samples.items():
        median = float(np.median(seconds))
        rows.append({"benchmark": "preconditioned cg iteration", "implementation": name,
                     "n": n, "nnz": A.nnz, "median_ms": 1e3 * median,
                     "min_ms": 1e3 * float(np.min(seconds)),
                     "speedup_vs_scipy": plain / median, "ours_over_scipy": median / plain,
                     "GBps": math.nan, "fraction_of_triad": math.nan})
    return rows


def _build(name: str, size: int, refine: dict[str, int]):
    """The matrix ``name`` and its size parameter (Poisson grid N or refinement level)."""
    if name == "poisson2d":
        return poisson2d(size), size
    level = refine.get(name, DEFAULT_REFINE[name])
    return fem_matrix(name, level), level


MFAC_D = 1_000_000
"""Gradient length of the M-FAC rows (``--mfac-d``; 0 leaves them out)."""

MFAC_M = 256


def mfac_rows(d: int, repeat: int, triad_GBps: float) -> list[dict]:
    """The M-FAC rows of the speed table (:func:`bench.mfac_speed.run`), in its columns.

    ``matrix`` names the window; ``median_ms`` and ``min_ms`` both hold the
    best round (that bench keeps the best, not the median); ``ours_over_scipy``
    is the ratio to the BLAS baseline named in ``benchmark``.
    """
    from . import mfac_speed

    rows = []
    for r in mfac_speed.run(d=d, m=MFAC_M, dtype="float32", repeat=repeat):
        gbps = r["gbps"] if r["gbps"] != "" else math.nan
        rows.append({"matrix": f"mfac d={d} m={MFAC_M} float32",
                     "benchmark": f"M-FAC vs BLAS {r['baseline']} (best of {repeat})",
                     "implementation": f"M-FAC {r['operation']}", "n": d, "nnz": d * MFAC_M,
                     "median_ms": 1e3 * r["seconds"], "min_ms": 1e3 * r["seconds"],
                     "speedup_vs_scipy": 1.0 / r["ratio"], "ours_over_scipy": r["ratio"],
                     "GBps": gbps, "fraction_of_triad": gbps / triad_GBps})
    return rows


def run_speed(size: int = 1000, repeat: int = 7, iterations: int = 100,
              stream_n: int = 10_000_000, progress: bool | None = None, *,
              matrices: tuple[str, ...] | list[str] = MATRICES,
              refine: dict[str, int] | None = None, contention: int = 0,
              mfac_d: int = MFAC_D, groups: tuple[str, ...] | list[str] = ("kernels",)
              ) -> SpeedRecord:
    """Measure bandwidth, then SpMV, CG per iteration and SOR sweeps on each matrix, then M-FAC.

    The other row ``groups`` (:data:`ROW_GROUPS`) follow, each on its own
    matrices: the Krylov family, many right-hand sides, time to solution.

    Ctrl-C stops between stages and keeps the rows already measured; the
    busy processes are stopped however the run ends.

    Parameters
    ----------
    size : int
        Grid size N of 2-D Poisson (n = N^2).
    repeat : int
        Interleaved samples per timing (the median is reported).
    iterations : int
        CG iterations per timed call.
    stream_n : int
        Array length of the bandwidth measurement.
    progress : bool, optional
        Progress bar on stderr; default: when stderr is a terminal.
    matrices : sequence of str
        Names from :data:`MATRICES`, measured in this order.
    refine : dict, optional
        Refinement level per finite-element matrix; missing ones take
        :data:`bench.fem.DEFAULT_REFINE`.
    contention : int
        Busy processes running beside the measurement (0: quiet).
    mfac_d : int
        Gradient length of the M-FAC rows (a window of ``mfac_d`` x 256
        float32); 0 leaves them out.
    groups : sequence of str
        Row groups (:data:`ROW_GROUPS`); the default is the ``kernels``
        rows alone (``python -m bench speed`` runs every group unless
        ``--rows`` says otherwise). ``matrices`` and ``mfac_d`` concern the
        ``kernels`` rows; ``refine`` sets the levels of the large P1
        matrices of the other groups too.

    Returns
    -------
    SpeedRecord
        Rows (with a ``matrix`` column), bandwidth, the matrices' sizes and
        the environment.

    Examples
    --------
    >>> record = run_speed(6, repeat=1, iterations=2, stream_n=1000, progress=False,
    ...                    matrices=["poisson2d"], contention=1, mfac_d=0)
    >>> record.matrices[0]["n"], record.environment["contention"]
    (36, 1)
    >>> sorted({row["matrix"] for row in record.rows})
    ['poisson2d']
    """
    from ._progress import progress_bar

    matrices = tuple(MATRIX_ALIASES.get(name, name) for name in matrices)
    unknown = [name for name in matrices if name not in MATRICES]
    if unknown:
        raise ValueError(f"unknown matrix {unknown[0]!r}; choose from {', '.join(MATRICES)}")
    refine = dict(refine or {})
    groups = tuple(groups)
    unknown = [group for group in groups if group not in ROW_GROUPS]
    if unknown:
        raise ValueError(f"unknown row group {unknown[0]!r}; choose from {', '.join(ROW_GROUPS)}")
    record = SpeedRecord(contention=int(contention))
    stages = [("bandwidth", "")]
    if "kernels" in groups:
        stages += [(stage, name) for name in matrices
                   for stage in ("matrix", "spmv", "cg", "precond", "sor")]
        if mfac_d > 0:
            stages.append(("mfac", ""))
    stages += [(group, "") for group in groups if group != "kernels"]
    bar = progress_bar(stages, disable=progress is False)
    A = None
    loadavg_start = loadavg()
    # One BLAS thread here as well as in `python -m bench`, so that a direct
    # call measures what the command does; nesting the limit is harmless.
    with blas_one_thread(), busy_processes(contention):
        try:
            for stage, name in bar:
                bar.set_description(f"speed: {name} {stage}".replace("  ", " "))
                if stage == "bandwidth":
                    record.bandwidth = {"stream_n": stream_n, **stream_bandwidth(stream_n)}
                    continue
                if stage == "matrix":
                    A = None  # let the previous matrix go before building the next
                    start = time.perf_counter()
                    A, level = _build(name, size, refine)
                    record.matrices.append({"name": name, "size": level, "n": A.shape[0],
                                            "nnz": A.nnz,
                                            "build_s": time.perf_counter() - start})
                    continue
                if stage == "mfac":
                    A = None  # the window is large: the last matrix goes first
                    record.rows += [{**row, "target": kernel_target(row, "", contention)}
                                    for row in mfac_rows(int(mfac_d), repeat,
                                                         record.bandwidth["triad_GBps"])]
                    continue
                if stage in ROW_GROUPS:
                    A = None  # each group builds its own matrices
                    record.rows += _group_rows(stage, repeat, iterations, refine,
                                               record.bandwidth["triad_GBps"], record.matrices)
                    continue
                if stage == "spmv":
                    rows = spmv_rows(A, repeat, record.bandwidth["triad_GBps"])
                elif stage == "cg":
                    rows = pcg_rows(A, iterations, repeat)
                elif stage == "precond":
                    rows = precond_rows(A, iterations, repeat)
                else:
                    rows = sor_rows(A, repeat)
                record.rows += [{"matrix": name, **row,
                                 "target": kernel_target(row, name, contention)} for row in rows]
        except KeyboardInterrupt:
            record.interrupted = True
        finally:
            bar.close()
        # inside the limits and beside the busy processes: what the timings saw
        record.environment = environment(contention, loadavg_start, loadavg())
    return record


def _group_rows(group: str, repeat: int, iterations: int, refine: dict[str, int],
                triad_GBps: float, matrices: list[dict]) -> list[dict]:
    """The rows of one of the groups beyond ``kernels`` (their modules import lazily).

    Each group appends the matrices it builds to ``matrices``.
    """
    if group == "family":
        from .family_rows import family_speed_rows

        rows = family_speed_rows(repeat=repeat, iterations=iterations, refine=refine,
                                 matrices=matrices)
    elif group == "rhs":
        from .rhs_speed import rhs_speed_rows

        rows = rhs_speed_rows(repeat=repeat, refine=refine, matrices=matrices)
    else:
        from .solution_speed import solution_rows

        rows = solution_rows(repeat=repeat, iterations=iterations, refine=refine,
                             matrices=matrices)
    for row in rows:
        if not math.isnan(row["GBps"]):
            row["fraction_of_triad"] = row["GBps"] / triad_GBps
    return rows


def summary_lines(record: SpeedRecord) -> list[str]:
    """Bandwidth line, target verdicts per matrix and the environment, to print under the table.

    Examples
    --------
    >>> record = SpeedRecord(rows=[{"matrix": "p1tet", "implementation": "linsolve pcg",
    ...                             "ours_over_scipy": 0.8}], contention=1)
    >>> summary_lines(record)
    ['p1tet: pcg time per iteration ours/scipy = 0.800 (target <= 0.9 with 1 busy process): met']
    """
    lines = []
    if record.bandwidth:
        lines.append("measured bandwidth (2 cores, Numba prange, n=%d): copy %.1f GB/s, "
                     "triad %.1f GB/s" % (record.bandwidth["stream_n"],
                                         record.bandwidth["copy_GBps"],
                                         record.bandwidth["triad_GBps"]))
    busy = record.contention
    busy_text = f"{busy} busy process{'' if busy == 1 else 'es'}" if busy else "quiet"
    for row in record.rows:
        matrix = row.get("matrix", "poisson2d")  # rows from before the matrix column
        implementation = row["implementation"]
        if row.get("group") in ROW_GROUPS:
            target = row.get("target", math.nan)
            if isinstance(target, (int, float)) and not math.isnan(target):
                verdict = "met" if row["ours_over_scipy"] <= target else "NOT met"
                lines.append(f"{matrix}: {row['benchmark']}: {implementation} = "
                             f"{row['ours_over_scipy']:.3g} (target <= {target:g}, "
                             f"{busy_text}): {verdict}")
            continue
        if implementation.startswith("linsolve sor "):
            ordering = implementation.split()[2]
            checked = implementation.partition(" (")[2].rstrip(")")
            targets = POISSON_SOR_TARGETS if matrix == "poisson2d" else SOR_TARGETS
            target = targets[ordering]
            verdict = "met" if row["ours_over_scipy"] <= target else "NOT met"
            label = f"{ordering} SOR ({checked})" if checked else f"{ordering} SOR"
            lines.append(f"{matrix}: {label} time per sweep ours/pyamg = "
                         f"{row['ours_over_scipy']:.2f} (target <= {target:g}, {busy_text}): "
                         f"{verdict}")
        if implementation.startswith("linsolve pcg + "):
            name = implementation.removeprefix("linsolve pcg + ")
            target = PRECOND_TARGETS[name]
            verdict = "met" if row["ours_over_scipy"] <= target else "NOT met"
            lines.append(f"{matrix}: pcg + {name} / plain pcg time per iteration = "
                         f"{row['ours_over_scipy']:.2f} (target <= {target:g}, {busy_text}): "
                         f"{verdict}")
        if implementation.startswith("M-FAC "):
            from .mfac_speed import TARGETS as mfac_targets

            operation = implementation.removeprefix("M-FAC ")
            target = mfac_targets.get(operation)
            if target is not None:
                verdict = "met" if row["ours_over_scipy"] <= target else "NOT met"
                lines.append(f"{matrix}: M-FAC {operation} / bare BLAS passes = "
                             f"{row['ours_over_scipy']:.2f} (target <= {target:g}, "
                             f"{busy_text}): {verdict}")
        if row["implementation"] == "linsolve pcg":
            target = pcg_target(matrix, busy)
            verdict = "met" if row["ours_over_scipy"] <= target else "NOT met"
            lines.append(f"{matrix}: pcg time per iteration ours/scipy = "
                         f"{row['ours_over_scipy']:.3f} (target <= {target:g} with {busy_text}): "
                         f"{verdict}")
    if record.environment:
        lines.append(environment_line(record.environment))
    if record.interrupted:
        lines.append("interrupted: the rows above are the ones finished before Ctrl-C")
    return lines
