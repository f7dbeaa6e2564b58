"""Run under ``mpiexec -n 2 python -m mpi4py``: ranks passing different settings all raise.

Every rank calls a distributed solver with a setting that differs between
ranks (or is invalid on one rank only); every rank must raise ``ValueError``
naming it, at once, instead of waiting in a collective the others never
reach. Each rank prints ``MISMATCH-OK <rank> <seconds>`` at the end.
"""

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

import linsolve  # noqa: E402
from linsolve.mpi import BlockSOR, DistCSR, pcg, sor, tuned_solve, world  # noqa: E402
from tests.problems import poisson2d  # noqa: E402

comm = world()
rank, size = comm.rank, comm.size
assert size == 2, "run with mpiexec -n 2"
A = DistCSR.from_global(poisson2d(6) if rank == 0 else None, comm)
b = np.ones(A.n_local)
tuner = linsolve.OmegaBandit(seed=0) if rank == 0 else None
M = BlockSOR(A)  # collective: built on every rank, passed on one

# (label, call, text the message must contain)
CASES = [
    ("pcg rtol", lambda: pcg(A, b, rtol=[1e-8, 1e-6][rank]), "rtol"),
    ("pcg maxiter", lambda: pcg(A, b, maxiter=[10, 20][rank]), "maxiter"),
    ("pcg variant", lambda: pcg(A, b, variant=["standard", "pipelined"][rank]), "variant"),
    ("pcg check_every", lambda: pcg(A, b, check_every=[None, 5][rank]), "check_every"),
    ("pcg M on one rank", lambda: pcg(A, b, M=[None, M][rank]), "preconditioned"),
    ("pcg bad rtol on rank 1", lambda: pcg(A, b, rtol=[1e-8, -1.0][rank]), "rtol"),
    ("sor omega", lambda: sor(A, b, [1.2, 1.5][rank]), "omega"),
    ("sor symmetric", lambda: sor(A, b, 1.5, symmetric=[False, True][rank]), "symmetric"),
    ("sor dtol", lambda: sor(A, b, 1.5, dtol=[1e5, 1e3][rank]), "dtol"),
    ("tuned_solve solver", lambda: tuned_solve(tuner, A, b, solver=["sor", "ssor-pcg"][rank]),
     "solver"),
    ("tuned_solve rtol", lambda: tuned_solve(tuner, A, b, rtol=[1e-8, 1e-4][rank]), "rtol"),
]

slowest = 0.0
for label, call, needle in CASES:
    start = time.perf_counter()
    try:
        call()
    except ValueError as error:
        assert needle in str(error), (label, rank, str(error))
    else:
        raise AssertionError(f"rank {rank}: {label}: no error")
    slowest = max(slowest, time.perf_counter() - start)
    comm.barrier()

# after all that, a matching call still works: nothing was left half-done
result = pcg(A, b, rtol=1e-8)
assert result.converged, result.reason
print(f"MISMATCH-OK {rank} {slowest:.3f}", flush=True)
