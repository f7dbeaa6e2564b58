"""Run under ``mpiexec -n P python -m mpi4py``: the batched pcg over ranks against the serial batch.

Every system's iteration count equals the serial batch's, its iterates agree
to rounding (the sums are split over ranks), one bad system leaves the
others alone, and a batch of local or global rows gives the same answer.
Prints ``MPI-BATCHED-OK <P>`` on rank 0.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

import linsolve  # noqa: E402
from linsolve.mpi import BlockSOR, DistCSR, pcg, world  # noqa: E402
from tests.problems import poisson2d, random_sparse_spd  # noqa: E402

comm = world()
for A in (poisson2d(12), random_sparse_spd(150, seed=3)):
    n = A.shape[0]
    B = np.random.default_rng(0).standard_normal((4, n))
    B[2, 5] = np.nan
    D = DistCSR.from_global(A if comm.rank == 0 else None, comm)
    local = np.ascontiguousarray(B[:, D.rstart:D.rend])
    ours = pcg(D, local, rtol=1e-10)
    also = pcg(D, B, rtol=1e-10)  # global rows on every rank: the same solve
    serial = linsolve.pcg(A, B, rtol=1e-10)
    assert ours.reason.tolist() == serial.reason.tolist(), (ours.reason, serial.reason)
    assert ours.iterations.tolist() == serial.iterations.tolist() == also.iterations.tolist()
    for j in (0, 1, 3):
        x = D.allgather(np.ascontiguousarray(ours.x[j]))
        assert np.linalg.norm(x - serial.x[j]) <= 1e-11 * np.linalg.norm(serial.x[j]), j
        assert np.linalg.norm(B[j] - A @ x) <= 1e-10 * np.linalg.norm(B[j])
    preconditioned = pcg(D, local, rtol=1e-10, M=BlockSOR(D, 1.2))
    assert preconditioned.converged.tolist() == [True, True, False, True]
if comm.rank == 0:
    print("MPI-BATCHED-OK", comm.size)
