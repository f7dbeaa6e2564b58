"""Kernels of the batched Krylov iterations: a sparse matrix times a block of vectors (Numba).

A block of ``k`` vectors of length ``n`` is stored as an ``(n, k)`` C-ordered
array, so the ``k`` values every matrix entry multiplies are one contiguous
run (one cache line for ``k = 8`` in float64): the matrix is streamed once
for all ``k`` systems, and the gathers of the block cost what one vector's
gathers do. Column sums (the ``k`` inner products) run over fixed chunks of
rows in parallel and add the chunks' partial sums in chunk order, so the
bits depend on ``n`` only, not on the thread count. Mirrors
:mod:`cext.reference.block`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)

_CHUNK = 2048  # rows per partial sum: fixed, so the sums do not depend on the threads


@nb.njit(**_JIT)
def csr_spmm_dot(indptr, indices, data, P, Q, dots):
    """``Q = A @ P`` for CSR ``A`` and ``(n, k)`` blocks; ``dots[j] = P[:, j] . Q[:, j]``."""
    n, k = Q.shape
    chunks = (n + _CHUNK - 1) // _CHUNK
    partial = np.zeros((chunks, k))
    for c in prange(chunks):
        acc = np.empty(k)
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            for j in range(k):
                acc[j] = 0.0
            for e in range(indptr[i], indptr[i + 1]):
                a = data[e]
                col = indices[e]
                for j in range(k):
                    acc[j] += a * P[col, j]
            for j in range(k):
                Q[i, j] = acc[j]
                partial[c, j] += P[i, j] * Q[i, j]
    for j in range(k):
        dots[j] = 0.0
    for c in range(chunks):
        for j in range(k):
            dots[j] += partial[c, j]


@nb.njit(**_JIT)
def block_cg_update(X, R, P, Q, alpha, rr):
    """``X += P alpha``; ``R -= Q alpha`` column by column; ``rr[j] = R[:, j] . R[:, j]``."""
    n, k = X.shape
    chunks = (n + _CHUNK - 1) // _CHUNK
    partial = np.zeros((chunks, k))
    for c in prange(chunks):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            for j in range(k):
                X[i, j] += alpha[j] * P[i, j]
                value = R[i, j] - alpha[j] * Q[i, j]
                R[i, j] = value
                partial[c, j] += value * value
    for j in range(k):
        rr[j] = 0.0
    for c in range(chunks):
        for j in range(k):
            rr[j] += partial[c, j]


@nb.njit(**_JIT)
def block_update_p(P, Z, beta):
    """``P = Z + P beta`` column by column, in place."""
    n, k = P.shape
    for i in prange(n):
        for j in range(k):
            P[i, j] = Z[i, j] + beta[j] * P[i, j]


@nb.njit(**_JIT)
def block_dots(U, V, out):
    """``out[j] = U[:, j] . V[:, j]``, the chunked sums of the other block kernels."""
    n, k = U.shape
    chunks = (n + _CHUNK - 1) // _CHUNK
    partial = np.zeros((chunks, k))
    for c in prange(chunks):
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            for j in range(k):
                partial[c, j] += U[i, j] * V[i, j]
    for j in range(k):
        out[j] = 0.0
    for c in range(chunks):
        for j in range(k):
            out[j] += partial[c, j]
