"""M-FAC over the flattened parameter collection: one :class:`curvature.MFAC` window."""

from __future__ import annotations

import math

from .._checks import check_positive_int
from .._state import Count, ListOf, Where, check_state
from ..mfac.window import MFAC, BlockedMFAC, _check_damping
from ._call import prepare_call, prepare_init, rename_errors, restore
from ._transforms import GradientTransformation, compose

__all__ = ["flat_gradient", "make_window", "mfac", "mfac_direction", "scale_by_mfac",
           "window_dtype"]

_DTYPES = ("float32", "float64")


def _dtype_name(dtype) -> str:
    return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]


def window_dtype(xp, leaves, dtype=None) -> str:
    """The window's storage: ``dtype``, else the parameters' promoted dtype (float64
    for anything but float32/float64)."""
    name = (_dtype_name(dtype) if dtype is not None
            else _dtype_name(xp.result_type(*[p.dtype for p in leaves])))
    return name if name in _DTYPES else "float64"


def make_window(xp, sizes, m, damping, per_parameter: bool, dtype_name: str):
    """A fresh window over parameters of ``sizes``: one :class:`curvature.MFAC` over all,
    or a :class:`curvature.BlockedMFAC` block per parameter."""
    if per_parameter:
        return BlockedMFAC(sizes, m, damping, dtype=dtype_name, xp=xp)
    return MFAC(sum(sizes), m, damping, dtype=dtype_name, xp=xp)


def flat_gradient(xp, grads):
    """The gradients concatenated (in order, C order within each) into one vector."""
    return (xp.reshape(grads[0], (-1,)) if len(grads) == 1 else
            xp.concat([xp.reshape(g, (-1,)) for g in grads]))


def mfac_direction(xp, window, grads, where: str) -> list:
    """One M-FAC step on a live window: push the flattened gradient, return
    ``F^{-1} g`` split into arrays of the gradients' shapes.

    Shared by :func:`scale_by_mfac` and ``curvature.torch.MFAC``.
    """
    flat = flat_gradient(xp, grads)
    with rename_errors(where):
        window.update(flat)
        direction = window.solve(flat)
    pieces, offset = [], 0
    for g in grads:
        size = math.prod(g.shape)
        pieces.append(xp.reshape(direction[offset:offset + size], tuple(g.shape)))
        offset += size
    return pieces


def _check_shapes(saved, grads, paths):
    """The window was made for gradients of these shapes; else name the first that differs."""
    if len(saved) != len(grads):
        raise ValueError(f"scale_by_mfac: grads holds {len(grads)} arrays, the state was made "
                         f"for {len(saved)}")
    for shape, g, path in zip(saved, grads, paths):
        if tuple(shape) != tuple(g.shape):
            raise ValueError(f"scale_by_mfac: {path} has shape {tuple(g.shape)}, the state was "
                             f"made for shape {tuple(shape)}")


def scale_by_mfac(m: int = 32, damping: float = 0.1, *, per_parameter: bool = False,
                  dtype=None) -> GradientTransformation:
    """M-FAC directions ``F^{-1} g`` over all parameters flattened (learning-rate free).

    The gradients of the tree are concatenated (flattening order, C order
    within each array) into one vector ``g``; it is pushed into a
    :class:`curvature.MFAC` window of the last ``m`` gradients and the
    direction is ``F^{-1} g`` with ``F = damping I + (1/m) sum g_i g_i'``
    (Frantar, Kurtic and Alistarh 2021), split back into the tree.
    Momentum goes after this piece, as in the paper.

    Parameters
    ----------
    m : int
        Window length.
    damping : float
        ``lambda > 0``.
    per_parameter : bool
        One independent window block per parameter
        (:class:`curvature.BlockedMFAC`: a block-diagonal ``F``) instead of one
        over everything.
    dtype : {"float32", "float64"}, optional
        Storage of the window; default the parameters' (promoted) dtype.

    Notes
    -----
    State: ``{"mfac": MFAC.state_dict(), "shapes": [shape per parameter]}``
    (the ``(m, d)`` window, its Gram matrix, the count; the shapes name the
    parameter in errors). Each ``update`` rebuilds the window from it with
    ``load_state_dict`` (one copy of the window in, one out): two more
    passes over the window than the in-place object's ``update`` and
    ``solve``, which make three.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature import MFAC
    >>> from curvature.optim import scale_by_mfac
    >>> rng = np.random.default_rng(0)
    >>> params = {"w": np.zeros((3, 2)), "b": np.zeros(2)}
    >>> opt = scale_by_mfac(m=4, damping=1e-2)
    >>> state = opt.init(params)
    >>> window = MFAC(8, 4, 1e-2)
    >>> for _ in range(6):
    ...     grads = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    ...     D, state = opt.update(grads, state)
    ...     g = np.concatenate([grads["b"], grads["w"].ravel()])   # flattening order: b, w
    ...     window.update(g)
    >>> bool(np.array_equal(np.concatenate([D["b"], D["w"].ravel()]), window.solve(g)))
    True
    """
    m = check_positive_int("m", m)
    damping = _check_damping(damping)
    if dtype is not None and _dtype_name(dtype) not in _DTYPES:
        raise ValueError(f"scale_by_mfac: dtype must be float32 or float64, got {dtype!r}")
    per_parameter = bool(per_parameter)
    owner = "scale_by_mfac"

    def make(xp, sizes, dtype_name):
        return make_window(xp, sizes, m, damping, per_parameter, dtype_name)

    def init(params):
        xp, leaves, _, paths = prepare_init(owner, params)
        sizes = [math.prod(p.shape) for p in leaves]
        if 0 in sizes:
            raise ValueError(f"{owner}: {paths[sizes.index(0)]} is empty")
        with rename_errors(owner):
            window = make(xp, sizes, window_dtype(xp, leaves, dtype))
        return {"mfac": window.state_dict(), "shapes": [list(p.shape) for p in leaves]}

    def update(grads, state, params=None):
        check_state(state, {"mfac": Where(lambda v: isinstance(v, dict)
                                          and v.get("dtype") in _DTYPES,
                                          "an MFAC state_dict (what init returned)"),
                            "shapes": ListOf(ListOf(Count()))}, owner)
        call = prepare_call(owner, grads, state, params)
        xp = call.xp
        sizes = [math.prod(g.shape) for g in call.grads]
        if 0 in sizes:
            raise ValueError(f"{owner}: {call.paths[sizes.index(0)]} is empty")
        _check_shapes(state["shapes"], call.grads, call.paths)
        window = restore(make(xp, sizes, state["mfac"]["dtype"]), state["mfac"],
                         f"{owner}: state['mfac']")
        pieces = mfac_direction(xp, window, call.grads, owner)
        shapes = [list(shape) for shape in state["shapes"]]
        return call.tree(pieces), {"mfac": window.state_dict(), "shapes": shapes}

    return GradientTransformation(init, update)


def mfac(learning_rate, *, m: int = 32, damping: float = 0.1, momentum: float = 0.0,
         nesterov: bool = False, weight_decay: float = 0.0, weight_decay_mask=None,
         per_parameter: bool = False, dtype=None) -> GradientTransformation:
    """M-FAC, then momentum (after the inverse-Hessian-vector product), weight decay, rate.

    ``chain(scale_by_mfac(m, damping, ...), trace(momentum),
    add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate))``
    without the pieces set to zero.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import apply_updates, mfac
    >>> params = [np.ones(3), np.ones((2, 2))]
    >>> opt = mfac(0.1, m=4, damping=1.0)
    >>> state = opt.init(params)
    >>> updates, state = opt.update([np.ones(3), np.ones((2, 2))], state)
    >>> round(float(updates[0][0]), 6)            # F = I + g g': F^{-1} g = g / (1 + |g|^2)
    -0.0125
    >>> state[0]["mfac"]["count"]
    1
    """
    return compose(scale_by_mfac(m, damping, per_parameter=per_parameter, dtype=dtype),
                   learning_rate, momentum, nesterov, weight_decay, weight_decay_mask)
