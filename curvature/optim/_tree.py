"""Trees of arrays: nested lists, tuples (named tuples too), dicts and None.

A *tree* is what a model's parameters look like in JAX or PyTorch code: a
list of arrays, a dict of dicts, a tuple of layers. Its *leaves* are the
arrays; ``None`` is an empty subtree (a layer without a bias), as in
``jax.tree_util``. Leaves are visited depth first, dict keys in sorted order
(as JAX does, so that two dicts with the same keys flatten alike whatever
their insertion order), sequences in order. Rebuilding keeps each dict's own
key order and each node's type.

Every mismatch is reported with the *path* of the offending node written as
Python would index it, ``params['dense'][0]``, so that the message points at
the array to fix.

Examples
--------
>>> import numpy as np
>>> tree = {"w": np.ones((2, 3)), "layers": [np.zeros(2), None]}
>>> leaves, treedef = flatten(tree)
>>> [leaf.shape for leaf in leaves]
[(2,), (2, 3)]
>>> treedef.paths("params")
["params['layers'][0]", "params['w']"]
>>> unflatten(treedef, [leaf + 1 for leaf in leaves])["layers"][0]
array([1., 1.])
>>> flatten_as(treedef, {"w": np.ones((2, 3)), "layers": [np.zeros(2)]}, "grads", "params")
Traceback (most recent call last):
...
ValueError: grads['layers'] is a list of 1, but params['layers'] is a list of 2: the trees must have the same structure
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, is_array_api_obj

from .._checks import _library

__all__ = ["TreeDef", "flatten", "flatten_as", "unflatten", "format_path", "namespace_of_trees",
           "state_arrays"]

_LEAF, _NONE, _LIST, _TUPLE, _NAMEDTUPLE, _DICT = ("leaf", "none", "list", "tuple",
                                                    "namedtuple", "dict")


class TreeDef:
    """The structure of a tree without its leaves (comparable with ``==``).

    ``kind`` is one of ``leaf``, ``none``, ``list``, ``tuple``, ``namedtuple``,
    ``dict``; ``keys`` holds a dict's keys in their own order (children are
    stored in sorted-key order) or a sequence's indices.
    """

    __slots__ = ("kind", "node_type", "keys", "children", "num_leaves")

    def __init__(self, kind, node_type=None, keys=(), children=()):
        self.kind, self.node_type = kind, node_type
        self.keys, self.children = tuple(keys), tuple(children)
        self.num_leaves = 1 if kind == _LEAF else sum(c.num_leaves for c in self.children)

    def _child_keys(self):
        """Keys of the children in flattening order."""
        return _sorted_keys(self.keys) if self.kind == _DICT else self.keys

    def __eq__(self, other):
        # the same test as flatten_as: dict subclasses and list/tuple subclasses match
        # their base kind; named tuples must be of the same class
        return (isinstance(other, TreeDef) and self.kind == other.kind
                and (self.kind != _NAMEDTUPLE or self.node_type is other.node_type)
                and (set(self.keys) == set(other.keys) if self.kind == _DICT
                     else self.keys == other.keys)
                and self.children == other.children)

    def __hash__(self):
        return hash((self.kind, len(self.children)))

    def paths(self, name: str = "") -> list[str]:
        """The path of every leaf, in flattening order, each prefixed by ``name``."""
        out: list[str] = []
        self._paths(name, out)
        return out

    def key_paths(self) -> list[tuple]:
        """The keys leading to every leaf, in flattening order: ``[('layers', 0), ('w',)]``."""
        out: list[tuple] = []
        self._key_paths((), out)
        return out

    def _key_paths(self, prefix, out):
        if self.kind == _LEAF:
            out.append(prefix)
            return
        for key, child in zip(self._child_keys(), self.children):
            child._key_paths(prefix + (key,), out)

    def _paths(self, prefix, out):
        if self.kind == _LEAF:
            out.append(prefix)
            return
        for key, child in zip(self._child_keys(), self.children):
            child._paths(prefix + f"[{key!r}]", out)

    def __repr__(self):
        return f"TreeDef({describe_def(self)}, {self.num_leaves} leaves)"


def _sorted_keys(keys):
    try:
        return sorted(keys)
    except TypeError:      # keys of several types: a fixed order all the same
        return sorted(keys, key=lambda k: (type(k).__name__, repr(k)))


def _is_namedtuple(node) -> bool:
    return isinstance(node, tuple) and hasattr(type(node), "_fields")


def _kind(node) -> str:
    if node is None:
        return _NONE
    if isinstance(node, dict):
        return _DICT
    if isinstance(node, list):
        return _LIST
    if _is_namedtuple(node):
        return _NAMEDTUPLE
    if isinstance(node, tuple):
        return _TUPLE
    return _LEAF


def describe(node) -> str:
    """A node in words, for messages: ``a list of 2``, ``a dict with keys ['b', 'w']``."""
    kind = _kind(node)
    if kind == _DICT:
        return f"a dict with keys {_sorted_keys(node.keys())!r}"
    if kind in (_LIST, _TUPLE):
        return f"a {kind} of {len(node)}"
    if kind == _NAMEDTUPLE:
        return f"a {type(node).__name__} of {len(node)}"
    if kind == _NONE:
        return "None"
    shape = getattr(node, "shape", None)
    if shape is not None and is_array_api_obj(node):
        return f"an array of shape {tuple(shape)}"
    return f"a {type(node).__name__}"


def describe_def(treedef: TreeDef) -> str:
    """What :func:`describe` says of the node ``treedef`` was taken from."""
    kind = treedef.kind
    if kind == _DICT:
        return f"a dict with keys {_sorted_keys(treedef.keys)!r}"
    if kind in (_LIST, _TUPLE):
        return f"a {kind} of {len(treedef.children)}"
    if kind == _NAMEDTUPLE:
        return f"a {treedef.node_type.__name__} of {len(treedef.children)}"
    return "None" if kind == _NONE else "an array"


def format_path(keys) -> str:
    """``['a'][0]`` for the keys ``('a', 0)``."""
    return "".join(f"[{k!r}]" for k in keys)


def flatten(tree: Any) -> tuple[list, TreeDef]:
    """The leaves of ``tree`` in flattening order, and its structure.

    Anything that is not a list, tuple, dict or None is a leaf (checking that
    leaves are arrays is :func:`namespace_of_trees`'s job).
    """
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _flatten(node, leaves):
    kind = _kind(node)
    if kind == _LEAF:
        leaves.append(node)
        return TreeDef(_LEAF)
    if kind == _NONE:
        return TreeDef(_NONE)
    if kind == _DICT:
        children = [_flatten(node[k], leaves) for k in _sorted_keys(node.keys())]
        return TreeDef(_DICT, type(node), tuple(node.keys()), children)
    children = [_flatten(child, leaves) for child in node]
    return TreeDef(kind, type(node), tuple(range(len(node))), children)


def flatten_as(treedef: TreeDef, tree: Any, name: str, reference: str) -> list:
    """The leaves of ``tree``, which must have the structure ``treedef``.

    ``name`` is the tree's name in messages, ``reference`` that of the tree
    ``treedef`` came from. Raises ``ValueError`` naming the first path where
    the two differ.
    """
    leaves: list = []
    _flatten_as(treedef, tree, name, reference, leaves)
    return leaves


def _flatten_as(treedef, node, name, reference, leaves):
    kind = _kind(node)
    same = kind == treedef.kind
    if same and kind == _DICT:
        same = set(node.keys()) == set(treedef.keys)
    elif same and kind in (_LIST, _TUPLE, _NAMEDTUPLE):
        same = len(node) == len(treedef.children) and (kind != _NAMEDTUPLE
                                                      or type(node) is treedef.node_type)
    if not same:
        raise ValueError(f"{name} is {describe(node)}, but {reference} is "
                         f"{describe_def(treedef)}: the trees must have the same structure")
    if kind == _LEAF:
        leaves.append(node)
        return
    for key, child in zip(treedef._child_keys(), treedef.children):
        _flatten_as(child, node[key], name + f"[{key!r}]", reference + f"[{key!r}]", leaves)


def unflatten(treedef: TreeDef, leaves) -> Any:
    """The tree of structure ``treedef`` holding ``leaves`` (in flattening order)."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"the tree has {treedef.num_leaves} leaves, got {len(leaves)}")
    iterator = iter(leaves)
    return _unflatten(treedef, iterator)


def _unflatten(treedef, leaves):
    kind = treedef.kind
    if kind == _LEAF:
        return next(leaves)
    if kind == _NONE:
        return None
    children = [_unflatten(child, leaves) for child in treedef.children]
    if kind == _DICT:
        by_key = dict(zip(treedef._child_keys(), children))
        pairs = [(k, by_key[k]) for k in treedef.keys]     # the dict's own key order
        try:
            return treedef.node_type(pairs)
        except TypeError:      # a dict subclass without the plain constructor
            return dict(pairs)
    if kind == _NAMEDTUPLE:
        return treedef.node_type(*children)
    if kind == _TUPLE:
        try:
            return treedef.node_type(children)
        except TypeError:
            return tuple(children)
    return children if treedef.node_type is list else _rebuild_list(treedef.node_type, children)


def _rebuild_list(node_type, children):
    try:
        return node_type(children)
    except TypeError:
        return list(children)


def _library_of(leaf, path, expected):
    """The namespace of ``leaf``; TypeError naming ``path`` for a non-array or for an
    array of another library than ``expected`` = ``(xp, path of its first array)``."""
    if not is_array_api_obj(leaf) or type(leaf) in (bool, int, float, complex):
        raise TypeError(f"{path} is {describe(leaf)}, not an array: the leaves of a tree must "
                        "be arrays of one array library (numpy, jax.numpy, torch, cupy, "
                        "array_api_strict)")
    xp = array_namespace(leaf)
    if expected is not None and _library(xp) != _library(expected[0]):
        raise TypeError(f"{path} is a {_library(xp)} array, {expected[1]} a "
                        f"{_library(expected[0])} one: use one array library per call")
    return xp


def namespace_of_trees(*named_leaves) -> Any:
    """The one array namespace of every leaf of the given trees.

    Each argument is ``(leaves, paths)``; every leaf must be an array and all
    must come from one library, else ``TypeError`` naming the first path
    that differs. None when there are no leaves at all.
    """
    expected = None
    for leaves, paths in named_leaves:
        for leaf, path in zip(leaves, paths):
            xp = _library_of(leaf, path, expected)
            if expected is None:
                expected = (xp, path)
    return None if expected is None else expected[0]


def state_arrays(state: Any, name: str = "state") -> tuple[list, list]:
    """Every array inside a plain-data state (dicts, lists, tuples, scalars, strings,
    None), with its path: ``(arrays, paths)``."""
    arrays, paths = [], []
    stack = [(state, name)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            stack.extend((node[k], path + f"[{k!r}]") for k in reversed(_sorted_keys(node)))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, path + f"[{i!r}]") for i, child in reversed(list(enumerate(node))))
        elif is_array_api_obj(node) and type(node) not in (bool, int, float, complex):
            arrays.append(node)
            paths.append(path)
    return arrays, paths
