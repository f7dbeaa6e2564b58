"""M-FAC: a sliding window of gradients as an inverse-Fisher operator.

Frantar, Kurtic and Alistarh, "M-FAC: Efficient Matrix-Free Approximations
of Second-Order Information" (NeurIPS 2021). The empirical Fisher of the
last ``m`` gradients ``g_1..g_m`` (rows of the window ``G``, m x d),

    F = damping * I + (1/m) * sum_i g_i g_i' = damping * I + G'G / m,

is never formed. Its inverse follows from the m x m system (Woodbury, or
the push-through identity ``(lam I + G'G/m)^{-1} G' = m G'(m lam I + GG')^{-1}``):

    F^{-1} v = (v - G'c) / damping,   c = (m damping I + K)^{-1} G v,   K = GG'.

Departures from the paper's dynamic algorithm, and why:

* The paper builds ``F^{-1}`` by m nested Sherman-Morrison steps whose
  coefficients (its matrix D) are recomputed when the window slides, and
  evaluates ``v/lam - sum_i coef_i g_i`` in the working precision. For a
  vector in (or near) the span of the window, ``v`` and ``G'c`` agree to
  ``1 - O(m lam / sigma^2)``: the difference is a cancellation of two large,
  nearly equal terms amplified by ``1/lam``. With float32 windows and small
  damping that loses every digit (a float32 accumulation of ``G'c`` has an
  absolute error ``~eps32 ||v||``, divided by ``lam``). No reordering of
  float32 arithmetic avoids it -- the orthogonal component of ``v`` must be
  resolved to ``~1e-11 ||v||`` -- so here the two passes over the window
  (``G v`` and ``v - G'c``) read the float32 window but accumulate in
  float64, and the m x m system (Gram matrix, factor, coefficients) is kept
  in float64 for every window dtype. Reading float32 stays the cost; the
  passes remain memory-bound (see ``bench/mfac_speed.py``).
* The Gram matrix ``K`` is updated in O(dm) per push (one new row/column,
  the new gradient against the window); the Cholesky factor of
  ``m lam I + K`` is recomputed from ``K`` in O(m^3) at the first ``solve``
  after a push (lazily: several pushes pay for one factorisation). That is
  below one pass over the window for ``m <= 256`` and ``d >= 10^4``;
  rank-two up/downdates of the factor would be O(m^2) but a downdate is
  not backward stable. A factor that fails (damping below the rounding of
  ``K``) falls back to an eigendecomposition with ``K``'s eigenvalues
  clipped at zero.
* Warm-up: with ``k < m`` gradients present, ``F = lam I + (1/k) sum g g'``
  (the mean over the gradients present, not over ``m``); with none,
  ``F = lam I``.

Blocks (:class:`BlockedMFAC`) are column ranges of one window (one per
layer) with their own Gram matrices and factors: the passes over the
window go block-aware in one sweep and the small systems are factored in
one batched call, so the cost of many blocks is not a Python loop over
layers.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
from array_api_compat import array_namespace, is_numpy_namespace

from cext import kernels_for
from cext.registry import writes_in_place

from .._checks import (check_finite_switch, check_positive_int, check_square_summable,
                       finite_apply, namespace_of, refuse_complex)
from .._state import Array, Count, Equal, Real, check_state

__all__ = ["MFAC", "BlockedMFAC"]


class _Layout:
    """Column blocks of the window: sizes and the ``nblocks + 1`` offsets (a tuple of ints)."""

    def __init__(self, block_sizes: Sequence[int]):
        sizes = [check_positive_int("block size", b) for b in block_sizes]
        if not sizes:
            raise ValueError("block_sizes must name at least one block")
        self.sizes = tuple(sizes)
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)]))
        self.dim = self.offsets[-1]


def _default_xp():
    return array_namespace(np.empty(0))


def _resolve_dtype(xp, dtype):
    if dtype is None:
        return xp.float64
    if isinstance(dtype, str):
        name = dtype
    elif dtype == xp.float32:
        return xp.float32
    elif dtype == xp.float64:
        return xp.float64
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError as exc:
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return getattr(xp, name)


def _dtype_name(xp, dtype) -> str:
    return "float32" if dtype == xp.float32 else "float64"


def _check_damping(damping) -> float:
    try:
        damping = float(damping)
    except (TypeError, ValueError):
        raise ValueError(f"damping must be a positive number, got {damping!r}") from None
    if not (math.isfinite(damping) and damping > 0.0):
        raise ValueError(f"damping must be finite and > 0, got {damping}")
    return damping


def _gram_with_row(xp, K, slot: int, y):
    """``K`` with row and column ``slot`` of each block set to ``y`` (``(nblocks, k)``,
    ``k <= m``), as a new array: the Gram update for namespaces without in-place writes
    (JAX). Array-API only -- ``xp.where`` over a row and a column mask -- so it is the
    same code under ``array_api_strict``; O(nblocks m^2) against the O(dm) pass that
    produced ``y``."""
    nblocks, m, k = K.shape[0], K.shape[1], y.shape[1]
    padded = xp.concat([y, xp.zeros((nblocks, m - k), dtype=K.dtype)], axis=1)
    index = xp.arange(m)
    present = index < k
    row = xp.reshape((index == slot), (1, m, 1)) & xp.reshape(present, (1, 1, m))
    column = xp.reshape(present, (1, m, 1)) & xp.reshape((index == slot), (1, 1, m))
    K = xp.where(row, xp.reshape(padded, (nblocks, 1, m)), K)
    return xp.where(column, xp.reshape(padded, (nblocks, m, 1)), K)


def _memmap_path(memmap) -> str:
    """``memmap`` as a path whose folder exists, or an error naming the argument and the fix
    (numpy's own is a bare FileNotFoundError about the file)."""
    try:
        path = os.fspath(memmap)
    except TypeError:
        raise TypeError(f"memmap must be a path (str or os.PathLike) or None, got "
                        f"{type(memmap).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"memmap={path!r}: the folder {folder!r} does not exist; the window "
                         "file is created, its folder is not: create the folder first "
                         "(os.makedirs) or pass a path in an existing one")
    if os.path.isdir(path):
        raise ValueError(f"memmap={path!r} is a folder; pass the path of a file in it, e.g. "
                         f"{os.path.join(path, 'window.dat')!r}")
    return path


def _eigen_factor(xp, K, shift: float):
    w, Q = xp.linalg.eigh(K)
    w = xp.clip(w, min=0.0) + shift
    return xp.matrix_transpose(Q) / xp.sqrt(w)[..., :, None]


class _MFACBase:
    """Window storage, Gram matrices and factors shared by MFAC and BlockedMFAC."""

    def __init__(self, block_sizes, m, damping, dtype=None, xp=None, memmap=None,
                 check_finite=None):
        self._m = check_positive_int("m", m)
        self.check_finite = check_finite_switch(check_finite)
        self._damping = _check_damping(damping)
        self._layout = _Layout(block_sizes)
        if xp is None:
            xp = _default_xp()
        self.xp = xp
        self._dtype = _resolve_dtype(xp, dtype)
        # The passes over the window (cext.numba for NumPy, memmaps included;
        # cext.reference for other namespaces), accumulated in float64. The
        # kernels return what they write: new arrays where xp cannot write in
        # place (JAX), so the window and the Gram matrices are reassigned from
        # their results; NumPy and CuPy keep updating them in place.
        self._kernels = kernels_for(xp)
        self._in_place = writes_in_place(xp)
        d, nb = self._layout.dim, len(self._layout.sizes)
        if memmap is not None:
            if not is_numpy_namespace(xp):
                raise ValueError("memmap windows are NumPy-only; pass xp=None or numpy")
            path = _memmap_path(memmap)
            # mode "w+" creates (or truncates) the file, zero-filled.
            try:
                self._G = np.memmap(path, dtype=_dtype_name(xp, self._dtype), mode="w+",
                                    shape=(self._m, d))
            except OSError as exc:
                raise ValueError(f"memmap={path!r}: the window file cannot be created "
                                 f"({exc.strerror or exc}); pass a writable path with room "
                                 f"for {self._m} x {d} {_dtype_name(xp, self._dtype)} "
                                 "values") from exc
        else:
            self._G = xp.zeros((self._m, d), dtype=self._dtype)
        self._K = xp.zeros((nb, self._m, self._m), dtype=xp.float64)
        self._count = 0
        self._factor = None  # S with (k lam I + K)^{-1} = S'S, per block; None: stale

    # --- attributes -----------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self._layout.dim, self._layout.dim)

    @property
    def dtype(self):
        return self._dtype

    @property
    def m(self) -> int:
        """Window length."""
        return self._m

    @property
    def count(self) -> int:
        """Gradients pushed so far (including evicted ones)."""
        return self._count

    @property
    def size(self) -> int:
        """Gradients in the window now: ``min(count, m)``."""
        return min(self._count, self._m)

    @property
    def damping(self) -> float:
        return self._damping

    @damping.setter
    def damping(self, value) -> None:
        self._damping = _check_damping(value)
        self._factor = None

    @property
    def window(self):
        """The gradients present, ``(size, dim)``, in ring (not arrival) order."""
        return self._G[: self.size, :]

    # --- checks ---------------------------------------------------------
    def _check_vector(self, v, name: str):
        xp = self.xp
        namespace_of(v, name, xp, "the window")
        d = self._layout.dim
        if tuple(v.shape) != (d,):
            raise ValueError(f"{name} must have shape ({d},), got {tuple(v.shape)}")
        refuse_complex(xp, v, name)
        if not xp.isdtype(v.dtype, "real floating"):
            v = xp.astype(v, xp.float64)
        flags = getattr(v, "flags", None)
        if flags is not None and not flags.c_contiguous:
            # a strided view (a column of a matrix): the compiled kernels read packed
            # vectors, CuPy's refuse others where a NumPy view works; one copy here
            v = xp.asarray(v, copy=True)
        return v

    # --- the operator ---------------------------------------------------
    def update(self, g) -> None:
        """Push gradient ``g`` (shape ``(dim,)``), evicting the oldest when full.

        Cost: one float64-accumulated pass over the window (the new row and
        column of the Gram matrix) plus a copy of ``g``; the O(m^3)
        refactorisation is deferred to the next ``solve``.

        Raises
        ------
        ValueError
            Wrong shape, ``g`` contains NaN or Inf, or ``g.g`` overflows
            float64 (the window is left unchanged).
        TypeError
            ``g`` from another array library, or complex.
        """
        xp = self.xp
        g = self._check_vector(g, "g")
        if g.dtype != self._dtype:  # check what will be stored (float64 -> float32 may overflow)
            g = xp.astype(g, self._dtype)
        if not bool(xp.all(xp.isfinite(g))):
            raise ValueError("gradient contains NaN or Inf; the window is unchanged")
        if self._dtype == xp.float64:
            # The Gram matrix holds g.g (float64): refuse a gradient whose square
            # overflows (Cauchy-Schwarz then bounds every other entry). A float32
            # window cannot overflow it: d * (3.4e38)**2 is far below 1.8e308.
            check_square_summable(xp, g, "g", type(self).__name__, dtype=xp.float64)
        slot = self._count % self._m
        k = min(self._count + 1, self._m)
        y = xp.empty((len(self._layout.sizes), k), dtype=xp.float64)
        # One pass: g goes into the ring and meets every row present.
        raw = self._raw_window()
        window, y = self._kernels.window_push_gemv(raw, slot, g, self._layout.offsets, y)
        if window is not raw:   # a new window (immutable arrays); a memmap is written in place
            self._G = window
        if self._in_place:
            self._K[:, slot, :k] = y
            self._K[:, :k, slot] = y
        else:
            self._K = _gram_with_row(xp, self._K, slot, y)
        self._count += 1
        self._factor = None

    def _raw_window(self):
        """The window as the kernels take it (a memmap as a plain ndarray view)."""
        return np.asarray(self._G) if isinstance(self._G, np.memmap) else self._G

    def _gram_rows(self, v, k: int):
        """``(nblocks, k)`` float64: block b of ``G[:k] @ v``."""
        y = self.xp.empty((len(self._layout.sizes), k), dtype=self.xp.float64)
        return self._kernels.window_gemv(self._raw_window(), v, self._layout.offsets, y)

    def _combine(self, coef, v, alpha: float, beta: float, out_dtype):
        """``alpha v + beta G_b' coef_b`` per block b (float64 sums, rounded once)."""
        out = self.xp.empty((self._layout.dim,), dtype=out_dtype)
        return self._kernels.window_axpy_gemv_t(self._raw_window(), coef, v, alpha, beta,
                                                self._layout.offsets, out)

    def _factors(self):
        if self._factor is None:
            xp, k = self.xp, self.size
            K = self._K[:, :k, :k]
            shift = k * self._damping
            A = K + shift * xp.eye(k, dtype=xp.float64)
            S = self._kernels.spd_inverse_factor(A, xp.empty(A.shape, dtype=xp.float64))
            self._factor = S if S is not None else _eigen_factor(xp, K, shift)
        return self._factor

    def solve(self, v):
        """Return ``F^{-1} v`` in O(dm + m^2) (plus O(m^3) after a push).

        ``v`` of shape ``(dim,)``; the result has the dtype
        ``result_type(v, window)``. See the module notes on precision.

        Raises
        ------
        ValueError
            Wrong shape; with finite-value checking on (``check_finite``,
            by default for host arrays), NaN or Inf in ``v``, or a result
            that overflows.
        TypeError
            ``v`` from another array library, or complex.
        """
        xp = self.xp
        v = self._check_vector(v, "v")
        out_dtype = xp.result_type(v.dtype, self._dtype)
        k, lam = self.size, self._damping
        owner = f"{type(self).__name__}.solve"
        if k == 0:
            return finite_apply(xp, lambda v: xp.astype(xp.astype(v, xp.float64) / lam,
                                                        out_dtype),
                                v, "v", owner, self.check_finite)
        S = self._factors()

        def apply(v):
            y = self._gram_rows(v, k)
            # c = (k lam I + K)^{-1} G v, per block
            c = self._kernels.factor_apply(S, y, xp.empty(y.shape, dtype=xp.float64))
            return self._combine(c, v, 1.0 / lam, -1.0 / lam, out_dtype)

        return finite_apply(xp, apply, v, "v", owner, self.check_finite)

    def matvec(self, v):
        """Return ``F v = damping v + G'(G v)/k`` (k = gradients present).

        Checked for NaN and Inf as :meth:`solve` is.
        """
        xp = self.xp
        v = self._check_vector(v, "v")
        out_dtype = xp.result_type(v.dtype, self._dtype)
        k, lam = self.size, self._damping
        owner = f"{type(self).__name__}.matvec"
        if k == 0:
            return finite_apply(xp, lambda v: xp.astype(lam * xp.astype(v, xp.float64), out_dtype),
                                v, "v", owner, self.check_finite)
        return finite_apply(
            xp, lambda v: self._combine(self._gram_rows(v, k), v, lam, 1.0 / k, out_dtype),
            v, "v", owner, self.check_finite)

    # --- state ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot: window and Gram matrices copied (a memmap window too,
        into memory -- for windows larger than RAM keep the file instead)."""
        xp = self.xp
        return {"block_sizes": self._layout.sizes, "m": self._m, "damping": self._damping,
                "dtype": _dtype_name(xp, self._dtype), "count": self._count,
                "window": xp.asarray(self._G, copy=True) if not isinstance(self._G, np.memmap)
                else np.array(self._G),
                "gram": xp.asarray(self._K, copy=True)}

    def _state_spec(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` accepts (see :func:`linsolve.validation.state.check_state`)."""
        return {"block_sizes": Equal(list(self._layout.sizes)), "m": Equal(self._m),
                "damping": Real(positive=True),
                "dtype": Equal(_dtype_name(self.xp, self._dtype)), "count": Count(),
                # the dtypes held (JAX without x64 holds float32 where float64 is asked for)
                "window": Array(tuple(self._G.shape), dtype=_dtype_name(self.xp, self._G.dtype)),
                "gram": Array(tuple(self._K.shape), dtype=_dtype_name(self.xp, self._K.dtype))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an object of the same layout, m and dtype.

        The whole state is checked first: a bad one raises ``ValueError`` or
        ``TypeError`` naming the key, and leaves this object as it was.
        """
        check_state(state, self._state_spec(), type(self).__name__)
        xp = self.xp
        count = int(state["count"])
        damping = _check_damping(state["damping"])
        window = xp.asarray(state["window"], dtype=self._dtype)
        gram = xp.asarray(state["gram"], dtype=xp.float64)
        if isinstance(self._G, np.memmap):
            self._G[...] = window
        else:
            self._G = xp.asarray(window, copy=True)
        self._K = xp.asarray(gram, copy=True)
        self._count, self._damping, self._factor = count, damping, None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self._layout.dim}, m={self._m}, "
                f"damping={self._damping:g}, dtype={_dtype_name(self.xp, self._dtype)}, "
                f"size={self.size})")


class MFAC(_MFACBase):
    """Sliding-window empirical Fisher ``damping I + (1/m) sum g g'`` and its inverse.

    Parameters
    ----------
    dim : int
        Length of a gradient.
    m : int
        Window length (any m >= 1; the O(m^3) factorisation per push is
        meant for m up to a few hundred).
    damping : float
        ``lambda > 0``.
    dtype : {"float32", "float64"} or dtype, optional
        Storage of the window (default float64). The small m x m system and
        the accumulation of both passes are float64 whatever this is.
    xp : array namespace, optional
        Default NumPy. Any array-API namespace works; NumPy windows use
        Numba kernels.
    memmap : str or path, optional
        Keep the window in a ``numpy.memmap`` file (created or overwritten)
        for windows larger than RAM; NumPy only. Its folder must exist.
    check_finite : bool or None, optional
        The NaN/Inf contract of :meth:`solve` and :meth:`matvec` (as
        ``scipy.linalg``'s switch): True checks every call, raising a
        ValueError for NaN or Inf in ``v`` and for a result that overflows
        from a finite ``v``; False checks nothing (NaN in, NaN out); None
        (default) checks host arrays (NumPy, array-api-strict, CPU torch
        and JAX) and not device arrays (CuPy, CUDA torch, JAX on an
        accelerator, traced JAX), where a check would synchronise with the
        device on every call. The check is one fused reduction over ``v``
        and one over the result. :meth:`update` always refuses a non-finite
        gradient.

    Attributes
    ----------
    shape, dtype : the operator's ``(dim, dim)`` and the window dtype, so
        ``linsolve.pcg(A, b, M=mfac)`` applies :meth:`solve`.
    count, size, m, damping, window

    Notes
    -----
    ``solve`` costs two passes over the window; ``update`` one, plus an
    O(m^3) Cholesky refactorisation done at the next ``solve``. Until ``m``
    gradients have arrived the Fisher is normalised by the number present
    ``k``: ``F = lambda I + (1/k) sum g g'`` (``F = lambda I`` when empty).
    See the module docstring for the float32 precision argument.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.mfac.window import MFAC
    >>> rng = np.random.default_rng(0)
    >>> grads = rng.standard_normal((5, 40))
    >>> mfac = MFAC(40, m=4, damping=1e-2)
    >>> for g in grads:
    ...     mfac.update(g)
    >>> F = 1e-2 * np.eye(40) + grads[1:].T @ grads[1:] / 4   # last 4 gradients
    >>> v = rng.standard_normal(40)
    >>> bool(np.allclose(mfac.solve(v), np.linalg.solve(F, v), rtol=1e-10))
    True
    >>> bool(np.allclose(mfac.matvec(mfac.solve(v)), v))
    True
    """

    def __init__(self, dim: int, m: int, damping: float, dtype=None, xp=None,
                 memmap=None, *, check_finite: bool | None = None):
        super().__init__((check_positive_int("dim", dim),), m, damping, dtype, xp, memmap,
                         check_finite)

    @property
    def dim(self) -> int:
        return self._layout.dim


class BlockedMFAC(_MFACBase):
    """Independent M-FAC windows on column blocks (one per layer).

    ``F = blockdiag(F_1, ..., F_B)`` with ``F_b = damping I + (1/m) G_b'G_b``
    over the block's slice of the last ``m`` gradients. All blocks share one
    ring buffer (a gradient arrives for every layer at once).

    Parameters
    ----------
    block_sizes : sequence of int
        Lengths of the blocks, in order; ``dim = sum(block_sizes)``.
    m, damping, dtype, xp, memmap, check_finite
        As in :class:`MFAC`.

    Notes
    -----
    Batched, not looped: one pass over the whole window computes every
    block's ``G_b v_b`` (the kernels of :mod:`cext.numba.mfac` chunk the
    columns so that no chunk straddles a block); the B small systems are one stacked
    ``(B, m, m)`` Cholesky. No padding is needed because every block has
    the same m. Cost per ``solve``: two passes over the window plus
    O(B m^2); per push one pass plus O(B m^3) at the next ``solve``.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.mfac.window import BlockedMFAC, MFAC
    >>> rng = np.random.default_rng(1)
    >>> blocked = BlockedMFAC([30, 10], m=3, damping=0.1)
    >>> first, second = MFAC(30, 3, 0.1), MFAC(10, 3, 0.1)
    >>> for g in rng.standard_normal((4, 40)):
    ...     blocked.update(g); first.update(g[:30]); second.update(g[30:])
    >>> v = rng.standard_normal(40)
    >>> x = blocked.solve(v)
    >>> bool(np.allclose(x, np.concatenate([first.solve(v[:30]), second.solve(v[30:])])))
    True
    """

    def __init__(self, block_sizes: Sequence[int], m: int, damping: float, dtype=None,
                 xp=None, memmap=None, *, check_finite: bool | None = None):
        super().__init__(block_sizes, m, damping, dtype, xp, memmap, check_finite)

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return self._layout.sizes

    @property
    def dim(self) -> int:
        return self._layout.dim
