"""Block-aware passes over an M-FAC window, accumulated in float64.

The two O(dm) products of :mod:`curvature.mfac` -- ``G_b v_b`` for every
column block b, and ``alpha v + beta G_b' c_b`` -- for NumPy windows (arrays
and memmaps) as Numba kernels, for any other array-API namespace as a
chunked reference on ``xp.matmul``. Both read the window in its own dtype
and accumulate in float64 (the reason is in :mod:`curvature.mfac`).
A single-block window is the plain :class:`~curvature.mfac.MFAC`.
"""

from __future__ import annotations

import operator
from typing import Sequence

import numba as nb
import numpy as np
from array_api_compat import is_numpy_namespace
from numba import prange

# Column chunk of the non-NumPy (reference) path: bounds the float64 copy
# of the window made per step to m x _REFERENCE_CHUNK.
_REFERENCE_CHUNK = 1 << 16
# Column chunk of the Numba kernels: a float64 chunk of v (or of the
# accumulator) stays in L1 while all m rows stream past it.
_KERNEL_CHUNK = 2048


def _check_positive_int(name: str, value) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


# --- Numba kernels ----------------------------------------------------------
# Private to M-FAC until cext grows a home for them (cext/numba/window.py).
# 'reassoc' lets LLVM vectorise the float64 reductions; 'nnan'/'ninf' stay
# off so NaN/Inf propagate. Rows go eight at a time so that each loaded
# chunk of v (or of the accumulator) serves eight rows of the window.
_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False,
            fastmath={"reassoc", "contract"})


@nb.njit(**_JIT)
def _window_dot(G, k, v, chunk_start, chunk_block, out):
    """``out[b, i] = sum_{j in block b} G[i, j] v[j]`` (float64), rows ``i < k``."""
    nch = chunk_start.shape[0] - 1
    partial = np.zeros((nch, k))
    for c in prange(nch):
        s = chunk_start[c]
        e = chunk_start[c + 1]
        i = 0
        while i + 8 <= k:
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
            for j in range(s, e):
                vj = v[j]
                a0 += np.float64(G[i, j]) * vj
                a1 += np.float64(G[i + 1, j]) * vj
                a2 += np.float64(G[i + 2, j]) * vj
                a3 += np.float64(G[i + 3, j]) * vj
                a4 += np.float64(G[i + 4, j]) * vj
                a5 += np.float64(G[i + 5, j]) * vj
                a6 += np.float64(G[i + 6, j]) * vj
                a7 += np.float64(G[i + 7, j]) * vj
            partial[c, i] = a0
            partial[c, i + 1] = a1
            partial[c, i + 2] = a2
            partial[c, i + 3] = a3
            partial[c, i + 4] = a4
            partial[c, i + 5] = a5
            partial[c, i + 6] = a6
            partial[c, i + 7] = a7
            i += 8
        while i < k:
            acc = 0.0
            for j in range(s, e):
                acc += np.float64(G[i, j]) * v[j]
            partial[c, i] = acc
            i += 1
    # Serial, fixed-order reduction over chunks: results do not depend on
    # the thread count.
    out[:, :] = 0.0
    for c in range(nch):
        b = chunk_block[c]
        for i in range(k):
            out[b, i] += partial[c, i]


@nb.njit(**_JIT)
def _window_combine(G, k, coef, v, alpha, beta, chunk_start, chunk_block, out):
    """``out[j] = alpha v[j] + beta sum_i coef[b(j), i] G[i, j]`` (float64)."""
    nch = chunk_start.shape[0] - 1
    for c in prange(nch):
        s = chunk_start[c]
        e = chunk_start[c + 1]
        b = chunk_block[c]
        acc = np.zeros(e - s)
        i = 0
        while i + 8 <= k:
            c0, c1, c2, c3 = coef[b, i], coef[b, i + 1], coef[b, i + 2], coef[b, i + 3]
            c4, c5, c6, c7 = coef[b, i + 4], coef[b, i + 5], coef[b, i + 6], coef[b, i + 7]
            for j in range(s, e):
                acc[j - s] += (((c0 * np.float64(G[i, j]) + c1 * np.float64(G[i + 1, j]))
                                + (c2 * np.float64(G[i + 2, j]) + c3 * np.float64(G[i + 3, j])))
                               + ((c4 * np.float64(G[i + 4, j]) + c5 * np.float64(G[i + 5, j]))
                                  + (c6 * np.float64(G[i + 6, j])
                                     + c7 * np.float64(G[i + 7, j]))))
            i += 8
        while i < k:
            ci = coef[b, i]
            for j in range(s, e):
                acc[j - s] += ci * np.float64(G[i, j])
            i += 1
        for j in range(s, e):
            out[j] = alpha * v[j] + beta * acc[j - s]



class _Layout:
    """Column blocks of the window and the kernels' chunking of them."""

    def __init__(self, block_sizes: Sequence[int]):
        sizes = [_check_positive_int("block size", b) for b in block_sizes]
        if not sizes:
            raise ValueError("block_sizes must name at least one block")
        self.sizes = tuple(sizes)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.dim = int(self.offsets[-1])
        starts, blocks = [], []
        for b, (s, e) in enumerate(zip(self.offsets[:-1], self.offsets[1:])):
            for c in range(int(s), int(e), _KERNEL_CHUNK):
                starts.append(c)
                blocks.append(b)
        starts.append(self.dim)
        self.chunk_start = np.asarray(starts, dtype=np.int64)
        self.chunk_block = np.asarray(blocks, dtype=np.int64)


class _Window:
    """The two passes over a window, accumulated in float64.

    NumPy windows (arrays and memmaps) go through Numba kernels; any other
    namespace through a chunked reference built on ``xp.matmul``.
    """

    def __init__(self, xp, layout: _Layout):
        self.xp = xp
        self.layout = layout
        self.numba = is_numpy_namespace(xp)

    def dot(self, G, k: int, v64):
        """``(nblocks, k)`` float64: block b of ``G[:k] @ v``."""
        xp, lay = self.xp, self.layout
        nb = len(lay.sizes)
        if self.numba:
            out = np.empty((nb, k))
            _window_dot(np.asarray(G), k, v64, lay.chunk_start, lay.chunk_block, out)
            return out
        rows = []
        for b in range(nb):
            acc = xp.zeros((k,), dtype=xp.float64)
            for s in range(int(lay.offsets[b]), int(lay.offsets[b + 1]), _REFERENCE_CHUNK):
                e = min(s + _REFERENCE_CHUNK, int(lay.offsets[b + 1]))
                block = xp.astype(G[:k, s:e], xp.float64)
                acc = acc + block @ v64[s:e]
            rows.append(acc)
        return xp.stack(rows)

    def combine(self, G, k: int, coef, v64, alpha: float, beta: float):
        """float64 ``alpha v + beta G_b' coef_b`` per block b."""
        xp, lay = self.xp, self.layout
        if self.numba:
            out = np.empty(lay.dim)
            _window_combine(np.asarray(G), k, np.ascontiguousarray(coef), v64, alpha, beta,
                           lay.chunk_start, lay.chunk_block, out)
            return out
        pieces = []
        for b in range(len(lay.sizes)):
            for s in range(int(lay.offsets[b]), int(lay.offsets[b + 1]), _REFERENCE_CHUNK):
                e = min(s + _REFERENCE_CHUNK, int(lay.offsets[b + 1]))
                block = xp.astype(G[:k, s:e], xp.float64)
                pieces.append(alpha * v64[s:e] + beta * (coef[b, :] @ block))
        return xp.concat(pieces)
