"""The optimizer interface and its method-independent pieces.

In the style of optax: an optimizer is a :class:`GradientTransformation`, a
pair of pure functions

- ``init(params) -> state``
- ``update(grads, state, params=None, **extra) -> (updates, new_state)``

over a *tree* of arrays (nested lists, tuples, dicts; see
:mod:`curvature.optim._tree`), and :func:`apply_updates` adds the updates
to the parameters. ``update`` never modifies its arguments: the new state
is a new object, and the state is plain data (dicts, lists, Python
numbers, arrays of the parameters' library) that pickles and saves like a
``state_dict()``. Pieces compose with :func:`chain`, left to right: a
method's direction, then :func:`trace` (momentum), then
:func:`add_decayed_weights`, then :func:`scale_by_learning_rate`.

``**extra`` carries per-step data some methods need (K-FAC's layer
activations); :func:`chain` hands each member the keywords it declares in
``extra_args`` and refuses keywords no member takes.
"""

# No `from __future__ import annotations` here: pdoc evaluates the NamedTuple's field
# annotations, which must then be real objects.

import math
import numbers
from typing import Any, Callable, NamedTuple

from .._state import Count, check_state
from ._call import as_array, prepare_call, prepare_init, rename_errors
from ._tree import flatten, flatten_as, namespace_of_trees, unflatten

__all__ = ["GradientTransformation", "chain", "trace", "scale_by_learning_rate",
           "add_decayed_weights", "apply_updates"]


class GradientTransformation(NamedTuple):
    """An optimizer (or a piece of one): ``init`` and a pure ``update``.

    Attributes
    ----------
    init : callable
        ``init(params) -> state``.
    update : callable
        ``update(grads, state, params=None, **extra) -> (updates, new_state)``.
    extra_args : frozenset of str
        The keywords ``update`` takes besides ``grads, state, params``.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]
    extra_args: frozenset = frozenset()


def _rate(name: str, value) -> float:
    """A finite real >= 0 (a learning rate, a decay, a weight decay)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return value


def learning_rate_at(learning_rate, count: int, name: str = "learning_rate") -> float:
    """A constant rate, or ``learning_rate(count)`` for a schedule (``count``: updates so far)."""
    if callable(learning_rate):
        with rename_errors(f"{name}({count}) (the schedule)"):
            return _rate("its value", learning_rate(count))
    return _rate(name, learning_rate)


def _check_rate_or_schedule(name, value):
    if not callable(value):
        _rate(name, value)
    return value


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` one after the other; the state is the list of their states.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import apply_updates, chain, scale_by_learning_rate, trace
    >>> opt = chain(trace(0.9), scale_by_learning_rate(0.1))      # heavy-ball SGD
    >>> params = {"w": np.array([1.0, -2.0])}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({"w": np.array([1.0, 1.0])}, state, params)
    >>> updates["w"]
    array([-0.1, -0.1])
    >>> apply_updates(params, updates)["w"]
    array([ 0.9, -2.1])
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradientTransformation):
            raise TypeError(f"chain: argument {i} is a {type(t).__name__}, not a "
                            "GradientTransformation")
    extra_args = frozenset().union(*(t.extra_args for t in transforms))

    def init(params):
        return [t.init(params) for t in transforms]

    def update(grads, state, params=None, **extra):
        unknown = sorted(set(extra) - extra_args)
        if unknown:
            raise TypeError(f"chain: no member takes the keyword(s) {unknown}; the members "
                            f"take {sorted(extra_args)}")
        if not isinstance(state, list) or len(state) != len(transforms):
            raise ValueError(f"chain state must be a list of {len(transforms)} states (what "
                             f"init returned), got {type(state).__name__}"
                             + (f" of {len(state)}" if isinstance(state, (list, tuple)) else ""))
        new_state = []
        for t, member_state in zip(transforms, state):
            mine = {k: v for k, v in extra.items() if k in t.extra_args}
            grads, member_state = t.update(grads, member_state, params, **mine)
            new_state.append(member_state)
        return grads, new_state

    return GradientTransformation(init, update, extra_args)


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Heavy-ball momentum: ``b <- decay b + u``, output ``b`` (or ``u + decay b``, Nesterov).

    The buffer has the parameters' dtypes and starts at zero, as
    ``torch.optim.SGD``'s (``b *= decay; b += u``, the same arithmetic).
    State: ``{"momentum": tree like params}``.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import trace
    >>> opt = trace(0.5)
    >>> state = opt.init([np.zeros(2)])
    >>> for _ in range(2):
    ...     updates, state = opt.update([np.ones(2)], state)
    >>> updates[0]                  # 0.5 * 1 + 1
    array([1.5, 1.5])
    """
    decay = _rate("decay", decay)
    nesterov = bool(nesterov)

    def init(params):
        xp, leaves, treedef, _ = prepare_init("trace", params)
        return {"momentum": unflatten(treedef, [xp.zeros_like(p) for p in leaves])}

    def update(grads, state, params=None):
        check_state(state, {"momentum": _tree_entry}, "trace")
        call = prepare_call("trace", grads, state, params, {"momentum": state["momentum"]})
        xp = call.xp
        buffers = []
        for b, u in zip(call.trees["momentum"], call.grads):
            new = decay * b + u
            buffers.append(new if new.dtype == b.dtype else xp.astype(new, b.dtype))
        out = ([u + decay * b for u, b in zip(call.grads, buffers)] if nesterov else buffers)
        return call.tree(out), {"momentum": call.tree(buffers)}

    return GradientTransformation(init, update)


def _tree_entry(name, value, seen):
    """A state entry checked later, leaf by leaf, against the gradients' tree."""


def scale_by_learning_rate(learning_rate) -> GradientTransformation:
    """``u <- -learning_rate * u``: the last piece of a chain (updates are *added*).

    Parameters
    ----------
    learning_rate : float or callable
        A rate >= 0, or a schedule ``learning_rate(count) -> float`` with
        ``count`` the number of updates before this one (0 first).

    State: ``{"count": int}``.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import scale_by_learning_rate
    >>> opt = scale_by_learning_rate(lambda count: 0.1 / (1 + count))
    >>> state = opt.init((np.ones(2),))
    >>> [float(opt.update((np.ones(2),), state)[0][0][0]) for state in (state, {"count": 1})]
    [-0.1, -0.05]
    """
    _check_rate_or_schedule("learning_rate", learning_rate)

    def init(params):
        prepare_init("scale_by_learning_rate", params)
        return {"count": 0}

    def update(grads, state, params=None):
        check_state(state, {"count": Count()}, "scale_by_learning_rate")
        call = prepare_call("scale_by_learning_rate", grads, state, params)
        count = int(state["count"])
        rate = learning_rate_at(learning_rate, count)
        return call.tree([-rate * u for u in call.grads]), {"count": count + 1}

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay: float, mask=None) -> GradientTransformation:
    """``u <- u + weight_decay * params``: weight decay, needs ``params``.

    After a method's direction and before :func:`scale_by_learning_rate` it
    is decoupled weight decay (AdamW's, Loshchilov and Hutter 2019); before
    the method it is an L2 penalty that the method preconditions.

    Parameters
    ----------
    weight_decay : float
        ``>= 0``.
    mask : tree of bool, or callable, optional
        Decay only the parameters whose entry is True (a tree like the
        parameters, or ``mask(params)`` returning one), e.g. weights but not
        biases.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import add_decayed_weights
    >>> opt = add_decayed_weights(0.1, mask={"w": True, "b": False})
    >>> params = {"w": np.array([2.0]), "b": np.array([2.0])}
    >>> updates, _ = opt.update({"w": np.zeros(1), "b": np.zeros(1)}, opt.init(params), params)
    >>> updates["w"], updates["b"]
    (array([0.2]), array([0.]))
    """
    weight_decay = _rate("weight_decay", weight_decay)

    def init(params):
        prepare_init("add_decayed_weights", params)
        return {}

    def update(grads, state, params=None):
        check_state(state, {}, "add_decayed_weights")
        call = prepare_call("add_decayed_weights", grads, state, params)
        params_leaves = call.require_params()
        if mask is None:
            keep = [True] * len(params_leaves)
        else:
            tree = mask(params) if callable(mask) else mask
            with rename_errors("add_decayed_weights"):
                keep = flatten_as(call.treedef, tree, "mask", "params")
            for flag, path in zip(keep, call.treedef.paths("mask")):
                if not isinstance(flag, bool):
                    raise TypeError(f"add_decayed_weights: {path} must be True or False, "
                                    f"got {type(flag).__name__}")
        out = [u + weight_decay * p if flag else u
               for u, p, flag in zip(call.grads, params_leaves, keep)]
        return call.tree(out), {}

    return GradientTransformation(init, update)


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates``, leaf by leaf, in each parameter's dtype (a new tree).

    Raises
    ------
    ValueError
        Trees of different structure, or leaves of different shapes (the
        message names the path).
    TypeError
        Leaves that are not arrays, or arrays of several libraries.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import apply_updates
    >>> apply_updates([np.ones(2), {"b": np.zeros(1)}], [np.ones(2), {"b": np.ones(1)}])
    [array([2., 2.]), {'b': array([1.])}]
    >>> apply_updates([np.ones(2)], [np.ones(3)])
    Traceback (most recent call last):
    ...
    ValueError: apply_updates: updates[0] has shape (3,), but params[0] has shape (2,)
    """
    leaves, treedef = flatten(params)
    paths = treedef.paths("params")
    with rename_errors("apply_updates"):
        update_leaves = flatten_as(treedef, updates, "updates", "params")
        update_paths = treedef.paths("updates")
        xp = namespace_of_trees((leaves, paths), (update_leaves, update_paths))
    out = []
    for p, u, path, update_path in zip(leaves, update_leaves, paths, update_paths):
        if tuple(u.shape) != tuple(p.shape):
            raise ValueError(f"apply_updates: {update_path} has shape {tuple(u.shape)}, but "
                             f"{path} has shape {tuple(p.shape)}")
        new = as_array(xp, p + u)
        out.append(new if new.dtype == p.dtype else xp.astype(new, p.dtype))
    return unflatten(treedef, out)


def compose(method: GradientTransformation, learning_rate, momentum: float = 0.0,
            nesterov: bool = False, weight_decay: float = 0.0,
            weight_decay_mask=None) -> GradientTransformation:
    """``chain(method, trace(momentum), add_decayed_weights(weight_decay),
    scale_by_learning_rate(learning_rate))``, leaving out the pieces set to zero:
    the convenience optimizers (:func:`curvature.optim.shampoo`, ...) are this."""
    _check_rate_or_schedule("learning_rate", learning_rate)
    pieces = [method]
    if _rate("momentum", momentum) > 0.0:
        pieces.append(trace(momentum, nesterov))
    if _rate("weight_decay", weight_decay) > 0.0:
        pieces.append(add_decayed_weights(weight_decay, weight_decay_mask))
    pieces.append(scale_by_learning_rate(learning_rate))
    return chain(*pieces)
