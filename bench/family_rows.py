"""``bench speed --rows family``: MINRES, BiCGStab and GMRES per iteration against scipy.

The ratios of :mod:`bench.family_speed` (``python -m bench family``),
measured with its interleaving and per-iteration functions, on the matrices
the target is stated for: the scikit-fem P1 matrices (:mod:`bench.fem`:
P1 triangles and tetrahedra, SPD, so every method applies) and a 2-D
convection-diffusion matrix (upwind, cell Peclet 1, ``N x N``: the
non-symmetric methods), with MINRES on the same grid's Laplacian shifted to
indefinite. Every matrix is CSR with fewer than 15 entries a row.

Each comparison gives two rows, scipy's (the reference, ratio 1) and ours
(ratio and target), both time per iteration: a fixed number of iterations
in each call (a tolerance never met), the median over interleaved samples.
``gmres(30)`` counts inner iterations, in whole restart cycles; ``gmres +
ilu0`` is against scipy's gmres with ``spilu(drop_tol=0, fill_factor=1)``
as a LinearOperator, scipy's closest incomplete factorisation.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .family_speed import NEVER, TARGETS, _interleaved, _per_iteration
from .speed import ratio_row

CONVDIFF_N = 500
"""Grid of the convection-diffusion and shifted-Laplacian matrices (n = 250 000)."""

SHIFT = 0.05
"""Diagonal shift of the indefinite MINRES matrix (the Laplacian's smallest
eigenvalues on the 500 x 500 grid lie below it), as in :mod:`bench.family_speed`."""

FEM_FAMILY = ("p1tri", "p1tet")
"""The scikit-fem matrices of the family rows."""

METHODS = ("minres", "bicgstab", "gmres(30)", "gmres+ilu0")
SCIPY_NAMES = {"minres": "scipy minres", "bicgstab": "scipy bicgstab",
               "gmres(30)": "scipy gmres(restart=30)",
               "gmres+ilu0": "scipy gmres(30) + spilu(drop_tol=0, fill_factor=1)"}


def method_cases(A, b: np.ndarray, iterations: int,
                 methods: tuple[str, ...] = METHODS) -> dict[str, tuple[Callable, Callable]]:
    """``{method: (ours, theirs)}``: calls running ``iterations`` iterations, returning the count done.

    Examples
    --------
    >>> from bench.problems import convdiff2d
    >>> A = convdiff2d(8, 1.0)
    >>> ours, theirs = method_cases(A, np.ones(64), 4, ("bicgstab",))["bicgstab"]
    >>> ours(), theirs()
    (4, 4)
    """
    import scipy.sparse.linalg as sla

    from linsolve import bicgstab, gmres, minres, precond

    cycles = max(1, iterations // 30)
    counted: list[int] = []

    def scipy_counted(solver, *args, **kwargs) -> int:
        counted.clear()
        solver(*args, callback=lambda *_: counted.append(1), **kwargs)
        return len(counted)

    cases = {}
    if "minres" in methods:
        cases["minres"] = (
            lambda: minres(A, b, rtol=NEVER, maxiter=iterations).iterations,
            lambda: scipy_counted(sla.minres, A, b, rtol=NEVER, maxiter=iterations))
    if "bicgstab" in methods:
        cases["bicgstab"] = (
            lambda: bicgstab(A, b, rtol=NEVER, maxiter=iterations).iterations,
            lambda: scipy_counted(sla.bicgstab, A, b, rtol=NEVER, maxiter=iterations))
    if "gmres(30)" in methods:
        cases["gmres(30)"] = (
            lambda: gmres(A, b, rtol=NEVER, restart=30, maxiter=cycles).iterations,
            lambda: scipy_counted(sla.gmres, A, b, rtol=NEVER, restart=30, maxiter=cycles,
                                  callback_type="pr_norm"))
    if "gmres+ilu0" in methods:
        ilu = precond.ilu0(A)
        factor = sla.spilu(A.tocsc(), drop_tol=0.0, fill_factor=1)
        spilu = sla.LinearOperator(A.shape, matvec=factor.solve, dtype=np.float64)
        cases["gmres+ilu0"] = (
            lambda: gmres(A, b, M=ilu, rtol=NEVER, restart=30, maxiter=cycles).iterations,
            lambda: scipy_counted(sla.gmres, A, b, M=spilu, rtol=NEVER, restart=30,
                                  maxiter=cycles, callback_type="pr_norm"))
    return cases


def matrix_rows(name: str, A, methods: tuple[str, ...], iterations: int,
                repeat: int) -> list[dict]:
    """Two rows per method on ``A`` (scipy's, then ours with the target)."""
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    rows = []
    for method, (ours, theirs) in method_cases(A, b, iterations, methods).items():
        ours(), theirs()  # compile and warm up
        medians = _interleaved({"ours": _per_iteration(ours), "theirs": _per_iteration(theirs)},
                               repeat)
        ours_s, theirs_s = medians["ours"] / 1e3, medians["theirs"] / 1e3
        benchmark = f"{method} iteration vs scipy"
        rows.append(ratio_row(name, benchmark, SCIPY_NAMES[method], A, theirs_s, theirs_s,
                              group="family"))
        rows.append(ratio_row(name, benchmark, f"linsolve {method}", A, ours_s, theirs_s,
                              TARGETS[method], group="family"))
    return rows


def family_speed_rows(repeat: int = 5, iterations: int = 60, refine: dict | None = None,
                      convdiff_n: int = CONVDIFF_N, matrices: list | None = None,
                      fem: tuple[str, ...] = FEM_FAMILY) -> list[dict]:
    """Every family row: the P1 matrices (all four methods), convection-diffusion, shifted Laplacian.

    ``refine`` overrides :data:`bench.fem.DEFAULT_REFINE` per matrix;
    ``matrices``, if given, gets a record of each matrix built.

    Examples
    --------
    >>> rows = family_speed_rows(repeat=1, iterations=4, convdiff_n=8, fem=())
    >>> sorted({row["matrix"] for row in rows})
    ['convdiff2d(Pe=1)', 'shifted laplacian']
    >>> [row["target"] for row in rows if row["implementation"] == "linsolve gmres+ilu0"]
    [0.2]
    """
    from .fem import DEFAULT_REFINE, fem_matrix
    from .problems import convdiff2d

    refine = refine or {}
    built = []
    for name in fem:
        level = refine.get(name, DEFAULT_REFINE[name])
        built.append((name, level, lambda name=name, level=level: fem_matrix(name, level),
                      METHODS))
    built.append(("convdiff2d(Pe=1)", convdiff_n, lambda: convdiff2d(convdiff_n, 1.0),
                  ("bicgstab", "gmres(30)", "gmres+ilu0")))
    built.append(("shifted laplacian", convdiff_n,
                  lambda: (convdiff2d(convdiff_n, 0.0)
                           - SHIFT * sp.eye(convdiff_n ** 2, format="csr")).tocsr(),
                  ("minres",)))
    rows = []
    for name, size, build, methods in built:
        start = time.perf_counter()
        A = build()
        if matrices is not None:
            matrices.append({"name": name, "size": size, "n": A.shape[0], "nnz": A.nnz,
                             "build_s": time.perf_counter() - start, "group": "family"})
        rows += matrix_rows(name, A, methods, iterations, repeat)
    return rows
