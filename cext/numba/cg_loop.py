"""CG iterations in compiled chunks (Numba): :func:`linsolve.pcg` without the interpreter.

A small system's CG iteration is a few microseconds of arithmetic; called
kernel by kernel from Python it cost 12-36 us. These loops run the
iterations of one chunk inside one compiled call, calling the kernels the
Python loop calls (:mod:`cext.numba.blas1`, :mod:`cext.numba.spmv`,
:mod:`cext.numba.dia`; on one thread their plain-loop twins, which give the
same bits without entering a parallel region), in the same order, so the
iterates are bit-identical to the kernel-by-kernel loop.

The loop decides nothing about stopping. It runs while the solver core's
test (:class:`linsolve.core.stopping.ResidualTest`) would say "go on":
``||r_k||`` finite and above ``tol`` and ``k < maxiter``, with ``r'z`` and
``p'Ap`` finite and positive. At the first iteration where any of these
fails it hands the state back to Python, which asks the core for the
verdict (true-residual check, replacement, stagnation, breakdown reasons):
one specification, applied in one place.

State travels in two small arrays so that a chunk can stop anywhere and the
next one resume:

``scalars``: ``[rnorm, rr, rho_prev, rz, value]``, where ``rz`` is the
``r'z`` of the fused Jacobi update (the next iteration's ``rho``) and
``value`` the failing ``r'z`` or ``p'Ap`` of a :data:`PC_FAILED` or
:data:`CURVATURE_FAILED` exit.

``counters``: ``[k, restart, status]``; ``restart`` is 1 when the next
direction is ``z`` itself (first iteration, after a replacement).

Mirrors :mod:`cext.reference.cg_loop`.
"""

from __future__ import annotations

import math

import numba as nb

from .blas1 import (
    _cg_update_p_serial,
    _cg_update_xr_serial,
    _cg_update_xrz_serial,
    cg_update_p,
    cg_update_xr,
    cg_update_xrz,
)
from .dia import _dia_spmv_dot, _dia_spmv_dot_serial
from .spmv import _csr_spmv_dot, _csr_spmv_dot_serial, unsigned_view

AT_TEST = 0
"""Stopped at the top of iteration ``k`` (the core's test decides, or the chunk ended)."""
PC_FAILED = 1
"""``r'z`` (``scalars[4]``) is not finite and positive at iteration ``k``."""
CURVATURE_FAILED = 2
"""``p'Ap`` (``scalars[4]``) is not finite and positive at iteration ``k``."""
DRIFT_CHECK = 3
"""Iteration ``k`` is a multiple of ``check_every``: its norm is not stored, Python checks
the drift and records it."""

# No fastmath here: the scalars (alpha, beta, the NaN tests) are computed as
# Python computes them, so the iterates keep their bits.
_JIT = dict(nogil=True, cache=True, boundscheck=False)


@nb.njit(inline="always", **_JIT)
def _direction(r, p, z, jacobi, scalars, counters, parallel):
    """``rho`` and the new direction ``p``; returns ``(status, rho)``."""
    if jacobi:
        rho = scalars[3]  # r'z from the fused update that made z
        if not (math.isfinite(rho) and rho > 0.0):
            return PC_FAILED, rho
        source = z
    else:
        rho = scalars[1]
        source = r
    if counters[1]:
        for i in range(p.shape[0]):
            p[i] = source[i]
        counters[1] = 0
    elif parallel:
        cg_update_p(p, source, rho / scalars[2])
    else:
        _cg_update_p_serial(p, source, rho / scalars[2])
    return AT_TEST, rho


@nb.njit(inline="always", **_JIT)
def _update(x, r, p, q, scale, z, jacobi, rho, pAp, scalars, parallel):
    """``x``, ``r`` (and ``z``) after the product; False when ``p'Ap`` failed."""
    if not (math.isfinite(pAp) and pAp > 0.0):
        scalars[4] = pAp
        return False
    alpha = rho / pAp
    if jacobi:
        if parallel:
            rr, rz = cg_update_xrz(x, r, p, q, alpha, scale, z)
        else:
            rr, rz = _cg_update_xrz_serial(x, r, p, q, alpha, scale, z)
        scalars[3] = rz
    elif parallel:
        rr = cg_update_xr(x, r, p, q, alpha)
    else:
        rr = _cg_update_xr_serial(x, r, p, q, alpha)
    scalars[1] = rr
    scalars[2] = rho
    scalars[0] = math.sqrt(rr) if rr >= 0 else math.nan
    return True


@nb.njit(inline="always", **_JIT)
def _after(k, k0, norms, scalars, counters, tol, maxiter, end, check_every):
    """Iteration ``k`` done: store its norm; return True where the chunk stops."""
    rnorm = scalars[0]
    counters[0] = k
    if check_every > 0 and k % check_every == 0 and math.isfinite(rnorm):
        counters[2] = DRIFT_CHECK
        return True
    norms[k - k0 - 1] = rnorm
    if not (math.isfinite(rnorm) and rnorm > tol and k < maxiter) or k >= end:
        counters[2] = AT_TEST
        return True
    return False


@nb.njit(**_JIT)
def _cg_run_csr(indptr, indices, data, x, r, p, q, scale, z, scalars, counters, norms, tol,
                maxiter, end, check_every, parallel):
    jacobi = scale.shape[0] != 0
    k0 = counters[0]
    k = k0
    while True:
        status, rho = _direction(r, p, z, jacobi, scalars, counters, parallel)
        if status != AT_TEST:
            scalars[4] = rho
            counters[0] = k
            counters[2] = status
            return
        # the wrapper's choice in csr_spmv_dot: the plain loop on one thread
        if parallel:
            pAp = _csr_spmv_dot(indptr, indices, data, p, q)
        else:
            pAp = _csr_spmv_dot_serial(indptr, indices, data, p, q)
        if not _update(x, r, p, q, scale, z, jacobi, rho, pAp, scalars, parallel):
            counters[0] = k
            counters[2] = CURVATURE_FAILED
            return
        k += 1
        if _after(k, k0, norms, scalars, counters, tol, maxiter, end, check_every):
            return


@nb.njit(**_JIT)
def _cg_run_dia(offsets, values, x, r, p, q, scale, z, scalars, counters, norms, tol, maxiter,
                end, check_every, parallel):
    jacobi = scale.shape[0] != 0
    k0 = counters[0]
    k = k0
    while True:
        status, rho = _direction(r, p, z, jacobi, scalars, counters, parallel)
        if status != AT_TEST:
            scalars[4] = rho
            counters[0] = k
            counters[2] = status
            return
        if parallel:
            pAp = _dia_spmv_dot(offsets, values, p, q)
        else:
            pAp = _dia_spmv_dot_serial(offsets, values, p, q)
        if not _update(x, r, p, q, scale, z, jacobi, rho, pAp, scalars, parallel):
            counters[0] = k
            counters[2] = CURVATURE_FAILED
            return
        k += 1
        if _after(k, k0, norms, scalars, counters, tol, maxiter, end, check_every):
            return


def cg_run_csr(indptr, indices, data, x, r, p, q, scale, z, scalars, counters, norms, tol,
               maxiter, end, check_every) -> None:
    """Run CG iterations on the CSR matrix ``(indptr, indices, data)`` from the state given.

    Starts after the core's test has passed at iteration ``counters[0]``;
    stops at the first iteration where it fails, where ``r'z`` or ``p'Ap``
    fails, at a ``check_every`` multiple, or at iteration ``end``.
    ``norms[j]`` receives ``||r||`` of iteration ``counters[0] + 1 + j``.
    ``scale`` (``1 / diag(A)``) and ``z`` are empty without a Jacobi
    preconditioner. See the module notes for ``scalars`` and ``counters``.
    """
    _cg_run_csr(unsigned_view(indptr), unsigned_view(indices), data, x, r, p, q, scale, z,
                scalars, counters, norms, tol, maxiter, end, check_every,
                nb.get_num_threads() > 1)


def cg_run_dia(offsets, values, x, r, p, q, scale, z, scalars, counters, norms, tol, maxiter,
               end, check_every) -> None:
    """:func:`cg_run_csr` for the row-aligned DIA matrix ``(offsets, values)``."""
    _cg_run_dia(offsets, values, x, r, p, q, scale, z, scalars, counters, norms, tol, maxiter,
                end, check_every, nb.get_num_threads() > 1)
