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
