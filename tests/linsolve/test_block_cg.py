"""``block_cg``: one Krylov space for every right-hand side, breakdown-free (Ji and Li, 2017)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from linsolve import BatchSolveResult, block_cg, pcg, precond
from tests.problems import poisson2d, random_sparse_spd, random_spd, to_numpy


def _meets(A, B, result, rtol):
    A = A.toarray() if sp.issparse(A) else np.asarray(A)
    for j in range(B.shape[0]):
        residual = np.linalg.norm(B[j] - A @ np.asarray(result.x[j], dtype=np.float64))
        assert residual <= rtol * np.linalg.norm(B[j]) * (1 + 1e-6), (j, residual)
        assert np.isclose(result[j].true_residual_norm, residual, rtol=1e-6, atol=1e-300)


@pytest.mark.parametrize("name", ["none", "jacobi", "ichol0"])
def test_every_system_meets_its_tolerance_in_fewer_iterations(name):
    A = poisson2d(16)
    M = {"none": None, "jacobi": precond.jacobi(A), "ichol0": precond.ichol0(A)}[name]
    B = np.random.default_rng(0).standard_normal((6, A.shape[0]))
    result = block_cg(A, B, M=M, rtol=1e-9)
    assert isinstance(result, BatchSolveResult) and result.converged.all()
    _meets(A, B, result, 1e-9)
    single = max(pcg(A, B[j], M=M, rtol=1e-9).iterations for j in range(6))
    assert result.iterations.max() < single
    np.testing.assert_allclose(result.x, np.linalg.solve(A.toarray(), B.T).T, rtol=1e-6,
                               atol=1e-8)


def test_rank_deficient_blocks_do_not_break_it():
    A = random_sparse_spd(120, seed=2)
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3, 120))
    B = np.vstack([base, base[:2], base[0] + 2 * base[1], np.zeros(120), 1e7 * base[2],
                   1e-7 * base[1]])
    caller = B.copy()
    result = block_cg(A, B, rtol=1e-10)
    assert np.array_equal(B, caller)
    assert result.converged.all(), result.reason
    assert result.reason[6] == "CONVERGED_ATOL" and not np.any(result.x[6])
    _meets(A, B, result, 1e-10)
    # three independent directions: the search block shrinks to them
    assert max(result[0].extra["block_size"]) <= 3


def test_per_system_stop_and_deflation():
    A = poisson2d(12)
    B = np.random.default_rng(3).standard_normal((3, 144))
    result = block_cg(A, B, rtol=[1e-2, 1e-8, 1e-12])
    assert result.iterations[0] < result.iterations[1] < result.iterations[2]
    _meets(A, B[:1], result, 1e-2)
    assert result[2].extra["block_size"][-1] == 1  # the last system alone at the end


def test_nan_and_indefinite_are_reported():
    A = poisson2d(6)
    B = np.random.default_rng(4).standard_normal((2, 36))
    B[1, 3] = np.nan
    result = block_cg(A, B, rtol=1e-8)
    assert result.reason.tolist() == ["CONVERGED_RTOL", "DIVERGED_NANORINF"]
    indefinite = sp.diags(np.r_[-1.0, np.ones(35)], format="csr")
    bad = block_cg(indefinite, np.ones((2, 36)) + np.eye(2, 36), rtol=1e-8)
    assert set(bad.reason.tolist()) <= {"DIVERGED_INDEFINITE_MAT", "CONVERGED_RTOL"}
    assert not bad.converged.all()


def test_maxiter_monitor_and_errors():
    A = poisson2d(8)
    B = np.random.default_rng(5).standard_normal((2, 64))
    capped = block_cg(A, B, rtol=1e-12, maxiter=2)
    assert capped.reason.tolist() == ["DIVERGED_ITS"] * 2 and capped.iterations.tolist() == [2, 2]
    seen = []
    block_cg(A, B, rtol=1e-6, monitor=lambda k, rnorm: seen.append(k))
    assert seen == list(range(len(seen)))
    with pytest.raises(TypeError, match="rtol"):
        block_cg(A, B, tol=1e-6)
    with pytest.raises(ValueError, match="x0"):
        block_cg(A, B, x0=np.zeros((3, 64)))


def test_reference_backends(backend):
    A = random_spd(24, cond=30, seed=6)
    B = np.random.default_rng(7).standard_normal((3, 24))
    result = block_cg(backend.asarray(A), backend.asarray(B), rtol=1e-10)
    assert result.converged.all()
    X = np.stack([to_numpy(backend.to_numpy(result[j].x)) for j in range(3)])
    np.testing.assert_allclose(X, np.linalg.solve(A, B.T).T, rtol=1e-8, atol=1e-10)
