"""Digests of the linear solvers' iterates, counts and histories on a fixed set of problems.

Run as a script (``python -m tests.linsolve.solver_digests record``) it writes
``solver_digests.json`` beside it; run under ``mpiexec -n 2 python -m mpi4py -m
tests.linsolve.solver_digests record-mpi`` it writes the two-rank digests. The
test in ``test_solver_digests.py`` recomputes them and compares: a refactoring
of the solvers must not move a single bit. Kernel threads are pinned to one,
where the parallel reductions' bits depend on the thread count.

The cases call the public API only, so that the same file, run on an older
commit, records that commit's bits.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DIGESTS = HERE / "solver_digests.json"
MPI_DIGESTS = HERE / "solver_digests_mpi.json"


def _problems():
    from tests.problems import poisson2d, random_sparse_spd, random_spd

    rng = np.random.default_rng(7)
    return {"poisson2d-12": (poisson2d(12), rng.standard_normal(144)),
            "sparse-spd-200": (random_sparse_spd(200, density=0.03, seed=3),
                               rng.standard_normal(200)),
            "dense-spd-40": (random_spd(40, cond=1e3, seed=5), rng.standard_normal(40))}


def _digest(result, iterates=None) -> dict:
    x = np.ascontiguousarray(np.asarray(result.x))
    entry = {"x": hashlib.sha256(x.tobytes()).hexdigest()[:20], "dtype": str(x.dtype),
             "iterations": int(result.iterations), "reason": result.reason,
             "residual_norms": hashlib.sha256(
                 np.ascontiguousarray(result.residual_norms, dtype=np.float64).tobytes()
             ).hexdigest()[:20],
             "true_residual_norm": float(result.true_residual_norm).hex()}
    if iterates is not None:
        entry["iterates"] = iterates.hexdigest()[:20]
    return entry


def _watched():
    """A callback that hashes every iterate it is shown."""
    h = hashlib.sha256()
    return h, lambda x: h.update(np.ascontiguousarray(np.asarray(x)).tobytes())


def serial_cases():
    """``{name: digest}`` for pcg (plain, each preconditioner) and sor (each ordering, SSOR)."""
    import linsolve
    from linsolve import pcg, precond, sor

    out = {}
    with linsolve.num_threads(1):
        for pname, (A, b) in _problems().items():
            for dtype in ("float32", "float64"):
                Ad, bd = A.astype(dtype), b.astype(dtype)
                rtol = 1e-5 if dtype == "float32" else 1e-10
                h, cb = _watched()
                out[f"pcg/{pname}/{dtype}/plain"] = _digest(
                    pcg(Ad, bd, rtol=rtol, callback=cb), h)
                out[f"pcg/{pname}/{dtype}/check_every=3"] = _digest(
                    pcg(Ad, bd, rtol=rtol, check_every=3))
                if isinstance(A, np.ndarray):
                    continue
                preconditioners = {
                    "jacobi": lambda: precond.jacobi(Ad),
                    "ssor": lambda: precond.ssor(Ad, 1.2),
                    "ichol0-natural": lambda: precond.ichol0(Ad, ordering="natural"),
                    "ichol0-domains": lambda: precond.ichol0(Ad, ordering="domains"),
                    "chebyshev": lambda: precond.chebyshev(Ad, 3),
                    # pyamg's spectral radius estimate draws from numpy's global generator
                    "amg": lambda: (np.random.seed(0), precond.amg(Ad))[1]}
                for mname, make in preconditioners.items():
                    h, cb = _watched()
                    out[f"pcg/{pname}/{dtype}/{mname}"] = _digest(
                        pcg(Ad, bd, M=make(), rtol=rtol, callback=cb), h)
                orderings = ["natural", "multicolor"] + (["redblack"] if "poisson" in pname
                                                         else [])
                for ordering in orderings:
                    for symmetric in (False, True):
                        for check_every in (1, 4):
                            key = (f"sor/{pname}/{dtype}/{ordering}/symmetric={symmetric}"
                                   f"/check_every={check_every}")
                            out[key] = _digest(sor(Ad, bd, 1.4, rtol=rtol, ordering=ordering,
                                                   symmetric=symmetric, check_every=check_every,
                                                   maxiter=3000))
                    h, cb = _watched()
                    out[f"sor/{pname}/{dtype}/{ordering}/watched"] = _digest(
                        sor(Ad, bd, 1.4, rtol=rtol, ordering=ordering, callback=cb,
                            maxiter=3000), h)
    return out


def mpi_cases(comm):
    """``{name: digest}`` for linsolve.mpi's pcg (each variant, with and without BlockSOR) and sor."""
    from linsolve.mpi import BlockSOR, DistCSR, pcg, sor

    out = {}
    for pname, (A, b) in _problems().items():
        if isinstance(A, np.ndarray):
            continue
        for dtype in ("float32", "float64"):
            rtol = 1e-5 if dtype == "float32" else 1e-10
            D = DistCSR.from_global(A if comm.rank == 0 else None, comm, dtype=dtype)
            bl = np.ascontiguousarray(b.astype(dtype)[D.rstart:D.rend])
            for variant in ("standard", "single-reduction", "pipelined"):
                for mname, M in (("plain", None), ("blocksor", BlockSOR(D, 1.2))):
                    for check_every in (None, 3):
                        result = pcg(D, bl, M=M, rtol=rtol, variant=variant,
                                     check_every=check_every)
                        key = f"mpi-pcg/{pname}/{dtype}/{variant}/{mname}/check_every={check_every}"
                        out[key] = _gathered(D, result)
            for symmetric in (False, True):
                result = sor(D, bl, 1.3, rtol=rtol, symmetric=symmetric, maxiter=3000)
                out[f"mpi-sor/{pname}/{dtype}/symmetric={symmetric}"] = _gathered(D, result)
    return out


def _gathered(D, result):
    """The digest of a distributed result, with the whole ``x`` (as rank 0 gathers it)."""
    x = D.gather(result.x)

    class Whole:  # the digest of the global vector, the result's other fields as they are
        pass

    whole = Whole()
    for field in ("iterations", "reason", "residual_norms", "true_residual_norm"):
        setattr(whole, field, getattr(result, field))
    whole.x = x if x is not None else np.zeros(0, dtype=result.x.dtype)
    return _digest(whole)


def compute_serial() -> dict:
    from linsolve.mpi import SerialComm

    return {"serial": serial_cases(), "mpi-serialcomm": mpi_cases(SerialComm())}


def main(argv):
    command = argv[1] if len(argv) > 1 else "record"
    if command == "record":
        DIGESTS.write_text(json.dumps(compute_serial(), indent=1, sort_keys=True) + "\n")
    elif command == "record-mpi":
        from linsolve.mpi import world

        comm = world()
        digests = mpi_cases(comm)
        if comm.rank == 0:
            MPI_DIGESTS.write_text(json.dumps({f"ranks={comm.size}": digests}, indent=1,
                                              sort_keys=True) + "\n")
    elif command == "print-mpi":
        from linsolve.mpi import world

        comm = world()
        digests = mpi_cases(comm)
        if comm.rank == 0:
            print(json.dumps({f"ranks={comm.size}": digests}, sort_keys=True))
    else:
        raise SystemExit(f"unknown command {command!r}: record, record-mpi or print-mpi")


if __name__ == "__main__":
    main(sys.argv)
