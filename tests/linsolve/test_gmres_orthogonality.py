"""GMRES's one-pass projection checked a step late: the basis stays orthonormal to rounding.

On the compiled kernels each Arnoldi step runs one classical Gram-Schmidt
pass and checks the previous step's vector (:mod:`linsolve.krylov.gmres`).
These tests hold it to what CGS2 gives: ``||I - V^T V||`` of the basis a
cycle builds stays at the rounding level on an ill-conditioned matrix, where
one classical pass alone loses orthogonality; iteration counts and reasons
equal those of the two-pass projection; and the kernel's late check and
in-place correction match the array-API reference.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import scipy.sparse as sp

from cext import numba as nbk
from cext import reference
from linsolve import precond

gmres_module = importlib.import_module("linsolve.krylov.gmres")


def ill_conditioned(n: int = 300, condition: float = 1e10, seed: int = 0) -> sp.csr_matrix:
    """Diagonal ``logspace(0, log10(condition))`` plus a small random non-symmetric part."""
    diagonal = sp.diags(np.logspace(0.0, np.log10(condition), n))
    coupling = sp.random(n, n, density=5.0 / n, random_state=seed) * 0.1
    return sp.csr_matrix(diagonal + coupling)


@pytest.fixture
def bases(monkeypatch):
    """Every basis array the solves below build (their first ``columns + 1`` rows)."""
    built = []
    original = gmres_module._GMRES.update

    def update(self, V, Z, R, g, columns):
        if V.array is not None:
            built.append((V.array[:columns + 1].copy(), columns))
        return original(self, V, Z, R, g, columns)

    monkeypatch.setattr(gmres_module._GMRES, "update", update)
    return built


def two_pass(monkeypatch):
    """Make the solver project by both passes every step (the lagged check off)."""
    original = gmres_module._GMRES.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.lagged = False

    monkeypatch.setattr(gmres_module._GMRES, "__init__", init)


def orthogonality_loss(V: np.ndarray) -> float:
    return float(np.linalg.norm(np.eye(V.shape[0]) - V @ V.T))


def test_basis_stays_orthonormal_on_an_ill_conditioned_matrix(bases):
    A = ill_conditioned()
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    result = gmres_module.gmres(A, b, rtol=1e-12, restart=80, maxiter=3)
    assert result.extra["reorthogonalised"] > 0  # the late check had work to do
    eps = np.finfo(np.float64).eps
    for V, columns in bases:
        # each vector's inner products with the rows before it: root mean square at
        # most LAGGED_CHECK_ABOVE units of roundoff, after the check; so the
        # Frobenius norm of I - V^T V stays below that times the number of rows
        bound = gmres_module.LAGGED_CHECK_ABOVE * eps * (columns + 1)
        assert orthogonality_loss(V) <= bound
    # one classical pass without the check loses far more on the same matrix
    single = _one_pass_without_check(A, b, 80)
    assert single > 10 * gmres_module.LAGGED_CHECK_ABOVE * eps * 81


def _one_pass_without_check(A, b, steps: int) -> float:
    """``||I - V^T V||`` of ``steps`` Arnoldi steps by one classical pass (numpy)."""
    n = A.shape[0]
    V = np.zeros((steps + 1, n))
    V[0] = b / np.linalg.norm(b)
    for j in range(steps):
        w = A @ V[j]
        w -= (V[:j + 1] @ w) @ V[:j + 1]
        V[j + 1] = w / np.linalg.norm(w)
    return orthogonality_loss(V)


@pytest.mark.parametrize("preconditioned", [False, True])
def test_counts_and_reasons_equal_the_two_pass_projection(monkeypatch, preconditioned):
    from bench.problems import convdiff2d

    cases = [(ill_conditioned(), 60), (convdiff2d(24, 1.0), 20), (convdiff2d(24, 30.0), 10)]
    lagged = []
    for A, restart in cases:
        b = np.random.default_rng(2).standard_normal(A.shape[0])
        M = precond.ilu0(A) if preconditioned else None
        lagged.append(gmres_module.gmres(A, b, M=M, rtol=1e-10, restart=restart,
                                         maxiter=50))
    two_pass(monkeypatch)
    for (A, restart), one in zip(cases, lagged):
        b = np.random.default_rng(2).standard_normal(A.shape[0])
        M = precond.ilu0(A) if preconditioned else None
        both = gmres_module.gmres(A, b, M=M, rtol=1e-10, restart=restart, maxiter=50)
        assert one.reason == both.reason
        assert abs(one.iterations - both.iterations) <= 1
        if one.converged:  # (restarted GMRES stalls on the ill-conditioned matrix alone)
            assert np.linalg.norm(b - A @ one.x) <= 1e-10 * np.linalg.norm(b) * (1 + 1e-6)
        else:
            assert one.true_residual_norm <= 1.05 * both.true_residual_norm  # stalls no higher


@pytest.mark.parametrize("offset", [0.0, 1e-13, 1e-6])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_late_check_matches_the_reference(offset, dtype):
    """``tau < 0``: status 0 (orthogonal), 1 (``V[j]`` corrected in place) and 2 (left to
    the caller), the compiled kernel against the array-API twin."""
    rng = np.random.default_rng(3)
    n, j = 3000, 5
    Q = np.linalg.qr(rng.standard_normal((n, 8)))[0].T
    scale = 1.0 if dtype == np.float64 else 2.0**29  # the same status in float32's units
    Q[j] += offset * scale * Q[1]
    V_nb, V_ref = Q.astype(dtype), Q.astype(dtype)
    w = rng.standard_normal(n).astype(dtype)
    w_nb, w_ref = w.copy(), w.copy()
    h_nb, h_ref = np.zeros(2 * j + 6), np.zeros(2 * j + 6)
    nbk.gmres_project(V_nb, j, w_nb, h_nb, -64.0)
    reference.gmres_project(V_ref, j, w_ref, h_ref, -64.0)
    status = h_nb[2 * j + 3]
    assert status == h_ref[2 * j + 3] == {0.0: 0, 1e-13: 1, 1e-6: 2}[offset]
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(h_nb[j + 3:2 * j + 3], h_ref[j + 3:2 * j + 3], rtol=0,
                               atol=50 * eps * max(1.0, offset * scale))
    if status == 2:  # nothing done
        np.testing.assert_array_equal(w_nb, w)
        np.testing.assert_array_equal(V_nb, Q.astype(dtype))
        return
    np.testing.assert_allclose(V_nb, V_ref, rtol=0, atol=50 * eps)
    np.testing.assert_allclose(w_nb, w_ref, rtol=0, atol=50 * eps)
    np.testing.assert_allclose(h_nb[:j + 3], h_ref[:j + 3], rtol=50 * eps)
    # w is orthogonal to the (corrected) rows and of unit norm; so is V[j] to the rows before
    V64 = V_nb.astype(np.float64)
    assert np.abs(V64[:j + 1] @ w_nb.astype(np.float64)).max() <= 50 * eps
    assert np.abs(V64[:j] @ V64[j]).max() <= 50 * eps
    assert abs(np.linalg.norm(w_nb.astype(np.float64)) - 1.0) <= 50 * eps


def test_a_vector_far_from_orthogonal_gets_both_passes_again(monkeypatch, bases):
    """Status 2: a basis vector spoilt by far more than rounding (here on purpose) is
    orthogonalised again by both passes, its column corrected, its product made again:
    the solve keeps its count and an orthonormal basis."""
    from bench.problems import convdiff2d

    A = convdiff2d(24, 1.0)
    b = np.random.default_rng(4).standard_normal(A.shape[0])
    clean = gmres_module.gmres(A, b, rtol=1e-10, restart=30)
    original = gmres_module._GMRES.__init__
    spoilt = []

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        project = self.project

        def spoiling(V, j, w, h, tau):
            if tau < 0 and j == 6 and not spoilt:
                V[j] += 1e-6 * V[2]  # v_6 off orthogonal by 1e-6: beyond SEVERE u
                spoilt.append(j)
            return project(V, j, w, h, tau)

        self.project = spoiling

    monkeypatch.setattr(gmres_module._GMRES, "__init__", init)
    bases.clear()
    result = gmres_module.gmres(A, b, rtol=1e-10, restart=30)
    assert spoilt and result.extra["reorthogonalised"] >= 1
    assert result.converged and abs(result.iterations - clean.iterations) <= 1
    assert np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b) * (1 + 1e-6)
    V, columns = bases[0]
    assert orthogonality_loss(V) <= gmres_module.LAGGED_CHECK_ABOVE * np.finfo(float).eps \
        * (columns + 1)
