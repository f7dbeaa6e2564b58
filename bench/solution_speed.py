"""``bench speed --rows solution``: time to solution, set-up included, as ratios in one run.

What a user waits for is the time from calling the function to holding the
answer. These rows measure it through the public API only (the solver and
preconditioner calls a user makes), so they keep their meaning while the
internals change. Each row is a ratio with its target
(:data:`TARGETS`); BLAS is held to one thread on both sides and the samples
of each comparison are interleaved (median reported).

``setup``
    ``precond.ichol0``, ``ssor`` and ``chebyshev`` set-up on P1 tetrahedra
    (``p1tet``, n = 206k), in plain ``pcg`` iterations on the same matrix:
    from scratch (a pattern the library has not seen, :func:`_unseen`),
    and with the pattern reused for a matrix of the same pattern and new
    values (``M.refactor(A_new)`` where the preconditioner offers it, else
    the plain call on a matrix sharing the index arrays, right after a
    call on the previous one: what a time-stepping code does).
``ichol0 on P2``
    ``ichol0`` set-up on P2 tetrahedra (n = 24k) against the ``pcg +
    ichol0`` solve to ``rtol = 1e-8`` that follows it: in that solve's
    iterations (from scratch, and with the pattern reused), and over the
    whole solve.
``ssor iteration``
    ``pcg + ssor`` per iteration over plain ``pcg`` per iteration, P1
    triangles (n = 261k).
``sor``
    ``sor(A, b, 1.5, rtol=0, maxiter=20)`` from a scipy CSR matrix, every
    set-up included (an unseen pattern each call), natural and multicolour,
    over pyamg's ``sor`` (20 forward sweeps, natural order, omega 1.5); and
    the multicolour call with the pattern's set-up reused (the plain call
    on a matrix sharing the index arrays after a call on the previous one,
    and ``SorMatrix.refactor`` where it exists), P1 triangles (n = 261k).

From scratch means a pattern the library cannot have met before: the
library remembers recent patterns by content (the plain calls reuse their
set-up when ``indptr`` and ``indices`` match), so a copy of the matrix
would be served from that memory. Each from-scratch sample gets the matrix
with its unknowns renumbered by a cyclic shift (``i -> i + s mod n``, a new
``s`` each time, built untimed): the same graph, row lengths and locality,
a pattern not seen before.
``small solves``
    The whole ``pcg(A, b, rtol=1e-8)`` call, as a user makes it (default
    options), over scipy's ``cg(A, b, rtol=1e-8, atol=0)``, n = 1k-4k: 2-D
    Poisson 32^2 and 64^2, P1 triangles, 3-D elasticity.
``mid-size iteration``
    ``pcg`` per iteration over scipy ``cg``'s, n = 12k-24k (P2 tetrahedra,
    elasticity), as in the ``kernels`` rows.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .family_speed import _interleaved
from .speed import TINY_RTOL, interleaved_medians, pcg_rows, ratio_row

TARGETS = {
    "ichol0 from scratch": 37.0,  # symbolic at most 25 + numeric at most 12
    "ichol0 pattern reused": 12.0,
    "ssor from scratch": 28.0,  # symbolic at most 25 (shared with IC(0)) + numeric 3
    "ssor pattern reused": 3.0,
    "chebyshev from scratch": 25.0,
    "p2 ichol0 pattern reused": 20.0,
    "ssor iteration": 1.5,
    "sor natural": 1.1,
    "sor multicolor": 1.3,
    "sor multicolor pattern reused": 0.8,
    "small solve": 0.4,
    "mid-size iteration": 0.5,
}
"""Ours over the reference, per row (the reference is in the row's benchmark name)."""

LEVELS = {"setup": ("p1tet", 6), "p2": ("p2tet", 4), "p1tri": ("p1tri", 9)}
"""Matrix and refinement of the large-matrix rows; ``--refine`` overrides the level."""

SMALL = (("poisson2d", 32), ("poisson2d", 64), ("p1tri", 6), ("elasticity3d", 3))
"""Small systems, n = 1k-4k (Poisson: grid N; the others: refinement level)."""

MID = (("p2tet", 4), ("elasticity3d", 4))
"""Mid-size systems, n = 12k-24k, for the per-iteration ratio."""

RTOL = 1e-8
SOR_OMEGA, SOR_SWEEPS = 1.5, 20
_SCALE = 1.01  # new values on the same pattern: still SPD, a different factorisation


_shifts = itertools.count(1)


def _unseen(A) -> sp.csr_matrix:
    """``A`` with its unknowns renumbered by a cyclic shift never used before (module notes).

    Examples
    --------
    >>> from bench.problems import poisson2d
    >>> A = poisson2d(3)
    >>> B, C = _unseen(A), _unseen(A)
    >>> (B != A).nnz > 0, (B != C).nnz > 0, B.has_sorted_indices, B.indices.dtype.name
    (True, True, True, 'int32')
    >>> bool(np.allclose(np.sort(np.linalg.eigvalsh(B.toarray())),
    ...                  np.sort(np.linalg.eigvalsh(A.toarray()))))
    True
    """
    n = A.shape[0]
    shift = next(_shifts) % n or 1
    order = (np.arange(n) + shift) % n  # row i of the result is row order[i] of A
    B = sp.csr_matrix(A[order][:, order])
    B.sort_indices()
    if B.nnz < 2**31 - 1:  # int32 indices, as the benchmark matrices have
        B.indices = B.indices.astype(np.int32, copy=False)
        B.indptr = B.indptr.astype(np.int32, copy=False)
    return B


def _same_pattern(A) -> sp.csr_matrix:
    """``A`` scaled, sharing ``A``'s index arrays: a new matrix of one pattern (a time step)."""
    return sp.csr_matrix((A.data * _SCALE, A.indices, A.indptr), shape=A.shape)


def _timed(call: Callable[[], object], prepare: Callable[[], object] | None = None
           ) -> Callable[[], float]:
    """A run for :func:`bench.family_speed._interleaved`: ``prepare`` untimed, then ``call``."""
    def run() -> float:
        argument = prepare() if prepare is not None else None
        start = time.perf_counter()
        call() if prepare is None else call(argument)
        return time.perf_counter() - start
    return run


def _plain_iteration(A, b, iterations: int) -> Callable[[], float]:
    from linsolve import pcg

    def run() -> float:
        start = time.perf_counter()
        done = pcg(A, b, rtol=TINY_RTOL, maxiter=iterations, check_symmetric=False).iterations
        return (time.perf_counter() - start) / max(done, 1)
    return run


def _reuse(M, factory: Callable, A) -> tuple[Callable, Callable, str]:
    """How the pattern is reused: ``(call, prepare, label)`` for :func:`_timed`.

    ``M.refactor`` where offered; else the plain call on a matrix sharing
    ``A``'s index arrays, prepared (untimed) by a plain call on the
    previous matrix of the sequence, so the pattern is the last one seen
    whatever other samples ran in between.
    """
    if hasattr(M, "refactor"):
        return M.refactor, lambda: _same_pattern(A), "refactor(A_new)"

    def after_previous():
        factory(_same_pattern(A))
        return _same_pattern(A)
    return factory, after_previous, "plain call, same index arrays"


def setup_rows(name: str, A, iterations: int, repeat: int) -> list[dict]:
    """IC(0), SSOR and Chebyshev set-up in plain pcg iterations (module notes)."""
    from linsolve import pcg, precond

    b = np.random.default_rng(0).standard_normal(A.shape[0])
    pcg(A, b, rtol=TINY_RTOL, maxiter=2, check_symmetric=False)  # compile
    factories = {"ichol0": precond.ichol0, "ssor": precond.ssor, "chebyshev": precond.chebyshev}
    runs = {"plain": _plain_iteration(A, b, iterations)}
    how = {}
    for label, factory in factories.items():
        M = factory(A)  # compiles, and is the one a reuse starts from
        runs[f"{label} from scratch"] = _timed(factory, lambda: _unseen(A))
        if label != "chebyshev":  # its bounds depend on the values: nothing to reuse
            reuse, prepare, how[label] = _reuse(M, factory, A)
            runs[f"{label} pattern reused"] = _timed(reuse, prepare)
    medians = {key: ms / 1e3 for key, ms in _interleaved(runs, repeat).items()}
    plain = medians.pop("plain")
    rows = []
    for key, seconds in medians.items():
        label = key.split()[0]
        implementation = f"precond.{label}(A) set-up, {key.partition(' ')[2]}"
        if key.endswith("reused"):
            implementation += f" ({how[label]})"
        rows.append(ratio_row(name, "set-up in plain pcg iterations", implementation, A,
                              seconds, plain, TARGETS[key], group="solution"))
    return rows


def p2_ichol0_rows(name: str, A, repeat: int) -> list[dict]:
    """IC(0) set-up on P2 tetrahedra against the pcg + ichol0 solve after it."""
    from linsolve import pcg, precond

    b = np.random.default_rng(0).standard_normal(A.shape[0])
    M = precond.ichol0(A)
    reuse, prepare, how = _reuse(M, precond.ichol0, A)
    pcg(A, b, M=M, rtol=RTOL, check_symmetric=False)  # compile
    done = {}

    def solve() -> float:
        start = time.perf_counter()
        done["iterations"] = pcg(A, b, M=M, rtol=RTOL, check_symmetric=False).iterations
        return time.perf_counter() - start

    medians = {key: ms / 1e3 for key, ms in _interleaved({
        "scratch": _timed(precond.ichol0, lambda: _unseen(A)),
        "reused": _timed(reuse, prepare),
        "solve": solve}, repeat).items()}
    per_iteration = medians["solve"] / max(done["iterations"], 1)
    benchmark = f"ichol0 set-up in pcg+ichol0 iterations ({done['iterations']} to rtol {RTOL:g})"
    return [ratio_row(name, benchmark, "precond.ichol0(A), from scratch", A,
                      medians["scratch"], per_iteration, group="solution"),
            ratio_row(name, benchmark, f"precond.ichol0, pattern reused ({how})", A,
                      medians["reused"], per_iteration, TARGETS["p2 ichol0 pattern reused"],
                      group="solution"),
            ratio_row(name, "ichol0 set-up / the pcg+ichol0 solve", "precond.ichol0(A), "
                      "from scratch", A, medians["scratch"], medians["solve"],
                      group="solution")]


def ssor_iteration_rows(name: str, A, iterations: int, repeat: int) -> list[dict]:
    """``pcg + ssor`` per iteration over plain ``pcg`` per iteration."""
    from linsolve import pcg, precond

    b = np.random.default_rng(0).standard_normal(A.shape[0])
    M = precond.ssor(A)
    options = dict(rtol=TINY_RTOL, maxiter=iterations, check_symmetric=False)
    calls = {"plain": lambda: pcg(A, b, **options), "ssor": lambda: pcg(A, b, M=M, **options)}
    done = {key: call().iterations for key, call in calls.items()}  # compiles, too
    samples = interleaved_medians(calls, repeat, per_call=done)
    plain, ssor = (float(np.median(samples[key])) for key in ("plain", "ssor"))
    return [ratio_row(name, "pcg + ssor / plain pcg, per iteration",
                      "linsolve pcg(A, b, M=precond.ssor(A))", A, ssor, plain,
                      TARGETS["ssor iteration"], group="solution")]


def sor_rows(name: str, A, repeat: int) -> list[dict]:
    """``sor`` from a scipy CSR matrix, set-up included, over pyamg's ``sor`` (module notes)."""
    try:
        from pyamg.relaxation.relaxation import sor as pyamg_sor
    except ImportError:  # the [amg] extra is optional
        return []
    from linsolve import SorMatrix, sor

    n = A.shape[0]
    b = np.random.default_rng(2).standard_normal(n)
    options = dict(rtol=0.0, maxiter=SOR_SWEEPS)

    def pyamg_run() -> float:
        x = np.zeros(n)
        start = time.perf_counter()
        pyamg_sor(A, x, b, SOR_OMEGA, iterations=SOR_SWEEPS, sweep="forward")
        return time.perf_counter() - start

    runs = {"pyamg": pyamg_run}
    for ordering in ("natural", "multicolor"):
        sor(A, b, SOR_OMEGA, ordering=ordering, **options)  # compile
        runs[f"sor {ordering}"] = _timed(
            lambda matrix, ordering=ordering: sor(matrix, b, SOR_OMEGA, ordering=ordering,
                                                  **options), lambda: _unseen(A))

    def after_previous():
        # the previous system of the sequence, solved just before (untimed)
        sor(_same_pattern(A), b, SOR_OMEGA, rtol=0.0, maxiter=1, ordering="multicolor")
        return _same_pattern(A)
    runs["sor multicolor pattern reused"] = _timed(
        lambda matrix: sor(matrix, b, SOR_OMEGA, ordering="multicolor", **options),
        after_previous)
    labels = {"sor natural": "natural, from scratch", "sor multicolor": "multicolor, from scratch",
              "sor multicolor pattern reused": "multicolor, plain call, same index arrays"}
    if hasattr(SorMatrix, "refactor"):
        S = SorMatrix(A, ordering="multicolor")
        runs["sor multicolor refactor"] = _timed(
            lambda matrix: sor(S.refactor(matrix), b, SOR_OMEGA, ordering="multicolor",
                               **options), lambda: _same_pattern(A))
        labels["sor multicolor refactor"] = "multicolor, SorMatrix.refactor(A_new)"
    medians = {key: ms / 1e3 for key, ms in _interleaved(runs, repeat).items()}
    reference = medians.pop("pyamg")
    benchmark = (f"sor(A, b, {SOR_OMEGA:g}, rtol=0, maxiter={SOR_SWEEPS}) from scipy CSR "
                 "/ pyamg sor")
    rows = [ratio_row(name, benchmark, "pyamg sor (forward, natural)", A, reference, reference,
                      group="solution")]
    for key, seconds in medians.items():
        target = TARGETS.get(key, TARGETS["sor multicolor pattern reused"])
        rows.append(ratio_row(name, benchmark, f"linsolve sor {labels[key]}", A, seconds,
                              reference, target, group="solution"))
    return rows


def small_solve_rows(name: str, A, repeat: int) -> list[dict]:
    """The whole ``pcg(A, b, rtol=1e-8)`` call over scipy's ``cg`` to the same tolerance.

    Examples
    --------
    >>> from bench.problems import poisson2d
    >>> scipy_row, ours_row = small_solve_rows("poisson2d", poisson2d(4), repeat=1)
    >>> ours_row["implementation"], ours_row["target"], ours_row["ours_over_scipy"] > 0
    ('linsolve pcg (9 iterations)', 0.4, True)
    """
    from scipy.sparse.linalg import cg

    from linsolve import pcg

    b = np.random.default_rng(0).standard_normal(A.shape[0])
    ours = pcg(A, b, rtol=RTOL)  # compiles, and gives the count
    counted = []
    cg(A, b, rtol=RTOL, atol=0.0, callback=lambda xk: counted.append(1))
    calls = {"scipy": lambda: cg(A, b, rtol=RTOL, atol=0.0), "ours": lambda: pcg(A, b, rtol=RTOL)}
    samples = interleaved_medians(calls, repeat)
    scipy_s, ours_s = (float(np.median(samples[key])) for key in ("scipy", "ours"))
    benchmark = f"whole solve to rtol {RTOL:g} / scipy cg"
    return [ratio_row(name, benchmark, f"scipy cg ({len(counted)} iterations)", A, scipy_s,
                      scipy_s, group="solution"),
            ratio_row(name, benchmark, f"linsolve pcg ({ours.iterations} iterations)", A,
                      ours_s, scipy_s, TARGETS["small solve"], group="solution")]


def mid_iteration_rows(name: str, A, iterations: int, repeat: int) -> list[dict]:
    """pcg per iteration over scipy cg's (:func:`bench.speed.pcg_rows`), with the target."""
    rows = []
    scipy_ms = None
    for row in pcg_rows(A, iterations, repeat):
        scipy_ms = row["median_ms"] if row["implementation"] == "scipy cg" else scipy_ms
        rows.append(row)
    return [ratio_row(name, f"{row['benchmark']} / scipy cg", row["implementation"], A,
                      row["median_ms"] / 1e3, scipy_ms / 1e3,
                      TARGETS["mid-size iteration"] if row["implementation"] != "scipy cg"
                      else math.nan, group="solution") for row in rows]


def _matrix(name: str, size: int):
    from .fem import fem_matrix
    from .problems import poisson2d

    return poisson2d(size) if name == "poisson2d" else fem_matrix(name, size)


def solution_rows(repeat: int = 5, iterations: int = 100, refine: dict | None = None,
                  matrices: list | None = None, *, levels: dict | None = None,
                  small=SMALL, mid=MID) -> list[dict]:
    """Every row of the module notes, each matrix built once, in the order listed there.

    ``refine`` overrides the levels of :data:`LEVELS` by matrix name;
    ``levels`` replaces :data:`LEVELS` entries by key; ``matrices``, if
    given, gets a record of each matrix built.

    Examples
    --------
    >>> sorted(LEVELS), TARGETS["small solve"]
    (['p1tri', 'p2', 'setup'], 0.4)
    """
    refine = refine or {}
    chosen = {key: (name, refine.get(name, level))
              for key, (name, level) in {**LEVELS, **(levels or {})}.items()}
    cache: dict[tuple[str, int], sp.csr_matrix] = {}

    def build(name: str, size: int):
        if (name, size) not in cache:
            cache.clear()  # one large matrix at a time
            start = time.perf_counter()
            cache[name, size] = _matrix(name, size)
            if matrices is not None:
                A = cache[name, size]
                matrices.append({"name": name, "size": size, "n": A.shape[0], "nnz": A.nnz,
                                 "build_s": time.perf_counter() - start, "group": "solution"})
        return cache[name, size]

    rows = []
    name, level = chosen["setup"]
    rows += setup_rows(name, build(name, level), iterations, repeat)
    name, level = chosen["p2"]
    rows += p2_ichol0_rows(name, build(name, level), repeat)
    name, level = chosen["p1tri"]
    rows += ssor_iteration_rows(name, build(name, level), iterations, repeat)
    rows += sor_rows(name, build(name, level), repeat)
    for name, size in small:
        rows += small_solve_rows(name, build(name, size), repeat)
    for name, size in mid:
        rows += mid_iteration_rows(name, build(name, size), iterations, repeat)
    return rows
