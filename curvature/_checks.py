"""Input checks shared by the curvature objects and the minimizers."""

from __future__ import annotations

import contextlib
import math

import numpy as np
from array_api_compat import array_namespace

from linsolve.validation.inputs import as_int


def check_positive_int(name: str, value) -> int:
    """``value`` as an int >= 1: TypeError for non-integers (bools included), else ValueError."""
    value = as_int(name, value)
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


def refuse_complex(xp, x, name: str):
    """TypeError for a complex array: the curvature objects are real, and a cast would
    silently drop the imaginary part."""
    if xp.isdtype(x.dtype, "complex floating"):
        raise TypeError(f"{name} is complex (dtype {x.dtype}); the curvature objects are "
                        "real: pass the real part or a real gradient explicitly")
    return x


def check_square_summable(xp, x, name: str, owner: str, dtype=None) -> None:
    """ValueError when ``sum(x**2)`` of a finite ``x`` overflows ``dtype`` (default x's).

    The second-moment statistics (Gram matrices, Kronecker factors, Adam's
    second moment) hold ``x x'``; their trace is ``sum(x**2)``, which bounds
    every entry. Evaluated as ``s**2 * sum((x/s)**2)`` with ``s = max|x|`` so
    that the check itself cannot overflow. Half the dtype's largest value is
    the limit: the moving averages and sums built from it add a rounding.

    Examples
    --------
    >>> import numpy as np
    >>> xp = namespace_of(np.zeros(1), "x")
    >>> check_square_summable(xp, np.full(4, 1e150), "g", "MFAC")
    >>> check_square_summable(xp, np.full(4, 1e155), "g", "MFAC")
    Traceback (most recent call last):
    ...
    ValueError: MFAC: sum(g**2) overflows float64 (max|g| = 1e+155): the statistics built from g would be Inf or NaN (the state is unchanged); scale the loss or the inputs down
    """
    dtype = x.dtype if dtype is None else dtype
    scale = float(xp.max(xp.abs(x))) if all(x.shape) else 0.0
    if scale == 0.0:
        return
    total = scale * scale * float(xp.sum((x / scale) ** 2))
    if not total <= float(xp.finfo(dtype).max) / 2:
        kind = "float64" if dtype == xp.float64 else str(dtype)
        raise ValueError(f"{owner}: sum({name}**2) overflows {kind} (max|{name}| = {scale:.3g}): the "
                         f"statistics built from {name} would be Inf or NaN (the state is "
                         "unchanged); scale the loss or the inputs down")


def check_finite_statistics(xp, arrays, what: str, owner: str) -> None:
    """ValueError when statistics computed from finite input are not finite (they overflowed)."""
    for array in arrays:
        if array is not None and not bool(xp.all(xp.isfinite(array))):
            raise ValueError(f"{owner}: {what} overflowed to Inf or NaN from finite input (the "
                             "state is unchanged); scale the loss or the inputs down")


@contextlib.contextmanager
def linalg_failure(owner: str, what: str = "eigendecomposition"):
    """Re-raise a LinAlgError (NumPy's; CuPy raises the same class) as a ValueError that
    names ``owner`` and the likely cause."""
    try:
        yield
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"{owner}: the {what} failed ({exc}); its statistics are likely "
                         "non-finite or overflowing: scale the loss or the inputs down, or "
                         "use float64") from exc


def linear_without_overflow(xp, apply, v, owner: str):
    """``apply(v)`` for a linear ``apply``; if that overflowed for a finite ``v``,
    ``2**e apply(v / 2**e)`` with ``2**e ~ max|v|`` (intermediate products such as
    ``G v`` can overflow where the result does not). The power-of-two scaling is
    exact, and results that did not overflow are returned untouched (the retry
    costs one more application, only then). ValueError naming ``owner`` when the
    result itself overflows; a non-finite ``v`` gives ``apply(v)`` as it is.
    """
    x = apply(v)
    if bool(xp.all(xp.isfinite(x))) or not bool(xp.all(xp.isfinite(v))):
        return x
    _, exponent = math.frexp(float(xp.max(xp.abs(v))))
    x = apply(v * 2.0 ** -exponent) * 2.0 ** exponent
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{owner}: the result overflows {x.dtype} (max|v| ~ 2**{exponent} "
                         "against the curvature's scale); scale the input down")
    return x
