"""SOR sweeps over a CSR matrix whose rows are stored by colour (Numba).

One sweep updates every unknown once,
``x_i <- (1 - w) x_i + w (b_i - sum_{j != i} a_ij x_j) / a_ii``,
using the newest values of the other unknowns. The lexicographic sweeps are
sequential by nature; the coloured sweep updates the rows of one colour
(no two of which are coupled) in parallel, one colour after another.
The CSR arrays hold only the *off-diagonal* entries of A and ``diag`` its
diagonal (checked nonzero by the caller): splitting once saves a column
test per entry in every sweep.

Here the rows are stored by colour (``color_rows``) with ``x``, ``b`` and
the diagonal in natural order, and ``sor_run`` makes a separate residual
pass per sweep. ``sor_run``, ``sor_sweep_colored`` and
``csr_residual_norm2_split`` mirror :mod:`cext.cupy.sor` (one launch per
colour), where a gather costs less; on the CPU they gather at random, so
:func:`linsolve.sor` runs the sweep-order kernels of
:mod:`cext.numba.sor_lagged` instead. ``sor_sweep_forward``/``backward``:
in-place lexicographic sweeps (:meth:`linsolve.SorMatrix.sweep`, the MPI
block sweeps), summing in float64. The colourings are in
:mod:`cext.numba.coloring`.

Mirrored by :mod:`cext.reference.sor`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from .spmv import unsigned_view

_SEQ = dict(nogil=True, cache=True, boundscheck=False)
_PAR = dict(nogil=True, cache=True, boundscheck=False, parallel=True)


@nb.njit(**_SEQ)
def _relax_row(k, i, indptr, indices, data, diag, b, x, omega):
    # stored row k holds the couplings of unknown i
    sigma = 0.0
    for jj in range(indptr[k], indptr[k + 1]):
        sigma += data[jj] * x[indices[jj]]
    x[i] = (1.0 - omega) * x[i] + omega * (b[i] - sigma) / diag[i]


@nb.njit(**_SEQ)
def _forward(indptr, indices, data, diag, b, x, omega):
    for i in range(x.shape[0]):
        _relax_row(np.uint64(i), np.uint64(i), indptr, indices, data, diag, b, x, omega)


@nb.njit(**_SEQ)
def _backward(indptr, indices, data, diag, b, x, omega):
    for k in range(x.shape[0]):
        i = np.uint64(x.shape[0] - 1 - k)
        _relax_row(i, i, indptr, indices, data, diag, b, x, omega)


@nb.njit(**_PAR)
def _colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows, reverse):
    ncolors = color_ptr.shape[0] - 1
    for c in range(ncolors):
        color = ncolors - 1 - c if reverse else c
        for k in prange(color_ptr[color], color_ptr[color + 1]):
            _relax_row(np.uint64(k), color_rows[k], indptr, indices, data, diag, b, x, omega)


def sor_sweep_forward(indptr, indices, data, diag, b, x, omega) -> None:
    """One lexicographic sweep, rows 0..n-1, updating ``x`` in place."""
    _forward(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x, float(omega))


def sor_sweep_backward(indptr, indices, data, diag, b, x, omega) -> None:
    """One lexicographic sweep, rows n-1..0, updating ``x`` in place."""
    _backward(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x, float(omega))


def sor_sweep_colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows,
                      reverse=False) -> None:
    """One coloured sweep: colours in order (reversed if ``reverse``), rows of a colour in parallel.

    The CSR rows are stored by colour: ``color_rows[color_ptr[c]:color_ptr[c + 1]]``
    are the unknowns of colour ``c`` and stored row ``k`` belongs to unknown
    ``color_rows[k]``.
    """
    _colored(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x, float(omega),
             color_ptr, unsigned_view(color_rows), bool(reverse))


@nb.njit(**_PAR)
def _residual_norm2_split(indptr, indices, data, diag, b, x, rows):
    permuted = rows.shape[0] > 0
    total = 0.0
    for k in prange(b.shape[0]):
        i = np.uint64(rows[k]) if permuted else np.uint64(k)  # one integer type for both branches
        acc = diag[i] * x[i]
        for jj in range(indptr[k], indptr[k + 1]):
            acc += data[jj] * x[indices[jj]]
        ri = b[i] - acc
        total += ri * ri
    return total


@nb.njit(**_SEQ)
def _sor_run(indptr, indices, data, diag, b, x, omega, symmetric, color_ptr, color_rows,
             tol, grow_limit, maxiter, norms, start):
    k = start
    while k < maxiter:
        if color_ptr.shape[0] > 1:
            _colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows, False)
            if symmetric:
                _colored(indptr, indices, data, diag, b, x, omega, color_ptr, color_rows, True)
        else:
            _forward(indptr, indices, data, diag, b, x, omega)
            if symmetric:
                _backward(indptr, indices, data, diag, b, x, omega)
        k += 1
        rnorm = np.sqrt(_residual_norm2_split(indptr, indices, data, diag, b, x, color_rows))
        norms[k] = rnorm
        if not (rnorm > tol and rnorm <= grow_limit):  # also stops on NaN
            break
    return k


def sor_run(indptr, indices, data, diag, b, x, omega, symmetric, color_ptr, color_rows,
            tol, grow_limit, maxiter, norms, start=0) -> int:
    """Sweep until ``||b - A x|| <= tol``, it exceeds ``grow_limit`` or is NaN, or ``maxiter``.

    Sweeps ``start + 1 .. maxiter`` run in one compiled call (small systems
    in long sequences are dominated by per-call overhead otherwise).
    Python's SIGINT handler runs only once the call returns, so a caller
    with a large budget resumes it in chunks (``start`` = the last call's
    return), as :func:`linsolve.sor` does; the iterates and norms do not
    depend on where the chunks end. ``norms[k]`` receives the residual norm
    after sweep ``k`` (``norms[start]`` is the caller's), so ``norms`` needs
    ``maxiter + 1`` entries; returns the last ``k``. ``color_ptr`` of length
    < 2 (and an empty ``color_rows``) means the lexicographic ordering and
    natural row storage; ``symmetric`` adds the reverse sweep.
    """
    return _sor_run(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x,
                    float(omega), bool(symmetric), color_ptr, unsigned_view(color_rows),
                    float(tol), float(grow_limit), int(maxiter), norms, int(start))


def csr_residual_norm2_split(indptr, indices, data, diag, b, x, rows) -> float:
    """``||b - (D + O) x||^2`` for off-diagonal CSR ``O`` and diagonal ``D``.

    ``rows``: stored row ``k`` belongs to unknown ``rows[k]``; empty for natural storage.
    """
    return _residual_norm2_split(unsigned_view(indptr), unsigned_view(indices), data, diag, b, x,
                                 unsigned_view(rows))
