"""``pcg(A, B)`` with ``B`` of shape ``(..., n)``: each system as if solved alone, all in one pass.

Each system runs ``pcg``'s recurrence with its own scalars; the batch
differs from ``k`` separate calls only in how the inner products are summed
(the block kernels' fixed chunks against the single-vector kernels'
threads), so iterates agree to a few units of rounding per iteration.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import scipy.sparse as sp

from linsolve import BatchSolveResult, SolveResult, pcg, precond
from tests.problems import poisson2d, random_sparse_spd, random_spd, to_numpy

PRECONDITIONERS = {
    "none": lambda A: None,
    "jacobi": precond.jacobi,
    "ssor": lambda A: precond.ssor(A, 1.2),
    "ichol0": precond.ichol0,
    "chebyshev": lambda A: precond.chebyshev(A, 3),
}


def _block(n: int, k: int, seed: int = 0, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((k, n)).astype(dtype)


def _condition(A) -> float:
    eigenvalues = np.linalg.eigvalsh(A.toarray() if sp.issparse(A) else np.asarray(A, float))
    return float(eigenvalues[-1] / eigenvalues[0])


def _iterate_bound(result: SolveResult, A, dtype) -> float:
    """How far a batched iterate may sit from the single one, relative to ``||x||``.

    The two differ only in the summation order of the inner products: a few
    eps per scalar, which perturbs each step's coefficients; CG's iterates
    respond to such perturbations by up to ``sqrt(cond)`` (the A-norm's
    distortion) and the effect accumulates along the iterations.
    """
    eps = float(np.finfo(dtype).eps)
    return 8 * eps * max(result.iterations, 1) * math.sqrt(_condition(A))


@pytest.mark.parametrize("name", sorted(PRECONDITIONERS))
@pytest.mark.parametrize("matrix", ["csr", "dia", "dense"])
def test_every_system_equals_its_single_solve(matrix, name):
    if matrix == "dia":
        A = poisson2d(9)           # a stencil: pcg runs it on the DIA kernels
    elif matrix == "csr":
        A = random_sparse_spd(90, seed=4)
    else:
        A = random_spd(80, cond=10, seed=2)
    if matrix == "dense" and name in ("ichol0", "ssor"):
        A = sp.csr_matrix(A)
    M = PRECONDITIONERS[name](A)
    B = _block(A.shape[0], 4, seed=1)
    batch = pcg(A, B, M=M, rtol=1e-10)
    assert isinstance(batch, BatchSolveResult) and len(batch) == 4
    for j in range(4):
        alone = pcg(A, B[j], M=M, rtol=1e-10)
        assert batch[j].iterations == alone.iterations, j
        assert batch[j].reason == alone.reason
        bound = _iterate_bound(alone, A, np.float64)
        assert np.linalg.norm(batch.x[j] - alone.x) <= bound * np.linalg.norm(alone.x)
        np.testing.assert_allclose(batch[j].residual_norms, alone.residual_norms,
                                   rtol=bound, atol=bound * alone.residual_norms[0])
        assert batch[j].converged and np.linalg.norm(B[j] - A @ batch.x[j]) \
            <= 1e-10 * np.linalg.norm(B[j])


def test_float32_blocks_stay_float32_and_match_the_single_solves():
    A = random_sparse_spd(80, seed=3, dtype=np.float32)
    B = _block(80, 3, seed=2, dtype=np.float32)
    batch = pcg(A, B, rtol=1e-5)
    assert batch.x.dtype == np.float32
    for j in range(3):
        alone = pcg(A, B[j], rtol=1e-5)
        assert batch[j].iterations == alone.iterations
        assert np.linalg.norm(batch.x[j] - alone.x) <= \
            _iterate_bound(alone, A, np.float32) * np.linalg.norm(alone.x)


def test_shapes_column_row_and_leading_dimensions():
    A = random_sparse_spd(30, seed=5)
    b = _block(30, 1)[0]
    assert isinstance(pcg(A, b[:, None]), SolveResult)          # (n, 1): one system
    one = pcg(A, b[None, :])                                     # (1, n): a batch of one
    assert isinstance(one, BatchSolveResult) and one.x.shape == (1, 30)
    B = _block(30, 6).reshape(2, 3, 30)
    batch = pcg(A, B, rtol=1e-9)
    assert batch.x.shape == (2, 3, 30) and batch.converged.shape == (2, 3)
    X, info = batch
    assert X.shape == (2, 3, 30) and info.shape == (2, 3) and not info.any()
    np.testing.assert_allclose(X[1, 2], pcg(A, B[1, 2], rtol=1e-9).x, rtol=1e-10, atol=1e-12)


def test_per_system_tolerances_and_maxiter():
    A = poisson2d(8)
    B = _block(64, 3)
    batch = pcg(A, B, rtol=[1e-2, 1e-6, 1e-10])
    assert batch.iterations[0] < batch.iterations[1] < batch.iterations[2]
    for j, rtol in enumerate([1e-2, 1e-6, 1e-10]):
        assert batch[j].iterations == pcg(A, B[j], rtol=rtol).iterations
    capped = pcg(A, B, rtol=1e-12, maxiter=3)
    assert capped.reason.tolist() == ["DIVERGED_ITS"] * 3 and capped.iterations.tolist() == [3] * 3
    assert capped.info.tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="rtol"):
        pcg(A, B, rtol=[1e-6, 1e-6])
    with pytest.raises(ValueError, match="atol"):
        pcg(A, B, atol=[0.0, -1.0, 0.0])


def test_one_bad_system_spoils_none_of_the_others():
    A = random_sparse_spd(50, seed=6)
    B = _block(50, 4, seed=3)
    B[1, 7] = np.nan
    B[2] = 0.0
    B[3] *= 1e8
    caller = B.copy()
    batch = pcg(A, B, rtol=1e-9)
    assert np.array_equal(B, caller, equal_nan=True)
    assert batch.reason.tolist() == ["CONVERGED_RTOL", "DIVERGED_NANORINF", "CONVERGED_ATOL",
                                     "CONVERGED_RTOL"]
    assert not np.any(batch.x[2])
    for j in (0, 3):
        alone = pcg(A, B[j], rtol=1e-9)
        assert batch[j].iterations == alone.iterations
        assert np.linalg.norm(B[j] - A @ batch.x[j]) <= 1e-9 * np.linalg.norm(B[j])


def test_an_indefinite_system_leaves_the_batch_with_its_reason():
    d = np.linspace(1.0, 2.0, 20)
    A = sp.diags(d, format="csr")
    B = _block(20, 2, seed=4)
    M_bad = sp.diags(np.where(np.arange(20) == 3, -1.0, 1.0), format="csr")
    batch = pcg(A, B, M=M_bad, rtol=1e-10)
    assert set(batch.reason.tolist()) <= {"DIVERGED_INDEFINITE_PC", "CONVERGED_RTOL"}
    assert "DIVERGED_INDEFINITE_PC" in batch.reason.tolist()


def test_x0_and_Mb_starts():
    A = poisson2d(6)
    B = _block(36, 3, seed=5)
    X0 = _block(36, 3, seed=6)
    caller = X0.copy()
    batch = pcg(A, B, x0=X0, rtol=1e-10)
    assert np.array_equal(X0, caller)
    for j in range(3):
        assert batch[j].iterations == pcg(A, B[j], x0=X0[j], rtol=1e-10).iterations
    exact = np.linalg.solve(A.toarray(), B.T).T
    assert pcg(A, B, x0=exact, rtol=1e-8).iterations.tolist() == [0, 0, 0]
    M = precond.jacobi(A)
    assert pcg(A, B, x0="Mb", M=M, rtol=1e-10).converged.all()
    with pytest.raises(ValueError, match="x0"):
        pcg(A, B, x0=X0[:2])


def test_monitor_and_callback_see_the_batch():
    A = poisson2d(5)
    B = _block(25, 2, seed=7)
    lines = io.StringIO()
    seen = []
    batch = pcg(A, B, rtol=1e-8, monitor=lines, callback=lambda X: seen.append(np.array(X)))
    iterations = int(batch.iterations.max())
    assert len(lines.getvalue().splitlines()) == iterations + 1
    assert len(seen) == iterations and seen[-1].shape == (2, 25)
    np.testing.assert_array_equal(seen[-1], batch.x)
    first = float(lines.getvalue().splitlines()[0].split()[-1])
    assert math.isclose(first, max(np.linalg.norm(B[0]), np.linalg.norm(B[1])), rel_tol=1e-12)


def test_reference_backends_run_the_same_batch(backend):
    A = random_spd(20, cond=50, seed=8)
    B = _block(20, 3, seed=9)
    ours = pcg(backend.asarray(A), backend.asarray(B), rtol=1e-10)
    for j in range(3):
        alone = pcg(A, B[j], rtol=1e-10)
        assert ours[j].iterations == alone.iterations
        np.testing.assert_allclose(to_numpy(backend.to_numpy(ours[j].x)), alone.x,
                                   rtol=1e-9, atol=1e-12)


def test_matrix_free_operators_get_the_block_when_they_take_one():
    import scipy.sparse.linalg as sla

    A = poisson2d(6)
    B = _block(36, 3, seed=10)
    blocks, vectors = [], []

    def block_product(P):
        blocks.append(P.shape)
        return A @ P

    def vector_product(v):
        vectors.append(v.shape)
        return A @ v

    operator = sla.LinearOperator(A.shape, matvec=vector_product, matmat=block_product,
                                  dtype=np.float64)
    batch = pcg(operator, B, rtol=1e-10)
    # the iterations' products go as blocks; only the true-residual checks go one at a time
    assert blocks and all(shape[0] == 36 for shape in blocks)
    assert 0 < len(vectors) <= 3 * 2
    callable_batch = pcg(lambda v: A @ v, B, rtol=1e-10)
    for j in range(3):
        assert batch[j].iterations == callable_batch[j].iterations == \
            pcg(A, B[j], rtol=1e-10).iterations
        np.testing.assert_allclose(batch.x[j], callable_batch.x[j], rtol=1e-12, atol=1e-14)


def test_jacobi_applies_to_the_block_in_one_pass():
    A = random_sparse_spd(50, seed=11)
    M = precond.jacobi(A)
    R = _block(50, 4, seed=12).T.copy()
    np.testing.assert_array_equal(M.matmat(R), np.stack([M.matvec(R[:, j]) for j in range(4)],
                                                        axis=1))


# -- the block kernels under the batch: vector lanes for float64, scalar loops otherwise --
def _spmv_column(A, v):
    from cext.numba.spmv import csr_spmv

    out = np.empty(A.shape[0], dtype=v.dtype)
    csr_spmv(A.indptr, A.indices, A.data, np.ascontiguousarray(v), out)
    return out


# k = 8: one group of lanes; 11: a group and three scalar columns; 16: two groups; 3: none
@pytest.mark.parametrize("k", [3, 8, 11, 16])
def test_block_product_has_the_single_spmv_bits_in_every_column(k):
    from cext.numba import block

    A = random_sparse_spd(2500, density=0.004, seed=13)  # two chunks of rows and a remainder
    P = np.random.default_rng(14).standard_normal((2500, k))
    Q, dots = np.full_like(P, np.nan), np.full(k, np.nan)
    block.csr_spmm_dot(A.indptr, A.indices, A.data, P, Q, dots)
    for j in range(k):
        np.testing.assert_array_equal(Q[:, j], _spmv_column(A, P[:, j]))
    # the dots: float64 sums of 2500 products, each within 2500 eps of the exact sum
    exact = np.einsum("ij,ij->j", P, A @ P)
    bound = 2500 * np.finfo(np.float64).eps * np.einsum("ij,ij->j", abs(P), abs(A) @ abs(P))
    assert np.all(abs(dots - exact) <= bound)


@pytest.mark.parametrize("k", [3, 9])
def test_block_updates_match_the_reference_kernels(k):
    from cext.numba import block as compiled
    from cext.reference import block as reference

    rng = np.random.default_rng(15)
    X, R, P, Q = (rng.standard_normal((2100, k)) for _ in range(4))
    alpha, beta = rng.standard_normal(k), rng.standard_normal(k)
    X_ref, R_ref, rr_ref = reference.block_cg_update(X.copy(), R.copy(), P, Q, alpha,
                                                     np.empty(k))
    rr = np.empty(k)
    compiled.block_cg_update(X, R, P, Q, alpha, rr)
    # element-wise: the same two roundings each; sums: float64, 2100 terms
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(R, R_ref)
    np.testing.assert_allclose(rr, rr_ref, rtol=2100 * np.finfo(np.float64).eps)
    P_ref = reference.block_update_p(P.copy(), R, beta)
    compiled.block_update_p(P, R, beta)
    np.testing.assert_array_equal(P, P_ref)


def test_float32_block_product_and_a_batch_wider_than_the_lanes():
    from cext.numba import block

    A = random_sparse_spd(300, seed=16, dtype=np.float32)
    P = np.random.default_rng(17).standard_normal((300, 9)).astype(np.float32)
    Q, dots = np.empty_like(P), np.empty(9)
    block.csr_spmm_dot(A.indptr, A.indices, A.data, P, Q, dots)  # the scalar path
    for j in range(9):
        np.testing.assert_array_equal(Q[:, j], _spmv_column(A, P[:, j]))
    # nine systems: eight in lanes and one in scalar sums, each as if solved alone
    A = random_sparse_spd(120, seed=18)
    B = _block(120, 9, seed=19)
    batch = pcg(A, B, rtol=1e-10)
    for j in range(9):
        alone = pcg(A, B[j], rtol=1e-10)
        assert batch[j].iterations == alone.iterations
        bound = _iterate_bound(alone, A, np.float64)
        assert np.linalg.norm(batch.x[j] - alone.x) <= bound * np.linalg.norm(alone.x)


def test_a_nan_in_one_lane_stays_in_its_column():
    from cext.numba import block

    A = random_sparse_spd(200, seed=20)
    P = np.random.default_rng(21).standard_normal((200, 8))
    P[5, 3] = np.nan
    Q, dots = np.empty_like(P), np.empty(8)
    block.csr_spmm_dot(A.indptr, A.indices, A.data, P, Q, dots)
    assert np.isnan(dots[3]) and np.isfinite(np.delete(dots, 3)).all()
    assert np.isfinite(np.delete(Q, 3, axis=1)).all()


class _NotSSOR:
    """``M``'s matvec behind an object pcg does not recognise: plain PCG with SSOR,
    not Eisenstat's trick (whose iterates differ from it in rounding)."""

    def __init__(self, M):
        self.shape, self.dtype, self.matvec = M.shape, M.dtype, M.matvec


@pytest.mark.parametrize("ordering", ["natural", "domains"])
@pytest.mark.parametrize("build", ["ichol0", "ssor"])
def test_ichol0_and_ssor_blocks_give_each_system_its_single_iterates(build, ordering):
    # the preconditioner applies to the (n, k) block in one compiled pass, each column
    # bit for bit its matvec: each system keeps the single solve's iterates
    A = sp.csr_array(random_sparse_spd(120, seed=4))
    M = precond.ichol0(A, ordering=ordering) if build == "ichol0" \
        else precond.ssor(A, 1.3, ordering=ordering)
    assert M._solve_block is not None
    B = _block(A.shape[0], 5, seed=3)
    batch = pcg(A, B, M=M, rtol=1e-10)
    for j in range(5):
        alone = pcg(A, B[j], M=M if build == "ichol0" else _NotSSOR(M), rtol=1e-10)
        assert batch[j].iterations == alone.iterations and batch[j].converged
        assert np.linalg.norm(batch.x[j] - alone.x) <= 1e-12 * np.linalg.norm(alone.x)
        np.testing.assert_allclose(batch[j].residual_norms, alone.residual_norms, rtol=1e-10)
        if build == "ssor":  # against what pcg runs for M = ssor(A): Eisenstat's recurrence
            eisenstat = pcg(A, B[j], M=M, rtol=1e-10)
            assert abs(batch[j].iterations - eisenstat.iterations) <= 1
            assert np.linalg.norm(batch.x[j] - eisenstat.x) <= 1e-10 * np.linalg.norm(eisenstat.x)
        expected = np.linalg.solve(A.toarray(), B[j])
        assert np.linalg.norm(batch.x[j] - expected) <= 1e-8 * np.linalg.norm(expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_stencil_batch_in_vector_lanes_equals_the_single_solves(dtype):
    # nine systems on a DIA matrix: eight in the block product's lanes (float64), one in
    # its scalar sums; float32 runs all nine in scalar sums
    from array_api_compat import array_namespace

    from linsolve.core.operators import as_operator

    A = poisson2d(12, dtype=dtype)
    assert as_operator(A, array_namespace(np.ones(1)), dtype, 144).layout == "dia"
    B = _block(144, 9, seed=22, dtype=dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    batch = pcg(A, B, rtol=rtol)
    for j in range(9):
        alone = pcg(A, B[j], rtol=rtol)
        assert batch[j].iterations == alone.iterations, j
        bound = _iterate_bound(alone, A, dtype)
        assert np.linalg.norm(batch.x[j] - alone.x) <= bound * np.linalg.norm(alone.x)
        assert batch[j].converged
