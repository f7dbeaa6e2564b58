"""Fused passes of the BiCGStab iteration (Numba).

BiCGStab (van der Vorst 1992; Saad, *Iterative Methods for Sparse Linear
Systems*, 2nd ed., Algorithm 7.7), right-preconditioned as scipy's
``bicgstab``, reads and writes seven vectors per iteration; done with NumPy
expressions, every ``axpy`` and every dot product is a separate pass over
memory. Here each pass does all the work that its data allows:

- ``bicgstab_csr_spmv_dots`` / ``bicgstab_dia_spmv_dots``: ``q = A p`` and
  the two inner products that the new ``q`` feeds, ``(w . q, q . q)``, in
  the loop that sums the rows (``v = A p_hat`` with ``r0_hat . v``;
  ``t = A s_hat`` with ``t . s`` and ``t . t``).
- ``bicgstab_update_p``: ``p = r + beta (p - omega v)``.
- ``bicgstab_update_s``: ``s = r - alpha v`` (written over ``r``) and ``s . s``.
- ``bicgstab_update_xr``: ``x += alpha p_hat + omega s_hat`` and
  ``r = s - omega t`` (written over ``s``) with ``r . r`` and ``r0_hat . r``.
- ``bicgstab_update_xr_scaled``: the same with a diagonal (Jacobi)
  preconditioner folded into the matrix, ``x += scale (alpha p + omega s)``:
  right preconditioning by ``M = diag(scale)`` is BiCGStab on ``A M``, whose
  columns the solver scales once, so ``p_hat`` and ``s_hat`` are never stored.

The updates take ``s_hat`` that may be ``r`` itself (no preconditioner):
each row reads ``s_hat[i]`` before it writes ``r[i]``, and no other row
reads either. Kernels are dumb: real float32/float64 arrays of one dtype
(complex systems run on :mod:`cext.reference.bicgstab`), shapes checked by
the caller (:mod:`linsolve.krylov.bicgstab`). Scalars arrive as Python
floats: updates are computed in float64 and rounded once to the array
dtype; every dot product accumulates in float64.

CSR row loops follow :mod:`cext.numba.spmv` (unsigned index views,
contiguous blocks of rows per task, two rows summed as interleaved chains,
each in CSR order, in float64); on one thread, rows of
:data:`cext.numba.minres.LONG_ROWS` entries or more on average are summed
one at a time, with the same bits. DIA takes the tuple of offsets of
:mod:`cext.numba.dia` but runs diagonal by diagonal over a block of rows
(see ``_dia_rows_dots``), which vectorises where the row-by-row loop
does not. Each row is still summed in diagonal order, so ``q`` has the bits of
``csr_spmv`` / ``dia_spmv``. Mirrors :mod:`cext.cupy.bicgstab` and
:mod:`cext.reference.bicgstab`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .minres import single_rows
from .spmv import _BLOCK, range_pair_sums, unsigned_view

# Row sums without fastmath (CSR/diagonal order, NaN/Inf reach the dots the
# solver tests); the vector updates as cext.numba.blas1: 'reassoc' lets LLVM
# vectorise their reductions with several partial sums, 'nnan'/'ninf' stay
# off so a NaN or Inf still reaches the returned value.
_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False)
_SERIAL = dict(_JIT, parallel=False)
_INLINE = dict(nogil=True, cache=True, boundscheck=False, inline="always")
_UPDATE = dict(_JIT, fastmath={"reassoc", "contract"})


# --- products fused with the dots they feed ---------------------------------------

def bicgstab_csr_spmv_dots(indptr, indices, data, p, q, w):
    """``q = A @ p`` for CSR ``A``; return ``(w . q, q . q)`` from the same pass.

    ``w`` may be ``p`` (``t = A s`` with ``t . s`` when ``s_hat = s``); ``q``
    must be neither.
    """
    if nb.get_num_threads() > 1:
        kernel = _csr_spmv_dots
    else:
        kernel = _csr_spmv_dots_single_serial if single_rows(indptr) else _csr_spmv_dots_serial
    return kernel(unsigned_view(indptr), unsigned_view(indices), data, p, q, w)


def bicgstab_dia_spmv_dots(offsets, values, p, q, w):
    """As :func:`bicgstab_csr_spmv_dots` for row-aligned DIA storage,
    ``values[d, i] = A[i, i + offsets[d]]``."""
    kernel = _dia_spmv_dots if nb.get_num_threads() > 1 else _dia_spmv_dots_serial
    return kernel(offsets, values, p, q, w)


@nb.njit(**_INLINE)
def _csr_rows_dots(indptr, indices, data, p, q, w, lo, hi):
    """Rows ``lo..hi-1`` of ``q = A @ p``; their parts of ``w . q`` and ``q . q``."""
    wq = 0.0
    qq = 0.0
    i = lo
    start = indptr[lo]
    while i + 1 < hi:
        middle = indptr[i + 1]
        end = indptr[i + 2]
        a0, a1 = range_pair_sums(start, middle, middle, end, indices, data, p, 0.0)
        q0 = q.dtype.type(a0)
        q1 = q.dtype.type(a1)
        q[i] = q0
        q[i + 1] = q1
        # the dots of the stored (rounded) q, as the reference computes them
        wq += w[i] * np.float64(q0)
        wq += w[i + 1] * np.float64(q1)
        qq += np.float64(q0) * q0
        qq += np.float64(q1) * q1
        start = end
        i += 2
    if i < hi:
        acc = 0.0
        for jj in range(start, indptr[i + 1]):
            acc += data[jj] * p[indices[jj]]
        q0 = q.dtype.type(acc)
        q[i] = q0
        wq += w[i] * np.float64(q0)
        qq += np.float64(q0) * q0
    return wq, qq


@nb.njit(**_JIT)
def _csr_spmv_dots(indptr, indices, data, p, q, w):
    n = q.shape[0]
    wq = 0.0
    qq = 0.0
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        a, b = _csr_rows_dots(indptr, indices, data, p, q, w, lo, min(n, lo + _BLOCK))
        wq += a
        qq += b
    return wq, qq


# One thread (the policy in cext.threads chose it): a plain loop over all
# rows, without the task machinery of a parallel region held to one thread.
@nb.njit(**_SERIAL)
def _csr_spmv_dots_serial(indptr, indices, data, p, q, w):
    return _csr_rows_dots(indptr, indices, data, p, q, w, 0, q.shape[0])


@nb.njit(**_INLINE)
def _csr_rows_dots_single(indptr, indices, data, p, q, w, lo, hi):
    """:func:`_csr_rows_dots` one row at a time (long rows): the same bits.

    A kernel of its own, not a flag: one function holding both row loops
    made the pair loop 4 % slower (2-D convection-diffusion, one thread).
    """
    wq = 0.0
    qq = 0.0
    start = indptr[lo]
    for i in range(lo, hi):
        end = indptr[i + 1]
        acc = 0.0
        for jj in range(start, end):
            acc += data[jj] * p[indices[jj]]
        q0 = q.dtype.type(acc)
        q[i] = q0
        wq += w[i] * np.float64(q0)
        qq += np.float64(q0) * q0
        start = end
    return wq, qq


@nb.njit(**_SERIAL)
def _csr_spmv_dots_single_serial(indptr, indices, data, p, q, w):
    return _csr_rows_dots_single(indptr, indices, data, p, q, w, 0, q.shape[0])


# Measured (2-D convection-diffusion stencil, n = 250k, one thread, CPU time):
# 0.57 ms for the product and both dots, against 0.92 ms for the row-by-row
# dia_spmv_dot with one dot and 0.78 ms for scipy's CSR product.
@nb.njit(**_INLINE)
def _dia_rows_dots(offsets, values, p, q, w, lo, hi, acc):
    """Rows ``lo..hi-1`` of ``q = A @ p``; their parts of ``w . q`` and ``q . q``.

    Diagonal by diagonal over the block (``acc``, float64 scratch of at
    least ``hi - lo``): each pass is a contiguous multiply-add without a
    bounds test per entry, which the compiler vectorises; a row-by-row loop
    tests ``0 <= i + offset < n`` for every entry and does not vectorise.
    Each row is still summed in diagonal order, as ``dia_spmv`` sums it.
    """
    n = q.shape[0]
    m = hi - lo
    for ii in range(m):
        acc[ii] = 0.0
    for d in range(len(offsets)):
        offset = offsets[d]
        a = max(lo, -offset)
        b = min(hi, n - offset)
        if a >= b:
            continue
        diagonal = values[d, a:b]
        shifted = p[a + offset:b + offset]
        partial = acc[a - lo:b - lo]
        for ii in range(b - a):
            partial[ii] += diagonal[ii] * shifted[ii]
    wq = 0.0
    qq = 0.0
    q_block = q[lo:hi]
    w_block = w[lo:hi]
    for ii in range(m):
        qi = q_block.dtype.type(acc[ii])
        q_block[ii] = qi
        wq += w_block[ii] * np.float64(qi)
        qq += np.float64(qi) * qi
    return wq, qq


@nb.njit(**_JIT)
def _dia_spmv_dots(offsets, values, p, q, w):
    n = q.shape[0]
    wq = 0.0
    qq = 0.0
    for block in prange((n + _BLOCK - 1) // _BLOCK):
        lo = block * _BLOCK
        acc = np.empty(_BLOCK)  # 8 KiB per task, in L1
        a, b = _dia_rows_dots(offsets, values, p, q, w, lo, min(n, lo + _BLOCK), acc)
        wq += a
        qq += b
    return wq, qq


@nb.njit(**_SERIAL)
def _dia_spmv_dots_serial(offsets, values, p, q, w):
    n = q.shape[0]
    wq = 0.0
    qq = 0.0
    acc = np.empty(_BLOCK)
    for lo in range(0, n, _BLOCK):
        a, b = _dia_rows_dots(offsets, values, p, q, w, lo, min(n, lo + _BLOCK), acc)
        wq += a
        qq += b
    return wq, qq


# --- vector updates ------------------------------------------------------------------

@nb.njit(**_UPDATE)
def bicgstab_update_p(p, r, v, beta, omega):
    """``p = r + beta (p - omega v)`` in place."""
    for i in prange(p.shape[0]):
        p[i] = r[i] + beta * (p[i] - omega * v[i])


@nb.njit(**_UPDATE)
def bicgstab_update_s(r, v, alpha):
    """``r -= alpha v`` in place (``r`` becomes ``s``); return ``s . s``."""
    total = 0.0
    for i in prange(r.shape[0]):
        si = r.dtype.type(r[i] - alpha * v[i])
        r[i] = si
        total += np.float64(si) * si
    return total


@nb.njit(**_UPDATE)
def bicgstab_update_xr(x, r, p_hat, s_hat, t, rhat, alpha, omega):
    """``x += alpha p_hat + omega s_hat``; ``r -= omega t`` (``r`` holds ``s``); return
    ``(r . r, rhat . r)``. ``s_hat`` may be ``r``."""
    rr = 0.0
    rhat_r = 0.0
    for i in prange(x.shape[0]):
        x[i] += alpha * p_hat[i] + omega * s_hat[i]
        ri = r.dtype.type(r[i] - omega * t[i])
        r[i] = ri
        rr += np.float64(ri) * ri
        rhat_r += np.float64(rhat[i]) * ri
    return rr, rhat_r


@nb.njit(**_UPDATE)
def bicgstab_update_xr_scaled(x, r, p, s, t, rhat, alpha, omega, scale):
    """``x += scale * (alpha p + omega s)``; ``r -= omega t`` (``r`` holds ``s``); return
    ``(r . r, rhat . r)``. The Jacobi step with ``M = diag(scale)`` folded into the
    matrix (the products are ``(A M) p`` and ``(A M) s``): ``p_hat``, ``s_hat`` are never
    stored. ``s`` may be ``r``."""
    rr = 0.0
    rhat_r = 0.0
    for i in prange(x.shape[0]):
        x[i] += scale[i] * (alpha * p[i] + omega * s[i])
        ri = r.dtype.type(r[i] - omega * t[i])
        r[i] = ri
        rr += np.float64(ri) * ri
        rhat_r += np.float64(rhat[i]) * ri
    return rr, rhat_r
