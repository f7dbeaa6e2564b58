"""linsolve.mpi and curvature.shampoo.distributed in one process, on the serial communicator (no MPI)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import linsolve
from curvature import Shampoo
from curvature.shampoo.distributed import (DistributedShampoo, assign_blocks, distributed_inverse_roots,
                                   shampoo_cost)
from curvature.shampoo.roots import inverse_root
from linsolve.mpi import (VARIANTS, BlockSOR, DistCSR, SerialComm, as_comm, balanced_ranges,
                          block_sor_reference, pcg, sor, tuned_solve)
from tests.problems import anisotropic2d, indefinite, poisson2d

COMM = SerialComm()


def _dist(A):
    return DistCSR.from_global(A, COMM)


@pytest.mark.parametrize("build", [lambda: poisson2d(16), lambda: anisotropic2d(14, 0.01)],
                         ids=["poisson2d", "anisotropic2d"])
def test_pcg_iterates_equal_serial(build):
    A = build()
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    serial_iterates, dist_iterates = [], []
    serial = linsolve.pcg(A, b, rtol=1e-10, callback=lambda x: serial_iterates.append(x.copy()))
    result = pcg(_dist(A), b, rtol=1e-10, callback=lambda x: dist_iterates.append(x.copy()))
    assert result.iterations == serial.iterations and result.reason == serial.reason
    # same recurrence; DIA (serial) and CSR (here) products round differently
    for d, s in zip(dist_iterates, serial_iterates):
        assert np.linalg.norm(d - s) <= 1e-12 * np.linalg.norm(s)
    assert result.extra["allreduces"] <= 2 * result.iterations + 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_solve(variant):
    A = poisson2d(12)
    b = np.ones(A.shape[0])
    serial = linsolve.pcg(A, b, rtol=1e-10)
    result = pcg(_dist(A), b, rtol=1e-10, variant=variant)
    assert result.converged and abs(result.iterations - serial.iterations) <= 2
    assert np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b)
    assert len(result.residual_norms) == result.iterations + 1
    if variant != "standard":
        assert result.extra["allreduces"] <= result.iterations + 4
    checked = pcg(_dist(A), b, rtol=1e-10, variant=variant, check_every=5)
    assert checked.converged and checked.iterations == result.iterations
    assert checked.matvecs > result.matvecs


@pytest.mark.parametrize("variant", VARIANTS)
def test_pcg_edge_cases(variant):
    A = poisson2d(6)
    D = _dist(A)
    n = A.shape[0]
    zero = pcg(D, np.zeros(n), variant=variant)
    assert zero.converged and zero.reason == "CONVERGED_ATOL" and not np.any(zero.x)
    b = np.ones(n)
    exact = np.linalg.solve(A.toarray(), b)
    assert pcg(D, b, x0=exact, rtol=1e-8, variant=variant).iterations == 0
    capped = pcg(D, b, rtol=1e-14, maxiter=2, variant=variant)
    assert capped.reason == "DIVERGED_ITS" and capped.iterations == 2 and capped.info == 2
    bad = pcg(_dist(indefinite(8)), np.ones(8), variant=variant)
    assert bad.reason == "DIVERGED_INDEFINITE_MAT"
    nan = b.copy()
    nan[3] = np.nan
    assert pcg(D, nan, variant=variant).reason == "DIVERGED_NANORINF"


def test_float32_and_monitor(capsys):
    A = poisson2d(8, dtype=np.float32)
    D = _dist(A)
    assert D.dtype == np.float32
    result = pcg(D, np.ones(64, dtype=np.float32), rtol=1e-5, monitor=True)
    assert result.converged and result.x.dtype == np.float32
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == result.iterations + 1 and lines[0].startswith("  0 KSP Residual norm")
    integer = pcg(_dist(poisson2d(4)), np.arange(16), rtol=1e-8)
    assert integer.converged and integer.x.dtype == np.float64


def test_pcg_misuse_raises():
    A = poisson2d(4)
    D = _dist(A)
    with pytest.raises(TypeError, match="rtol"):
        pcg(D, np.ones(16), tol=1e-5)
    with pytest.raises(TypeError, match="DistCSR"):
        pcg(A, np.ones(16))
    with pytest.raises(ValueError, match="length"):
        pcg(D, np.ones(5))
    with pytest.raises(ValueError, match="length"):
        pcg(D, np.ones(16), x0=np.ones(5))
    with pytest.raises(ValueError, match="length"):
        sor(D, np.ones(5))
    with pytest.raises(ValueError, match="variant"):
        pcg(D, np.ones(16), variant="fast")
    with pytest.raises(ValueError, match="atol"):
        pcg(D, np.ones(16), atol=-1.0)


class _OtherRankFailed(SerialComm):
    """One process pretending a second rank set its error flag in every reduction."""

    size = 2

    def allreduce_sum(self, values):
        sums = np.array(values, dtype=np.float64, copy=True)
        sums[-1] += 1.0  # the last entry is the "this rank failed" flag
        return sums

    def allgather(self, obj):
        return [obj, ("ValueError", "rank 1: b has length 5")]


def test_invalid_input_on_one_rank_raises_on_every_rank():
    """The other ranks learn of the failure in the first reduction and raise too."""
    A = poisson2d(4)
    D = _dist(A)
    D.comm = _OtherRankFailed()  # the flag is what matters; the rows are this rank's
    for variant in VARIANTS:
        with pytest.raises(ValueError, match="another rank had invalid input: rank 1: "
                                             "ValueError: rank 1: b has length 5"):
            pcg(D, np.ones(16), variant=variant)
    with pytest.raises(ValueError, match="another rank had invalid input"):
        sor(D, np.ones(16), 1.5)
    with pytest.raises(ValueError, match="another rank had invalid input"):
        BlockSOR(D)


class _RootFailed(SerialComm):
    """Rank 1 of 2, receiving from rank 0 what it sends after failing its own checks."""

    rank, size = 1, 2
    marker = ("linsolve.mpi error", "ValueError", "A must be square, got shape (3, 4)")

    def scatter(self, objs, root=0):
        return self.marker

    def bcast(self, obj, root=0):
        return self.marker


def test_errors_on_the_root_reach_the_other_ranks():
    """What only the root reads (global A, global b, the tuner) fails on every rank."""
    comm = _RootFailed()
    with pytest.raises(ValueError, match="another rank had invalid input: rank 0: ValueError: "
                                         "A must be square"):
        DistCSR.from_global(None, comm)
    D = _dist(poisson2d(3))
    D.comm = comm
    with pytest.raises(ValueError, match="another rank had invalid input: rank 0"):
        D.scatter(None)
    with pytest.raises(ValueError, match="another rank had invalid input: rank 0"):
        tuned_solve(None, D, np.ones(9))
    with pytest.raises(TypeError, match="complex"):
        DistCSR.from_rows(sp.csr_matrix(np.eye(3, dtype=complex)), COMM)
    # on the root itself: its own message
    with pytest.raises(ValueError, match="square"):
        DistCSR.from_global(sp.csr_matrix((3, 4)), COMM)
    with pytest.raises(ValueError, match="expected length 9"):
        _dist(poisson2d(3)).scatter(np.ones(4))
    with pytest.raises(ValueError, match="tuner is needed"):
        tuned_solve(None, _dist(poisson2d(3)), np.ones(9))


@pytest.mark.parametrize("variant", VARIANTS)
def test_pcg_preconditioner_failures_raise(variant):
    """M's wrong shape or own exception surfaces (at the next reduction) on the serial path."""
    A = poisson2d(4)
    D = _dist(A)
    with pytest.raises(ValueError, match="M returned shape"):
        pcg(D, np.ones(16), M=lambda r: r[:-1], variant=variant)

    def broken(r):
        raise ZeroDivisionError("broken preconditioner")

    with pytest.raises(ZeroDivisionError, match="broken preconditioner"):
        pcg(D, np.ones(16), M=broken, variant=variant)


def test_block_ssor_preconditioner_equals_serial_ssor():
    A = anisotropic2d(12, 0.1)
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    D = _dist(A)
    result = pcg(D, b, M=BlockSOR(D, 1.4), rtol=1e-10)
    serial = linsolve.pcg(A, b, M=linsolve.precond.ssor(A, 1.4), rtol=1e-10)
    assert result.iterations == serial.iterations
    assert np.allclose(result.x, serial.x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_block_sor_with_one_block_is_sor(symmetric):
    A = poisson2d(10)
    b = np.random.default_rng(2).standard_normal(A.shape[0])
    result = sor(_dist(A), b, 1.6, rtol=1e-8, symmetric=symmetric)
    serial = linsolve.sor(A, b, 1.6, rtol=1e-8, symmetric=symmetric)
    assert result.converged and result.iterations == serial.iterations
    assert np.allclose(result.x, serial.x, rtol=1e-12, atol=1e-14)
    reference = block_sor_reference(A, b, [0, A.shape[0]], 1.6, iterations=result.iterations,
                                    symmetric=symmetric)
    assert np.allclose(result.x, reference, rtol=1e-12, atol=1e-14)


def test_block_sor_reference_blocks_converge_and_differ_from_sor():
    A = poisson2d(8)
    b = np.ones(A.shape[0])
    ranges = balanced_ranges(A.shape[0], 3)
    x = block_sor_reference(A, b, ranges, 1.0, iterations=400)
    assert np.linalg.norm(b - A @ x) <= 1e-8 * np.linalg.norm(b)
    one = block_sor_reference(A, b, ranges, 1.0, iterations=1)
    assert not np.allclose(one, block_sor_reference(A, b, [0, A.shape[0]], 1.0, iterations=1))


def test_block_sor_misuse():
    D = _dist(sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 2.0]])))
    with pytest.raises(ValueError, match="diagonal"):
        BlockSOR(D)
    with pytest.raises(ValueError, match="omega"):
        sor(_dist(poisson2d(3)), np.ones(9), omega=2.0)
    diverged = sor(_dist(poisson2d(3)), np.ones(9), omega=1.99, maxiter=1, rtol=0.0)
    assert diverged.reason == "DIVERGED_ITS"


def test_tuned_solve_matches_tuner_solve():
    base = poisson2d(8)
    shifts = [0.0, 0.2, 0.05, 0.4]
    b = np.random.default_rng(3).standard_normal(base.shape[0])
    serial = linsolve.OmegaBandit(np.linspace(1.0, 1.9, 5), seed=7)
    dist = linsolve.OmegaBandit(np.linspace(1.0, 1.9, 5), seed=7)
    for shift in shifts:
        A = (base + shift * sp.eye(base.shape[0])).tocsr()
        expected = serial.solve(A, b)
        got = tuned_solve(dist, _dist(A), b)
        assert got.extra["omega"] == expected.extra["omega"]
        assert got.extra["cost"] == expected.extra["cost"]
    assert json.dumps(dist.state_dict()) == json.dumps(serial.state_dict())
    pre = tuned_solve(dist, _dist(base), b, solver="ssor-pcg")
    assert pre.converged and pre.extra["cost"] == pre.iterations
    with pytest.raises(ValueError, match="solver"):
        tuned_solve(dist, _dist(base), b, solver="gmres")


class _MiddleRank(SerialComm):
    """Rank 1 of 3 whose halo exchange moves nothing: the test puts the ghost values in place."""

    rank, size = 1, 3

    def alltoall(self, objs):
        return [[] for _ in objs]  # no rank asks this one for values

    def start_exchange(self, sends, recvs):
        return SerialComm().start_exchange([], [])


def test_ghost_product_runs_over_the_compressed_rows_only():
    # 6 x 6 grid, rank 1 owns grid lines 1-4: only lines 1 and 4 touch other ranks
    A = poisson2d(6)
    rows = A[6:30].tocsr()
    D = DistCSR(rows, np.array([0, 6, 30, 36]), _MiddleRank())
    outside = np.r_[0:6, 30:36]
    with_ghosts = np.flatnonzero(np.diff(rows[:, outside].indptr))
    assert with_ghosts.tolist() == list(range(6)) + list(range(18, 24))
    assert D._off_rows.tolist() == with_ghosts.tolist()
    assert D._off[0].size == with_ghosts.size + 1  # the kernel sees 12 rows, not 24
    x = np.random.default_rng(3).standard_normal(36)
    D.ghosts[:] = x[D.garray]
    y = D.matvec(x[6:30])
    # bit-identical to the uncompressed form: diag product plus off_csr over all local rows
    kernels = D._kernels
    uncompressed, off_all = np.empty(24), np.empty(24)
    kernels.csr_spmv(*D._diag, x[6:30], uncompressed)
    kernels.csr_spmv(D.off_csr.indptr.astype(np.int32), D.off_csr.indices.astype(np.int32),
                     D.off_csr.data, D.ghosts, off_all)
    uncompressed += off_all
    assert np.array_equal(y, uncompressed)
    np.testing.assert_allclose(y, rows @ x, rtol=1e-14, atol=1e-14)
    assert np.array_equal(D.off_product(x[6:30]), off_all)


def test_matrix_construction_and_vectors():
    A = anisotropic2d(5, 0.3)
    x = np.arange(A.shape[0], dtype=float)
    D = DistCSR.from_rows(A, COMM)
    assert D.shape == A.shape and D.garray.size == 0
    assert np.allclose(D.matvec(x), A @ x, rtol=1e-15)
    assert np.array_equal(D.gather(x), x) and np.array_equal(D.allgather(x), x)
    assert np.array_equal(D.scatter(x), x)
    assert D.diagonal().tolist() == A.diagonal().tolist()
    with pytest.raises(ValueError, match="square"):
        DistCSR.from_global(sp.csr_matrix((3, 4)), COMM)
    with pytest.raises(ValueError, match="ranges"):
        DistCSR.from_global(A, COMM, ranges=[0, 3])
    assert balanced_ranges(10, 4).tolist() == [0, 3, 6, 8, 10]
    with pytest.raises(TypeError, match="communicator"):
        as_comm(object())


def test_distributed_shampoo_serial_equals_shampoo():
    shapes = [(6, 4), (5,), (3, 2, 2)]
    opt = DistributedShampoo(shapes, comm=COMM, eps=1e-8)
    singles = [Shampoo(s, eps=1e-8) for s in shapes]
    rng = np.random.default_rng(4)
    for _ in range(3):
        grads = [rng.standard_normal(s) for s in shapes]
        for d, e in zip(opt.update(grads), [o.update(g) for o, g in zip(singles, grads)]):
            assert np.array_equal(d, e)
    assert opt.owners == [0, 0, 0] and opt.load() == [sum(opt.costs)]
    state = opt.state_dict()
    clone = DistributedShampoo(shapes, comm=COMM, eps=1e-8)
    clone.load_state_dict(state)
    grads = [rng.standard_normal(s) for s in shapes]
    assert all(np.array_equal(a, b) for a, b in zip(clone.update(grads), opt.update(grads)))
    mats = [np.diag([4.0, 9.0]), np.eye(3) * 16.0]
    roots = distributed_inverse_roots(mats, 2, comm=COMM)
    assert all(np.allclose(r, inverse_root(m, 2)) for r, m in zip(roots, mats))


def test_distributed_shampoo_refuses_another_ranks_checkpoint():
    opt = DistributedShampoo([(3, 2), (4,)], comm=COMM, grafting=None)
    opt.update([np.arange(6.0).reshape(3, 2), np.ones(4)])
    state = opt.state_dict()
    fresh = DistributedShampoo([(3, 2), (4,)], comm=COMM, grafting=None)
    partial = dict(state, blocks={b: s for b, s in state["blocks"].items() if b == 0})
    with pytest.raises(ValueError, match="holds blocks"):
        fresh.load_state_dict(partial)  # block 1 would silently keep its fresh state
    fresh.load_state_dict(state)
    grads = [np.ones((3, 2)), np.arange(4.0)]
    assert all(np.array_equal(a, b) for a, b in zip(fresh.update(grads), opt.update(grads)))


def test_distributed_shampoo_blocking_is_per_tile_shampoo():
    shapes = [(7, 5), (9,)]
    opt = DistributedShampoo(shapes, comm=COMM, block_size=4, eps=1e-8, grafting=None)
    assert len(opt.tiles) == 2 * 2 + 3 and max(max(s) for s in opt.block_shapes) <= 4
    rng = np.random.default_rng(5)
    tiles = [Shampoo(s, eps=1e-8, grafting=None) for s in opt.block_shapes]
    for _ in range(2):
        grads = [rng.standard_normal(s) for s in shapes]
        directions = opt.update(grads)
        for (p, tile), single in zip(opt.tiles, tiles):
            assert np.array_equal(directions[p][tile], single.update(grads[p][tile]))
    with pytest.raises(ValueError, match="block_size"):
        DistributedShampoo(shapes, comm=COMM, block_size=0)
    with pytest.raises(ValueError, match="shape"):
        opt.update([np.zeros((5, 7)), np.zeros(9)])


def test_assign_blocks_largest_first_to_least_loaded():
    assert assign_blocks([1.0, 5.0, 3.0, 3.0], 2) == [0, 0, 1, 1]
    owners = assign_blocks([shampoo_cost((n, n)) for n in (64, 8, 32, 32, 16)], 3)
    assert owners[0] == 0 and len(set(owners)) == 3
    assert assign_blocks([2.0], 4) == [0]
    with pytest.raises(ValueError):
        assign_blocks([1.0], 0)


def test_importing_linsolve_mpi_does_not_import_mpi4py():
    script = ("import sys, linsolve.mpi, curvature.shampoo.distributed; "
              "from linsolve.mpi import SerialComm, as_comm; as_comm(None); "
              "print('mpi4py' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=120, env={k: v for k, v in __import__('os').environ.items()
                                                 if not k.startswith(("PMI_", "OMPI_", "PMIX_"))})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
