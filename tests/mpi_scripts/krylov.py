"""Run under ``mpiexec -n P python -m mpi4py``: MINRES and BiCGStab over ranks against serial.

The first 20 iterates equal the serial solver's to 1e-12 relative (the
sums are split over ranks: rounding only), and every run converges to the
same solution within the tolerance. Prints ``MPI-KRYLOV-OK <P>`` on rank 0.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import linsolve  # noqa: E402
from linsolve import mpi  # noqa: E402
from tests.problems import poisson2d  # noqa: E402

comm = mpi.world()
N = 14
T = sp.diags([-2.0, 3.0, -1.0], [-1, 0, 1], shape=(N, N))
convdiff = (sp.kron(sp.eye(N), T) + sp.kron(T, sp.eye(N))).tocsr()
# the shift as part of the matrix: the residual checked below is b - A x
cases = {"bicgstab": (convdiff, {}), "minres": ((poisson2d(N) - 0.7 * sp.eye(N * N)).tocsr(), {})}
b = np.random.default_rng(0).standard_normal(N * N)
for name, (A, options) in cases.items():
    serial_iterates = []
    serial = getattr(linsolve, name)(A, b, rtol=1e-10, maxiter=400,
                                     callback=lambda x: serial_iterates.append(np.array(x)),
                                     **options)
    D = mpi.DistCSR.from_global(A if comm.rank == 0 else None, comm)
    iterates = []
    ours = getattr(mpi, name)(D, b, rtol=1e-10, maxiter=400,
                              callback=lambda x: iterates.append(D.allgather(np.array(x))),
                              **options)
    assert ours.converged and serial.converged, (name, ours.reason, serial.reason)
    for k, (mine, theirs) in enumerate(zip(iterates[:20], serial_iterates[:20])):
        assert np.linalg.norm(mine - theirs) <= 1e-12 * np.linalg.norm(theirs), (name, k)
    x = D.allgather(ours.x)
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b), name
    assert abs(ours.iterations - serial.iterations) <= 2, (name, ours.iterations,
                                                            serial.iterations)
if comm.rank == 0:
    print("MPI-KRYLOV-OK", comm.size)
