"""Array-API twins of :mod:`cext.numba.eisenstat`: plain loops in the one-thread order."""

from __future__ import annotations

import math

_CHUNK = 4096


def eisenstat_start(lower_indptr, lower_indices, lower_data, scale, perm, segment_ptr, stage_ptr,
                    r, rtilde, rhat, quad=False) -> None:
    """``rtilde = S P r``, ``rhat = (I + C)^{-1} rtilde`` (see the Numba kernel)."""
    del segment_ptr, stage_ptr, quad
    for i in range(rtilde.shape[0]):
        value = scale[i] * r[int(perm[i])]
        rtilde[i] = value
        acc = value
        for jj in range(int(lower_indptr[i]), int(lower_indptr[i + 1])):
            acc = acc - lower_data[jj] * rhat[int(lower_indices[jj])]
        rhat[i] = acc


def eisenstat_backward(upper_indptr, upper_indices, upper_data, segment_ptr, stage_ptr, rhat, p,
                       beta, restart, t, quad=False) -> None:
    """``p = rhat + beta p`` (``rhat`` on restart), ``t = (I + U)^{-1} p``, rows last to first."""
    del segment_ptr, stage_ptr, quad
    n = t.shape[0]
    for k in range(n):
        i = n - 1 - k
        direction = rhat[i] if restart else rhat[i] + p.dtype.type(beta) * p[i]
        p[i] = direction
        acc = direction
        for jj in range(int(upper_indptr[i]), int(upper_indptr[i + 1])):
            acc = acc - upper_data[jj] * t[int(upper_indices[jj])]
        t[i] = acc


def eisenstat_forward(lower_indptr, lower_indices, lower_data, segment_ptr, stage_ptr, p, t, u, a,
                      omega, quad=False) -> float:
    """``u = (I + C)^{-1} (p/w + (1 - 2/w) t)``, ``a = (t + C t + p)/w + (1 - 2/w) t``;
    returns ``p . (t/w + u)`` summed by segments."""
    del stage_ptr, quad
    dtype = p.dtype.type
    inverse_omega, shift = dtype(1.0 / omega), dtype(1.0 - 2.0 / omega)
    total = 0.0
    for g in range(segment_ptr.shape[0] - 1):
        pq = 0.0
        for i in range(int(segment_ptr[g]), int(segment_ptr[g + 1])):
            ti, pi = t[i], p[i]
            acc = pi * inverse_omega + shift * ti
            ct = 0.0
            for jj in range(int(lower_indptr[i]), int(lower_indptr[i + 1])):
                j = int(lower_indices[jj])
                acc = acc - lower_data[jj] * u[j]
                ct = ct + float(lower_data[jj] * t[j])
            u[i] = acc
            a[i] = (ti + ct + pi) * inverse_omega + shift * ti
            pq += float(pi * (ti * inverse_omega + acc))
        total += pq
    return total


def eisenstat_update(x, rhat, rtilde, t, u, a, root, alpha, omega) -> tuple[float, float]:
    """``x += alpha t``, ``rhat -= alpha (t/w + u)``, ``rtilde -= alpha a``; the two norms²."""
    dtype = x.dtype.type
    alpha, inverse_omega = dtype(alpha), dtype(1.0 / omega)
    rho = rr = 0.0
    n = x.shape[0]
    for start in range(0, max(n, 1), _CHUNK):
        rho_c = rr_c = 0.0
        for i in range(start, min(n, start + _CHUNK)):
            x[i] = x[i] + alpha * t[i]
            value = rhat[i] - alpha * (t[i] * inverse_omega + u[i])
            rhat[i] = value
            rho_c += float(value * value)
            residual = rtilde[i] - alpha * a[i]
            rtilde[i] = residual
            weighted = root[i] * residual
            rr_c += float(weighted * weighted)
        rho += rho_c
        rr += rr_c
    return rho, rr


AT_TEST, PC_FAILED, CURVATURE_FAILED, DRIFT_CHECK = 0, 1, 2, 3


def eisenstat_run(lower_indptr, lower_indices, lower_data, upper_indptr, upper_indices,
                  upper_data, segment_ptr, stage_ptr, root, xt, rhat, rtilde, p, t, u, a,
                  scalars, counters, norms, omega, tol, maxiter, end, check_every, quad=False,
                  upper_quad=False) -> None:
    """Eisenstat's SSOR-CG iterations from the state given (see the Numba kernel), in place."""
    lower = (lower_indptr, lower_indices, lower_data)
    upper = (upper_indptr, upper_indices, upper_data)
    k0 = k = int(counters[0])
    while True:
        rho = float(scalars[1])
        if not (math.isfinite(rho) and rho > 0.0):
            scalars[3], counters[0], counters[2] = rho, k, PC_FAILED
            return
        restart = bool(int(counters[1]))
        beta = 0.0 if restart else rho / float(scalars[2])
        eisenstat_backward(*upper, segment_ptr, stage_ptr, rhat, p, beta, restart, t)
        counters[1] = 0
        pq = eisenstat_forward(*lower, segment_ptr, stage_ptr, p, t, u, a, omega)
        if not (math.isfinite(pq) and pq > 0.0):
            scalars[3], counters[0], counters[2] = pq, k, CURVATURE_FAILED
            return
        scalars[2] = rho
        rho, rr = eisenstat_update(xt, rhat, rtilde, t, u, a, root, rho / pq, omega)
        rnorm = math.sqrt(rr) if rr >= 0 else math.nan
        scalars[0], scalars[1] = rnorm, rho
        k += 1
        counters[0] = k
        if check_every > 0 and k % check_every == 0 and math.isfinite(rnorm):
            counters[2] = DRIFT_CHECK
            return
        norms[k - k0 - 1] = rnorm
        if not (math.isfinite(rnorm) and rnorm > tol and k < maxiter) or k >= end:
            counters[2] = AT_TEST
            return


def eisenstat_into_permuted(x, perm, scale, out) -> None:
    """``out = x[perm] / scale`` (see the Numba kernel), in place."""
    for i in range(out.shape[0]):
        out[i] = x[int(perm[i])] / scale[i]


def eisenstat_from_permuted(xt, perm, scale, out) -> None:
    """``out[perm] = scale * xt`` (see the Numba kernel), in place."""
    for i in range(xt.shape[0]):
        out[int(perm[i])] = scale[i] * xt[i]
