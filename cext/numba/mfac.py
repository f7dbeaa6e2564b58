"""Passes over an M-FAC gradient window, accumulated in float64 (Numba).

The window ``G`` (k x d, row-major, float32 or float64) is read in its own
dtype and every sum runs in float64: at small damping the M-FAC solve
subtracts two nearly equal vectors and divides by the damping, so a
float32 accumulation leaves no correct digit (:mod:`curvature.mfac`).
Columns are split into blocks (one per layer, ``block_offsets``); a
single block is the whole window. Kernels are dumb: raw arrays in,
results written into ``out``; the caller (:mod:`curvature.mfac`) checks
shapes. Mirrors :mod:`cext.cupy.mfac` and the same names in
:mod:`cext.reference`.

Measured choices (d = 1e6, m = 128-256, float32, 2 threads; see
``bench/mfac_speed.py``):

- Columns go in chunks of ``_CHUNK`` (never straddling a block), one
  chunk per task. In ``G v`` the chunk of ``v`` is converted to float64
  once into a buffer that stays in L1/L2, and eight rows are summed at a
  time, so each element of the buffer serves eight rows; going through
  row views (``G[i]``) instead of ``G[i, j]`` and through the buffer
  instead of converting ``v[j]`` per row halved the time (105 -> 54 ms,
  BLAS ``sgemv`` 50 ms, m = 128).
- ``fastmath={"reassoc", "contract"}`` lets LLVM vectorise the float64
  reductions with several partial sums and use FMA; ``nnan``/``ninf`` stay
  off so a NaN or Inf in the window or the vector reaches the result.
  Sums therefore differ from a left-to-right loop in the last bits.
- Partial sums per chunk are added serially in chunk order, so results do
  not depend on the number of threads.
"""

from __future__ import annotations

from functools import lru_cache

import numba as nb
import numpy as np
from numba import prange

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False,
            fastmath={"reassoc", "contract"})

# The per-chunk helpers run inside a task: no parallel region of their own.
_JIT_SERIAL = dict(_JIT, parallel=False)

_CHUNK = 8192  # columns per task: 32 KiB of a float32 row, 64 KiB of float64 buffer


@lru_cache(maxsize=64)
def _chunks(block_offsets: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(chunk_start, chunk_block)``: column chunks that never straddle a block."""
    starts, blocks = [], []
    for b in range(len(block_offsets) - 1):
        for c in range(block_offsets[b], block_offsets[b + 1], _CHUNK):
            starts.append(c)
            blocks.append(b)
    starts.append(block_offsets[-1])
    return np.asarray(starts, dtype=np.int64), np.asarray(blocks, dtype=np.int64)


def _offsets(block_offsets) -> tuple[int, ...]:
    return tuple(int(o) for o in block_offsets)


def window_gemv(G, v, block_offsets, out) -> None:
    """``out[b, i] = sum_{j in block b} G[i, j] v[j]`` accumulated in float64.

    ``G`` (m, d), of which rows ``i < k`` are read, ``k = out.shape[1]``;
    ``v`` (d,) of any float dtype; ``block_offsets`` the ``nblocks + 1``
    column offsets (``(0, d)`` for one block); ``out`` (nblocks, k) float64.

    Examples
    --------
    >>> import numpy as np
    >>> G = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> out = np.empty((2, 2))
    >>> window_gemv(G, np.ones(3), (0, 2, 3), out)
    >>> out.tolist()
    [[1.0, 7.0], [2.0, 5.0]]
    """
    start, block = _chunks(_offsets(block_offsets))
    _gemv(G, v, start, block, out)


def window_axpy_gemv_t(G, coef, v, alpha, beta, block_offsets, out) -> None:
    """``out[j] = alpha v[j] + beta sum_i coef[b(j), i] G[i, j]`` in float64.

    ``b(j)`` is the block of column ``j``; ``coef`` (nblocks, k) float64,
    rows ``i < k`` of ``G`` are read; ``out`` (d,) of any float dtype
    (rounded once). With ``alpha = beta =
    1/damping`` and ``coef = -c`` this is the M-FAC ``(v - G'c)/damping``.

    Examples
    --------
    >>> import numpy as np
    >>> G = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> out = np.empty(3)
    >>> window_axpy_gemv_t(G, np.array([[1.0, 1.0]]), np.ones(3), 2.0, -1.0, (0, 3), out)
    >>> out.tolist()
    [-1.0, -3.0, -5.0]
    """
    start, block = _chunks(_offsets(block_offsets))
    _axpy_gemv_t(G, coef, v, float(alpha), float(beta), start, block, out)


def window_push_gemv(G, slot, g, block_offsets, out) -> None:
    """``G[slot] = g`` (rounded to the window dtype), then ``window_gemv(G, G[slot])``.

    One pass: each chunk of ``g`` is written into the ring and multiplied
    with rows ``i < k = out.shape[1]`` while it is in cache -- the new Gram
    row of M-FAC's ``update``. ``out`` (nblocks, k) float64; ``slot < k``.

    Examples
    --------
    >>> import numpy as np
    >>> G = np.ones((2, 3), dtype=np.float32)
    >>> out = np.empty((1, 2))
    >>> window_push_gemv(G, 1, np.array([1.0, 2.0, 3.0]), (0, 3), out)
    >>> out.tolist(), G[1].tolist()
    ([[6.0, 14.0]], [1.0, 2.0, 3.0])
    """
    start, block = _chunks(_offsets(block_offsets))
    _push_gemv(G, int(slot), g, start, block, out)


@nb.njit(**_JIT_SERIAL)
def _rows_times_buffer(G, k, s, e, w, partial, c):
    """``partial[c, i] = sum_{j in [s, e)} G[i, j] w[j - s]`` for rows ``i < k`` (float64)."""
    i = 0
    while i + 16 <= k:  # 16 rows share each load of w (8 rows: 1.1x slower, 4: 1.5x)
        g0, g1, g2, g3 = G[i], G[i + 1], G[i + 2], G[i + 3]
        g4, g5, g6, g7 = G[i + 4], G[i + 5], G[i + 6], G[i + 7]
        h0, h1, h2, h3 = G[i + 8], G[i + 9], G[i + 10], G[i + 11]
        h4, h5, h6, h7 = G[i + 12], G[i + 13], G[i + 14], G[i + 15]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = 0.0
        for j in range(s, e):
            wj = w[j - s]
            a0 += np.float64(g0[j]) * wj
            a1 += np.float64(g1[j]) * wj
            a2 += np.float64(g2[j]) * wj
            a3 += np.float64(g3[j]) * wj
            a4 += np.float64(g4[j]) * wj
            a5 += np.float64(g5[j]) * wj
            a6 += np.float64(g6[j]) * wj
            a7 += np.float64(g7[j]) * wj
            b0 += np.float64(h0[j]) * wj
            b1 += np.float64(h1[j]) * wj
            b2 += np.float64(h2[j]) * wj
            b3 += np.float64(h3[j]) * wj
            b4 += np.float64(h4[j]) * wj
            b5 += np.float64(h5[j]) * wj
            b6 += np.float64(h6[j]) * wj
            b7 += np.float64(h7[j]) * wj
        for r, a in enumerate((a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7)):
            partial[c, i + r] = a
        i += 16
    while i < k:
        gi = G[i]
        acc = 0.0
        for j in range(s, e):
            acc += np.float64(gi[j]) * w[j - s]
        partial[c, i] = acc
        i += 1


@nb.njit(**_JIT_SERIAL)
def _reduce_chunks(partial, chunk_block, out):
    """``out[b, :] = sum of partial[c, :] over the chunks c of block b``, in chunk order."""
    out[:, :] = 0.0
    k = partial.shape[1]
    for c in range(partial.shape[0]):
        b = chunk_block[c]
        for i in range(k):
            out[b, i] += partial[c, i]


@nb.njit(**_JIT)
def _gemv(G, v, chunk_start, chunk_block, out):
    nch = chunk_start.shape[0] - 1
    k = out.shape[1]
    partial = np.empty((nch, k))
    for c in prange(nch):
        s = chunk_start[c]
        e = chunk_start[c + 1]
        w = np.empty(e - s)
        for j in range(s, e):
            w[j - s] = v[j]
        _rows_times_buffer(G, k, s, e, w, partial, c)
    _reduce_chunks(partial, chunk_block, out)


@nb.njit(**_JIT)
def _push_gemv(G, slot, g, chunk_start, chunk_block, out):
    nch = chunk_start.shape[0] - 1
    k = out.shape[1]
    partial = np.empty((nch, k))
    row = G[slot]
    for c in prange(nch):
        s = chunk_start[c]
        e = chunk_start[c + 1]
        w = np.empty(e - s)
        for j in range(s, e):
            row[j] = g[j]
            w[j - s] = row[j]  # the value stored, in float64
        _rows_times_buffer(G, k, s, e, w, partial, c)
    _reduce_chunks(partial, chunk_block, out)


@nb.njit(**_JIT)
def _axpy_gemv_t(G, coef, v, alpha, beta, chunk_start, chunk_block, out):
    k = coef.shape[1]
    nch = chunk_start.shape[0] - 1
    for c in prange(nch):
        s = chunk_start[c]
        e = chunk_start[c + 1]
        b = chunk_block[c]
        acc = np.zeros(e - s)
        i = 0
        while i + 8 <= k:
            g0, g1, g2, g3 = G[i], G[i + 1], G[i + 2], G[i + 3]
            g4, g5, g6, g7 = G[i + 4], G[i + 5], G[i + 6], G[i + 7]
            c0, c1, c2, c3 = coef[b, i], coef[b, i + 1], coef[b, i + 2], coef[b, i + 3]
            c4, c5, c6, c7 = coef[b, i + 4], coef[b, i + 5], coef[b, i + 6], coef[b, i + 7]
            for j in range(s, e):
                acc[j - s] += (((c0 * np.float64(g0[j]) + c1 * np.float64(g1[j]))
                                + (c2 * np.float64(g2[j]) + c3 * np.float64(g3[j])))
                               + ((c4 * np.float64(g4[j]) + c5 * np.float64(g5[j]))
                                  + (c6 * np.float64(g6[j]) + c7 * np.float64(g7[j]))))
            i += 8
        while i < k:
            gi = G[i]
            ci = coef[b, i]
            for j in range(s, e):
                acc[j - s] += ci * np.float64(gi[j])
            i += 1
        for j in range(s, e):
            out[j] = alpha * np.float64(v[j]) + beta * acc[j - s]


# --- the small m x m system, serial ------------------------------------------
# Serial on purpose: OpenBLAS threads a 256 x 256 Cholesky or matrix-vector
# product, and its woken threads then spin (~0.1 s) on the cores the next
# window pass needs. Measured under load (2 cores): update 0.35 s -> 0.14 s.

@nb.njit(**_JIT_SERIAL)
def _inverse_factor(A, out):
    nb_, k = A.shape[0], A.shape[1]
    L = np.zeros((k, k))
    for b in range(nb_):
        L[:, :] = 0.0
        for j in range(k):  # Cholesky, column by column (A = L L')
            pivot = A[b, j, j]
            for p in range(j):
                pivot -= L[j, p] * L[j, p]
            if not (pivot > 0.0 and pivot < np.inf):
                return False
            ljj = np.sqrt(pivot)
            L[j, j] = ljj
            for i in range(j + 1, k):
                acc = A[b, i, j]
                for p in range(j):
                    acc -= L[i, p] * L[j, p]
                L[i, j] = acc / ljj
        S = out[b]
        S[:, :] = 0.0
        for j in range(k):  # S = L^{-1}, column j by forward substitution
            S[j, j] = 1.0 / L[j, j]
            for i in range(j + 1, k):
                acc = 0.0
                for p in range(j, i):
                    acc -= L[i, p] * S[p, j]
                S[i, j] = acc / L[i, i]
    return True


def spd_inverse_factor(A, out) -> bool:
    """``out[b] = L_b^{-1}`` for the Cholesky factors ``A[b] = L_b L_b'`` (float64 stacks).

    Returns ``False`` (``out`` undefined) where a pivot is not positive and
    finite. ``A`` and ``out`` of shape ``(nblocks, k, k)``.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty((1, 2, 2))
    >>> spd_inverse_factor(np.array([[[4.0, 2.0], [2.0, 5.0]]]), out), out[0].tolist()
    (True, [[0.5, 0.0], [-0.25, 0.5]])
    """
    return bool(_inverse_factor(A, out))


@nb.njit(**_JIT_SERIAL)
def _factor_apply(S, y, out):
    nb_, k = S.shape[0], S.shape[1]
    t = np.empty(k)
    for b in range(nb_):
        for i in range(k):
            acc = 0.0
            for j in range(k):
                acc += S[b, i, j] * y[b, j]
            t[i] = acc
        for j in range(k):
            out[b, j] = 0.0
        for i in range(k):
            ti = t[i]
            for j in range(k):
                out[b, j] += S[b, i, j] * ti


def factor_apply(S, y, out) -> None:
    """``out[b] = S[b]' (S[b] y[b])`` (float64), i.e. ``A[b]^{-1} y[b]`` for ``S = L^{-1}``."""
    _factor_apply(S, y, out)
