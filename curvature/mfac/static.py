"""Static M-FAC: a fixed set of gradients, with entries of the inverse on demand.

The pruning variant of Frantar, Kurtic and Alistarh (NeurIPS 2021, the
"static" algorithm): for a fixed block of m gradients ``G`` (m x d) and
``F = damping I + G'G/m``, Optimal-Brain-Surgeon pruning needs the diagonal
of ``F^{-1}`` and single entries or columns of it. With the Cholesky factor
``m damping I + GG' = LL'`` and ``U = G'L^{-T}`` (d x m),

    F^{-1} = (I - U U') / damping,

so ``[F^{-1}]_ij = (delta_ij - U_i . U_j) / damping`` costs O(m) per entry
after the O(d m^2) set-up, the whole diagonal O(dm). The paper reaches the
same quantities through its recursion of m Sherman-Morrison steps; the
matrix form here is equivalent and uses one Cholesky factorisation.

Precision: ``U`` is kept in float64 whatever the dtype of ``G`` (it costs
twice the memory of a float32 ``G``) because ``1 - ||U_i||^2`` cancels when
``e_i`` is nearly in the span of the gradients and the difference is
divided by the damping.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_numpy_namespace

from linsolve.validation.inputs import as_int

from .._checks import (check_finite_switch, check_square_summable, finite_apply,
                       linalg_failure, namespace_of, refuse_complex)
from .window import _check_damping

__all__ = ["MFACStatic"]


class MFACStatic:
    """Inverse of ``damping I + G'G/m`` for a fixed gradient block, entry by entry.

    Parameters
    ----------
    G : array of shape (m, d)
        The gradients, one per row (any array-API namespace).
    damping : float
        ``lambda > 0``.
    check_finite : bool or None, optional
        NaN/Inf contract of :meth:`solve` and :meth:`matvec`, as in
        :class:`curvature.MFAC`: True checks (ValueError for NaN or Inf in
        ``v``, or for a result that overflows), False does not, None (default)
        checks host arrays only (no device synchronisation per call).

    Attributes
    ----------
    shape : ``(d, d)``
    dtype : the dtype of ``G`` (results of ``solve``/``matvec`` use it)
    m, damping

    Raises
    ------
    ValueError
        ``G`` not 2-D, empty, containing NaN/Inf, or so large that ``GG'``
        overflows float64; damping not > 0.
    TypeError
        ``G`` complex.

    Notes
    -----
    Set-up O(d m^2 + m^3): the Gram matrix ``GG'`` (float64), its shifted
    Cholesky factor ``L`` and ``U = G'L^{-T}``. Then ``solve`` and
    ``matvec`` are O(dm), :meth:`inverse_diagonal` O(dm),
    :meth:`inverse_entry` O(m), :meth:`inverse_column` O(dm).

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.mfac.static import MFACStatic
    >>> rng = np.random.default_rng(0)
    >>> G = rng.standard_normal((4, 12))
    >>> static = MFACStatic(G, damping=0.1)
    >>> Finv = np.linalg.inv(0.1 * np.eye(12) + G.T @ G / 4)
    >>> bool(np.allclose(static.inverse_diagonal(), np.diag(Finv)))
    True
    >>> bool(np.isclose(static.inverse_entry(2, 7), Finv[2, 7]))
    True
    """

    def __init__(self, G: Any, damping: float, *, check_finite: bool | None = None):
        xp = namespace_of(G, "G")
        self.xp = xp
        self.check_finite = check_finite_switch(check_finite)
        if G.ndim != 2 or G.shape[0] < 1 or G.shape[1] < 1:
            raise ValueError(f"G must be a non-empty 2-D array (m, d), got shape {G.shape}")
        refuse_complex(xp, G, "G")
        if not xp.isdtype(G.dtype, "real floating"):
            G = xp.astype(G, xp.float64)
        self._damping = _check_damping(damping)
        G64 = xp.astype(G, xp.float64)
        if not bool(xp.all(xp.isfinite(G64))):
            raise ValueError("G contains NaN or Inf")
        # sum(G**2) bounds every entry of the Gram matrix GG' (a little conservative:
        # it is the sum of its m diagonal entries).
        check_square_summable(xp, G64, "G", "MFACStatic")
        m, d = G64.shape
        self._m, self._d, self._dtype = m, d, G.dtype
        A = G64 @ xp.matrix_transpose(G64) + (m * self._damping) * xp.eye(m, dtype=xp.float64)
        with linalg_failure("MFACStatic", "Cholesky factorisation"):
            L = xp.linalg.cholesky(A)
        if is_numpy_namespace(xp):
            import scipy.linalg as sla

            Ut = sla.solve_triangular(L, G64, lower=True)
        else:
            Ut = xp.linalg.inv(L) @ G64
        self._L = L
        # (d, m) row-major: one entry reads two contiguous rows of length m.
        self._U = xp.asarray(xp.matrix_transpose(Ut), copy=True)
        if is_numpy_namespace(xp):
            self._U = np.ascontiguousarray(self._U)

    @property
    def shape(self) -> tuple[int, int]:
        return (self._d, self._d)

    @property
    def dtype(self):
        return self._dtype

    @property
    def m(self) -> int:
        return self._m

    @property
    def damping(self) -> float:
        return self._damping

    def _vector(self, v):
        xp = self.xp
        namespace_of(v, "v", xp, "G")
        refuse_complex(xp, v, "v")
        if tuple(v.shape) != (self._d,):
            raise ValueError(f"v must have shape ({self._d},), got {tuple(v.shape)}")
        out_dtype = self._dtype if not xp.isdtype(v.dtype, "real floating") else \
            xp.result_type(v.dtype, self._dtype)
        return xp.astype(v, xp.float64), out_dtype

    def solve(self, v):
        """``F^{-1} v = (v - U(U'v)) / damping`` in O(dm); NaN/Inf as ``check_finite`` says."""
        xp = self.xp
        v64, out_dtype = self._vector(v)

        def apply(v64):
            return xp.astype((v64 - self._U @ (v64 @ self._U)) / self._damping, out_dtype)

        return finite_apply(xp, apply, v64, "v", "MFACStatic.solve", self.check_finite)

    def matvec(self, v):
        """``F v = damping v + G'(G v)/m``, through ``G = L U'``; NaN/Inf as :meth:`solve`."""
        xp = self.xp
        v64, out_dtype = self._vector(v)

        def apply(v64):
            y = self._L @ (v64 @ self._U)  # G v
            x = self._damping * v64 + self._U @ (xp.matrix_transpose(self._L) @ y) / self._m
            return xp.astype(x, out_dtype)

        return finite_apply(xp, apply, v64, "v", "MFACStatic.matvec", self.check_finite)

    def inverse_diagonal(self):
        """The diagonal of ``F^{-1}``, ``(1 - ||U_i||^2) / damping``, in the window's dtype.

        Computed in float64 (the factor's precision) and rounded once, like
        :meth:`solve`.
        """
        xp = self.xp
        return xp.astype((1.0 - xp.sum(self._U * self._U, axis=1)) / self._damping, self._dtype)

    def _index(self, i, name: str = "i") -> int:
        """``i`` as an index into ``range(d)`` (negative counts from the end, as in
        Python); TypeError for a non-integer, IndexError naming the valid range."""
        i = as_int(name, i)
        if not -self._d <= i < self._d:
            raise IndexError(f"MFACStatic: {name}={i} is out of range for the {self._d} x "
                             f"{self._d} inverse; valid indices are {-self._d}..{self._d - 1}")
        return i % self._d

    def inverse_entry(self, i: int, j: int) -> float:
        """``[F^{-1}]_ij = (delta_ij - U_i . U_j) / damping`` in O(m).

        Raises
        ------
        IndexError
            ``i`` or ``j`` outside ``-d..d-1``.
        TypeError
            ``i`` or ``j`` not an integer.
        """
        i, j = self._index(i, "i"), self._index(j, "j")
        U = self._U
        inner = float(self.xp.sum(U[i, :] * U[j, :]))
        return ((1.0 if i == j else 0.0) - inner) / self._damping

    def inverse_column(self, i: int):
        """Column ``F^{-1} e_i`` (float64) in O(dm): the OBS weight update direction."""
        xp = self.xp
        i = self._index(i)
        col = -(self._U @ self._U[i, :])
        unit = xp.astype(xp.arange(self._d) == i, xp.float64)
        return (unit + col) / self._damping
