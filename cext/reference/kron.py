"""Array-API twins of :mod:`cext.numba.kron` and :mod:`cext.cupy.kron`: Kronecker-factored layers.

A batch of ``B`` same-shaped layers (:mod:`curvature.kronecker.kfac`,
:mod:`curvature.kronecker.mkor`): ``X`` ``(B, m, n)`` holds each layer's
``(out, in)`` matrix; vec is column-major, so
``vec(L X R) = kron(R', L) vec(X)``.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from ._common import _store


def kron_matvec(left, right, X, out):
    """``out[b] = left[b] @ X[b] @ right[b]`` (float64 sums, rounded once); returns ``out``.

    With symmetric ``right = A`` and ``left = G`` this is
    ``kron(A, G) vec(X[b])`` on the column-major vec.
    """
    xp = array_namespace(left, right, X, out)
    f64 = xp.float64
    product = xp.astype(left, f64) @ xp.astype(X, f64) @ xp.astype(right, f64)
    return _store(xp, out, product)


def kron_eigen_solve(Ql, dl, Qr, dr, damping, X, out):
    """``out[b] = Ql[b] ((Ql[b]' X[b] Qr[b]) / (dl[b] dr[b]' + damping)) Qr[b]'``; returns ``out``.

    K-FAC's eigen-mode solve ``(kron(A, G) + damping I)^{-1} vec(X)`` with
    ``G = Ql diag(dl) Ql'`` and ``A = Qr diag(dr) Qr'``; float64 throughout.
    """
    xp = array_namespace(Ql, dl, Qr, dr, X, out)
    f64 = xp.float64
    Ql64, Qr64 = xp.astype(Ql, f64), xp.astype(Qr, f64)
    rotated = xp.matrix_transpose(Ql64) @ xp.astype(X, f64) @ Qr64
    scale = xp.astype(dl, f64)[:, :, None] * xp.astype(dr, f64)[:, None, :] + float(damping)
    product = Ql64 @ (rotated / scale) @ xp.matrix_transpose(Qr64)
    return _store(xp, out, product)
