"""The one gate every ``load_state_dict`` goes through: check the whole state, then load.

A class describes its state once, as a *spec*: a dict from key to an entry
below (``Equal``, ``Count``, ``Real``, ``Choice``, ``Array``, ``Arrays``,
``Nested``, ``ListOf``, ``Table``, ``GeneratorState``, ``Where``).
:func:`check_state` checks a candidate state against it -- a mapping, exactly
these keys, every entry as described, arrays of one namespace and one dtype
-- and raises before anything is assigned: ``TypeError`` for a wrong type,
``ValueError`` otherwise, each naming the key and what was expected.
:func:`restoring` puts an object's attributes back if the assignments that
follow still fail (e.g. a singular factor found while recomputing an inverse).

Lives in ``linsolve`` because the omega tuners use it too; ``curvature``
re-exports it from ``curvature._state`` (imports stay one-way).

Examples
--------
>>> import numpy as np
>>> spec = {"step": Count(), "v": Array((2,))}
>>> check_state({"step": 1, "v": np.zeros(2)}, spec, "Demo")
>>> check_state({"step": -1, "v": np.zeros(2)}, spec, "Demo")
Traceback (most recent call last):
...
ValueError: Demo state: state['step'] must be an int >= 0, got -1
>>> check_state({"step": 1, "v": np.full(2, np.nan)}, spec, "Demo")
Traceback (most recent call last):
...
ValueError: Demo state: state['v'] must be finite (no NaN or Inf)
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from .inputs import as_int, dtype_name

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def plain(obj):
    # tuples as lists, NumPy scalars as Python numbers: the form a state compares in
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _same(a, b) -> bool:
    a, b = plain(a), plain(b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b) and type(a == b) is bool
    except Exception:  # an array compared with a scalar, say
        return False


@dataclass
class _Seen:
    """What one check has met so far: the arrays' namespace and dtype, presence groups."""

    array: tuple | None = None  # (name, namespace, dtype) of the first array
    groups: dict = field(default_factory=dict)


# --- entries ---------------------------------------------------------------------
@dataclass(frozen=True)
class Equal:
    """A configuration entry: must equal ``value`` (this object's own)."""

    value: Any
    hint: str = ""

    def __call__(self, name, value, seen):
        if not _same(value, self.value):
            raise ValueError(f"{name} must be {plain(self.value)!r} (this object's "
                             f"configuration), got {value!r}{self.hint}")


@dataclass(frozen=True)
class Count:
    """A counter: an int (not a bool) in ``[minimum, maximum]``."""

    minimum: int = 0
    maximum: int | None = None

    def __call__(self, name, value, seen):
        value = as_int(name, value)
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            upper = "" if self.maximum is None else f" and <= {self.maximum}"
            raise ValueError(f"{name} must be an int >= {self.minimum}{upper}, got {value}")


@dataclass(frozen=True)
class Real:
    """A finite real number (not a bool), ``>= minimum`` or ``> 0`` when ``positive``."""

    minimum: float | None = None
    positive: bool = False

    def __call__(self, name, value, seen):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if self.positive and not value > 0.0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{name} must be >= {self.minimum}, got {value!r}")


@dataclass(frozen=True)
class Choice:
    """One of a closed set of values (exact type: ``True`` is not ``1``)."""

    values: tuple

    def __call__(self, name, value, seen):
        if not any(_same(value, v) for v in self.values):
            raise ValueError(f"{name} must be one of {list(self.values)!r}, got {value!r}")


@dataclass(frozen=True)
class Array:
    """A finite real array of ``shape``.

    ``dtype`` None: any real floating dtype, the same for every such array
    of the state, and one array namespace for all. ``dtype`` a name
    (``"float64"``): exactly that dtype. ``json``: nested lists of numbers
    (the omega tuners' JSON states) instead of an array object.
    ``optional``: None is allowed; ``together`` names a group whose entries
    must be all None or all present.
    """

    shape: tuple
    dtype: str | None = None
    optional: bool = False
    together: str | None = None
    json: bool = False

    def __call__(self, name, value, seen):
        if self.together is not None:
            seen.groups.setdefault(self.together, []).append((name, value is not None))
        if value is None:
            if self.optional:
                return
            raise TypeError(f"{name} must be an array of shape {self.shape}, got None")
        if self.json:
            return self._check_json(name, value)
        if not is_array_api_obj(value) or isinstance(value, (bool, numbers.Number)):
            raise TypeError(f"{name} must be an array of shape {self.shape}, "
                            f"got {type(value).__name__}")
        xp = array_namespace(value)
        if tuple(value.shape) != tuple(self.shape):
            raise ValueError(f"{name} must have shape {tuple(self.shape)}, "
                             f"got {tuple(value.shape)}")
        if self.dtype is not None:
            if dtype_name(value.dtype) != self.dtype:
                raise TypeError(f"{name} must have dtype {self.dtype}, "
                                f"got {dtype_name(value.dtype)}")
        else:
            if not xp.isdtype(value.dtype, "real floating"):
                raise TypeError(f"{name} must have a real floating dtype, "
                                f"got {dtype_name(value.dtype)}")
            if seen.array is None:
                seen.array = (name, xp, value.dtype)
            else:
                first, first_xp, first_dtype = seen.array
                if xp is not first_xp or value.dtype != first_dtype:
                    raise TypeError(f"{name} is a {xp.__name__} {dtype_name(value.dtype)} "
                                    f"array, {first} a {first_xp.__name__} "
                                    f"{dtype_name(first_dtype)} one: a state holds one kind")
        if not bool(xp.all(xp.isfinite(value))):
            raise ValueError(f"{name} must be finite (no NaN or Inf)")

    def _check_json(self, name, value):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of numbers of shape {self.shape}, "
                            f"got {type(value).__name__}")
        leaves, stack = [], [value]
        while stack:  # plain numbers only: no bools, no arrays nested in the lists
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack.extend(item)
            else:
                leaves.append(item)
        if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in leaves):
            raise TypeError(f"{name} must hold real numbers only (nested lists of floats)")
        try:
            array = np.asarray(value, dtype=np.float64)
        except ValueError:  # ragged
            raise ValueError(f"{name} must be a list of numbers of shape {self.shape}, "
                             "got a ragged list") from None
        if array.shape != tuple(self.shape):
            raise ValueError(f"{name} must have shape {tuple(self.shape)}, got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite (no NaN or Inf)")


@dataclass(frozen=True)
class Arrays:
    """A list of arrays, one per entry of ``shapes``; a None shape means a None entry.

    The list itself may be None when ``optional``.
    """

    shapes: tuple
    optional: bool = True
    together: str | None = None

    def __call__(self, name, value, seen):
        if self.together is not None:
            seen.groups.setdefault(self.together, []).append((name, value is not None))
        if value is None and self.optional:
            return
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of {len(self.shapes)} arrays, "
                            f"got {type(value).__name__}")
        if len(value) != len(self.shapes):
            raise ValueError(f"{name} must hold {len(self.shapes)} arrays, got {len(value)}")
        for i, (shape, item) in enumerate(zip(self.shapes, value)):
            if shape is None:
                if item is not None:
                    raise ValueError(f"{name}[{i}] must be None (this mode is not kept)")
            else:
                Array(shape)(f"{name}[{i}]", item, seen)


@dataclass(frozen=True)
class Nested:
    """A mapping checked against its own spec (same namespace and dtype rule)."""

    spec: Mapping

    def __call__(self, name, value, seen):
        _check_mapping(value, self.spec, name, seen)


@dataclass(frozen=True)
class ListOf:
    """A list whose items all pass ``entry``; of exactly ``length`` items, or at most
    ``max_length``, when given."""

    entry: Callable
    length: int | None = None
    max_length: int | None = None

    def __call__(self, name, value, seen):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
        if self.length is not None and len(value) != self.length:
            raise ValueError(f"{name} must hold {self.length} items, got {len(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise ValueError(f"{name} must hold at most {self.max_length} items, got {len(value)}")
        for i, item in enumerate(value):
            self.entry(f"{name}[{i}]", item, seen)


@dataclass(frozen=True)
class Table:
    """A mapping from int keys (or their strings, after JSON) to states with their own specs."""

    specs: Mapping  # int -> spec
    what: str = "keys"
    hint: str = ""

    def __call__(self, name, value, seen):
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")
        try:
            keys = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} keys must be ints, got {list(value)!r}") from None
        if keys != sorted(self.specs) or len(keys) != len(value):
            raise ValueError(f"{name} holds {self.what} {keys}, expected {self.what} "
                             f"{sorted(self.specs)}{self.hint}")
        for k, item in value.items():
            _check_mapping(item, self.specs[int(k)], f"{name}[{k!r}]", _Seen())


@dataclass(frozen=True)
class GeneratorState:
    """``{"bit_generator": name, "state": dict}``: NumPy's state of a known bit generator."""

    def __call__(self, name, value, seen):
        _check_mapping(value, {"bit_generator": Choice(_BIT_GENERATORS), "state": _any}, name,
                       seen)
        if not isinstance(value["state"], Mapping):
            raise TypeError(f"{name}['state'] must be a mapping, got "
                            f"{type(value['state']).__name__}")
        scratch = getattr(np.random, value["bit_generator"])()
        try:  # numpy checks the state when it is set: on a scratch generator
            scratch.state = dict(value["state"])
        except Exception as exc:
            raise ValueError(f"{name}['state'] is not a {value['bit_generator']} state: "
                             f"{exc}") from None
        if not _same(scratch.state, value["state"]):  # numpy ignores unknown keys
            raise ValueError(f"{name}['state'] is not exactly a {value['bit_generator']} "
                             f"state (keys {sorted(scratch.state)})")


@dataclass(frozen=True)
class Where:
    """``check(value)`` is True; else ValueError "must be ``expected``"."""

    check: Callable
    expected: str

    def __call__(self, name, value, seen):
        try:
            ok = bool(self.check(value))
        except Exception:
            ok = False
        if not ok:
            raise ValueError(f"{name} must be {self.expected}, got {value!r}")


def _any(name, value, seen):
    pass


# --- the gate --------------------------------------------------------------------
def _check_mapping(state, spec, name, seen):
    if not isinstance(state, Mapping):
        raise TypeError(f"{name} must be a mapping (a state_dict()), got {type(state).__name__}")
    missing = [k for k in spec if k not in state]
    if missing:
        raise ValueError(f"{name} is missing key(s) {missing}; expected keys {list(spec)}")
    unknown = [k for k in state if k not in spec]
    if unknown:
        raise ValueError(f"{name} has unknown key(s) {unknown!r}; expected keys {list(spec)}")
    for key, entry in spec.items():
        entry(f"{name}[{key!r}]", state[key], seen)


def check_state(state: Any, spec: Mapping, owner: str) -> None:
    """Raise unless ``state`` is a complete, valid state for ``spec``; assigns nothing.

    ``owner`` (the class name) starts every message.
    """
    seen = _Seen()
    try:
        _check_mapping(state, spec, "state", seen)
        for group, members in seen.groups.items():
            if len({present for _, present in members}) > 1:
                names = ", ".join(n for n, _ in members)
                raise ValueError(f"{names} must all be None or all be present "
                                 f"({group}), got {[p for _, p in members]}")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{owner} state: {exc}") from None


@contextlib.contextmanager
def restoring(obj):
    """Put every attribute of ``obj`` back if the block raises (loads rebind, never mutate)."""
    saved = dict(vars(obj))
    try:
        yield
    except BaseException:
        vars(obj).clear()
        vars(obj).update(saved)
        raise
