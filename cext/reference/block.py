"""Array-API twins of :mod:`cext.numba.block`: a sparse matrix times an ``(n, k)`` block.

The test oracle and the path for every namespace without compiled kernels;
they return new arrays where the namespace cannot write in place (JAX).
"""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store
from .spmv import csr_spmv


def _inner(xp, U, V):
    """The ``k`` column inner products; for complex blocks the real part of ``conj(U) . V``."""
    if xp.isdtype(U.dtype, "complex floating"):
        return xp.real(xp.sum(xp.conj(U) * V, axis=0))
    return xp.sum(U * V, axis=0)


def csr_spmm_dot(indptr, indices, data, P, Q, dots):
    """``(Q, dots)``: ``Q = A @ P`` column by column, ``dots[j] = P[:, j] . Q[:, j]``."""
    xp = array_namespace(indptr, indices, data, P, Q)
    columns = [csr_spmv(indptr, indices, data, P[:, j], xp.zeros_like(P[:, j]))
               for j in range(P.shape[1])]
    product = xp.stack(columns, axis=1) if columns else xp.zeros_like(Q)
    return _store(xp, Q, product), _store(xp, dots, _inner(xp, P, product))


def block_cg_update(X, R, P, Q, alpha, rr):
    """``(X, R, rr)``: ``X + P alpha``, ``R - Q alpha`` by column, and the new ``R``'s column norms²."""
    xp = array_namespace(X, R, P, Q)
    alpha = xp.reshape(xp.astype(alpha, X.dtype), (1, -1))
    new_R = R - alpha * Q
    return (_store(xp, X, X + alpha * P), _store(xp, R, new_R),
            _store(xp, rr, _inner(xp, new_R, new_R)))


def block_update_p(P, Z, beta):
    """``P = Z + P beta`` by column."""
    xp = array_namespace(P, Z)
    return _store(xp, P, Z + xp.reshape(xp.astype(beta, P.dtype), (1, -1)) * P)


def block_dots(U, V, out):
    """``out[j] = U[:, j] . V[:, j]``."""
    xp = array_namespace(U, V)
    return _store(xp, out, _inner(xp, U, V))
