"""Run under ``mpiexec -n P python -m mpi4py``: distributed solvers against the serial ones.

Prints ``MPI-SOLVERS-OK <P>`` on rank 0 when every check passed; any failed
assertion aborts the whole job (``-m mpi4py``).
"""

import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import linsolve  # noqa: E402
from linsolve.mpi import (BlockSOR, DistCSR, SerialComm, block_sor_reference, pcg,  # noqa: E402
                          sor, tuned_solve, world)
from tests.problems import anisotropic2d, poisson2d  # noqa: E402

comm = world()
rank, size = comm.rank, comm.size
assert size > 1, "run with mpiexec -n 2 or more"

# Input that is wrong on rank 1 alone (no abort wrapper, no -m mpi4py needed):
# every rank raises ValueError at once; none is left in an Allreduce that the
# failing rank never reaches (before the check was collective, this hung).
A0 = poisson2d(8)
D0 = DistCSR.from_global(A0 if rank == 0 else None, comm)
right = np.ones(D0.n_local)
wrong = np.ones(D0.n_local + 1) if rank == 1 else right
shape_on_rank1 = (lambda r: r[:-1]) if rank == 1 else (lambda r: r)  # noqa: E731
bad_calls = {"pcg b": lambda: pcg(D0, wrong),
             "pipelined b": lambda: pcg(D0, wrong, variant="pipelined"),
             "sor b": lambda: sor(D0, wrong, 1.5),
             "pcg M": lambda: pcg(D0, right, M=shape_on_rank1),
             "single-reduction M": lambda: pcg(D0, right, M=shape_on_rank1,
                                               variant="single-reduction")}
for label, call in bad_calls.items():
    began = time.perf_counter()
    try:
        call()
        raised = None
    except ValueError as error:
        raised = str(error)
    elapsed = time.perf_counter() - began
    messages = comm.allgather(raised)
    assert all(m is not None for m in messages), (label, messages)
    assert "rank 1" in messages[1] and "another rank" not in messages[1], (label, messages)
    assert all(m.startswith("another rank had invalid input: rank 1:")
               for r, m in enumerate(messages) if r != 1), (label, messages)
    assert elapsed < 10, (label, elapsed)
# ... and input that only rank 0 reads (the global matrix, the tuner)
root_bad_calls = {"from_global": lambda: DistCSR.from_global(
                      sp.csr_matrix((3, 4)) if rank == 0 else None, comm),
                  "scatter": lambda: D0.scatter(np.ones(3) if rank == 0 else None),
                  "tuned_solve": lambda: tuned_solve(None, D0, np.ones(D0.n_local))}
for label, call in root_bad_calls.items():
    try:
        call()
        raised = None
    except ValueError as error:
        raised = str(error)
    messages = comm.allgather(raised)
    assert all(m is not None for m in messages), (label, messages)
    assert all(m.startswith("another rank had invalid input: rank 0:")
               for r, m in enumerate(messages) if r != 0), (label, messages)

# Tolerance of the iterate comparison: the distributed dots add the same
# products in another order (a few ulps per dot); CG's iterates on these
# well-conditioned grids amplify that far less than 1e4 over ~150 steps.
ITERATE_RTOL = 1e-12


def serial_iterates(A, b, **kw):
    iterates = []
    result = linsolve.pcg(A, b, callback=lambda x: iterates.append(x.copy()), **kw)
    return result, iterates


def check_pcg(name, A, b, rtol):
    D = DistCSR.from_global(A if rank == 0 else None, comm)
    ser, ser_iterates = serial_iterates(A, b, rtol=rtol)
    dist_iterates = []
    result = pcg(D, D.local_part(b), rtol=rtol,
                 callback=lambda x: dist_iterates.append(D.allgather(x)))
    assert result.iterations == ser.iterations, (name, result.iterations, ser.iterations)
    assert result.converged and result.reason == ser.reason, (name, result.reason)
    worst = max(np.linalg.norm(d - s) / np.linalg.norm(s)
                for d, s in zip(dist_iterates, ser_iterates))
    assert worst <= ITERATE_RTOL, (name, worst)
    assert np.allclose(result.residual_norms, ser.residual_norms, rtol=1e-10, atol=0)
    x = D.allgather(result.x)
    assert np.linalg.norm(b - A @ x) <= rtol * np.linalg.norm(b)
    # the one-reduction variants: same solution, about the same count
    for variant in ("single-reduction", "pipelined"):
        other = pcg(D, D.local_part(b), rtol=rtol, variant=variant)
        assert other.converged, (name, variant, other.reason)
        assert abs(other.iterations - ser.iterations) <= 2, (name, variant, other.iterations)
        assert other.extra["allreduces"] <= other.iterations + 4, other.extra
    return worst, D


rng = np.random.default_rng(0)
report = {}
A1 = poisson2d(24)
b1 = rng.standard_normal(A1.shape[0])
report["poisson"], D1 = check_pcg("poisson2d", A1, b1, 1e-10)
A2 = anisotropic2d(20, 0.01)
b2 = rng.standard_normal(A2.shape[0])
report["anisotropic"], D2 = check_pcg("anisotropic2d", A2, b2, 1e-10)

# the matrix from each rank's own rows, and uneven ownership ranges
rows = A1[D1.rstart:D1.rend]
D_rows = DistCSR.from_rows(rows, comm)
x = rng.standard_normal(A1.shape[0])
assert np.array_equal(D_rows.ranges, D1.ranges)
assert np.allclose(D_rows.allgather(D_rows.matvec(D_rows.local_part(x))), A1 @ x, rtol=1e-14)
cuts = [0] + [10 * (r + 1) for r in range(size - 1)] + [A1.shape[0]]
D_uneven = DistCSR.from_global(A1 if rank == 0 else None, comm, ranges=cuts)
assert D_uneven.n_local == cuts[rank + 1] - cuts[rank]
assert np.allclose(D_uneven.allgather(D_uneven.matvec(D_uneven.local_part(x))), A1 @ x,
                   rtol=1e-14)
gathered = D1.gather(D1.local_part(x))
assert (gathered is None) == (rank != 0) and (rank != 0 or np.array_equal(gathered, x))

# block-Jacobi SOR equals the single-process block reference, and converges
omega = 1.5
sweeps = 5
result = sor(D1, b1, omega, maxiter=sweeps, rtol=0.0)
reference = block_sor_reference(A1, b1, D1.ranges, omega, iterations=sweeps)
x_sor = D1.allgather(result.x)
report["block_sor_vs_reference"] = float(np.linalg.norm(x_sor - reference) / np.linalg.norm(reference))
assert report["block_sor_vs_reference"] <= 1e-13, report
ssor_run = sor(D1, b1, omega, maxiter=3, rtol=0.0, symmetric=True)
reference = block_sor_reference(A1, b1, D1.ranges, omega, iterations=3, symmetric=True)
assert np.allclose(D1.allgather(ssor_run.x), reference, rtol=1e-13, atol=0)
solved = sor(D1, b1, omega, rtol=1e-8)
assert solved.converged, solved.reason
serial_sor = linsolve.sor(A1, b1, omega, rtol=1e-8)
report["block_sor_iterations"] = [solved.iterations, serial_sor.iterations]

# block-Jacobi SSOR as CG preconditioner beats plain CG; with identical blocks
# on one process it is the serial pcg with the serial block SSOR
pre = pcg(D1, b1, M=BlockSOR(D1, 1.3), rtol=1e-10)
assert pre.converged and pre.iterations < 70, pre.iterations
blocks = sp.block_diag([A1[lo:hi, lo:hi] for lo, hi in zip(D1.ranges[:-1], D1.ranges[1:])],
                       format="csr")
ssor_blocks = linsolve.precond.ssor(blocks, 1.3)
serial_pre = linsolve.pcg(A1, b1, M=ssor_blocks, rtol=1e-10)
assert serial_pre.iterations == pre.iterations, (serial_pre.iterations, pre.iterations)
assert np.allclose(D1.allgather(pre.x), serial_pre.x, rtol=1e-11, atol=1e-12)
report["block_ssor_pcg_iterations"] = pre.iterations

# OmegaBandit on top: rank 0 decides, all ranks solve, the cost is the same everywhere
tuner = linsolve.OmegaBandit(np.linspace(1.0, 1.9, 4), seed=1) if rank == 0 else None
costs = []
for t in range(3):
    shift = 0.1 * t
    D_t = DistCSR.from_global((A2 + shift * sp.eye(A2.shape[0])).tocsr() if rank == 0 else None,
                              comm)
    solved = tuned_solve(tuner, D_t, b2, context=shift, solver="ssor-pcg")
    costs.append(solved.extra["cost"])
    assert solved.converged
all_costs = comm.allgather(costs)
assert all(c == costs for c in all_costs), all_costs
if rank == 0:
    assert [r.cost for r in tuner.history] == costs
    json.dumps(tuner.state_dict())

# distributed Shampoo: the same directions as one process
from curvature import Shampoo  # noqa: E402
from curvature.shampoo.distributed import DistributedShampoo, distributed_inverse_roots  # noqa: E402

shapes = [(12, 8), (20,), (6, 5, 4), (16, 16), (3,)]
opt = DistributedShampoo(shapes, comm, grafting="adam", eps=1e-8)
assert sorted(set(opt.owners)) == list(range(min(size, len(shapes))))
singles = [Shampoo(s, grafting="adam", eps=1e-8) for s in shapes]
worst = 0.0
for step in range(3):
    grads = [rng.standard_normal(s) for s in shapes]
    directions = opt.update(grads)
    expected = [o.update(g) for o, g in zip(singles, grads)]
    for d, e in zip(directions, expected):
        worst = max(worst, float(np.max(np.abs(d - e)) / np.max(np.abs(e))))
assert worst <= 1e-12, worst
report["shampoo"] = worst
# with blocking (tiles of at most 8 per axis): the same as one process with the same tiles
tiled = DistributedShampoo(shapes, comm, block_size=8, eps=1e-8)
tiled_single = DistributedShampoo(shapes, SerialComm(), block_size=8, eps=1e-8)
loads = comm.allgather(sum(c for c, o in zip(tiled.costs, tiled.owners) if o == rank))
assert max(loads) <= 0.75 * sum(loads) or size > len(tiled.tiles), loads
for step in range(2):
    grads = [rng.standard_normal(s) for s in shapes]
    for d, e in zip(tiled.update(grads), tiled_single.update(grads)):
        assert np.array_equal(d, e)
mats = [(lambda G: G @ G.T + np.eye(len(G)))(rng.standard_normal((n, n))) for n in (5, 9, 3)]
roots = distributed_inverse_roots(mats, 4, comm)
assert all(np.allclose(r, linsolve_root, rtol=1e-12, atol=0) for r, linsolve_root in
           zip(roots, [__import__("curvature").inverse_root(m, 4) for m in mats]))

comm.barrier()
if rank == 0:
    print(f"MPI-SOLVERS-OK {size} {json.dumps(report)}", flush=True)
