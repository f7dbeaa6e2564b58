"""``bench speed --rows rhs``: k right-hand sides in one pass over the matrix, against k calls.

On the scikit-fem matrices the target is stated for (P1 tetrahedra and 3-D
elasticity, :mod:`bench.fem`, CSR), with ``k`` seeded random right-hand
sides (similar iteration counts), the time to hold all ``k`` solutions to
``rtol = 1e-8``:

- ``pcg(A, B)`` (batched) over ``k`` separate ``pcg`` calls; targets
  (:data:`TARGETS`) 0.55 on P1 tetrahedra and 0.4 on elasticity. The
  ``floor`` in the benchmark name is the ratio :func:`floor_ratio` of the
  bandwidth model below, and each row's ``GBps`` is the bytes that model
  says the run must move, over its time.
- ``block_cg(A, B)`` over the batched mode: no target; its iteration count
  against the largest single-system count is in the implementation name.

The bandwidth model (float64 values, int32 indices, fused updates): an
iteration of one system reads the CSR matrix once, ``12 nnz + 4 (n + 1)``
bytes, and streams :data:`VECTOR_PASSES` vectors of ``8 n`` bytes (the
product reads ``p`` and writes ``q``; ``x += alpha p`` and ``r -= alpha q``
read four and write two; ``p = r + beta p`` reads two and writes one; the
inner products ride along). ``k`` separate calls pay the matrix ``k`` times,
the batch once: ``(A + k V) / (k (A + V))``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .family_speed import _interleaved
from .speed import ratio_row

TARGETS = {"p1tet": 0.55, "elasticity3d": 0.4}
"""Batched over k separate pcg calls, time to all k solutions (k = 8)."""

RHS_MATRICES = ("p1tet", "elasticity3d")
K = 8
RTOL = 1e-8
VECTOR_PASSES = 11
"""Vectors of ``n`` float64 one CG iteration of one system streams, fused (module notes)."""


def matrix_bytes(A) -> int:
    """Bytes of a CSR matrix with float64 values and int32 indices: ``12 nnz + 4 (n + 1)``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> matrix_bytes(sp.identity(4, format="csr"))
    68
    """
    return 12 * A.nnz + 4 * (A.shape[0] + 1)


def floor_ratio(A, k: int) -> float:
    """Batched over ``k`` separate iterations, in bytes moved: ``(A + k V) / (k (A + V))``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> A = sp.random(1000, 1000, density=0.014, format="csr", random_state=0)  # 14 a row
    >>> round(floor_ratio(A, 8), 2)
    0.42
    """
    a = matrix_bytes(A)
    v = VECTOR_PASSES * 8 * A.shape[0]
    return (a + k * v) / (k * (a + v))


def rhs_rows(name: str, A, k: int = K, repeat: int = 3) -> list[dict]:
    """Separate, batched and block rows on ``A`` with ``k`` seeded right-hand sides."""
    from linsolve import block_cg, pcg

    n = A.shape[0]
    B = np.random.default_rng(1).standard_normal((k, n))
    options = dict(rtol=RTOL, check_symmetric=False)
    pcg(A, B, rtol=0.5, maxiter=5, check_symmetric=False)  # compile outside the timing
    pcg(A, B[0], rtol=0.5, maxiter=5, check_symmetric=False)
    block_cg(A, B, rtol=0.5, maxiter=5)
    counts: dict[str, list[int]] = {}

    def separate() -> float:
        start = time.perf_counter()
        results = [pcg(A, B[j], **options) for j in range(k)]
        elapsed = time.perf_counter() - start
        counts["separate"] = [int(result.iterations) for result in results]
        return elapsed

    def batched() -> float:
        start = time.perf_counter()
        result = pcg(A, B, **options)
        elapsed = time.perf_counter() - start
        counts["batched"] = [int(c) for c in np.ravel(result.iterations)]
        return elapsed

    def block() -> float:
        start = time.perf_counter()
        result = block_cg(A, B, rtol=RTOL)
        elapsed = time.perf_counter() - start
        counts["block"] = [int(c) for c in np.ravel(result.iterations)]
        return elapsed

    medians = {name_: ms / 1e3 for name_, ms in _interleaved(
        {"separate": separate, "batched": batched, "block": block}, repeat).items()}
    a, v = matrix_bytes(A), VECTOR_PASSES * 8 * n
    # bytes the model says each run moves: separate calls read A per system
    # per iteration; the batch reads A once per iteration for all systems
    # still running, and the vectors of each
    moved_separate = sum(counts["separate"]) * (a + v)
    moved_batched = max(counts["batched"]) * a + sum(counts["batched"]) * v
    floor = floor_ratio(A, k)
    benchmark = f"k={k} solves to rtol {RTOL:g} (model floor {floor:.2f})"
    rows = [ratio_row(name, benchmark, f"linsolve pcg, {k} separate calls", A,
                      medians["separate"], medians["separate"],
                      GBps=moved_separate / medians["separate"] / 1e9, group="rhs"),
            ratio_row(name, benchmark, "linsolve pcg(A, B) batched / separate", A,
                      medians["batched"], medians["separate"], TARGETS.get(name, math.nan),
                      GBps=moved_batched / medians["batched"] / 1e9, group="rhs"),
            ratio_row(name, benchmark,
                      f"linsolve block_cg / batched ({max(counts['block'])} block iterations "
                      f"vs {max(counts['separate'])} largest single)", A,
                      medians["block"], medians["batched"], group="rhs")]
    return rows


def rhs_speed_rows(repeat: int = 3, refine: dict | None = None, k: int = K,
                   names: tuple[str, ...] = RHS_MATRICES, matrices: list | None = None
                   ) -> list[dict]:
    """The rows of :func:`rhs_rows` on each of ``names`` (levels: ``refine`` or the defaults).

    Examples
    --------
    >>> rows = rhs_speed_rows(repeat=1, refine={"p1tet": 3, "elasticity3d": 1}, k=2)
    >>> [row["target"] for row in rows if "pcg(A, B)" in row["implementation"]]
    [0.55, 0.4]
    """
    from .fem import DEFAULT_REFINE, fem_matrix

    refine = refine or {}
    rows = []
    for name in names:
        level = refine.get(name, DEFAULT_REFINE[name])
        start = time.perf_counter()
        A = fem_matrix(name, level)
        if matrices is not None:
            matrices.append({"name": name, "size": level, "n": A.shape[0], "nnz": A.nnz,
                             "build_s": time.perf_counter() - start, "group": "rhs"})
        rows += rhs_rows(name, A, k, repeat)
    return rows
