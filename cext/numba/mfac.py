"""Passes over an M-FAC gradient window, accumulated in float64 (Numba and BLAS).

The window ``G`` (k x d, row-major, float32 or float64) is read in its own
dtype and every sum runs in float64: at small damping the M-FAC solve
subtracts two nearly equal vectors and divides by the damping, so a
float32 accumulation leaves no correct digit (:mod:`curvature.mfac.window`).
Columns are split into blocks (one per layer, ``block_offsets``); a
single block is the whole window. Kernels are dumb: raw arrays in,
results written into ``out``; the caller (:mod:`curvature.mfac.window`) checks
shapes. Mirrors :mod:`cext.cupy.mfac` and :mod:`cext.reference.mfac`.

Two paths:

- **float64 windows** go to BLAS ``dgemv`` (NumPy's ``matmul`` on the
  block's column slice, no copy), one call per block of at least
  ``_BLAS_MIN_COLUMNS`` columns; that *is* the baseline, at BLAS's own
  thread count (held to :func:`cext.threads.get_num_threads` when the
  library's ceiling is lower). Smaller blocks go to the Numba kernels.
- **float32 windows** stay on Numba: BLAS ``sgemv`` sums in float32, and
  no chunking rescues it. The error a float32 pass leaves in ``G v`` or
  ``G'c`` reaches the result amplified by about ``|g|^2 / (m lambda)``
  (the cancellation the module notes of :mod:`curvature.mfac.window` describe);
  measured on the float32 test case of ``tests/curvature/test_mfac.py`` (d = 2000,
  m = 64, lambda = 1e-5, chunks of 512 columns, float64 across chunks):
  relative error 0.17 with ``G v`` in sgemv, 0.12 with ``G'c`` in sgemv,
  0.11 with ``c`` split into float32 hi + lo parts (two sgemvs), 0.19 with
  both -- against 1e-4 required and 4.7e-10 with float64 sums. The products
  ``g_ij v_j`` need more than float32's 24 bits: a float32 BLAS cannot
  form them.

Choices for the Numba path (measured with ``bench/mfac_speed.py``):

- Threads are Python threads running serial ``nogil`` kernels that take
  tasks (runs of column chunks) from a shared counter, not a Numba
  ``prange`` region. A thread that loses its core delays one task, not a
  barrier the others spin on, so with other processes busy the passes
  keep up with sgemv where OpenMP kernels fell behind it. The thread count
  is the library's ceiling (:func:`cext.threads.get_num_threads`: all
  cores, one per MPI rank, or what the user set), like BLAS's pool, not
  lowered by the load probe (dynamic tasks already share a busy machine),
  and one thread below ``_MIN_WORK_PER_THREAD`` entries per thread.
- A pass right behind a BLAS call shares the cores with OpenBLAS's idle
  workers, which spin about 0.1 s (``OPENBLAS_THREAD_TIMEOUT``, default
  2**28 cycles), and runs slower there. Nothing in the kernel can stop
  another library's threads; ``bench/mfac_speed.py`` reports that case
  apart (``solve_after_blas``).
- Columns go in chunks of ``_CHUNK`` (never straddling a block). In ``G v``
  the chunk of ``v`` is converted to float64 once into a buffer that stays
  in L2, and sixteen rows are summed at a time, so each element of the
  buffer serves sixteen rows. ``G'c`` keeps a float64 accumulator of one
  chunk in L2 and adds sixteen rows per sweep over it (eight: twice the
  accumulator traffic). Chunks are longer than L1 holds: long runs of each
  row suit the prefetcher better than L1 suits the buffer.
- Rows are sliced per chunk (``G[i, s:e]``) and indexed from 0. Indexing
  ``G[i][j]`` with ``j`` in ``range(s, e)`` kept Numba's negative-index
  wraparound, and LLVM vectorised it as a gather per four elements.
- ``fastmath={"reassoc", "contract"}`` lets LLVM vectorise the float64
  reductions with several partial sums and use FMA; ``nnan``/``ninf`` stay
  off so a NaN or Inf in the window or the vector reaches the result.
  Sums therefore differ from a left-to-right loop in the last bits.
- Partial sums per chunk are added serially in chunk order, so results do
  not depend on the number of threads.
"""

from __future__ import annotations

import itertools
import threading
from functools import lru_cache

import numba as nb
import numpy as np

_JIT = dict(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc", "contract"})

_CHUNK = 16384
"""Columns per chunk: a 128 KiB float64 buffer or accumulator, in L2 beside the row streams."""

_TASK_ENTRIES = 1 << 24
"""Window entries per task (about 4 ms on one core): many tasks for balance, few calls."""

_MIN_WORK_PER_THREAD = 1 << 21
"""Window entries below which another Python thread (about 0.1 ms to start) does not pay."""

_BLAS_MIN_COLUMNS = 4096
"""Blocks of a float64 window at least this wide go to BLAS (one call each)."""


# --- layout --------------------------------------------------------------------

@lru_cache(maxsize=64)
def _chunks(block_offsets: tuple[int, ...], blocks: tuple[int, ...] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(chunk_start, chunk_stop, chunk_block)`` of the given blocks (default all).

    Chunks of at most ``_CHUNK`` columns that never straddle a block.
    """
    if blocks is None:
        blocks = tuple(range(len(block_offsets) - 1))
    starts, stops, owners = [], [], []
    for b in blocks:
        for c in range(block_offsets[b], block_offsets[b + 1], _CHUNK):
            starts.append(c)
            stops.append(min(c + _CHUNK, block_offsets[b + 1]))
            owners.append(b)
    as_array = lambda x: np.asarray(x, dtype=np.int64)  # noqa: E731
    return as_array(starts), as_array(stops), as_array(owners)


def _offsets(block_offsets) -> tuple[int, ...]:
    return tuple(int(o) for o in block_offsets)


def _blas_blocks(G, block_offsets: tuple[int, ...]) -> tuple[int, ...]:
    """Blocks that go to BLAS: float64 windows with unit-stride rows, wide blocks."""
    if G.dtype != np.float64 or G.ndim != 2 or G.strides[1] != G.itemsize:
        return ()
    return tuple(b for b in range(len(block_offsets) - 1)
                 if block_offsets[b + 1] - block_offsets[b] >= _BLAS_MIN_COLUMNS)


# --- threads -------------------------------------------------------------------

def _pass_threads(work: int) -> int:
    """Threads for a pass over ``work`` window entries: the ceiling, or fewer for small work."""
    from cext.threads import get_num_threads

    return max(1, min(get_num_threads(), work // _MIN_WORK_PER_THREAD))


def _run_tasks(run, bounds, threads: int) -> None:
    """``run(bounds[t], bounds[t + 1])`` for every task ``t``, on ``threads`` threads.

    Tasks are handed out one at a time from a shared counter (dynamic
    scheduling), so a thread that loses its core holds up one task only.
    The calling thread works too and returns to Python between tasks
    (Ctrl-C acts within one task); on any exception the others stop after
    their current task and are joined before it propagates.
    """
    ntasks = len(bounds) - 1
    threads = min(threads, ntasks)
    if threads <= 1:
        for t in range(ntasks):
            run(bounds[t], bounds[t + 1])
        return
    tickets = itertools.count()  # next() is atomic under the GIL
    stop = threading.Event()
    failures: list[BaseException] = []

    def work():
        for t in tickets:
            if t >= ntasks or stop.is_set():
                return
            run(bounds[t], bounds[t + 1])

    def helper():
        try:
            work()
        except BaseException as error:  # reported by the calling thread
            failures.append(error)
            stop.set()

    helpers = [threading.Thread(target=helper, daemon=True) for _ in range(threads - 1)]
    for thread in helpers:
        thread.start()
    try:
        work()
    finally:
        stop.set()
        for thread in helpers:
            thread.join()
    if failures:
        raise failures[0]


def _task_bounds(nchunks: int, k: int, threads: int) -> list[int]:
    """Chunk indices where tasks start: at most ``_TASK_ENTRIES`` window entries each,
    and at least four tasks per thread where there are chunks enough (balance)."""
    per_task = max(1, min(_TASK_ENTRIES // max(1, k * _CHUNK), nchunks // (4 * threads)))
    return list(range(0, nchunks, per_task)) + [nchunks]


@lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a dependency; without it BLAS runs as it is
        return None
    return ThreadpoolController()


class _BlasCeiling:
    """Hold BLAS to :func:`cext.threads.get_num_threads` while inside, if it runs more."""

    def __enter__(self):
        from cext.threads import get_num_threads

        self._limit = None
        controller = _blas_controller()
        if controller is None:
            return self
        ceiling = get_num_threads()
        blas = controller.select(user_api="blas")
        if any(pool["num_threads"] > ceiling for pool in blas.info()):
            self._limit = blas.limit(limits=ceiling)
        return self

    def __exit__(self, *exc):
        if self._limit is not None:
            self._limit.restore_original_limits()
        return False


# --- public kernels --------------------------------------------------------------

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
    offsets = _offsets(block_offsets)
    k = out.shape[1]
    wide = _blas_blocks(G, offsets)
    if wide:
        v64 = v if v.dtype == np.float64 else v.astype(np.float64)
        with _BlasCeiling():
            for b in wide:
                s, e = offsets[b], offsets[b + 1]
                np.matmul(G[:k, s:e], v64[s:e], out=out[b])
    narrow = tuple(b for b in range(len(offsets) - 1) if b not in wide)
    if not narrow:
        return
    start, stop, block = _chunks(offsets, narrow if wide else None)
    partial = np.empty((start.shape[0], k))
    threads = _pass_threads(k * int(np.sum(stop - start)))
    _run_tasks(lambda t0, t1: _gemv_chunks(G, v, k, start, stop, t0, t1, partial),
               _task_bounds(start.shape[0], k, threads), threads)
    _reduce_chunks(partial, block, out)


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
    offsets = _offsets(block_offsets)
    k = coef.shape[1]
    alpha, beta = float(alpha), float(beta)
    wide = _blas_blocks(G, offsets)
    if wide:
        with _BlasCeiling():
            for b in wide:
                s, e = offsets[b], offsets[b + 1]
                # G_b'coef_b straight into out where out is float64, else a float64 buffer
                target = out[s:e] if out.dtype == np.float64 else np.empty(e - s)
                np.matmul(coef[b], G[:k, s:e], out=target)
                _axpby(alpha, v[s:e], beta, target, out[s:e])
    narrow = tuple(b for b in range(len(offsets) - 1) if b not in wide)
    if not narrow:
        return
    start, stop, block = _chunks(offsets, narrow if wide else None)
    threads = _pass_threads(k * int(np.sum(stop - start)))
    _run_tasks(lambda t0, t1: _axpy_chunks(G, coef, v, alpha, beta, k, start, stop, block,
                                           t0, t1, out),
               _task_bounds(start.shape[0], k, threads), threads)


def window_push_gemv(G, slot, g, block_offsets, out) -> None:
    """``G[slot] = g`` (rounded to the window dtype), then ``window_gemv(G, G[slot])``.

    The new Gram row of M-FAC's ``update``: ``out`` (nblocks, k) float64,
    rows ``i < k = out.shape[1]`` are read; ``slot < k``. The row is
    written completely before the pass starts (an interrupted pass leaves
    the row stored), and the pass multiplies with the stored (rounded)
    values, so ``out[b, slot]`` is the block's ``|G[slot]|^2``.

    Examples
    --------
    >>> import numpy as np
    >>> G = np.ones((2, 3), dtype=np.float32)
    >>> out = np.empty((1, 2))
    >>> window_push_gemv(G, 1, np.array([1.0, 2.0, 3.0]), (0, 3), out)
    >>> out.tolist(), G[1].tolist()
    ([[6.0, 14.0]], [1.0, 2.0, 3.0])
    """
    slot = int(slot)
    G[slot, :] = g
    window_gemv(G, G[slot], block_offsets, out)


# --- compiled pieces ---------------------------------------------------------------

@nb.njit(**_JIT)
def _rows_times_buffer(G, k, s, e, w, partial, c):
    """``partial[c, i] = sum_{j in [s, e)} G[i, j] w[j - s]`` for rows ``i < k`` (float64)."""
    n = e - s
    i = 0
    while i + 16 <= k:  # 16 rows share each load of w (8 rows: 1.1x slower, 4: 1.5x)
        # Row slices indexed from 0: LLVM then knows the index is not negative
        # and loads contiguous vectors; G[i][j] with j in range(s, e) kept
        # Numba's negative-index wraparound and became a gather per vector.
        g0, g1, g2, g3 = G[i, s:e], G[i + 1, s:e], G[i + 2, s:e], G[i + 3, s:e]
        g4, g5, g6, g7 = G[i + 4, s:e], G[i + 5, s:e], G[i + 6, s:e], G[i + 7, s:e]
        h0, h1, h2, h3 = G[i + 8, s:e], G[i + 9, s:e], G[i + 10, s:e], G[i + 11, s:e]
        h4, h5, h6, h7 = G[i + 12, s:e], G[i + 13, s:e], G[i + 14, s:e], G[i + 15, s:e]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = 0.0
        for j in range(n):
            wj = w[j]
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
        gi = G[i, s:e]
        acc = 0.0
        for j in range(n):
            acc += np.float64(gi[j]) * w[j]
        partial[c, i] = acc
        i += 1


@nb.njit(**_JIT)
def _gemv_chunks(G, v, k, chunk_start, chunk_stop, c0, c1, partial):
    """``partial[c, :k]`` = chunk ``c``'s ``G v`` for chunks ``c0 <= c < c1``."""
    w = np.empty(_CHUNK)
    for c in range(c0, c1):
        s = chunk_start[c]
        e = chunk_stop[c]
        vc = v[s:e]
        for j in range(e - s):
            w[j] = vc[j]
        _rows_times_buffer(G, k, s, e, w, partial, c)


@nb.njit(**_JIT)
def _reduce_chunks(partial, chunk_block, out):
    """``out[b, :] = sum of partial[c, :] over the chunks c of block b``, in chunk order.

    Only the rows of ``out`` of blocks that own a chunk are written.
    """
    k = partial.shape[1]
    nch = partial.shape[0]
    for c in range(nch):
        b = chunk_block[c]
        if c == 0 or chunk_block[c - 1] != b:
            for i in range(k):
                out[b, i] = 0.0
    for c in range(nch):
        b = chunk_block[c]
        for i in range(k):
            out[b, i] += partial[c, i]


@nb.njit(**_JIT)
def _axpy_chunks(G, coef, v, alpha, beta, k, chunk_start, chunk_stop, chunk_block, c0, c1,
                 out):
    """``out[s:e] = alpha v[s:e] + beta G[:k, s:e]' coef[b]`` for chunks ``c0 <= c < c1``."""
    acc = np.empty(_CHUNK)
    for c in range(c0, c1):
        s = chunk_start[c]
        e = chunk_stop[c]
        b = chunk_block[c]
        for j in range(e - s):
            acc[j] = 0.0
        n = e - s
        i = 0
        while i + 16 <= k:  # one sweep over acc per 16 rows (row slices: see above)
            g0, g1, g2, g3 = G[i, s:e], G[i + 1, s:e], G[i + 2, s:e], G[i + 3, s:e]
            g4, g5, g6, g7 = G[i + 4, s:e], G[i + 5, s:e], G[i + 6, s:e], G[i + 7, s:e]
            h0, h1, h2, h3 = G[i + 8, s:e], G[i + 9, s:e], G[i + 10, s:e], G[i + 11, s:e]
            h4, h5, h6, h7 = G[i + 12, s:e], G[i + 13, s:e], G[i + 14, s:e], G[i + 15, s:e]
            p0, p1, p2, p3 = coef[b, i], coef[b, i + 1], coef[b, i + 2], coef[b, i + 3]
            p4, p5, p6, p7 = coef[b, i + 4], coef[b, i + 5], coef[b, i + 6], coef[b, i + 7]
            q0, q1, q2, q3 = coef[b, i + 8], coef[b, i + 9], coef[b, i + 10], coef[b, i + 11]
            q4, q5, q6, q7 = (coef[b, i + 12], coef[b, i + 13], coef[b, i + 14],
                              coef[b, i + 15])
            for j in range(n):
                acc[j] += ((((p0 * np.float64(g0[j]) + p1 * np.float64(g1[j]))
                             + (p2 * np.float64(g2[j]) + p3 * np.float64(g3[j])))
                            + ((p4 * np.float64(g4[j]) + p5 * np.float64(g5[j]))
                               + (p6 * np.float64(g6[j]) + p7 * np.float64(g7[j]))))
                           + (((q0 * np.float64(h0[j]) + q1 * np.float64(h1[j]))
                               + (q2 * np.float64(h2[j]) + q3 * np.float64(h3[j])))
                              + ((q4 * np.float64(h4[j]) + q5 * np.float64(h5[j]))
                                 + (q6 * np.float64(h6[j]) + q7 * np.float64(h7[j])))))
            i += 16
        while i < k:
            gi = G[i, s:e]
            ci = coef[b, i]
            for j in range(n):
                acc[j] += ci * np.float64(gi[j])
            i += 1
        vc = v[s:e]
        oc = out[s:e]
        for j in range(n):
            oc[j] = alpha * np.float64(vc[j]) + beta * acc[j]


@nb.njit(**_JIT)
def _axpby(alpha, v, beta, y, out):
    """``out[j] = alpha v[j] + beta y[j]`` (float64, rounded once into ``out``; may be ``y``)."""
    for j in range(out.shape[0]):
        out[j] = alpha * np.float64(v[j]) + beta * y[j]


# --- the small m x m system, serial ------------------------------------------
# Serial on purpose: OpenBLAS threads a 256 x 256 Cholesky or matrix-vector
# product, and its woken threads then spin (~0.1 s) on the cores the next
# window pass needs. Measured under load (2 cores): update 0.35 s -> 0.14 s.

@nb.njit(**_JIT)
def _inverse_factor(A, out):
    nb_, k = A.shape[0], A.shape[1]
    L = np.zeros((k, k))
    row = np.empty(k)
    for b in range(nb_):
        L[:, :] = 0.0
        for j in range(k):  # Cholesky, column by column (A = L L'); rows are contiguous
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
        for i in range(k):  # S = L^{-1} row by row: S[i] = (e_i - sum_{p<i} L[i,p] S[p]) / L[i,i]
            for j in range(i):
                row[j] = 0.0
            for p in range(i):  # row p of S is zero past column p: contiguous axpys
                lip = L[i, p]
                for j in range(p + 1):
                    row[j] += lip * S[p, j]
            inv = 1.0 / L[i, i]
            for j in range(i):
                S[i, j] = -row[j] * inv
            S[i, i] = inv
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


@nb.njit(**_JIT)
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
