"""Input checks shared by the curvature objects and the minimizers."""

from __future__ import annotations

import operator

from array_api_compat import array_namespace


def check_positive_int(name: str, value) -> int:
    """``value`` as an int >= 1: TypeError for non-integers (bools included), else ValueError."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _library(xp) -> str:
    # array_api_compat.numpy and numpy are the same library (a caller may hold either)
    return xp.__name__.removeprefix("array_api_compat.")


def namespace_of(x, name: str, expected=None, owner: str = "this object"):
    """The array namespace of ``x``; TypeError for a non-array, or for an array of
    another library than ``expected`` (the namespace ``owner`` holds).

    Examples
    --------
    >>> import numpy as np
    >>> namespace_of(np.zeros(2), "v").__name__
    'array_api_compat.numpy'
    """
    try:
        xp = array_namespace(x)
    except TypeError:
        where = "" if expected is None else f" of {owner}'s library ({expected.__name__})"
        raise TypeError(f"{name} must be an array{where}, got {type(x).__name__}") from None
    if expected is not None and _library(xp) != _library(expected):
        raise TypeError(f"{name} is a {xp.__name__} array, {owner} a {expected.__name__} "
                        f"one: use one array library for both ({owner}'s library)")
    return xp
