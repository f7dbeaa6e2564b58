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
iterate and the two residuals, their norms); :func:`eisenstat_run` runs
iterations of the three in one compiled call, and
:func:`eisenstat_into_permuted` / :func:`eisenstat_from_permuted` move an
iterate to and from the scaled, permuted numbering. Domains of a domain
ordering run in parallel (:mod:`cext.numba.triangular`); no ``fastmath`` (NaN must
reach the caller). Mirrors :mod:`cext.reference.eisenstat`.
"""

from __future__ import annotations

import math

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
    # The sweep is bound by instructions and the row-to-row chain, not by
    # bytes: a row's first entry is mostly t[i+1], the row just solved, taken
    # from a register (``last``) rather than stored and reloaded, and rows of
    # three entries (triangle meshes: six neighbours, three above the
    # diagonal) are unrolled. Same operations in the same order: same bits.
    # P1 triangles, n = 261k, one thread: 1.20 -> 0.81 ms a sweep.
    last = acc = t.dtype.type(0)
    last_row = t.shape[0]  # no row: the first one here has no predecessor in a register
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
            start, stop = indptr[i], indptr[i + 1]
            if start < stop:
                j = indices[start]
                acc -= data[start] * (last if j == last_row else t[j])
                if stop - start == 3:
                    acc -= data[start + 1] * t[indices[start + 1]]
                    acc -= data[start + 2] * t[indices[start + 2]]
                else:
                    for jj in range(start + 1, stop):
                        acc -= data[jj] * t[indices[jj]]
        t[i] = acc
        last = acc
        last_row = i


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
            start, stop = indptr[i], indptr[i + 1]
            if stop - start == 3:  # unrolled, as in _backward_rows: the same order
                c, j = data[start], indices[start]
                acc -= c * u[j]
                ct += c * t[j]
                c, j = data[start + 1], indices[start + 1]
                acc -= c * u[j]
                ct += c * t[j]
                c, j = data[start + 2], indices[start + 2]
                acc -= c * u[j]
                ct += c * t[j]
            else:
                for jj in range(start, stop):
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


# statuses of eisenstat_run, cext.numba.cg_loop's
AT_TEST, PC_FAILED, CURVATURE_FAILED, DRIFT_CHECK = 0, 1, 2, 3


@nb.njit(**_SEQ)
def _run(lower_indptr, lower_indices, lower_data, upper_indptr, upper_indices, upper_data,
         segment_ptr, stage_ptr, root, xt, rhat, rtilde, p, t, u, a, scalars, counters, norms,
         inverse_omega, shift, cast, partial, chunk_partial, tol, maxiter, end, check_every,
         quad, upper_quad, sweeps_parallel, update_parallel):
    # The Python loop of linsolve.krylov.eisenstat, iteration for iteration:
    # the same kernels in the same order, its float64 scalars (beta, alpha)
    # rounded to the working dtype as the wrappers round them (through
    # ``cast``, an array of that dtype), so the iterates keep their bits.
    k0 = counters[0]
    k = k0
    while True:
        rho = scalars[1]
        if not (math.isfinite(rho) and rho > 0.0):
            scalars[3] = rho
            counters[0] = k
            counters[2] = PC_FAILED
            return
        restart = counters[1] != 0
        cast[0] = 0.0 if restart else rho / scalars[2]  # beta: unused on a restart
        if sweeps_parallel:
            _backward_parallel(upper_indptr, upper_indices, upper_data, segment_ptr, stage_ptr,
                               rhat, p, cast[0], restart, t, upper_quad)
        else:
            _backward_serial(upper_indptr, upper_indices, upper_data, rhat, p, cast[0], restart,
                             t, upper_quad)
        counters[1] = 0
        if sweeps_parallel:
            pq = _forward_parallel(lower_indptr, lower_indices, lower_data, segment_ptr,
                                   stage_ptr, p, t, u, a, inverse_omega, shift, partial, quad)
        else:
            pq = _forward_serial(lower_indptr, lower_indices, lower_data, segment_ptr, p, t, u,
                                 a, inverse_omega, shift, partial, quad)
        if not (math.isfinite(pq) and pq > 0.0):
            scalars[3] = pq
            counters[0] = k
            counters[2] = CURVATURE_FAILED
            return
        cast[0] = rho / pq
        scalars[2] = rho
        if update_parallel:
            rho, rr = _update_parallel(xt, rhat, rtilde, t, u, a, root, cast[0], inverse_omega,
                                       chunk_partial)
        else:
            rho, rr = _update_serial(xt, rhat, rtilde, t, u, a, root, cast[0], inverse_omega,
                                     chunk_partial)
        scalars[1] = rho
        rnorm = math.sqrt(rr) if rr >= 0 else math.nan
        scalars[0] = rnorm
        k += 1
        counters[0] = k
        if check_every > 0 and k % check_every == 0 and math.isfinite(rnorm):
            counters[2] = DRIFT_CHECK
            return
        norms[k - k0 - 1] = rnorm
        if not (math.isfinite(rnorm) and rnorm > tol and k < maxiter) or k >= end:
            counters[2] = AT_TEST
            return


def eisenstat_run(lower_indptr, lower_indices, lower_data, upper_indptr, upper_indices,
                  upper_data, segment_ptr, stage_ptr, root, xt, rhat, rtilde, p, t, u, a,
                  scalars, counters, norms, omega, tol, maxiter, end, check_every, quad=False,
                  upper_quad=False) -> None:
    """Iterations of Eisenstat's SSOR-CG from the state given, in one compiled call.

    Each iteration is :func:`eisenstat_backward`, :func:`eisenstat_forward` and
    :func:`eisenstat_update` (the same bits as calling them in turn).
    ``scalars = [rnorm, rho, rho_prev, value]`` (``rho = rhat . rhat``,
    ``value`` the failing ``rho`` or ``p . S p``), ``counters = [k, restart,
    status]``; ``norms[j]`` receives iteration ``k0 + j + 1``'s norm. Runs
    while ``rnorm`` is finite and above ``tol``, ``k < min(maxiter, end)``
    and ``k`` is no multiple of ``check_every`` (0: none); statuses as
    :mod:`cext.numba.cg_loop`'s (``AT_TEST``, ``PC_FAILED``,
    ``CURVATURE_FAILED``, ``DRIFT_CHECK``).

    Examples
    --------
    >>> import numpy as np
    >>> none = (np.zeros(3, np.int64), np.zeros(0, np.int64), np.zeros(0))
    >>> x, rhat, rtilde = np.zeros(2), np.ones(2), np.ones(2)
    >>> p, t, u, a = (np.zeros(2) for _ in range(4))
    >>> scalars, counters, norms = np.array([1.0, 2.0, 1.0, 0.0]), np.array([0, 1, 0]), np.empty(4)
    >>> eisenstat_run(*none, *none, np.array([0, 2]), np.array([0, 1]), np.ones(2), x, rhat,
    ...               rtilde, p, t, u, a, scalars, counters, norms, 1.0, 1e-12, 10, 10, 0)
    >>> x.tolist(), counters.tolist()  # one step: A = I is solved exactly
    ([1.0, 1.0], [1, 0, 0])
    """
    w = unsigned_view
    dtype = xt.dtype.type
    partial = np.empty(segment_ptr.shape[0] - 1, dtype=np.float64)
    chunk_partial = np.empty((max(1, -(-xt.shape[0] // _CHUNK)), 2), dtype=np.float64)
    _run(w(lower_indptr), w(lower_indices), lower_data, w(upper_indptr), w(upper_indices),
         upper_data, w(segment_ptr), w(stage_ptr), root, xt, rhat, rtilde, p, t, u, a, scalars,
         counters, norms, dtype(1.0 / omega), dtype(1.0 - 2.0 / omega), np.empty(1, xt.dtype),
         partial, chunk_partial, float(tol), int(maxiter), int(end), int(check_every),
         bool(quad), bool(upper_quad), _parallel(stage_ptr), nb.get_num_threads() > 1)


@nb.njit(**_PAR)
def _into_permuted(x, perm, scale, out):
    for i in prange(out.shape[0]):
        out[i] = x[perm[i]] / scale[i]


@nb.njit(**_PAR)
def _from_permuted(xt, perm, scale, out):
    for i in prange(xt.shape[0]):
        out[perm[i]] = scale[i] * xt[i]


def eisenstat_into_permuted(x, perm, scale, out) -> None:
    """``out = x[perm] / scale``: an iterate in the scaled, permuted numbering.

    One pass (NumPy's ``x[perm]`` with 32-bit ``perm`` first copies ``perm``
    to ``intp``), in parallel: no sums, the bits of ``x[perm] / scale``.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty(2)
    >>> eisenstat_into_permuted(np.array([1.0, 2.0]), np.array([1, 0]), np.full(2, 2.0), out)
    >>> out.tolist()
    [1.0, 0.5]
    """
    _into_permuted(x, unsigned_view(perm), scale, out)


def eisenstat_from_permuted(xt, perm, scale, out) -> None:
    """``out[perm] = scale * xt``: the inverse of :func:`eisenstat_into_permuted`.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty(2)
    >>> eisenstat_from_permuted(np.array([1.0, 0.5]), np.array([1, 0]), np.full(2, 2.0), out)
    >>> out.tolist()
    [1.0, 2.0]
    """
    _from_permuted(xt, unsigned_view(perm), scale, out)
