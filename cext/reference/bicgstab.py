"""Array-API twins of :mod:`cext.numba.bicgstab` and :mod:`cext.cupy.bicgstab`: BiCGStab's passes.

Same signatures and the same arithmetic, written for clarity: the test
oracle of the compiled kernels and the kernels of every namespace without
them (``array_api_strict``; complex systems on NumPy).

Complex arrays. BiCGStab's scalars ``rho = r0_hat^H r``, ``r0_hat^H v`` and
``t^H s`` are complex for a complex system, so the dots here are the full
``u^H v`` (``numpy.vdot``), returned as a Python complex, not the real part
that :func:`cext.reference.blas1.dot` returns (enough for CG, whose
inner products are real for Hermitian ``A``). Squared norms come back as
floats. Real arrays give floats throughout.

In place only, like ``cg_update_xr``: the products and the updates of
``s`` and ``x, r`` write into their arguments; :func:`linsolve.krylov.bicgstab`
builds new arrays itself on namespaces without item assignment (JAX).
``bicgstab_update_p`` returns ``p`` (a new array there), as ``cg_update_p``.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store
from .dia import dia_spmv
from .spmv import csr_spmv


def vdot(u, v):
    """``u^H v``: a Python complex for complex arrays, a float for real ones.

    Examples
    --------
    >>> import numpy as np
    >>> vdot(np.array([1j, 1.0]), np.array([1j, 2.0]))
    (3+0j)
    >>> vdot(np.ones(3), np.arange(3.0))
    3.0
    """
    xp = array_namespace(u, v)
    if xp.isdtype(u.dtype, "complex floating") or xp.isdtype(v.dtype, "complex floating"):
        return complex(xp.sum(xp.conj(u) * v))
    return float(xp.sum(u * v))


def norm2(u) -> float:
    """``u^H u`` as a float."""
    xp = array_namespace(u)
    if xp.isdtype(u.dtype, "complex floating"):
        return float(xp.sum(xp.real(u) ** 2 + xp.imag(u) ** 2))
    return float(xp.sum(u * u))


def bicgstab_csr_spmv_dots(indptr, indices, data, p, q, w):
    """``q = A @ p`` (in place) for CSR ``A``; return ``(w^H q, q^H q)``."""
    q = csr_spmv(indptr, indices, data, p, q)
    return vdot(w, q), norm2(q)


def bicgstab_dia_spmv_dots(offsets, values, p, q, w):
    """``q = A @ p`` (in place) for row-aligned DIA; return ``(w^H q, q^H q)``."""
    q = dia_spmv(offsets, values, p, q)
    return vdot(w, q), norm2(q)


def bicgstab_update_p(p, r, v, beta, omega):
    """``p = r + beta (p - omega v)``; returns ``p`` (in place where the namespace allows)."""
    xp = array_namespace(p, r, v)
    return _store(xp, p, r + beta * (p - omega * v))


def bicgstab_update_s(r, v, alpha) -> float:
    """``r -= alpha v`` (in place: ``r`` becomes ``s``); return ``s^H s``."""
    r[...] = r - alpha * v
    return norm2(r)


def bicgstab_update_xr(x, r, p_hat, s_hat, t, rhat, alpha, omega):
    """``x += alpha p_hat + omega s_hat``; ``r -= omega t`` (``r`` holds ``s``; ``s_hat`` may be
    ``r``: ``x`` is updated first); return ``(r^H r, rhat^H r)``."""
    x[...] = x + (alpha * p_hat + omega * s_hat)
    r[...] = r - omega * t
    return norm2(r), vdot(rhat, r)


def bicgstab_update_xr_scaled(x, r, p, s, t, rhat, alpha, omega, scale):
    """``x += scale (alpha p + omega s)``; ``r -= omega t`` (``r`` holds ``s``; ``s`` may be
    ``r``: ``x`` is updated first); return ``(r^H r, rhat^H r)``."""
    x[...] = x + scale * (alpha * p + omega * s)
    r[...] = r - omega * t
    return norm2(r), vdot(rhat, r)
