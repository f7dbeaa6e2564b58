"""Array-API twins of :mod:`cext.numba.blas1` and :mod:`cext.cupy.blas1`: the CG vector updates."""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store


def dot(a, b) -> float:
    """Return ``a . b``; for complex arrays the real part of ``conj(a) . b``.

    ``conj(a) . b`` is ``numpy.vdot``; CG on a Hermitian ``A`` needs only its
    real part (``r^H r``, ``r^H M r``, ``p^H A p`` are real up to rounding).
    """
    xp = array_namespace(a, b)
    if xp.isdtype(a.dtype, "complex floating"):
        return float(xp.real(xp.sum(xp.conj(a) * b)))
    return float(xp.sum(a * b))


def cg_update_xr(x, r, p, q, alpha) -> float:
    """``x += alpha p``; ``r -= alpha q`` in place; return the new ``r . r``.

    In place only: :func:`linsolve.pcg` updates ``x`` and ``r`` functionally
    on namespaces without in-place writes.
    """
    x[...] = x + alpha * p
    r[...] = r - alpha * q
    return dot(r, r)


def cg_update_xrz(x, r, p, q, alpha, scale, z):
    """``x += alpha p``; ``r -= alpha q``; ``z = scale * r`` in place; return ``(r . r, r . z)``.

    In place only, like :func:`cg_update_xr` (pcg's Jacobi-preconditioned update).
    """
    x[...] = x + alpha * p
    r[...] = r - alpha * q
    z[...] = scale * r
    return dot(r, r), dot(r, z)


def cg_update_p(p, z, beta):
    """``p = z + beta p``; returns ``p`` (written in place where the namespace allows)."""
    xp = array_namespace(p, z)
    return _store(xp, p, z + beta * p)
