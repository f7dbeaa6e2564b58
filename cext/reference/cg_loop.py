"""Array-API twins of :mod:`cext.numba.cg_loop`: CG iterations run as one call.

The same state machine as the compiled loops, one reference kernel at a
time; in place only (``x``, ``r``, ``p``, ``q``, ``z`` and the state arrays
are written), like :func:`cext.reference.blas1.cg_update_xr`. The test
oracle of the compiled loops, and the fallback where they are missing.
"""

from __future__ import annotations

import math

from .blas1 import cg_update_p, cg_update_xr, cg_update_xrz
from .dia import dia_spmv_dot
from .spmv import csr_spmv_dot

AT_TEST, PC_FAILED, CURVATURE_FAILED, DRIFT_CHECK = 0, 1, 2, 3


def _run(spmv_dot, x, r, p, q, scale, z, scalars, counters, norms, tol, maxiter, end,
         check_every) -> None:
    jacobi = scale.shape[0] != 0
    k0 = k = int(counters[0])
    while True:
        if jacobi:
            rho = float(scalars[3])
            if not (math.isfinite(rho) and rho > 0.0):
                scalars[4], counters[0], counters[2] = rho, k, PC_FAILED
                return
            source = z
        else:
            rho, source = float(scalars[1]), r
        if int(counters[1]):
            p[...] = source
            counters[1] = 0
        else:
            p = cg_update_p(p, source, rho / float(scalars[2]))
        pAp = spmv_dot(p, q)
        if not (math.isfinite(pAp) and pAp > 0.0):
            scalars[4], counters[0], counters[2] = pAp, k, CURVATURE_FAILED
            return
        alpha = rho / pAp
        if jacobi:
            rr, scalars[3] = cg_update_xrz(x, r, p, q, alpha, scale, z)
        else:
            rr = cg_update_xr(x, r, p, q, alpha)
        rnorm = math.sqrt(rr) if rr >= 0 else math.nan
        scalars[0], scalars[1], scalars[2] = rnorm, rr, rho
        k += 1
        counters[0] = k
        if check_every > 0 and k % check_every == 0 and math.isfinite(rnorm):
            counters[2] = DRIFT_CHECK
            return
        norms[k - k0 - 1] = rnorm
        if not (math.isfinite(rnorm) and rnorm > tol and k < maxiter) or k >= end:
            counters[2] = AT_TEST
            return


def cg_run_csr(indptr, indices, data, x, r, p, q, scale, z, scalars, counters, norms, tol,
               maxiter, end, check_every) -> None:
    """CG iterations on CSR ``(indptr, indices, data)`` from the state given (in place)."""
    _run(lambda p, q: csr_spmv_dot(indptr, indices, data, p, q), x, r, p, q, scale, z,
         scalars, counters, norms, tol, maxiter, end, check_every)


def cg_run_dia(offsets, values, x, r, p, q, scale, z, scalars, counters, norms, tol, maxiter,
               end, check_every) -> None:
    """CG iterations on row-aligned DIA ``(offsets, values)`` from the state given (in place)."""
    _run(lambda p, q: dia_spmv_dot(offsets, values, p, q), x, r, p, q, scale, z, scalars,
         counters, norms, tol, maxiter, end, check_every)
