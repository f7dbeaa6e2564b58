"""Array-API twins of :mod:`cext.numba.mfac` and :mod:`cext.cupy.mfac`: M-FAC window passes.

The window is read in its own dtype and summed in float64, a column chunk
at a time so that the float64 copy stays at ``k x _WINDOW_CHUNK``.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from . import _common  # writes_in_place looked up there at call time: one switch
from ._common import _store


_WINDOW_CHUNK = 1 << 16


def _window_pieces(block_offsets):
    """``(block, start, stop)`` column pieces of at most ``_WINDOW_CHUNK``, block by block."""
    offsets = [int(o) for o in block_offsets]
    for b in range(len(offsets) - 1):
        for s in range(offsets[b], offsets[b + 1], _WINDOW_CHUNK):
            yield b, s, min(s + _WINDOW_CHUNK, offsets[b + 1])


def window_gemv(G, v, block_offsets, out):
    """``out[b, i] = sum_{j in block b} G[i, j] v[j]`` in float64, rows ``i < out.shape[1]``;
    returns ``out``."""
    xp = array_namespace(G, v, out)
    k = out.shape[1]
    nblocks = len(block_offsets) - 1
    rows = [xp.zeros((k,), dtype=xp.float64) for _ in range(nblocks)]
    for b, s, e in _window_pieces(block_offsets):
        rows[b] = rows[b] + xp.astype(G[:k, s:e], xp.float64, copy=False) @ xp.astype(v[s:e], xp.float64, copy=False)
    if nblocks == 0:
        return out
    return _store(xp, out, xp.stack(rows, axis=0))


def window_axpy_gemv_t(G, coef, v, alpha, beta, block_offsets, out):
    """``out[j] = alpha v[j] + beta sum_i coef[b(j), i] G[i, j]`` in float64, rounded once;
    returns ``out``.

    Rows ``i < k = coef.shape[1]`` of ``G`` are read.
    """
    xp = array_namespace(G, coef, v, out)
    k = coef.shape[1]
    pieces = []  # in column order: the blocks tile [0, d) in order, and so do their chunks
    for b, s, e in _window_pieces(block_offsets):
        combination = coef[b, :] @ xp.astype(G[:k, s:e], xp.float64, copy=False)
        pieces.append(alpha * xp.astype(v[s:e], xp.float64, copy=False) + beta * combination)
    if not pieces:
        return out
    return _store(xp, out, xp.concat(pieces))


def window_push_gemv(G, slot, g, block_offsets, out):
    """``G[slot] = g`` (in the window dtype), then ``window_gemv(G, G[slot], ..., out)``.

    Returns ``(G, out)``: the arguments, written in place, where the
    namespace allows; else a new window (``xp.where`` over a row mask) and a
    new ``out``.
    """
    xp = array_namespace(G, g, out)
    row = xp.astype(g, G.dtype)
    if _common.writes_in_place(xp):
        G[slot, :] = row
    else:
        # A row mask rather than a concat of slices: the shapes do not depend on
        # slot, so a tracing library (JAX) compiles this once, not once per slot.
        at_slot = xp.reshape(xp.arange(G.shape[0]) == slot, (-1, 1))
        G = xp.where(at_slot, xp.reshape(row, (1, -1)), G)
    return G, window_gemv(G, row, block_offsets, out)


def spd_inverse_factor(A, out):
    """``out[b] = L_b^{-1}`` with ``A[b] = L_b L_b'``; returns ``out``, or None where Cholesky
    fails (the compiled kernels return a flag; the registry turns it into this)."""
    xp = array_namespace(A, out)
    try:
        if "cupy" in xp.__name__:
            # CuPy's cholesky neither raises nor returns NaN on failure unless told
            # to raise: the factor of a matrix that is not positive definite would
            # come back finite and wrong
            import cupyx

            with cupyx.errstate(linalg="raise"):
                L = xp.linalg.cholesky(A)
        else:
            L = xp.linalg.cholesky(A)
    except Exception:  # LinAlgError of whichever library
        return None
    if not bool(xp.all(xp.isfinite(L))):  # GPU libraries and JAX return NaN instead of raising
        return None
    return _store(xp, out, xp.linalg.inv(L))


def factor_apply(S, y, out):
    """``out[b] = S[b]' (S[b] y[b])``; returns ``out``."""
    xp = array_namespace(S, y, out)
    return _store(xp, out, (xp.matrix_transpose(S) @ (S @ y[..., None]))[..., 0])
