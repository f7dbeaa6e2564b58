"""SOR on the GPU: a :class:`linsolve.SorMatrix` with its arrays on the device.

:func:`linsolve.sor` builds the sweep order on the host (colouring,
permutation) and hands the sweeps to the kernels of the arrays' library:
for CuPy the coloured sweep of :mod:`cext.cupy.sor` (one launch per colour,
one thread per row) and its residual pass, which reads one norm back per
sweep -- so every sweep is measured there, whatever ``check_every`` says.
The system stays in sweep order, its rows stored colour by colour with
the identity as their unknowns' table. Lexicographic sweeps are sequential
and have no GPU kernel: the natural ordering is refused up front.
"""

from __future__ import annotations

import math

from cext import kernels_for


class DeviceSorMatrix:
    """The sweep-order arrays of a coloured ``SorMatrix`` in namespace ``xp``.

    Offers what :func:`linsolve.sor` reads of a ``SorMatrix``: ``shape``,
    ``dtype``, ``off_data``, ``to_sweep_order``, ``from_sweep_order``,
    ``residual_norm`` and ``run``.

    Parameters
    ----------
    S : SorMatrix
        Built with a coloured ordering.
    xp : namespace
        Of the arrays (``array_api_compat.cupy``; NumPy runs the same path
        through the compiled CPU kernels of the same family, for the tests).
    """

    def __init__(self, S, xp):
        if S.permutation is None:
            raise ValueError("the GPU sweeps need a coloured ordering: pass ordering='redblack' "
                             "or ordering='multicolor' (natural sweeps are sequential)")
        self.shape, self.dtype, self.ordering = S.shape, S.dtype, S.ordering
        self.color_ptr = S.color_ptr  # read on the host by the kernels
        self._xp = xp
        self._kernels = kernels_for(xp)
        self.off_indptr, self.off_indices = xp.asarray(S.off_indptr), xp.asarray(S.off_indices)
        self.off_data, self.diag = xp.asarray(S.off_data), xp.asarray(S.diag)
        self._rows = xp.arange(S.shape[0], dtype=self.off_indices.dtype)  # stored row k is k
        self._perm = xp.asarray(S.permutation)

    def to_sweep_order(self, v):
        """``v`` permuted into sweep order, a new contiguous array of the working dtype."""
        return self._xp.astype(self._xp.take(v, self._perm), self.dtype, copy=True)

    def from_sweep_order(self, v, out=None):
        """The inverse of :meth:`to_sweep_order` (into ``out`` when given)."""
        if out is None:
            out = self._xp.empty_like(v)
        out[self._perm] = v
        return out

    def residual_norm(self, b, x, *, ordered: bool = False) -> float:
        """``||b - A x||`` for ``b`` and ``x`` in sweep order (``ordered`` must be True)."""
        if not ordered:
            b, x = self.to_sweep_order(b), self.to_sweep_order(x)
        value = self._kernels.csr_residual_norm2_split(self.off_indptr, self.off_indices,
                                                       self.off_data, self.diag, b, x,
                                                       self._rows)
        return math.sqrt(value) if value >= 0 else float("nan")

    def run(self, b, x, work, omega, *, symmetric, tol, grow_limit, maxiter, norms,
            start=0, check_every=1, measure_end=True) -> int:
        """Coloured sweeps until converged, diverged or ``maxiter``; every sweep measured."""
        del work, check_every, measure_end  # each sweep's residual is read back anyway
        return self._kernels.sor_run(self.off_indptr, self.off_indices, self.off_data,
                                     self.diag, b, x, omega, symmetric, self.color_ptr,
                                     self._rows, tol, grow_limit, maxiter, norms, start)


def host_matrix(A):
    """A CuPy dense array or ``cupyx`` sparse matrix copied to the host; anything else as is."""
    module = type(A).__module__
    if module.startswith("cupyx"):
        return A.get()
    if module.startswith("cupy"):
        import cupy

        return cupy.asnumpy(A)
    return A
