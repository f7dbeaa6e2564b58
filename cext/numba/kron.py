"""Batched Kronecker matvecs for many small layers (Numba).

``B`` dense layers of the same shape, each an ``(m, n)`` matrix ``X[b]``
(column-major vec, :mod:`curvature.kronecker._kron`): ``vec(L X R) = kron(R', L)
vec(X)``. For a handful of 10-100-wide layers one BLAS call per layer
costs more in call overhead than in flops; here one parallel loop runs
over the layers and each layer's two (or four) small products run
serially in float64 registers and a per-layer scratch. Mirrors
:mod:`cext.cupy.kron` and :mod:`cext.reference.kron`.

No ``fastmath``: a NaN in a factor or a gradient must reach the result.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)
_JIT_SERIAL = dict(_JIT, parallel=False)


@nb.njit(**_JIT_SERIAL)
def _left(L, transpose, X, T):
    """``T = op(L) @ X`` (``op`` the transpose when asked), float64 accumulation."""
    m, n = X.shape
    for i in range(m):
        for j in range(n):
            T[i, j] = 0.0
        for k in range(m):
            lik = np.float64(L[k, i]) if transpose else np.float64(L[i, k])
            for j in range(n):
                T[i, j] += lik * np.float64(X[k, j])


@nb.njit(**_JIT_SERIAL)
def _right(X, R, transpose, T):
    """``T = X @ op(R)``, float64 accumulation (row by row, contiguous inner loop)."""
    m, n = X.shape
    for i in range(m):
        for j in range(n):
            T[i, j] = 0.0
        for k in range(n):
            xik = np.float64(X[i, k])
            if transpose:
                for j in range(n):
                    T[i, j] += xik * np.float64(R[j, k])
            else:
                for j in range(n):
                    T[i, j] += xik * np.float64(R[k, j])


@nb.njit(**_JIT)
def kron_matvec(left, right, X, out):
    """``out[b] = left[b] @ X[b] @ right[b]`` (float64 sums, rounded once)."""
    B, m, n = X.shape
    for b in prange(B):
        T = np.empty((m, n))
        U = np.empty((m, n))
        _left(left[b], False, X[b], T)
        _right(T, right[b], False, U)
        for i in range(m):
            for j in range(n):
                out[b, i, j] = U[i, j]


@nb.njit(**_JIT)
def kron_eigen_solve(Ql, dl, Qr, dr, damping, X, out):
    """``out[b] = Ql[b] ((Ql[b]' X[b] Qr[b]) / (dl[b] dr[b]' + damping)) Qr[b]'``."""
    B, m, n = X.shape
    for b in prange(B):
        T = np.empty((m, n))
        U = np.empty((m, n))
        _left(Ql[b], True, X[b], T)
        _right(T, Qr[b], False, U)
        for i in range(m):
            for j in range(n):
                U[i, j] /= np.float64(dl[b, i]) * np.float64(dr[b, j]) + damping
        _left(Ql[b], False, U, T)
        _right(T, Qr[b], True, U)
        for i in range(m):
            for j in range(n):
                out[b, i, j] = U[i, j]
