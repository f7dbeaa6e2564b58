"""``python -m bench gpu``: the GPU figures, each a ratio within one run.

Rows (``ours_over_ref`` is ours / the reference's time; targets where
there is one):

- device-to-device copy: the bandwidth every GB/s figure is compared with;
- CSR SpMV, ours (:func:`cext.kernels_for` on CuPy arrays) against
  ``cupyx`` ``A @ x``: 2-D Poisson n = 1e6 and 1.6e7, and a 3-D 7-point
  stencil in a random numbering (unstructured access);
- pcg time per iteration against ``cupyx.scipy.sparse.linalg.cg``, same
  matrices;
- batched inverse 4th roots of 64 SPD blocks of 1024 against a Python loop
  of ``cupy.linalg.eigh`` (target: at least 5x faster);
- M-FAC solve, d = 1e6, m = 256, float32, against two cuBLAS gemv passes
  (target: at most 1.3x);
- one coloured (red-black) SOR sweep against one CSR SpMV (target: at most
  2x).

Every time is the median of ``repeat`` samples, each synchronised with the
device. Needs CuPy and a CUDA device; without them the command prints one
``error:`` line and exits 2. Nothing here has run on a device yet:
``make gpu-check`` is its first run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

from cext.cupy.availability import unavailable_reason

from .problems import poisson2d, poisson3d

GPU_COLUMNS = ("benchmark", "implementation", "n", "median_ms", "ours_over_ref", "GBps",
               "target")
TARGETS = {"batched inverse roots": 0.2, "M-FAC solve": 1.3, "coloured SOR sweep": 2.0}
"""``ours_over_ref`` targets (the roots: at least 5x faster, so at most 0.2)."""


def _cupy():
    """The cupy module; RuntimeError saying why not when CuPy or a CUDA device is missing."""
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"bench gpu needs CuPy and a CUDA device "
                           f"(pip install 'curvature-linsolve[gpu]'): {reason}")
    import cupy

    return cupy


def _median_ms(cupy, call, repeat: int) -> float:
    call()  # compile / warm up
    cupy.cuda.Device().synchronize()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        cupy.cuda.Device().synchronize()
        samples.append(time.perf_counter() - start)
    return 1e3 * float(np.median(samples))


def poisson3d_shuffled(N: int, seed: int = 0) -> sp.csr_matrix:
    """:func:`bench.problems.poisson3d` with the unknowns in a random order (gathers at random)."""
    A = poisson3d(N)
    perm = np.random.default_rng(seed).permutation(A.shape[0])
    A = sp.csr_matrix(A[perm][:, perm])
    A.sort_indices()
    return A


def cupyx_cg(A, b, rtol: float, maxiter: int, callback=None):
    """``cupyx.scipy.sparse.linalg.cg`` under either name of its tolerance (``tol``, ``rtol``)."""
    import inspect

    import cupyx.scipy.sparse.linalg as cusla

    name = "rtol" if "rtol" in inspect.signature(cusla.cg).parameters else "tol"
    return cusla.cg(A, b, maxiter=maxiter, callback=callback, **{name: rtol})


def copy_rows(cupy, repeat: int, n: int = 2**25) -> tuple[list[dict], float]:
    x = cupy.ones(n)
    y = cupy.empty_like(x)
    ms = _median_ms(cupy, lambda: cupy.copyto(y, x), repeat)
    bandwidth = 2 * x.nbytes / (ms * 1e-3) / 1e9
    return [{"benchmark": "device copy", "implementation": "cupy.copyto", "n": n,
             "median_ms": ms, "ours_over_ref": math.nan, "GBps": bandwidth,
             "target": math.nan}], bandwidth


def matrix_rows(cupy, name: str, A: sp.csr_matrix, repeat: int, iterations: int) -> list[dict]:
    """SpMV and pcg per iteration against cupyx on one matrix."""
    import cupyx.scipy.sparse as cusp

    from cext import kernels_for
    from linsolve import pcg

    n = A.shape[0]
    device = cusp.csr_matrix(A)
    x = cupy.asarray(np.random.default_rng(1).standard_normal(n))
    out = cupy.empty_like(x)
    kernels = kernels_for(cupy)
    ours = _median_ms(cupy, lambda: kernels.csr_spmv(device.indptr, device.indices, device.data,
                                                     x, out), repeat)
    reference = _median_ms(cupy, lambda: device @ x, repeat)
    nbytes = A.nnz * (8 + A.indices.itemsize) + (n + 1) * A.indptr.itemsize + 3 * n * 8
    rows = [{"benchmark": f"SpMV {name}", "implementation": "cext csr_spmv / cupyx A @ x",
             "n": n, "median_ms": ours, "ours_over_ref": ours / reference,
             "GBps": nbytes / (ours * 1e-3) / 1e9, "target": math.nan}]
    tiny = 1e-300  # never met: both run exactly `iterations` iterations
    ours = _median_ms(cupy, lambda: pcg(device, x, rtol=tiny, maxiter=iterations,
                                        check_every=iterations, check_symmetric=False),
                      max(3, repeat // 2)) / iterations
    reference = _median_ms(cupy, lambda: cupyx_cg(device, x, tiny, iterations),
                           max(3, repeat // 2)) / iterations
    rows.append({"benchmark": f"pcg iteration {name}", "implementation":
                 "linsolve pcg / cupyx cg", "n": n, "median_ms": ours,
                 "ours_over_ref": ours / reference, "GBps": math.nan, "target": math.nan})
    return rows


def roots_row(cupy, repeat: int, blocks: int = 64, size: int = 1024) -> dict:
    from curvature import inverse_root

    factors = cupy.random.default_rng(2).standard_normal((blocks, size, size // 2))
    A = factors @ factors.transpose(0, 2, 1) + 1e-3 * cupy.eye(size)

    def loop():
        for block in A:
            w, Q = cupy.linalg.eigh(block)
            (Q * (w + 1e-6) ** -0.25) @ Q.T

    ours = _median_ms(cupy, lambda: inverse_root(A, 4, eps=1e-6, method="eigh"), repeat)
    reference = _median_ms(cupy, loop, max(3, repeat // 2))
    return {"benchmark": "batched inverse roots", "implementation":
            f"inverse_root {blocks}x{size} p=4 / loop of cupy eigh", "n": blocks * size,
            "median_ms": ours, "ours_over_ref": ours / reference, "GBps": math.nan,
            "target": TARGETS["batched inverse roots"]}


def mfac_row(cupy, repeat: int, d: int = 1_000_000, m: int = 256) -> dict:
    from curvature import MFAC

    rng = cupy.random.default_rng(3)
    mfac = MFAC(d, m, 1e-4, dtype=np.float32, xp=cupy)
    for _ in range(m):
        mfac.update(rng.standard_normal(d, dtype=cupy.float32))
    v = rng.standard_normal(d, dtype=cupy.float32)
    G = rng.standard_normal((m, d), dtype=cupy.float32)
    c = rng.standard_normal(m, dtype=cupy.float32)
    ours = _median_ms(cupy, lambda: mfac.solve(v), repeat)
    reference = _median_ms(cupy, lambda: (G @ v, c @ G), repeat)
    return {"benchmark": "M-FAC solve", "implementation": f"MFAC.solve d={d} m={m} float32 / "
            "two cuBLAS gemv", "n": d, "median_ms": ours, "ours_over_ref": ours / reference,
            "GBps": 2 * G.nbytes / (ours * 1e-3) / 1e9, "target": TARGETS["M-FAC solve"]}


def sor_row(cupy, repeat: int, N: int = 1000) -> dict:
    import cupyx.scipy.sparse as cusp

    from cext import kernels_for
    from linsolve import SorMatrix

    A = poisson2d(N)
    S = SorMatrix(A, ordering="redblack")
    # the sweep-order system, stored by colour with the identity as its unknowns' table
    arrays = [cupy.asarray(a) for a in (S.off_indptr, S.off_indices, S.off_data, S.diag)]
    n = A.shape[0]
    b = cupy.asarray(np.random.default_rng(4).standard_normal(n))
    x = cupy.zeros(n)
    rows = cupy.arange(n, dtype=arrays[1].dtype)
    kernels = kernels_for(cupy)
    ours = _median_ms(cupy, lambda: kernels.sor_sweep_colored(*arrays, b, x, 1.5, S.color_ptr,
                                                              rows), repeat)
    device = cusp.csr_matrix(A)
    reference = _median_ms(cupy, lambda: device @ b, repeat)
    return {"benchmark": "coloured SOR sweep", "implementation":
            f"red-black sweep / one cupyx SpMV, Poisson N={N}", "n": n, "median_ms": ours,
            "ours_over_ref": ours / reference, "GBps": math.nan,
            "target": TARGETS["coloured SOR sweep"]}


def run_gpu(repeat: int = 11, iterations: int = 100, sizes=(1000, 4000),
            stencil3d: int = 100) -> dict:
    """Every row; returns ``{"device": ..., "rows": [...]}``."""
    cupy = _cupy()
    properties = cupy.cuda.runtime.getDeviceProperties(0)
    name = properties["name"]
    device = name.decode() if isinstance(name, bytes) else str(name)
    rows, bandwidth = copy_rows(cupy, repeat)
    for N in sizes:
        rows += matrix_rows(cupy, f"Poisson 2-D n={N * N:.0e}", poisson2d(N), repeat, iterations)
    rows += matrix_rows(cupy, f"shuffled 3-D stencil n={stencil3d ** 3:.0e}",
                        poisson3d_shuffled(stencil3d), repeat, iterations)
    rows += [roots_row(cupy, repeat), mfac_row(cupy, repeat), sor_row(cupy, repeat)]
    for row in rows:
        row["fraction_of_copy"] = row["GBps"] / bandwidth if math.isfinite(row["GBps"]) \
            else math.nan
    return {"device": device, "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "cupy": cupy.__version__, "copy_GBps": bandwidth, "rows": rows}


def verdicts(record: dict) -> list[str]:
    """One line per row with a target: met or NOT met."""
    lines = []
    for row in record["rows"]:
        target = row["target"]
        if math.isfinite(target):
            verdict = "met" if row["ours_over_ref"] <= target else "NOT met"
            lines.append(f"{row['benchmark']}: ours/reference = {row['ours_over_ref']:.2f} "
                         f"(target <= {target:g}): {verdict}")
    return lines


def gpu_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="samples per timing (median)")
    parser.add_argument("--iterations", type=int, default=100, help="pcg iterations per call")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--name", default="gpu", help="stem of the output files")
    return parser


def run_gpu_command(args: argparse.Namespace) -> int:
    from .table import format_table, write_csv, write_json

    try:
        record = run_gpu(args.repeat, args.iterations)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{record['device']}, CUDA runtime {record['cuda_runtime']}, cupy {record['cupy']}, "
          f"device copy {record['copy_GBps']:.0f} GB/s")
    columns = GPU_COLUMNS + ("fraction_of_copy",)
    print(format_table(record["rows"], columns))
    for line in verdicts(record):
        print(line)
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, f"{args.name}.csv"), record["rows"], columns)
    write_json(os.path.join(args.out, f"{args.name}.json"), record)
    print(f"wrote {args.out}/{args.name}.csv, {args.out}/{args.name}.json")
    return 0
