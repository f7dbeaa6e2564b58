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


def convection_diffusion(N: int, peclet: float, dtype=np.float64) -> sp.csr_matrix:
    """``-Laplace u + c . grad u`` on an N x N interior grid, ``c = (1, 1) |c|``, 5-point
    diffusion and first-order upwind convection, scaled by ``h^2``; ``peclet`` is the mesh
    Peclet number ``|c| h / 2`` (non-symmetric M-matrix; upwinding keeps it stable). The
    matrix of ``bench.problems.convdiff2d``."""
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    U = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N))  # backward difference: flow in +x
    I = sp.eye(N)
    block = T + 2.0 * peclet * U
    return (sp.kron(I, block) + sp.kron(block, I)).tocsr().astype(dtype)


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


def float32_quartic(offset=1e5):
    """A well-conditioned 6-d quartic in float32, with ``f`` offset so that its
    rounding (``eps32 |f|``, about 6e-3) hides the last decreases; shared by the
    float32 tests of the Newton-type minimizers."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = ((Q * np.linspace(1.0, 4.0, 6)) @ Q.T).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    fun = lambda x: 0.5 * x @ A @ x - b @ x + 0.25 * np.sum(x ** 4) + np.float32(offset)
    grad = lambda x: A @ x - b + x ** 3
    hess = lambda x: A + np.diag(3 * x ** 2)
    x0 = np.full(6, 2.0, dtype=np.float32)
    # 1e-4 relative: reachable in float32 (the gradient itself is accurate to ~1e-6)
    gtol = 1e-4 * float(np.linalg.norm(grad(x0)))
    return fun, grad, hess, x0, gtol


def to_numpy(x) -> np.ndarray:
    """A host NumPy view of a NumPy or ``array_api_strict`` array (the strict
    namespace refuses ``np.asarray`` in some versions)."""
    return np.asarray(x._array if hasattr(x, "_array") else x)


def rows_by_colour(S):
    """A coloured :class:`linsolve.SorMatrix` in the storage of the coloured kernels.

    ``sor_sweep_colored`` and ``sor_run`` (CuPy's and the reference) take the
    off-diagonal rows stored colour by colour with columns, ``x``, ``b`` and
    the diagonal in natural numbering; ``SorMatrix`` holds the whole system
    permuted. Returns ``(indptr, indices, data, diag, color_ptr, color_rows)``.
    """
    perm = S.permutation
    diag = np.empty_like(S.diag)
    diag[perm] = S.diag
    indices = perm[S.off_indices].astype(S.off_indices.dtype)
    return S.off_indptr, indices, S.off_data, diag, S.color_ptr, perm


def gradient_window(dtype, m: int, d: int, seed: int):
    """``(G, v)``: a standard normal M-FAC window of ``m`` gradients of size ``d`` and a vector."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, d)).astype(dtype), rng.standard_normal(d).astype(dtype)


def window_gemv_bound(G, v, offsets, k: int) -> np.ndarray:
    """Per block and row, the rounding bound ``4 (e - s) eps64 sum |G_ij v_j|`` of a float64-summed
    window pass over rows ``:k`` (both sides of a kernel-vs-twin comparison sum in float64)."""
    eps64 = np.finfo(np.float64).eps
    G64, v64 = G[:k].astype(np.float64), v.astype(np.float64)
    return np.array([4 * (e - s) * eps64 * (np.abs(G64[:, s:e]) @ np.abs(v64[s:e]))
                     for s, e in zip(offsets[:-1], offsets[1:])])
