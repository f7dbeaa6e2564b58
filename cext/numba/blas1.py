"""Fused vector updates of the CG iteration (Numba).

Each kernel makes one pass over memory where NumPy would make two or three.
Mirrors :mod:`cext.cupy.blas1` and :mod:`cext.reference.blas1`.
"""

from __future__ import annotations

import numba as nb
from numba import prange

# 'reassoc' lets LLVM vectorise the reductions with several partial sums (a
# serial add chain is latency-bound at about half the memory bandwidth).
# 'nnan'/'ninf' stay off so a NaN or Inf still reaches the returned value.
_JIT = dict(nogil=True, cache=True, parallel=True, boundscheck=False,
            fastmath={"reassoc", "contract"})


@nb.njit(**_JIT)
def dot(a, b):
    """Return ``a . b`` (accumulated in float64)."""
    total = 0.0
    for i in prange(a.shape[0]):
        total += a[i] * b[i]
    return total


@nb.njit(**_JIT)
def cg_update_xr(x, r, p, q, alpha):
    """``x += alpha p``; ``r -= alpha q``; return the new ``r . r``."""
    total = 0.0
    for i in prange(x.shape[0]):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * q[i]
        r[i] = ri
        total += ri * ri
    return total


@nb.njit(**_JIT)
def cg_update_p(p, z, beta):
    """``p = z + beta p`` in place."""
    for i in prange(p.shape[0]):
        p[i] = z[i] + beta * p[i]


@nb.njit(**_JIT)
def cg_update_xrz(x, r, p, q, alpha, scale, z):
    """``x += alpha p``; ``r -= alpha q``; ``z = scale * r``; return ``(r . r, r . z)``.

    CG's update fused with a diagonal (Jacobi) preconditioner: the scaled
    residual and both products of the next iteration in the same pass,
    instead of a pass for ``z`` and one for ``r . z``.
    """
    rr = 0.0
    rz = 0.0
    for i in prange(x.shape[0]):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * q[i]
        r[i] = ri
        zi = ri * scale[i]
        z[i] = zi
        rr += ri * ri
        rz += ri * zi
    return rr, rz


# Plain loops for the compiled CG iterations (cext.numba.cg_loop) on one
# thread: a parallel kernel held to one thread still enters a parallel region,
# about 1.5 us a call, a third of a small system's iteration. The same loops
# with the same flags: LLVM vectorises them alike, so on one thread they give
# the parallel kernels' bits (tests/cext/test_kernels.py checks).
_SERIAL = dict(_JIT, parallel=False)


@nb.njit(**_SERIAL)
def _cg_update_xr_serial(x, r, p, q, alpha):
    """:func:`cg_update_xr` as a plain loop."""
    total = 0.0
    for i in range(x.shape[0]):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * q[i]
        r[i] = ri
        total += ri * ri
    return total


@nb.njit(**_SERIAL)
def _cg_update_p_serial(p, z, beta):
    """:func:`cg_update_p` as a plain loop."""
    for i in range(p.shape[0]):
        p[i] = z[i] + beta * p[i]


@nb.njit(**_SERIAL)
def _cg_update_xrz_serial(x, r, p, q, alpha, scale, z):
    """:func:`cg_update_xrz` as a plain loop."""
    rr = 0.0
    rz = 0.0
    for i in range(x.shape[0]):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * q[i]
        r[i] = ri
        zi = ri * scale[i]
        z[i] = zi
        rr += ri * ri
        rz += ri * zi
    return rr, rz
