"""SSOR-preconditioned CG by Eisenstat's trick: the product with ``A`` folded into the sweeps.

For symmetric ``B = A[perm][:, perm]`` with a positive diagonal ``D``, SSOR
is ``M = W W^T / (w (2 - w))`` with ``W = D^{1/2} V``, ``V = I + C``,
``C = w D^{-1/2} L D^{-1/2}`` (:class:`linsolve.precond.SSOR`, which stores
``C``). CG on ``A`` preconditioned by ``M`` is, in exact arithmetic, CG on
``S = V^{-1} Ahat V^{-T}`` (``Ahat = D^{-1/2} B D^{-1/2}``) with the scalar
preconditioner ``w (2 - w)``, which leaves the iterates unchanged.
Eisenstat ("Efficient implementation of a class of preconditioned conjugate
gradient methods", SIAM J. Sci. Stat. Comput. 2, 1981) writes
``Ahat = (V + V^T)/w + (1 - 2/w) I``, so that with ``t = V^{-T} p``

    S p = t / w + V^{-1} (p / w + (1 - 2/w) t),

two triangular sweeps and no product with ``A``: one pass over ``C`` each.
The forward sweep also forms ``C t`` from the rows it reads, which gives
``Ahat t = (t + C t + p)/w + (1 - 2/w) t`` and so the residual of the
original system, ``D^{1/2} (b~ - Ahat x~)``, updated alongside.

Kernels: :func:`eisenstat_start` (the transformed residuals of a given
``r``), :func:`eisenstat_backward` (the direction update fused with
``t = V^{-T} p``, read from ``U = C^T`` by rows), :func:`eisenstat_forward`
(``u = V^{-1} s``, ``C t``, ``p . S p``), :func:`eisenstat_update` (the
iterate and the two residuals, their norms). Domains of a domain ordering
run in parallel (:mod:`cext.numba.triangular`); no ``fastmath`` (NaN must
reach the caller). Mirrors :mod:`cext.reference.eisenstat`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .spmv import unsigned_view

_SEQ = dict(nogil=True, cache=True, boundscheck=False)
_PAR = dict(_SEQ, parallel=True)
_ROW = dict(nogil=True, cache=True, boundscheck=False, inline="always")


@nb.njit(**_ROW)
def _start_rows(indptr, indices, data, scale, perm, r, rtilde, rhat, lo, hi, quad):
    for i in range(lo, hi):
        value = scale[i] * r[perm[i]]
        rtilde[i] = value
        acc = value
        if quad:
            for jj in range(indptr[i], indptr[i + 1], 4):
                acc -= data[jj] * rhat[indices[jj]]
                acc -= data[jj + 1] * rhat[indices[jj + 1]]
                acc -= data[jj + 2] * rhat[indices[jj + 2]]
                acc -= data[jj + 3] * rhat[indices[jj + 3]]
        else:
            for jj in range(indptr[i], indptr[i + 1]):
                acc -= data[jj] * rhat[indices[jj]]
        rhat[i] = acc


@nb.njit(**_ROW)
def _backward_rows(indptr, indices, data, rhat, p, beta, restart, t, lo, hi, quad):
    for k in range(hi - lo):
        i = hi - 1 - k
        direction = rhat[i] if restart else rhat[i] + beta * p[i]
        p[i] = direction
        acc = direction
        if quad:
            for jj in range(indptr[i], indptr[i + 1], 4):
                acc -= data[jj] * t[indices[jj]]
                acc -= data[jj + 1] * t[indices[jj + 1]]
                acc -= data[jj + 2] * t[indices[jj + 2]]
                acc -= data[jj + 3] * t[indices[jj + 3]]
        else:
            for jj in range(indptr[i], indptr[i + 1]):
                acc -= data[jj] * t[indices[jj]]
        t[i] = acc


@nb.njit(**_ROW)
def _forward_rows(indptr, indices, data, p, t, u, a, inverse_omega, shift, lo, hi, quad):
    """``u = V^{-1} (p/w + shift t)``, ``a = (t + C t + p)/w + shift t`` on rows lo..hi-1;
    returns ``sum p_i (t_i/w + u_i)``."""
    pq = 0.0
    for i in range(lo, hi):
        ti = t[i]
        pi = p[i]
        acc = pi * inverse_omega + shift * ti
        ct = 0.0
        if quad:
            for jj in range(indptr[i], indptr[i + 1], 4):
                for e in range(4):
                    c = data[jj + e]
                    j = indices[jj + e]
                    acc -= c * u[j]
                    ct += c * t[j]
        else:
            for jj in range(indptr[i], indptr[i + 1]):
                c = data[jj]
                j = indices[jj]
                acc -= c * u[j]
                ct += c * t[j]
        u[i] = acc
        a[i] = (ti + ct + pi) * inverse_omega + shift * ti
        pq += pi * (ti * inverse_omega + acc)
    return pq


@nb.njit(**_PAR)
def _start_parallel(indptr, indices, data, scale, perm, segment_ptr, stage_ptr, r, rtilde, rhat,
                    quad):
    for stage in range(stage_ptr.shape[0] - 1):
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        for s in prange(count):
            g = first + s
            _start_rows(indptr, indices, data, scale, perm, r, rtilde, rhat, segment_ptr[g],
                        segment_ptr[g + 1], quad)


@nb.njit(**_SEQ)
def _start_serial(indptr, indices, data, scale, perm, r, rtilde, rhat, quad):
    _start_rows(indptr, indices, data, scale, perm, r, rtilde, rhat, 0, rtilde.shape[0], quad)


@nb.njit(**_PAR)
def _backward_parallel(indptr, indices, data, segment_ptr, stage_ptr, rhat, p, beta, restart, t,
                       quad):
    stages = stage_ptr.shape[0] - 1
    for back in range(stages):
        stage = stages - 1 - back
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        for s in prange(count):
            g = first + s
            _backward_rows(indptr, indices, data, rhat, p, beta, restart, t, segment_ptr[g],
                           segment_ptr[g + 1], quad)


@nb.njit(**_SEQ)
def _backward_serial(indptr, indices, data, rhat, p, beta, restart, t, quad):
    _backward_rows(indptr, indices, data, rhat, p, beta, restart, t, 0, t.shape[0], quad)


@nb.njit(**_PAR)
def _forward_parallel(indptr, indices, data, segment_ptr, stage_ptr, p, t, u, a, inverse_omega,
                      shift, partial, quad):
    for stage in range(stage_ptr.shape[0] - 1):
        first = stage_ptr[stage]
        count = stage_ptr[stage + 1] - first
        for s in prange(count):
            g = first + s
            partial[g] = _forward_rows(indptr, indices, data, p, t, u, a, inverse_omega, shift,
                                       segment_ptr[g], segment_ptr[g + 1], quad)
    total = 0.0
    for g in range(partial.shape[0]):
        total += partial[g]
    return total


@nb.njit(**_SEQ)
def _forward_serial(indptr, indices, data, segment_ptr, p, t, u, a, inverse_omega, shift,
                    partial, quad):
    # segment by segment, summed in segment order: the parallel kernel's sum
    for g in range(segment_ptr.shape[0] - 1):
        partial[g] = _forward_rows(indptr, indices, data, p, t, u, a, inverse_omega, shift,
                                   segment_ptr[g], segment_ptr[g + 1], quad)
    total = 0.0
    for g in range(partial.shape[0]):
        total += partial[g]
    return total


_CHUNK = 4096  # rows per partial sum: the update's sums do not depend on the thread count


@nb.njit(**_PAR)
def _update_parallel(x, rhat, rtilde, t, u, a, root, alpha, inverse_omega, partial):
    n = x.shape[0]
    chunks = partial.shape[0]
    for c in prange(chunks):
        rho_c = 0.0
        rr_c = 0.0
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            ti = t[i]
            x[i] += alpha * ti
            value = rhat[i] - alpha * (ti * inverse_omega + u[i])
            rhat[i] = value
            rho_c += value * value
            residual = rtilde[i] - alpha * a[i]
            rtilde[i] = residual
            weighted = root[i] * residual
            rr_c += weighted * weighted
        partial[c, 0] = rho_c
        partial[c, 1] = rr_c
    rho = 0.0
    rr = 0.0
    for c in range(chunks):
        rho += partial[c, 0]
        rr += partial[c, 1]
    return rho, rr


@nb.njit(**_SEQ)
def _update_serial(x, rhat, rtilde, t, u, a, root, alpha, inverse_omega, partial):
    n = x.shape[0]
    chunks = partial.shape[0]
    for c in range(chunks):
        rho = 0.0
        rr = 0.0
        for i in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            ti = t[i]
            x[i] += alpha * ti
            value = rhat[i] - alpha * (ti * inverse_omega + u[i])
            rhat[i] = value
            rho += value * value
            residual = rtilde[i] - alpha * a[i]
            rtilde[i] = residual
            weighted = root[i] * residual
            rr += weighted * weighted
        partial[c, 0] = rho
        partial[c, 1] = rr
    rho = 0.0
    rr = 0.0
    for c in range(chunks):
        rho += partial[c, 0]
        rr += partial[c, 1]
    return rho, rr


def _parallel(stage_ptr) -> bool:
    return nb.get_num_threads() > 1 and stage_ptr.shape[0] > 2


def eisenstat_start(lower_indptr, lower_indices, lower_data, scale, perm, segment_ptr, stage_ptr,
                    r, rtilde, rhat, quad=False) -> None:
    """``rtilde = S P r`` and ``rhat = V^{-1} rtilde`` (``S = diag(scale)``, ``V = I + C``).

    ``C`` is strictly lower CSR in the permuted numbering (rows padded to a
    multiple of four with leading zeros where ``quad``); ``(P r)[i] = r[perm[i]]``.

    Examples
    --------
    >>> import numpy as np
    >>> one = np.ones(2); rt, rh = np.empty(2), np.empty(2)
    >>> eisenstat_start(np.array([0, 0, 1]), np.array([0]), np.array([0.5]), one,
    ...                 np.arange(2), np.array([0, 2]), np.array([0, 1]), np.array([1.0, 1.5]),
    ...                 rt, rh)
    >>> rt.tolist(), rh.tolist()
    ([1.0, 1.5], [1.0, 1.0])
    """
    u = unsigned_view
    if _parallel(stage_ptr):
        _start_parallel(u(lower_indptr), u(lower_indices), lower_data, scale, u(perm),
                        u(segment_ptr), u(stage_ptr), r, rtilde, rhat, bool(quad))
    else:
        _start_serial(u(lower_indptr), u(lower_indices), lower_data, scale, u(perm), r, rtilde,
                      rhat, bool(quad))


def eisenstat_backward(upper_indptr, upper_indices, upper_data, segment_ptr, stage_ptr, rhat, p,
                       beta, restart, t, quad=False) -> None:
    """``p = rhat + beta p`` (``p = rhat`` on ``restart``) and ``t = (I + U)^{-1} p``.

    ``U = C^T``: strictly upper CSR, rows padded like ``C``'s; the stages in
    reverse, the segments of one stage in parallel.

    Examples
    --------
    >>> import numpy as np
    >>> p, t = np.zeros(2), np.empty(2)
    >>> eisenstat_backward(np.array([0, 1, 1]), np.array([1]), np.array([0.5]),
    ...                    np.array([0, 2]), np.array([0, 1]), np.array([1.0, 2.0]), p, 0.0,
    ...                    True, t)
    >>> p.tolist(), t.tolist()
    ([1.0, 2.0], [0.0, 2.0])
    """
    u = unsigned_view
    dtype = p.dtype.type
    if _parallel(stage_ptr):
        _backward_parallel(u(upper_indptr), u(upper_indices), upper_data, u(segment_ptr),
                           u(stage_ptr), rhat, p, dtype(beta), bool(restart), t, bool(quad))
    else:
        _backward_serial(u(upper_indptr), u(upper_indices), upper_data, rhat, p, dtype(beta),
                         bool(restart), t, bool(quad))


def eisenstat_forward(lower_indptr, lower_indices, lower_data, segment_ptr, stage_ptr, p, t, u, a,
                      omega, quad=False) -> float:
    """``u = V^{-1} (p/w + (1 - 2/w) t)``, ``a = (t + C t + p)/w + (1 - 2/w) t``; returns
    ``p . (t/w + u)`` (``= p . S p``).

    Examples
    --------
    >>> import numpy as np
    >>> u, a = np.empty(2), np.empty(2)
    >>> eisenstat_forward(np.array([0, 0, 0]), np.array([], np.int64), np.array([]),
    ...                   np.array([0, 2]), np.array([0, 1]), np.ones(2), np.ones(2), u, a, 1.0)
    2.0
    """
    w = unsigned_view
    dtype = p.dtype.type
    partial = np.empty(segment_ptr.shape[0] - 1, dtype=np.float64)
    inverse_omega, shift = dtype(1.0 / omega), dtype(1.0 - 2.0 / omega)
    if _parallel(stage_ptr):
        return float(_forward_parallel(w(lower_indptr), w(lower_indices), lower_data,
                                       w(segment_ptr), w(stage_ptr), p, t, u, a, inverse_omega,
                                       shift, partial, bool(quad)))
    return float(_forward_serial(w(lower_indptr), w(lower_indices), lower_data, w(segment_ptr),
                                 p, t, u, a, inverse_omega, shift, partial, bool(quad)))


def eisenstat_update(x, rhat, rtilde, t, u, a, root, alpha, omega) -> tuple[float, float]:
    """``x += alpha t``, ``rhat -= alpha (t/w + u)``, ``rtilde -= alpha a``; returns
    ``(rhat . rhat, ||root * rtilde||^2)``.

    Examples
    --------
    >>> import numpy as np
    >>> x, rh, rt = np.zeros(1), np.ones(1), np.ones(1)
    >>> eisenstat_update(x, rh, rt, np.ones(1), np.zeros(1), np.ones(1), np.full(1, 2.0),
    ...                  0.5, 1.0)
    (0.25, 1.0)
    """
    dtype = x.dtype.type
    partial = np.empty((max(1, -(-x.shape[0] // _CHUNK)), 2), dtype=np.float64)
    kernel = _update_parallel if nb.get_num_threads() > 1 else _update_serial
    rho, rr = kernel(x, rhat, rtilde, t, u, a, root, dtype(alpha), dtype(1.0 / omega), partial)
    return float(rho), float(rr)
