"""Run under ``mpiexec -n P python -m mpi4py``: MINRES, BiCGStab, GMRES over ranks against serial.

The first 20 iterates equal the serial solver's to 1e-12 relative (the
sums are split over ranks: rounding only), and every run converges to the
same solution within the tolerance. GMRES's iterates are those at the end
of each restart cycle (``callback_type='x'``, a short ``restart`` so that
there are 20 of them), and its first 20 residual norms (one per inner iteration)
are compared as well. Prints ``MPI-KRYLOV-OK <P>`` on rank 0.
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

# GMRES and FGMRES: plain, Jacobi (right-preconditioned), flexible, and a start x0 that is
# nonzero on the first rank only (every rank must still take the same branch)
A = (convdiff + sp.diags(np.linspace(0.0, 3.0, N * N))).tocsr()
D = mpi.DistCSR.from_global(A if comm.rank == 0 else None, comm)
diagonal = A.diagonal()
local_diagonal = D.local_part(diagonal)
start = np.zeros(N * N)
start[:3] = 1.0
gmres_cases = {
    "gmres": ({}, {}),
    "gmres+jacobi": ({"M": lambda r: r / diagonal}, {"M": lambda r: r / local_diagonal}),
    "fgmres+jacobi": ({"M": lambda r: r / diagonal, "flexible": True},
                      {"M": lambda r: r / local_diagonal, "flexible": True}),
    "gmres x0": ({"x0": start}, {"x0": start}),
}
for name, (serial_options, options) in gmres_cases.items():
    serial_iterates, iterates = [], []
    serial = linsolve.gmres(A, b, rtol=1e-10, restart=2, maxiter=400, callback_type="x",
                            callback=lambda x: serial_iterates.append(np.array(x)),
                            **serial_options)
    ours = mpi.gmres(D, b, rtol=1e-10, restart=2, maxiter=400, callback_type="x",
                     callback=lambda x: iterates.append(D.allgather(np.array(x))), **options)
    assert ours.converged and serial.converged, (name, ours.reason, serial.reason)
    assert len(serial_iterates) >= 20 and len(iterates) >= 20, (name, len(iterates))
    for k, (mine, theirs) in enumerate(zip(iterates[:20], serial_iterates[:20])):
        assert np.linalg.norm(mine - theirs) <= 1e-12 * np.linalg.norm(theirs), (name, k)
    history, serial_history = ours.residual_norms[:20], serial.residual_norms[:20]
    assert np.all(np.abs(history - serial_history) <= 1e-12 * serial_history), name
    x = D.allgather(ours.x)
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b), name
    assert abs(ours.iterations - serial.iterations) <= 3, (name, ours.iterations,
                                                            serial.iterations)
    assert (ours.psolves > 0) == ("M" in options), name

# the default restart (20) without a callback: the same solution, the same exit
ours, serial = mpi.fgmres(D, b, rtol=1e-10), linsolve.fgmres(A, b, rtol=1e-10)
assert ours.converged and ours.reason == serial.reason, (ours.reason, serial.reason)
assert np.linalg.norm(b - A @ D.allgather(ours.x)) <= 1e-10 * np.linalg.norm(b)

# a bad argument on one rank only raises on every rank, without a hang
for bad in ({"restart": 0}, {"callback_type": "legacy", "callback": print}):
    try:
        mpi.gmres(D, b, **(bad if comm.rank == comm.size - 1 else {}))
    except ValueError as error:
        assert "restart" in str(error) or "legacy" in str(error), error
    else:
        raise AssertionError(f"no error on rank {comm.rank} for {bad}")
if comm.rank == 0:
    print("MPI-KRYLOV-OK", comm.size)
