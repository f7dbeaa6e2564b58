"""Dense layers declared among the parameters: what K-FAC and MKOR precondition.

K-FAC and MKOR approximate the curvature of a dense layer ``s = W a + b``
from its inputs ``a`` and the gradients with respect to its outputs ``s``.
Neither can be read off a tree of parameters, so the user declares which
parameters form each layer (:class:`DenseLayer`: the paths of its weight
and bias in the tree) and supplies, at every ``update``, each layer's
inputs and per-example output gradients (``activations=`` and
``output_grads=``, in the order of the declaration, or keyed like it).

Parameters that belong to no declared layer are passed through unchanged
(their update is the gradient: plain SGD, or momentum with
:func:`curvature.optim.trace`).
"""

# No `from __future__ import annotations` here: pdoc evaluates the NamedTuple's field
# annotations, which must then be real objects.

from collections.abc import Mapping, Sequence
from typing import Any, Callable, NamedTuple

from .._state import Count, Where, check_state
from ._call import prepare_call, prepare_init, rename_errors, restore
from ._transforms import GradientTransformation

__all__ = ["DenseLayer", "joined_gradient", "per_layer", "split_direction"]

_LAYOUTS = ("in_out", "out_in")


class DenseLayer(NamedTuple):
    """A dense layer among the parameters, named by the paths of its arrays.

    Parameters
    ----------
    weight : key or tuple of keys
        Path of the weight in the parameter tree: ``"w"`` or ``0`` for a
        top-level entry, ``("dense", "kernel")`` for ``params["dense"]["kernel"]``.
    bias : key or tuple of keys, optional
        Path of the bias (a vector of ``out_features``), or None.
    layout : {"in_out", "out_in"}
        ``"in_out"``: the weight is ``(in_features, out_features)`` and the
        layer computes ``a @ W + b`` (JAX/Flax's ``kernel``, the digits MLP
        of ``bench.optimizers``); ``"out_in"``: ``(out_features, in_features)``
        and ``a @ W.T + b`` (``torch.nn.Linear``'s ``weight``).

    Examples
    --------
    >>> from curvature.optim import DenseLayer
    >>> DenseLayer(("dense", "kernel"), ("dense", "bias"))
    DenseLayer(weight=('dense', 'kernel'), bias=('dense', 'bias'), layout='in_out')
    """

    weight: Any
    bias: Any = None
    layout: str = "in_out"


class _Resolved(NamedTuple):
    name: Any          # index or key of the declaration
    weight: int        # leaf index of the weight
    bias: int | None   # leaf index of the bias
    in_features: int
    out_features: int
    layout: str


def _as_keys(path) -> tuple:
    return tuple(path) if isinstance(path, tuple) else (path,)


def _declarations(owner, layers) -> list[tuple[Any, DenseLayer]]:
    if isinstance(layers, Mapping):
        items = list(layers.items())
    elif isinstance(layers, Sequence) and not isinstance(layers, (str, DenseLayer)):
        items = list(enumerate(layers))
    else:
        raise TypeError(f"{owner}: layers must be a list (or dict) of DenseLayer, got "
                        f"{type(layers).__name__}")
    if not items:
        raise ValueError(f"{owner}: layers declares no layer")
    for name, layer in items:
        if not isinstance(layer, DenseLayer):
            raise TypeError(f"{owner}: layers[{name!r}] must be a DenseLayer, got "
                            f"{type(layer).__name__}")
        if layer.layout not in _LAYOUTS:
            raise ValueError(f"{owner}: layers[{name!r}].layout must be one of {_LAYOUTS}, "
                             f"got {layer.layout!r}")
    return items


def _resolve(owner, declarations, treedef, leaves) -> list[_Resolved]:
    """Leaf indices and sizes of every declared layer; errors name the path."""
    index = {keys: i for i, keys in enumerate(treedef.key_paths())}
    used: dict[int, str] = {}

    def find(name, role, path):
        keys = _as_keys(path)
        where = "params" + "".join(f"[{k!r}]" for k in keys)
        if keys not in index:
            raise ValueError(f"{owner}: layers[{name!r}].{role} names {where}, which is not an "
                             "array of the parameter tree")
        i = index[keys]
        if i in used:
            raise ValueError(f"{owner}: {where} belongs to two declarations ({used[i]} and "
                             f"layers[{name!r}].{role})")
        used[i] = f"layers[{name!r}].{role}"
        return i, where

    resolved = []
    for name, layer in declarations:
        w, w_path = find(name, "weight", layer.weight)
        shape = tuple(leaves[w].shape)
        if len(shape) != 2:
            raise ValueError(f"{owner}: {w_path} (layers[{name!r}].weight) must be a matrix, "
                             f"has shape {shape}")
        in_features, out_features = shape if layer.layout == "in_out" else shape[::-1]
        b = None
        if layer.bias is not None:
            b, b_path = find(name, "bias", layer.bias)
            if tuple(leaves[b].shape) != (out_features,):
                raise ValueError(f"{owner}: {b_path} (layers[{name!r}].bias) must have shape "
                                 f"({out_features},) (the weight {w_path} has {out_features} "
                                 f"outputs in layout {layer.layout!r}), got "
                                 f"{tuple(leaves[b].shape)}")
        resolved.append(_Resolved(name, w, b, in_features, out_features, layer.layout))
    return resolved


def joined_gradient(xp, weight_grad, bias_grad, layout: str):
    """The ``(out, in + bias)`` gradient ``[W_grad, b_grad]`` the curvature objects take
    (``bias_grad`` None for a layer without bias; ``layout`` as in :class:`DenseLayer`)."""
    W = xp.matrix_transpose(weight_grad) if layout == "in_out" else weight_grad
    if bias_grad is None:
        return W
    return xp.concat([W, xp.reshape(bias_grad, (-1, 1))], axis=1)


def split_direction(xp, D, in_features: int, bias: bool, layout: str):
    """Inverse of :func:`joined_gradient`: ``(weight direction, bias direction or None)``."""
    W = D[:, :in_features] if bias else D
    W = xp.matrix_transpose(W) if layout == "in_out" else W
    return W, (D[:, -1] if bias else None)


def _joined(xp, layer: _Resolved, grads):
    return joined_gradient(xp, grads[layer.weight],
                           None if layer.bias is None else grads[layer.bias], layer.layout)


def _split(xp, layer: _Resolved, D):
    return split_direction(xp, D, layer.in_features, layer.bias is not None, layer.layout)


def _per_layer_data(owner, declarations, value, what):
    """``value`` (a list in declaration order, or a dict keyed like the declaration) as a list."""
    if value is None:
        raise ValueError(f"{owner} needs {what}=...: one array per declared layer "
                         "(update(grads, state, params, activations=..., output_grads=...))")
    names = [name for name, _ in declarations]
    if isinstance(value, Mapping):
        missing = [n for n in names if n not in value]
        if missing or len(value) != len(names):
            raise ValueError(f"{owner}: {what} has keys {list(value)!r}, the layers "
                             f"{names!r}")
        return [value[n] for n in names], [f"{what}[{n!r}]" for n in names]
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{owner}: {what} must be a list (or dict) of arrays, one per "
                        f"declared layer, got {type(value).__name__}")
    if len(value) != len(names):
        raise ValueError(f"{owner}: {what} holds {len(value)} arrays, but {len(names)} layers "
                         "are declared")
    return list(value), [f"{what}[{i}]" for i in range(len(names))]


def per_layer(owner: str, layers, make: Callable[[int, int, bool], Any], step: Callable,
              extra_args=frozenset()) -> GradientTransformation:
    """A transformation with one curvature object per declared layer.

    ``make(in_features, out_features, bias)`` builds a fresh object (called
    once here, so that a bad configuration fails at construction).
    ``step(objects, inputs, output_grads, joined, count, **extra)`` updates
    the objects and returns the ``(out, in + bias)`` directions, one per
    layer. State: ``{"layers": [state_dict per layer], "count": int}``.
    """
    declarations = _declarations(owner, layers)
    make(1, 1, True)

    def init(params):
        _, leaves, treedef, _ = prepare_init(owner, params)
        resolved = _resolve(owner, declarations, treedef, leaves)
        return {"layers": [make(r.in_features, r.out_features, r.bias is not None).state_dict()
                           for r in resolved], "count": 0}

    def update(grads, state, params=None, *, activations=None, output_grads=None, **extra):
        check_state(state, {"layers": Where(lambda v: isinstance(v, list)
                                            and len(v) == len(declarations),
                                            f"a list of {len(declarations)} layer states"),
                            "count": Count()}, owner)
        inputs, input_paths = _per_layer_data(owner, declarations, activations, "activations")
        outputs, output_paths = _per_layer_data(owner, declarations, output_grads,
                                                "output_grads")
        call = prepare_call(owner, grads, state, params,
                            extra=(inputs + outputs, input_paths + output_paths))
        xp = call.xp
        resolved = _resolve(owner, declarations, call.treedef, call.grads)
        weight_paths = [call.paths[r.weight] for r in resolved]
        objects = [restore(make(r.in_features, r.out_features, r.bias is not None), layer_state,
                           f"{owner}: state['layers'][{k}] (layer {r.name!r}, {path})")
                   for k, (r, layer_state, path) in enumerate(zip(resolved, state["layers"],
                                                                  weight_paths))]
        joined = [_joined(xp, r, call.grads) for r in resolved]
        with rename_errors(owner):
            directions = step(objects, inputs, outputs, joined, int(state["count"]),
                              names=[f"layer {r.name!r} ({path})"
                                     for r, path in zip(resolved, weight_paths)], **extra)
        out = list(call.grads)
        for r, D in zip(resolved, directions):
            W, b = _split(xp, r, D)
            out[r.weight] = W
            if b is not None:
                out[r.bias] = b
        return call.tree(out), {"layers": [o.state_dict() for o in objects],
                                "count": int(state["count"]) + 1}

    return GradientTransformation(init, update, frozenset({"activations", "output_grads"})
                                  | frozenset(extra_args))
