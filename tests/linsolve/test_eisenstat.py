"""SSOR-PCG by Eisenstat's trick: PCG + SSOR's iterates, PCG's exit test, one pass a step."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cext import reference
from cext.numba import eisenstat as compiled
from linsolve import pcg, precond
from linsolve.krylov.eisenstat import eisenstat_solve
from tests.problems import convection_diffusion, poisson2d, random_sparse_spd


def _mesh(n=200, seed=3):
    return sp.csr_array(random_sparse_spd(n, density=0.04, seed=seed))


PROBLEMS = [("poisson", lambda: sp.csr_array(poisson2d(14))), ("mesh", _mesh)]


@pytest.mark.parametrize("ordering,omega", [("natural", 1.0), ("domains", 1.5)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("problem", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_same_iterates_and_verdict_as_pcg_with_ssor(problem, dtype, ordering, omega):
    A = problem[1]().astype(dtype)
    b = np.random.default_rng(0).standard_normal(A.shape[0]).astype(dtype)
    M = precond.ssor(A, omega, ordering=ordering)
    rtol = 1e-8 if dtype == np.float64 else 1e-5
    expected = pcg(A, b, M=M, rtol=rtol)
    seen = []
    result = eisenstat_solve(A, b, M=M, rtol=rtol, callback=lambda x: seen.append(x.copy()))
    assert result.extra["eisenstat"] and result.x.dtype == dtype
    assert result.reason == expected.reason == "CONVERGED_RTOL"
    assert abs(result.iterations - expected.iterations) <= 1
    assert len(seen) == result.iterations == len(result.residual_norms) - 1
    # the guarantee: the residual recomputed in the working precision meets the tolerance
    true = float(np.linalg.norm(b - A @ result.x))
    assert true <= rtol * float(np.linalg.norm(b)) * (1 + 1e-6)
    # the residual's own rounding: a few eps of |b| + |A| |x| in each entry
    rounding = 10 * np.finfo(dtype).eps * float(np.linalg.norm(
        np.abs(b).astype(np.float64) + abs(A).astype(np.float64) @ np.abs(result.x)))
    assert abs(result.true_residual_norm - true) <= rounding
    # iterates equal in exact arithmetic: compare against the dense solution's error scale
    exact = np.linalg.solve(A.toarray().astype(np.float64), b.astype(np.float64))
    cond = np.linalg.cond(A.toarray().astype(np.float64))
    tol = 100 * np.finfo(dtype).eps * cond
    scale = np.linalg.norm(exact)
    for k in (1, 2, 5):
        if k <= min(len(seen), expected.iterations):
            reference_k = pcg(A, b, M=M, rtol=0.0, maxiter=k).x.astype(np.float64)
            assert np.linalg.norm(seen[k - 1] - reference_k) <= tol * scale


def test_residual_history_is_the_true_residual_of_the_iterates():
    A = _mesh()
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    M = precond.ssor(A, 1.2, ordering="domains")
    iterates = []
    result = eisenstat_solve(A, b, M=M, rtol=1e-10, callback=lambda x: iterates.append(x.copy()))
    for k, x in enumerate(iterates, start=1):
        assert result.residual_norms[k] == pytest.approx(np.linalg.norm(b - A @ x), rel=1e-6,
                                                         abs=1e-12 * np.linalg.norm(b))


def test_start_from_x0_b_zero_and_check_every():
    A = sp.csr_array(poisson2d(10))
    b = np.random.default_rng(2).standard_normal(A.shape[0])
    M = precond.ssor(A, 1.3)
    x0 = np.random.default_rng(3).standard_normal(A.shape[0])
    kept = x0.copy()
    expected = pcg(A, b, x0, M=M, rtol=1e-9)
    result = eisenstat_solve(A, b, x0, M=M, rtol=1e-9, check_every=3)
    assert np.array_equal(x0, kept)
    assert result.converged and abs(result.iterations - expected.iterations) <= 1
    zero = eisenstat_solve(A, np.zeros(A.shape[0]), x0, M=M)
    assert zero.converged and not zero.x.any()
    capped = eisenstat_solve(A, b, M=M, rtol=1e-12, maxiter=3)
    assert capped.reason == "DIVERGED_ITS" and capped.iterations == 3
    assert capped.true_residual_norm == pytest.approx(np.linalg.norm(b - A @ capped.x))


def test_not_applied_where_it_would_be_wrong():
    A = sp.csr_array(poisson2d(8))
    b = np.ones(A.shape[0])
    M = precond.ssor(A)
    other = sp.csr_array(2.0 * A)  # same pattern, other values: M is not A's SSOR
    assert M.built_from(A) and not M.built_from(other)
    with pytest.raises(ValueError, match="Eisenstat"):
        eisenstat_solve(other, b, M=M)
    nonsymmetric = sp.csr_array(convection_diffusion(8, 3.0))
    with pytest.raises(ValueError, match="Eisenstat"):
        eisenstat_solve(nonsymmetric, b, M=precond.ssor(nonsymmetric))
    with pytest.raises(ValueError, match="Eisenstat"):
        eisenstat_solve(A.astype(np.float32), b.astype(np.float32), M=M)  # M is float64
    A.data[0] += 1.0  # the caller changed A in place after building M
    assert not M.built_from(A)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernels_match_reference(dtype):
    A = _mesh(90, seed=5).astype(dtype)
    M = precond.ssor(A, 1.4, ordering="domains", num_domains=2)
    ops = M.eisenstat_factors()
    n = A.shape[0]
    rng = np.random.default_rng(4)
    r, p0, rhat0 = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    out = {}
    for name, module in (("numba", compiled), ("reference", reference)):
        rtilde, rhat = np.empty(n, dtype), np.empty(n, dtype)
        module.eisenstat_start(*ops.lower, ops.scale, ops.perm, ops.segment_ptr, ops.stage_ptr,
                               r, rtilde, rhat, ops.quad)
        p, t, u, a = p0.copy(), np.empty(n, dtype), np.empty(n, dtype), np.empty(n, dtype)
        module.eisenstat_backward(*ops.upper, ops.segment_ptr, ops.stage_ptr, rhat0, p, 0.7,
                                  False, t, ops.upper_quad)
        pq = module.eisenstat_forward(*ops.lower, ops.segment_ptr, ops.stage_ptr, p, t, u, a,
                                      ops.omega, ops.quad)
        x = np.zeros(n, dtype)
        norms = module.eisenstat_update(x, rhat, rtilde, t, u, a, ops.root, 0.3, ops.omega)
        out[name] = (rtilde, rhat, p, t, u, a, x, pq, *norms)
    eps = float(np.finfo(dtype).eps)
    for got, want in zip(out["numba"], out["reference"]):
        np.testing.assert_allclose(got, want, rtol=50 * eps, atol=50 * eps)
    # the operator is V^{-1} Ahat V^{-T} with V = I + C, Ahat = D^{-1/2} B D^{-1/2}
    C = sp.csr_array((ops.lower[2], ops.lower[1], ops.lower[0]), shape=(n, n)).toarray()
    V = np.eye(n) + C.astype(np.float64)
    B = A.toarray().astype(np.float64)[np.ix_(M.perm, M.perm)]
    s = ops.scale.astype(np.float64)
    inverse = np.linalg.inv(V)
    S = inverse @ (s[:, None] * B * s[None, :]) @ inverse.T
    p = out["reference"][2].astype(np.float64)
    q = out["reference"][3] / ops.omega + out["reference"][4]
    np.testing.assert_allclose(q, S @ p, rtol=1e3 * eps, atol=1e3 * eps * np.abs(S @ p).max())


def _triangles(m):
    """A 7-point pattern (a triangulated grid: six neighbours, three below the diagonal),
    diagonally dominant: the rows the sweeps unroll."""
    n = m * m
    index = np.arange(n).reshape(m, m)
    rows, cols = [], []
    for di, dj in ((0, 1), (1, 0), (1, -1)):
        a = index[max(0, -di):m - max(0, di), max(0, -dj):m - max(0, dj)]
        b = index[max(0, di):m - max(0, -di) or None, max(0, dj):m - max(0, -dj) or None]
        rows.append(a.ravel())
        cols.append(b.ravel())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    values = -np.random.default_rng(7).uniform(0.5, 1.5, rows.shape[0])
    off = sp.coo_array((values, (rows, cols)), shape=(n, n))
    off = off + off.T
    return sp.csr_array(off + sp.diags_array(1.0 - off.sum(axis=1)))


def _condition(A) -> float:
    """An upper bound of the condition number of symmetric, diagonally dominant ``A`` from
    Gershgorin's discs (no dense eigensolver: cheap, and rigorous)."""
    A = sp.csr_array(A, dtype=np.float64)
    diagonal = A.diagonal()
    radius = abs(A).sum(axis=1) - np.abs(diagonal)
    return float((diagonal + radius).max() / (diagonal - radius).min())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ordering", ["natural", "domains"])
def test_compiled_loop_gives_the_python_loops_bits(dtype, ordering):
    # a callback keeps the iterations in Python, one kernel call each
    A = _triangles(30).astype(dtype)  # rows not padded (row_width 1): the unrolled sweeps
    assert np.bincount(np.diff(sp.tril(A, -1, format="csr").indptr)).argmax() == 3
    b = np.random.default_rng(5).standard_normal(A.shape[0]).astype(dtype)
    M = precond.ssor(A, 1.3, ordering=ordering)
    for options in ({"rtol": 1e-6}, {"rtol": 1e-6, "check_every": 3}, {"rtol": 0.0, "maxiter": 7}):
        compiled_run = pcg(A, b, M=M, **options)
        python_run = pcg(A, b, M=M, callback=lambda x: None, **options)
        assert compiled_run.extra["eisenstat"] and python_run.extra["eisenstat"]
        assert np.array_equal(compiled_run.x, python_run.x)
        assert np.array_equal(compiled_run.residual_norms, python_run.residual_norms)
        for field in ("reason", "iterations", "matvecs", "psolves", "true_residual_norm"):
            assert getattr(compiled_run, field) == getattr(python_run, field), field
    # and it is the solution: the dense solve's
    exact = np.linalg.solve(A.toarray().astype(np.float64), b.astype(np.float64))
    result = pcg(A, b, M=M, rtol=1e-5 if dtype == np.float32 else 1e-10)
    cond = _condition(A)
    tol = (1e-5 if dtype == np.float32 else 1e-10) * cond
    assert np.linalg.norm(result.x - exact) <= tol * np.linalg.norm(exact)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_run_and_permutations_match_reference(dtype):
    A = _triangles(30).astype(dtype)
    M = precond.ssor(A, 1.2, ordering="domains")
    ops = M.eisenstat_factors()
    assert not ops.upper_quad  # the backward sweep's unpadded rows
    n = A.shape[0]
    r = np.random.default_rng(6).standard_normal(n).astype(dtype)
    out = {}
    for name, module in (("numba", compiled), ("reference", reference)):
        rtilde, rhat = np.empty(n, dtype), np.empty(n, dtype)
        module.eisenstat_start(*ops.lower, ops.scale, ops.perm, ops.segment_ptr, ops.stage_ptr,
                               r, rtilde, rhat, ops.quad)
        x = np.zeros(n, dtype)
        p, t, u, a = (np.zeros(n, dtype) for _ in range(4))
        scalars = np.array([1.0, float(np.dot(rhat.astype(np.float64), rhat)), 1.0, 0.0])
        counters, norms = np.array([0, 1, 0]), np.zeros(6)
        module.eisenstat_run(*ops.lower, *ops.upper, ops.segment_ptr, ops.stage_ptr, ops.root,
                             x, rhat, rtilde, p, t, u, a, scalars, counters, norms, ops.omega,
                             0.0, 100, 5, 0, ops.quad, ops.upper_quad)
        into, back = np.empty(n, dtype), np.empty(n, dtype)
        module.eisenstat_into_permuted(r, ops.perm, ops.scale, into)
        module.eisenstat_from_permuted(into, ops.perm, ops.scale, back)
        out[name] = (x, rhat, rtilde, p, t, norms, scalars, counters, into, back)
        assert counters.tolist() == [5, 0, 0]  # five iterations, stopped at the end given
    # the twins round differently (the reference sums C t in float64): five
    # steps of rounding on O(1) data (r, the first residual), amplified at
    # most by the condition number
    eps = float(np.finfo(dtype).eps)
    cond = _condition(A)
    for got, want in zip(out["numba"], out["reference"]):
        np.testing.assert_allclose(got, want, atol=100 * eps * cond * max(1.0, np.abs(want).max()))
    assert np.array_equal(out["numba"][8], r[ops.perm] / ops.scale)
    assert np.array_equal(out["numba"][9][ops.perm], ops.scale * out["numba"][8])
    # five steps of SSOR-PCG: x (in the original numbering) is pcg's fifth iterate
    x = np.empty(n, dtype)
    compiled.eisenstat_from_permuted(out["numba"][0], ops.perm, ops.scale, x)
    fifth = pcg(A, r, M=M, rtol=0.0, maxiter=5, callback=lambda x: None).x
    assert np.linalg.norm(x - fifth) <= 100 * eps * cond * np.linalg.norm(fifth)
