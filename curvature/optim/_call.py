"""The gate of every ``init`` and ``update``: trees matched, shapes and library checked once.

One call sees the gradients, optionally the parameters, and the arrays of its
state; all must be arrays of one array library (``TypeError`` naming the
first path that is not), the trees must have the gradients' structure and
each array the shape of its gradient (``ValueError`` naming the path). The
namespace found here is the only one the transform uses.
"""

from __future__ import annotations

import contextlib
from typing import Any

from linsolve.validation.inputs import dtype_name

from ._tree import TreeDef, flatten, flatten_as, namespace_of_trees, state_arrays, unflatten

__all__ = ["Call", "prepare_call", "prepare_init", "rename_errors", "restore"]


class Call:
    """The checked inputs of one ``update``: gradient leaves, structure, namespace."""

    __slots__ = ("owner", "xp", "grads", "treedef", "paths", "params", "trees")

    def __init__(self, owner, xp, grads, treedef, paths, params, trees):
        self.owner, self.xp = owner, xp
        self.grads, self.treedef, self.paths = grads, treedef, paths
        self.params, self.trees = params, trees

    def tree(self, leaves) -> Any:
        """A tree of the gradients' structure holding ``leaves`` (0-d results as arrays)."""
        return unflatten(self.treedef, [as_array(self.xp, leaf) for leaf in leaves])

    def require_params(self) -> list:
        if self.params is None:
            raise ValueError(f"{self.owner} needs the parameters: call "
                             "update(grads, state, params)")
        return self.params


def as_array(xp, leaf):
    """``leaf``, or a 0-d array for the scalar NumPy returns from arithmetic on 0-d arrays."""
    return xp.asarray(leaf) if getattr(leaf, "ndim", None) == 0 else leaf


def _check_real(xp, leaves, paths, owner):
    for leaf, path in zip(leaves, paths):
        if not xp.isdtype(leaf.dtype, "real floating"):
            raise TypeError(f"{owner}: {path} has dtype {dtype_name(leaf.dtype)}; the "
                            "optimizers work on real floating arrays (cast integer arrays, "
                            "pass the real part of complex ones explicitly)")


def _check_shapes(reference, reference_paths, leaves, paths, owner):
    for ref, ref_path, leaf, path in zip(reference, reference_paths, leaves, paths):
        if tuple(leaf.shape) != tuple(ref.shape):
            raise ValueError(f"{owner}: {path} has shape {tuple(leaf.shape)}, but {ref_path} "
                             f"has shape {tuple(ref.shape)}")


def prepare_init(owner: str, params: Any) -> tuple[Any, list, TreeDef, list]:
    """``(xp, leaves, treedef, paths)`` of ``params`` for an ``init``.

    Raises
    ------
    TypeError
        A leaf that is not a real floating array, or arrays of several libraries.
    ValueError
        A tree without arrays.
    """
    leaves, treedef = flatten(params)
    paths = treedef.paths("params")
    with rename_errors(owner):
        xp = namespace_of_trees((leaves, paths))
    if xp is None:
        raise ValueError(f"{owner}: params holds no arrays")
    _check_real(xp, leaves, paths, owner)
    return xp, leaves, treedef, paths


def prepare_call(owner: str, grads: Any, state: Any, params: Any = None,
                 trees: dict[str, Any] | None = None, extra=((), ())) -> Call:
    """Check one ``update``'s inputs together; see the module notes.

    ``trees`` names state entries that mirror the gradients (momentum
    buffers): they are matched leaf by leaf, shapes included, and come back
    flattened in ``Call.trees``. Every other array in ``state`` need only be
    of the same library, and so must the arrays ``extra = (arrays, paths)``
    (per-step data such as layer activations).
    """
    leaves, treedef = flatten(grads)
    paths = treedef.paths("grads")
    if not leaves:
        raise ValueError(f"{owner}: grads holds no arrays")
    param_leaves = param_paths = None
    flat_trees, tree_paths = {}, []
    with rename_errors(owner):
        if params is not None:
            param_leaves = flatten_as(treedef, params, "params", "grads")
            param_paths = treedef.paths("params")
        for key, tree in (trees or {}).items():
            name = f"state[{key!r}]"
            flat_trees[key] = flatten_as(treedef, tree, name, "grads")
            tree_paths.append((flat_trees[key], treedef.paths(name)))
        arrays = state_arrays(state)
        xp = namespace_of_trees((leaves, paths), (param_leaves or [], param_paths or []),
                                *tree_paths, arrays, extra)
    _check_real(xp, leaves, paths, owner)
    if param_leaves is not None:
        _check_shapes(param_leaves, param_paths, leaves, paths, owner)
    for flat, flat_paths in tree_paths:
        _check_shapes(flat, flat_paths, leaves, paths, owner)
    return Call(owner, xp, leaves, treedef, paths, param_leaves, flat_trees)


@contextlib.contextmanager
def rename_errors(where: str):
    """Re-raise a ``ValueError`` or ``TypeError`` with ``where: `` in front of its message
    (same class, so :class:`curvature.RootError` stays one)."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        try:
            renamed = type(exc)(f"{where}: {exc}")
        except Exception:  # an exception class with another constructor
            raise exc from None
        raise renamed from exc



def restore(obj, state: Any, where: str):
    """``obj`` after ``obj.load_state_dict(state)`` (the objects' one state gate); errors
    name ``where``, the entry of the optimizer state that was refused.

    The optimizers rebuild their curvature objects from plain-data state at
    every ``update`` and take a fresh ``state_dict()`` afterwards: the
    objects copy arrays in and out, so the caller's state is never written to.
    """
    with rename_errors(where):
        obj.load_state_dict(state)
    return obj
