"""Kernels of the batched Krylov iterations: a sparse matrix times a block of vectors (Numba).

Layout. A block of ``k`` vectors of length ``n`` is an ``(n, k)`` C-ordered
array (row-interleaved): the ``k`` values every matrix entry multiplies are
one contiguous run, one cache line per entry for ``k = 8`` in float64, so
the matrix is streamed once for all ``k`` systems and a gather costs what one
vector's gather does.

SIMD over the systems. For float64 the columns go in groups of
:data:`LANES` = 8 through vector instructions written in LLVM IR
(:func:`_lanes_madd`): Numba leaves LLVM's SLP vectoriser off, so the eight
independent sums of a row stay scalar otherwise, and on 3-D elasticity
(38 entries a row) the scalar SpMM was bound by its floating-point adds,
not by memory. Each lane is one system's sum, multiplied and added in CSR
order with no contraction into an FMA, so every entry of ``Q`` has the
bits of the single-vector :func:`cext.numba.spmv.csr_spmv` on that column.
The columns beyond the last full group (``k % 8``), and other dtypes, run
the same sums in scalar loops (float64 accumulators, as the SpMV's).

Sums. Column sums (the ``k`` inner products) run over fixed chunks of rows
and add the chunks' partial sums in chunk order, so their bits depend on
``n`` only, not on the thread count. The element-wise updates run in the
same lanes, the per-column coefficients held in a vector register.

Mirrors :mod:`cext.reference.block` and :mod:`cext.cupy.block`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .spmv import unsigned_view

_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)
_INLINE = dict(nogil=True, cache=True, boundscheck=False, inline="always")

_CHUNK = 2048  # rows per partial sum: fixed, so the sums do not depend on the threads

LANES = 8
"""Columns per vector group of the float64 SpMM: one cache line, two AVX2 or one AVX-512
register."""

_VECTOR = ir.VectorType(ir.DoubleType(), LANES)


# -- vector lanes in LLVM IR ------------------------------------------------------------
@intrinsic
def _stack_lanes(typingctx):
    """A float64 array of :data:`LANES` entries on the stack.

    Only whole-vector loads and stores and constant-index reads touch it,
    so LLVM promotes it to one vector register (no memory traffic).
    """
    array = types.Array(types.float64, 1, "C")

    def codegen(context, builder, signature, args):
        data = cgutils.alloca_once(builder, ir.DoubleType(), size=LANES)
        lanes = context.make_array(array)(context, builder)
        itemsize = context.get_constant(types.intp, 8)
        context.populate_array(
            lanes, data=data,
            shape=cgutils.pack_array(builder, [context.get_constant(types.intp, LANES)]),
            strides=cgutils.pack_array(builder, [itemsize]), itemsize=itemsize, meminfo=None)
        return lanes._getvalue()

    return array(), codegen


def _vector_pointer(context, builder, array_type, array, offset=None):
    data = context.make_array(array_type)(context, builder, array).data
    if offset is not None:
        data = builder.gep(data, [offset])
    return builder.bitcast(data, _VECTOR.as_pointer())


def _float64_array(value) -> bool:
    # C layout: a vector load reads LANES consecutive entries, whatever the strides say
    return (isinstance(value, types.Array) and value.dtype == types.float64 and value.ndim == 1
            and value.layout == "C")


def _splat(builder, value):
    vector = cgutils.get_null_value(_VECTOR)
    for lane in range(LANES):
        vector = builder.insert_element(vector, value, ir.Constant(ir.IntType(32), lane))
    return vector


@intrinsic
def _lanes_zero(typingctx, lanes):
    """``lanes[:] = 0`` as one vector store."""
    if not _float64_array(lanes):
        return None

    def codegen(context, builder, signature, args):
        builder.store(cgutils.get_null_value(_VECTOR),
                      _vector_pointer(context, builder, signature.args[0], args[0]), align=8)
        return context.get_dummy_value()

    return types.void(lanes), codegen


@intrinsic
def _lanes_madd(typingctx, lanes, a, flat, offset):
    """``lanes += a * flat[offset:offset + LANES]``: one vector multiply, then one vector add.

    Two instructions, not an FMA: each lane rounds as the scalar
    ``acc += a * x`` of the single-vector SpMV does.
    """
    if not (_float64_array(lanes) and _float64_array(flat) and a == types.float64
            and isinstance(offset, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        lanes_value, a_value, flat_value, offset_value = args
        offset_value = context.cast(builder, offset_value, signature.args[3], types.intp)
        source = _vector_pointer(context, builder, signature.args[2], flat_value, offset_value)
        target = _vector_pointer(context, builder, signature.args[0], lanes_value)
        product = builder.fmul(_splat(builder, a_value), builder.load(source, align=8))
        builder.store(builder.fadd(builder.load(target, align=8), product), target, align=8)
        return context.get_dummy_value()

    return types.void(lanes, a, flat, offset), codegen


def _lanes_pointers(context, builder, signature, args, offset_position):
    """Vector pointers: the arrays before ``offset_position`` at that offset, those after it
    (lanes on the stack) at their start."""
    offset = context.cast(builder, args[offset_position], signature.args[offset_position],
                          types.intp)
    return ([_vector_pointer(context, builder, signature.args[i], args[i], offset)
             for i in range(offset_position)]
            + [_vector_pointer(context, builder, signature.args[i], args[i])
               for i in range(offset_position + 1, len(args))])


def _lanes_signature(arrays, offset, lanes):
    if all(_float64_array(array) for array in arrays + lanes) and \
            isinstance(offset, types.Integer):
        return types.void(*arrays, offset, *lanes)
    return None


@intrinsic
def _lanes_load(typingctx, flat, offset, lanes):
    """``lanes[:] = flat[offset:offset + LANES]``."""
    def codegen(context, builder, signature, args):
        source, target = _lanes_pointers(context, builder, signature, args, 1)
        builder.store(builder.load(source, align=8), target, align=8)
        return context.get_dummy_value()

    return _lanes_signature((flat,), offset, (lanes,)), codegen


@intrinsic
def _lanes_store(typingctx, lanes, flat, offset):
    """``flat[offset:offset + LANES] = lanes``."""
    def codegen(context, builder, signature, args):
        source = _vector_pointer(context, builder, signature.args[0], args[0])
        target = _vector_pointer(context, builder, signature.args[1], args[1],
                                 context.cast(builder, args[2], signature.args[2], types.intp))
        builder.store(builder.load(source, align=8), target, align=8)
        return context.get_dummy_value()

    if _float64_array(lanes) and _float64_array(flat) and isinstance(offset, types.Integer):
        return types.void(lanes, flat, offset), codegen
    return None


@intrinsic
def _lanes_cg_update(typingctx, X, R, P, Q, offset, alpha, rr):
    """At ``offset``: ``X += alpha P``; ``R = R - alpha Q``; ``rr += R * R`` (lane-wise)."""
    def codegen(context, builder, signature, args):
        x, r, p, q, a, s = _lanes_pointers(context, builder, signature, args, 4)
        alpha_value = builder.load(a, align=8)
        builder.store(builder.fadd(builder.load(x, align=8),
                                   builder.fmul(alpha_value, builder.load(p, align=8))),
                      x, align=8)
        value = builder.fsub(builder.load(r, align=8),
                             builder.fmul(alpha_value, builder.load(q, align=8)))
        builder.store(value, r, align=8)
        builder.store(builder.fadd(builder.load(s, align=8), builder.fmul(value, value)), s,
                      align=8)
        return context.get_dummy_value()

    return _lanes_signature((X, R, P, Q), offset, (alpha, rr)), codegen


@intrinsic
def _lanes_update_p(typingctx, P, Z, offset, beta):
    """At ``offset``: ``P = Z + beta P`` (lane-wise)."""
    def codegen(context, builder, signature, args):
        p, z, b = _lanes_pointers(context, builder, signature, args, 2)
        builder.store(builder.fadd(builder.load(z, align=8),
                                   builder.fmul(builder.load(b, align=8),
                                                builder.load(p, align=8))), p, align=8)
        return context.get_dummy_value()

    return _lanes_signature((P, Z), offset, (beta,)), codegen


@intrinsic
def _lanes_dot(typingctx, U, V, offset, acc):
    """At ``offset``: ``acc += U * V`` (lane-wise)."""
    def codegen(context, builder, signature, args):
        u, v, a = _lanes_pointers(context, builder, signature, args, 2)
        builder.store(builder.fadd(builder.load(a, align=8),
                                   builder.fmul(builder.load(u, align=8),
                                                builder.load(v, align=8))), a, align=8)
        return context.get_dummy_value()

    return _lanes_signature((U, V), offset, (acc,)), codegen


@nb.njit(**_INLINE)
def _lanes_add_to(lanes, out, first):
    """``out[first:first + LANES] += lanes`` (a chunk's partial sums, eight at once)."""
    for j in range(LANES):
        out[first + j] += lanes[j]


def _lanes_fit(*blocks) -> bool:
    """The blocks are C-ordered float64 with at least one full group of columns."""
    return all(block.dtype == np.float64 and block.flags.c_contiguous for block in blocks) \
        and blocks[0].ndim == 2 and blocks[0].shape[1] >= LANES


# -- the SpMM ---------------------------------------------------------------------------
@nb.njit(**_INLINE)
def _spmm_lanes(indptr, indices, data, P, Q, lo, hi, group, partial, lanes, sums):
    """Columns ``group .. group + 7`` of rows ``lo .. hi - 1`` of ``Q = A @ P`` (float64),
    and their share of the column dots added to ``partial``."""
    k = P.shape[1]
    p, q = P.reshape(-1), Q.reshape(-1)
    _lanes_zero(sums)
    for i in range(lo, hi):
        _lanes_zero(lanes)
        for e in range(indptr[i], indptr[i + 1]):
            _lanes_madd(lanes, data[e], p, indices[e] * k + group)
        _lanes_store(lanes, q, i * k + group)
        _lanes_dot(p, q, i * k + group, sums)
    _lanes_add_to(sums, partial, group)


@nb.njit(**_INLINE)
def _spmm_rest(indptr, indices, data, P, Q, lo, hi, first, partial):
    """Columns ``first .. k - 1`` of rows ``lo .. hi - 1`` of ``Q = A @ P`` in scalar sums
    (any dtype; float64 accumulators, as the SpMV's), their dots added to ``partial``."""
    k = P.shape[1]
    acc = np.empty(k)
    for i in range(lo, hi):
        for j in range(first, k):
            acc[j] = 0.0
        for e in range(indptr[i], indptr[i + 1]):
            a = data[e]
            col = indices[e]
            for j in range(first, k):
                acc[j] += a * P[col, j]
        for j in range(first, k):
            Q[i, j] = acc[j]
            partial[j] += P[i, j] * Q[i, j]


@nb.njit(**_JIT)
def _csr_spmm_dot_lanes(indptr, indices, data, P, Q, dots):
    n, k = Q.shape
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    groups = k // LANES * LANES
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        lanes = _stack_lanes()
        sums = _stack_lanes()
        for group in range(0, groups, LANES):
            _spmm_lanes(indptr, indices, data, P, Q, lo, hi, group, partial[c], lanes, sums)
        if groups < k:
            _spmm_rest(indptr, indices, data, P, Q, lo, hi, groups, partial[c])
    _chunk_total(partial, dots)


@nb.njit(**_JIT)
def _csr_spmm_dot_scalar(indptr, indices, data, P, Q, dots):
    n, k = Q.shape
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        _spmm_rest(indptr, indices, data, P, Q, lo, min(n, lo + _CHUNK), 0, partial[c])
    _chunk_total(partial, dots)


def csr_spmm_dot(indptr, indices, data, P, Q, dots) -> None:
    """``Q = A @ P`` for CSR ``A`` and ``(n, k)`` blocks; ``dots[j] = P[:, j] . Q[:, j]``.

    float64 with ``k >= 8``: groups of eight columns in vector lanes, the
    rest in scalar sums. Every column of ``Q`` has the single-vector SpMV's
    bits.
    """
    kernel = _csr_spmm_dot_lanes if _lanes_fit(P, Q, data[None, :]) else _csr_spmm_dot_scalar
    kernel(unsigned_view(indptr), unsigned_view(indices), data, P, Q, dots)


@nb.njit(**_INLINE)
def _chunk_total(partial, out):
    """``out[j]`` = the chunks' partial sums of column ``j``, added in chunk order."""
    for j in range(out.shape[0]):
        out[j] = 0.0
    for c in range(partial.shape[0]):
        for j in range(out.shape[0]):
            out[j] += partial[c, j]


# -- the element-wise updates ----------------------------------------------------------
@nb.njit(**_INLINE)
def _cg_update_rest(X, R, P, Q, alpha, lo, hi, first, partial):
    k = X.shape[1]
    for i in range(lo, hi):
        for j in range(first, k):
            X[i, j] += alpha[j] * P[i, j]
            value = R[i, j] - alpha[j] * Q[i, j]
            R[i, j] = value
            partial[j] += value * value


@nb.njit(**_JIT)
def _block_cg_update_lanes(X, R, P, Q, alpha, rr):
    n, k = X.shape
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    groups = k // LANES * LANES
    x, r, p, q = X.reshape(-1), R.reshape(-1), P.reshape(-1), Q.reshape(-1)
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        coefficients = _stack_lanes()
        sums = _stack_lanes()
        for group in range(0, groups, LANES):
            _lanes_load(alpha, group, coefficients)
            _lanes_zero(sums)
            for i in range(lo, hi):
                _lanes_cg_update(x, r, p, q, i * k + group, coefficients, sums)
            _lanes_add_to(sums, partial[c], group)
        if groups < k:
            _cg_update_rest(X, R, P, Q, alpha, lo, hi, groups, partial[c])
    _chunk_total(partial, rr)


@nb.njit(**_JIT)
def _block_cg_update_scalar(X, R, P, Q, alpha, rr):
    n, k = X.shape
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        _cg_update_rest(X, R, P, Q, alpha, lo, min(n, lo + _CHUNK), 0, partial[c])
    _chunk_total(partial, rr)


def block_cg_update(X, R, P, Q, alpha, rr) -> None:
    """``X += P alpha``; ``R -= Q alpha`` column by column; ``rr[j] = R[:, j] . R[:, j]``."""
    kernel = (_block_cg_update_lanes if _lanes_fit(X, R, P, Q, alpha[None, :])
              else _block_cg_update_scalar)
    kernel(X, R, P, Q, alpha, rr)


@nb.njit(**_INLINE)
def _update_p_rest(P, Z, beta, lo, hi, first):
    k = P.shape[1]
    for i in range(lo, hi):
        for j in range(first, k):
            P[i, j] = Z[i, j] + beta[j] * P[i, j]


@nb.njit(**_JIT)
def _block_update_p_lanes(P, Z, beta):
    n, k = P.shape
    groups = k // LANES * LANES
    p, z = P.reshape(-1), Z.reshape(-1)
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        coefficients = _stack_lanes()
        for group in range(0, groups, LANES):
            _lanes_load(beta, group, coefficients)
            for i in range(lo, hi):
                _lanes_update_p(p, z, i * k + group, coefficients)
        if groups < k:
            _update_p_rest(P, Z, beta, lo, hi, groups)


@nb.njit(**_JIT)
def _block_update_p_scalar(P, Z, beta):
    n = P.shape[0]
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        _update_p_rest(P, Z, beta, c * _CHUNK, min(n, (c + 1) * _CHUNK), 0)


def block_update_p(P, Z, beta) -> None:
    """``P = Z + P beta`` column by column, in place."""
    kernel = (_block_update_p_lanes if _lanes_fit(P, Z, beta[None, :])
              else _block_update_p_scalar)
    kernel(P, Z, beta)


@nb.njit(**_INLINE)
def _dots_rest(U, V, lo, hi, first, partial):
    k = U.shape[1]
    for i in range(lo, hi):
        for j in range(first, k):
            partial[j] += U[i, j] * V[i, j]


@nb.njit(**_JIT)
def _block_dots_lanes(U, V, out):
    n, k = U.shape
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    groups = k // LANES * LANES
    u, v = U.reshape(-1), V.reshape(-1)
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        sums = _stack_lanes()
        for group in range(0, groups, LANES):
            _lanes_zero(sums)
            for i in range(lo, hi):
                _lanes_dot(u, v, i * k + group, sums)
            _lanes_add_to(sums, partial[c], group)
        if groups < k:
            _dots_rest(U, V, lo, hi, groups, partial[c])
    _chunk_total(partial, out)


@nb.njit(**_JIT)
def _block_dots_scalar(U, V, out):
    n, k = U.shape
    partial = np.zeros(((n + _CHUNK - 1) // _CHUNK, k))
    for c in prange(partial.shape[0]):
        lo = c * _CHUNK
        _dots_rest(U, V, lo, min(n, lo + _CHUNK), 0, partial[c])
    _chunk_total(partial, out)


def block_dots(U, V, out) -> None:
    """``out[j] = U[:, j] . V[:, j]``, the chunked sums of the other block kernels."""
    kernel = _block_dots_lanes if _lanes_fit(U, V) else _block_dots_scalar
    kernel(U, V, out)
