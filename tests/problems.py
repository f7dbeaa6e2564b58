"""Shared problem builders for the tests (one place, not copied per test)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def poisson1d(n: int, dtype=np.float64) -> sp.csr_matrix:
    """Tridiagonal [-1, 2, -1]."""
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr", dtype=dtype)


def poisson2d(N: int, dtype=np.float64) -> sp.csr_matrix:
    """5-point Laplacian on an N x N interior grid (unscaled), n = N^2."""
    T = poisson1d(N)
    I = sp.eye(N)
    return (sp.kron(I, T) + sp.kron(T, I)).tocsr().astype(dtype)


def anisotropic2d(N: int, epsilon: float = 0.01, dtype=np.float64) -> sp.csr_matrix:
    """-u_xx - epsilon u_yy, 5-point, on an N x N interior grid."""
    T = poisson1d(N)
    I = sp.eye(N)
    return (sp.kron(I, T) + epsilon * sp.kron(T, I)).tocsr().astype(dtype)


def random_spd(n: int, cond: float = 100.0, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """Dense SPD matrix with eigenvalues log-spaced in [1, cond]."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigenvalues = np.logspace(0, np.log10(cond), n)
    A = (Q * eigenvalues) @ Q.T
    return ((A + A.T) / 2).astype(dtype)


def random_sparse_spd(n: int, density: float = 0.05, seed: int = 0,
                      dtype=np.float64) -> sp.csr_matrix:
    """Random sparse SPD matrix, strictly diagonally dominant (not a stencil: CSR path)."""
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=density, random_state=rng, format="csr")
    S = B + B.T
    d = np.asarray(abs(S).sum(axis=1)).ravel() + 1.0
    return (S + sp.diags(d)).tocsr().astype(dtype)


def indefinite(n: int = 20, dtype=np.float64) -> sp.csr_matrix:
    """Symmetric with eigenvalues of both signs (diagonal -1, 1, 2, ...)."""
    d = np.arange(1.0, n + 1.0)
    d[0] = -1.0
    return sp.diags(d, format="csr", dtype=dtype)
