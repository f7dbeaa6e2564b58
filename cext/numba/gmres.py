"""Blocked Gram-Schmidt passes over GMRES's Krylov basis (Numba).

The basis ``V`` is a row-major ``(restart + 1, n)`` array: row ``i`` is the
Arnoldi vector ``v_i``. Orthogonalising a new vector ``w`` against rows
``0..j`` is classical Gram-Schmidt applied twice (CGS2: Giraud, Langou,
Rozloznik and van den Eshof, Numer. Math. 101, 2005, "twice is enough"),
as passes over the whole block of rows rather than one vector at a time
(modified Gram-Schmidt, scipy's ``gmres``, reads every ``v_i`` twice per
step, once for the dot and once for the update, and makes ``2 (j + 1)``
passes over ``w``).

How the passes are laid out (:func:`gmres_project`):

- The columns are cut into chunks of ``_CHUNK``; the chunk of all ``j + 1``
  rows (at most 31 x 16 KiB for ``restart = 30``) stays in a core's L2.
- Sweep 1 forms ``c1 = V w`` and ``||w||^2`` chunk by chunk.
- Sweep 2 subtracts ``V' c1`` from the chunk of ``w`` and, while that chunk
  of ``V`` is still in L2, forms the chunk's part of ``c2 = V w`` and
  ``||w||^2``: the first pass's update and the second pass's dots read
  ``V`` from memory once.
- The second update is applied only where it changes ``w`` by more than
  rounding: when ``||c2|| > tau u ||w_1||`` (``u`` the unit roundoff of the
  basis dtype, ``tau`` the caller's; ``tau = 0`` always applies it). This
  is the test that the Daniel-Gragg-Kaufman-Stewart criterion (Math. Comp.
  30, 1976: reorthogonalise when ``||w_1|| < ||w|| / sqrt(2)``) stands in
  for, made exact by the dots the fused sweep 2 has already formed: after
  a first classical pass ``||c2||`` is a few ``u ||w_1||`` (measured on
  convection-diffusion Arnoldi runs: median 1.4-3.9, at most 14), the size
  of the rounding that storing ``w_1`` in the basis dtype makes anyway;
  near a breakdown (``||w_1|| << ||w||``) it is far larger and the update
  is applied. Skipped, the vector is scaled by a pass over ``w`` alone.
- Otherwise sweep 3 subtracts ``V' c2`` and scales the chunk by
  ``1 / ||w_2||``, with ``||w_2||^2 = ||w_1||^2 - ||c2||^2`` (Pythagoras:
  ``c2`` is the part of ``w_1`` in the span of ``V``); it also sums the true
  ``||w_2||^2``. Only where the two norms differ (severe cancellation, near
  a breakdown) does a pass over ``w`` alone rescale it.

- Within a chunk the passes take four rows at a time (:func:`_row_dots`,
  :func:`_subtract_rows`): four dot products share each load of ``w``'s
  chunk, four updates each load and store of it. Each row's sum keeps its
  own accumulator and order, so the bits are those of one row at a time
  (the updates exactly; the dots as vectorised, checked equal to the
  row-at-a-time kernel's on 1-31 rows, float32 and float64, 1 and 2
  threads); fewer loads of ``w`` took 10-20 % off a projection against
  16-30 rows (n = 250 000, one thread, the basis in L3). Sweep 2 updates a
  float64 ``w`` in place: a float64 buffer would hold the same bits.

- ``tau < 0`` asks for one classical pass, its orthogonality checked one
  step late (:mod:`linsolve.krylov.gmres` runs it so): sweep 1 also forms
  ``d = V[:j] . V[j]`` -- how far the previous step's vector ``v_j``, made
  by this kernel, is from orthogonal to the rows before it -- in the loop
  that forms ``c1`` (:func:`_row_dots_and_row`: the rows are loaded once for
  both, from memory, where sweep 2's dots reread them from L2), and sweep 2
  only subtracts and sums ``||w_1||^2``. ``d`` is CGS2's second-pass dots of
  the previous step (for the stored, scaled ``v_j``); where its root mean
  square exceeds ``|tau| u``, sweep 2 first applies the second update to
  ``v_j`` chunk by chunk (the rows are in cache for ``w``'s update next),
  and ``w``'s coefficient on ``v_j`` is corrected to the new row. ``w`` was
  made from the old ``v_j``: the Arnoldi relation carries that difference,
  ``||d|| <= SEVERE u``, as it carries the rounding of every step; larger
  ``d`` is left to the caller. On random vectors against 1-30 rows
  (n = 250 000, one thread) the pass took 0.63-0.69 of the two-pass
  kernel's time, within 7 % of one pass without any check.

So the basis is read from memory two or three times per Arnoldi step
(modified Gram-Schmidt reads each ``v_i`` twice and ``w`` ``2 (j + 1)``
times). Chunk sums are added in chunk order after each sweep, so the
results do not depend on the number of threads.

Sums run in float64; updates are computed in float64 and rounded once to
the basis dtype. The dot products use ``fastmath={"reassoc", "contract"}``
as :mod:`cext.numba.blas1` does, so that LLVM vectorises them (a serial
add chain ran at half the speed of the vectorised one on a chunk in L2);
``nnan``/``ninf`` stay off, so a NaN or Inf in ``V`` or ``w`` reaches
``h``. Mirrors :mod:`cext.reference.gmres` and :mod:`cext.cupy.gmres`.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba import prange

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)
_SERIAL = dict(nogil=True, cache=True, boundscheck=False)

_CHUNK = 2048
"""Columns per chunk: ``restart + 1`` rows of it (31 x 16 KiB in float64) stay in L2."""

_RESCALE = 64 * 2.0**-52
"""Sweep 3's scaled ``w`` is rescaled when its norm differs from 1 by more than this."""


@nb.njit(fastmath={"reassoc", "contract"}, **_SERIAL)
def _dot(a, b):
    """``a . b`` of two equal-length slices, in float64."""
    total = 0.0
    for k in range(a.shape[0]):
        total += np.float64(a[k]) * np.float64(b[k])
    return total


@nb.njit(fastmath={"reassoc", "contract"}, **_SERIAL)
def _row_dots(V, rows, lo, hi, chunk, out):
    """``out[i] = V[i, lo:hi] . chunk`` for ``i < rows`` and ``out[rows] = chunk . chunk``.

    Four rows per pass over ``chunk``, which is loaded once for four rows
    instead of once per row. Each row keeps its own accumulator, which LLVM
    vectorises as it does :func:`_dot`'s one (``reassoc`` lets it choose
    the lanes): on the machine measured the sums came out bit for bit as
    :func:`_dot`'s; elsewhere they may differ from them in the last bits,
    as any vectorised sum may.
    """
    span = hi - lo
    i = 0
    while i + 4 <= rows:
        r0, r1, r2, r3 = V[i, lo:hi], V[i + 1, lo:hi], V[i + 2, lo:hi], V[i + 3, lo:hi]
        t0 = 0.0
        t1 = 0.0
        t2 = 0.0
        t3 = 0.0
        for k in range(span):
            x = np.float64(chunk[k])
            t0 += np.float64(r0[k]) * x
            t1 += np.float64(r1[k]) * x
            t2 += np.float64(r2[k]) * x
            t3 += np.float64(r3[k]) * x
        out[i] = t0
        out[i + 1] = t1
        out[i + 2] = t2
        out[i + 3] = t3
        i += 4
    while i < rows:
        out[i] = _dot(V[i, lo:hi], chunk)
        i += 1
    out[rows] = _dot(chunk, chunk)


@nb.njit(fastmath={"reassoc", "contract"}, **_SERIAL)
def _row_dots_and_row(V, rows, lo, hi, chunk, out, out_row):
    """:func:`_row_dots`, and ``out_row[i] = V[i, lo:hi] . V[rows - 1, lo:hi]`` for ``i < rows``.

    Each row of ``V`` is loaded once for both dot products (four rows per
    pass, as :func:`_row_dots`); the last row's own square comes last.
    """
    span = hi - lo
    last = V[rows - 1, lo:hi]
    i = 0
    while i + 4 <= rows:
        r0, r1, r2, r3 = V[i, lo:hi], V[i + 1, lo:hi], V[i + 2, lo:hi], V[i + 3, lo:hi]
        t0 = 0.0
        t1 = 0.0
        t2 = 0.0
        t3 = 0.0
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for k in range(span):
            x = np.float64(chunk[k])
            y = np.float64(last[k])
            a0 = np.float64(r0[k])
            a1 = np.float64(r1[k])
            a2 = np.float64(r2[k])
            a3 = np.float64(r3[k])
            t0 += a0 * x
            t1 += a1 * x
            t2 += a2 * x
            t3 += a3 * x
            s0 += a0 * y
            s1 += a1 * y
            s2 += a2 * y
            s3 += a3 * y
        out[i] = t0
        out[i + 1] = t1
        out[i + 2] = t2
        out[i + 3] = t3
        out_row[i] = s0
        out_row[i + 1] = s1
        out_row[i + 2] = s2
        out_row[i + 3] = s3
        i += 4
    while i < rows:
        out[i] = _dot(V[i, lo:hi], chunk)
        out_row[i] = _dot(V[i, lo:hi], last)
        i += 1
    out[rows] = _dot(chunk, chunk)


@nb.njit(**_SERIAL)
def _subtract_rows(V, rows, coef, lo, hi, buffer):
    """``buffer[:hi - lo] -= sum_{i < rows} coef[i] V[i, lo:hi]`` (float64), in row order.

    Four rows per pass over ``buffer``: each entry still loses row 0's
    product, then row 1's, ..., each rounded in turn (no ``fastmath``, so
    nothing is contracted or reordered): the bits of one row at a time, with
    a quarter of the loads and stores of ``buffer``.
    """
    span = hi - lo
    i = 0
    while i + 4 <= rows:
        c0, c1, c2, c3 = coef[i], coef[i + 1], coef[i + 2], coef[i + 3]
        r0, r1, r2, r3 = V[i, lo:hi], V[i + 1, lo:hi], V[i + 2, lo:hi], V[i + 3, lo:hi]
        for k in range(span):
            value = buffer[k]
            value -= c0 * r0[k]
            value -= c1 * r1[k]
            value -= c2 * r2[k]
            value -= c3 * r3[k]
            buffer[k] = value
        i += 4
    while i < rows:
        ci = coef[i]
        row = V[i, lo:hi]
        for k in range(span):
            buffer[k] -= ci * row[k]
        i += 1


@nb.njit(**_SERIAL)
def _chunk_totals(partial, width):
    """The first ``width`` column sums of the chunks' partial sums, added in chunk order
    (so the bits do not depend on the threads)."""
    totals = np.zeros(width)
    for c in range(partial.shape[0]):
        for i in range(width):
            totals[i] += partial[c, i]
    return totals


@nb.njit(**_JIT)
def _scale_chunks(w, n, nchunks, scale):
    """``w *= scale`` chunk by chunk, each product in float64."""
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(lo + _CHUNK, n)
        chunk = w[lo:hi]
        for k in range(hi - lo):
            chunk[k] = np.float64(chunk[k]) * scale


SEVERE = 4096.0
"""A late check with ``||V[:j] . V[j]||`` above this many units of roundoff is left to
the caller (status 2): the previous vector is far from orthogonal (a first pass that
cancelled most of its vector), and the product made from it must be made again."""


@nb.njit(**_JIT)
def _one_pass(V, j, w, h, n, nchunks, partial, threshold):
    """:func:`gmres_project` for ``tau < 0``: one classical pass, the previous row checked
    (and corrected where ``threshold`` units of roundoff, root mean square, are exceeded)."""
    rows = j + 1
    checks = np.zeros((nchunks, rows))
    # sweep 1: c1 = V w, ||w||^2, and d = V[:j] . V[j] (the rows loaded once for both)
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(lo + _CHUNK, n)
        if j > 0:
            _row_dots_and_row(V, rows, lo, hi, w[lo:hi], partial[c], checks[c])
        else:
            _row_dots(V, rows, lo, hi, w[lo:hi], partial[c])
    first = _chunk_totals(partial, rows + 1)
    d = _chunk_totals(checks, rows)
    unit = 2.0**-53 if V.itemsize == 8 else 2.0**-24
    offset = 0.0
    for i in range(j):
        offset += d[i] * d[i]
    status = 0
    if j > 0 and not offset <= j * (threshold * unit) ** 2:
        status = 2 if not offset <= (SEVERE * unit) ** 2 else 1
    for i in range(j):
        h[rows + 2 + i] = d[i]
    h[2 * j + 3] = status
    if status == 2:  # the caller orthogonalises V[j] again and makes its product again
        return
    if status == 1:
        # V[j] -= V[:j] d, CGS2's second update of the previous vector (its norm
        # stays 1 to rounding: 1 - ||d||^2 with ||d|| <= SEVERE u); the new row's
        # coefficient of w is v_j' . w = c1_j - d . c1[:j]
        correction = 0.0
        for i in range(j):
            correction += d[i] * first[i]
        first[j] -= correction
    wide = w.itemsize == 8
    # sweep 2: (the correction of V[j]), w -= V' c1 and ||w_1||^2
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(lo + _CHUNK, n)
        if status == 1:
            row = V[j, lo:hi]
            buffer = np.empty(hi - lo)
            for k in range(hi - lo):
                buffer[k] = row[k]
            _subtract_rows(V, j, d, lo, hi, buffer)
            for k in range(hi - lo):
                row[k] = buffer[k]
        chunk = w[lo:hi]
        if wide:
            _subtract_rows(V, rows, first, lo, hi, chunk)
        else:
            buffer = np.empty(hi - lo)
            for k in range(hi - lo):
                buffer[k] = chunk[k]
            _subtract_rows(V, rows, first, lo, hi, buffer)
            for k in range(hi - lo):
                chunk[k] = buffer[k]
        partial[c, 0] = _dot(chunk, chunk)  # of the stored (rounded) vector
    squares = _chunk_totals(partial, 1)[0]
    norm = math.sqrt(squares) if squares >= 0.0 else math.nan
    if norm > 0.0 and norm < math.inf:
        _scale_chunks(w, n, nchunks, 1.0 / norm)
    for i in range(rows):
        h[i] = first[i]
    h[rows] = norm
    h[rows + 1] = math.sqrt(first[rows]) if first[rows] >= 0.0 else math.nan


@nb.njit(**_JIT)
def gmres_project(V, j, w, h, tau):
    """Orthogonalise ``w`` against rows ``0..j`` of ``V`` (CGS2) and scale it to unit norm.

    Writes ``h[0..j]``, the Arnoldi coefficients (the sum of the passes
    applied), ``h[j + 1]`` = ``||w||`` after orthogonalisation and before
    scaling (the Hessenberg entry ``h_{j+1,j}``) and ``h[j + 2]`` = ``||w||``
    on entry. The second pass's update is applied when its coefficients
    exceed ``tau u ||w_1||`` (``u``: unit roundoff of ``V``'s dtype; see the
    module notes). ``w`` is left with unit norm when ``h[j + 1]`` is positive
    and finite (unscaled otherwise). ``h`` is float64 with at least ``j + 3``
    entries.

    ``tau < 0``: one classical pass (no second-pass dots), and the late
    check of the previous step's vector ``V[j]``: ``h[j + 3 + i] = d_i =
    V[i] . V[j]`` for ``i < j``, and ``h[2 j + 3]`` its status (``h`` needs
    ``2 j + 4`` entries): 0 where the root mean square of ``d`` is at most
    ``|tau| u``; 1 where it is above but ``||d|| <= SEVERE u``: ``V[j]`` was
    corrected in place (``V[j] -= V[:j] d``, CGS2's second update) before
    ``w`` was projected, and ``h[j]`` is ``w``'s coefficient on the new row;
    2 above that: nothing else was done (``w``, ``h[:j + 3]`` untouched),
    the caller orthogonalises ``V[j]`` again.
    """
    n = w.shape[0]
    rows = j + 1
    nchunks = (n + _CHUNK - 1) // _CHUNK
    partial = np.zeros((nchunks, rows + 1))
    if tau < 0.0:
        _one_pass(V, j, w, h, n, nchunks, partial, -tau)
        return
    # sweep 1: c1 = V w and ||w||^2
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(lo + _CHUNK, n)
        _row_dots(V, rows, lo, hi, w[lo:hi], partial[c])
    first = _chunk_totals(partial, rows + 1)
    # float64 w is updated in place (a float64 buffer would hold the same bits);
    # float32 w through a float64 buffer, rounded once
    wide = w.itemsize == 8
    # sweep 2: w -= V' c1, then c2 = V w and ||w||^2 on the same chunk (V still in L2)
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(lo + _CHUNK, n)
        chunk = w[lo:hi]
        if wide:
            _subtract_rows(V, rows, first, lo, hi, chunk)
        else:
            buffer = np.empty(hi - lo)
            for k in range(hi - lo):
                buffer[k] = chunk[k]
            _subtract_rows(V, rows, first, lo, hi, buffer)
            for k in range(hi - lo):
                chunk[k] = buffer[k]
        _row_dots(V, rows, lo, hi, chunk, partial[c])
    second = _chunk_totals(partial, rows + 1)
    projected = 0.0
    for i in range(rows):
        projected += second[i] * second[i]
    unit = 2.0**-53 if V.itemsize == 8 else 2.0**-24
    if projected <= (tau * unit) ** 2 * second[rows]:
        # the second update is below rounding: w_1 is the vector, scaled in one pass
        norm = math.sqrt(second[rows])
        if norm > 0.0 and norm < math.inf:
            _scale_chunks(w, n, nchunks, 1.0 / norm)
        for i in range(rows):
            h[i] = first[i]
        h[rows] = norm
        h[rows + 1] = math.sqrt(first[rows]) if first[rows] >= 0.0 else math.nan
        return
    # sweep 3: w -= V' c2, scaled by 1 / ||w_2|| from Pythagoras; the true ||w_2||^2
    estimate = second[rows] - projected
    scale = 1.0 / math.sqrt(estimate) if estimate > 0.0 and estimate < math.inf else 1.0
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(lo + _CHUNK, n)
        chunk = w[lo:hi]
        buffer = np.empty(hi - lo)
        for k in range(hi - lo):
            buffer[k] = chunk[k]
        _subtract_rows(V, rows, second, lo, hi, buffer)
        for k in range(hi - lo):
            chunk[k] = buffer[k] * scale
        partial[c, 0] = _dot(buffer, buffer)
    squares = _chunk_totals(partial, 1)[0]
    norm = math.sqrt(squares) if squares >= 0.0 else math.nan
    # sweep 4, rare: the Pythagorean norm was off (cancellation near a breakdown)
    if norm > 0.0 and norm < math.inf and abs(norm * scale - 1.0) > _RESCALE:
        _scale_chunks(w, n, nchunks, 1.0 / (norm * scale))
    for i in range(rows):
        h[i] = first[i] + second[i]
    h[rows] = norm
    h[rows + 1] = math.sqrt(first[rows]) if first[rows] >= 0.0 else math.nan


@nb.njit(**_JIT)
def gmres_combine(V, y, k, out):
    """``out += sum_{i < k} y[i] V[i]`` (float64 sums, rounded once): the Krylov combination."""
    n = out.shape[0]
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(lo + _CHUNK, n)
        span = hi - lo
        chunk = out[lo:hi]
        buffer = np.empty(span)
        for p in range(span):
            buffer[p] = chunk[p]
        for i in range(k):
            yi = y[i]
            row = V[i, lo:hi]
            for p in range(span):
                buffer[p] += yi * row[p]
        for p in range(span):
            chunk[p] = buffer[p]
