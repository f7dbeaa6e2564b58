"""Input checks shared by the solvers: misuse raises at once, naming the fix."""

from __future__ import annotations

import functools
import math
import numbers
import operator

from array_api_compat import array_namespace, is_array_api_obj

from ..core.operators import operator_dtype

_LEGACY = {
    "tol": "use rtol= (scipy renamed tol to rtol in 1.12; the stopping rule is "
           "||r|| <= max(rtol*||b||, atol))",
}


def reject_unknown_keywords(func: str, kwargs: dict) -> None:
    """Raise TypeError for keywords ``func`` does not take, with a hint for old ones."""
    for key in kwargs:
        hint = _LEGACY.get(key, "see the docstring for the accepted keywords")
        raise TypeError(f"{func}() got an unexpected keyword argument {key!r}: {hint}")


def check_nonnegative(name: str, value) -> float:
    """``value`` as a float, or ValueError if it is not a real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number >= 0, got {value!r}")
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a real number >= 0, got {value!r}")
    return value


def dtype_name(dtype) -> str:
    """``"float64"`` for NumPy's, CuPy's or torch's float64 alike.

    Dtypes are classified by name: ``A``'s dtype may come from another
    library (a scipy matrix in a CuPy call), whose dtype objects
    ``xp.isdtype`` must not compare.
    """
    try:
        # keyed by type first: equal hashes of two libraries' dtypes are then told
        # apart without comparing them (array_api_strict warns on such comparisons)
        return _dtype_name(type(dtype), dtype)
    except TypeError:  # an unhashable dtype-like
        return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]


@functools.lru_cache(maxsize=128)
def _dtype_name(kind, dtype) -> str:
    # memoised: NumPy builds a dtype's name anew on every access (a few
    # microseconds), and every solve asks for several
    return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]


def as_int(name: str, value) -> int:
    """``value`` as an int; TypeError naming ``name`` for non-integers (bools included).

    Examples
    --------
    >>> as_int("step", 3)
    3
    >>> as_int("step", 2.0)
    Traceback (most recent call last):
    ...
    TypeError: step must be an int, got float
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def check_maxiter(maxiter, default: int, *, minimum: int = 0) -> int:
    """``maxiter`` as an int (``default`` for None), or ValueError.

    Examples
    --------
    >>> check_maxiter(None, 50), check_maxiter(3, 50)
    (50, 3)
    """
    if maxiter is None:
        return default
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < minimum:
        raise ValueError(f"maxiter must be an integer >= {minimum} or None, got {maxiter!r}")
    return int(maxiter)


def check_period(name: str, value, *, optional: bool = False) -> int | None:
    """``value`` as a positive int (None passes where ``optional``), or ValueError naming ``name``.

    Examples
    --------
    >>> check_period("check_every", 4), check_period("check_every", None, optional=True)
    (4, None)
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        kinds = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"{name} must be {kinds}, got {value!r}")
    return int(value)


def check_omega(omega) -> float:
    """SOR's relaxation factor as a float in (0, 2), or ValueError.

    Examples
    --------
    >>> check_omega(1)
    1.0
    """
    if isinstance(omega, bool) or not isinstance(omega, numbers.Real) \
            or not 0.0 < float(omega) < 2.0:
        raise ValueError(f"omega must be a real number in (0, 2), got {omega!r}")
    return float(omega)


def working_dtype(xp, b, *operators, allow_complex: bool = False):
    """Floating dtype for the solve: single precision only if everything is.

    Integer and boolean inputs are promoted to float64 (scipy does the same).
    Complex input is refused unless ``allow_complex`` (:func:`linsolve.pcg`):
    then any complex input makes the solve complex, complex64 only if every
    input is float32 or complex64 (scipy's ``cg`` promotes the same way).
    """
    candidates = [b.dtype] + [operator_dtype(op) for op in operators if operator_dtype(op) is not None]
    single, is_complex = True, False
    for dt in candidates:
        # the backend mismatch itself is reported by as_operator
        name = dtype_name(dt)
        if "complex" in name:
            if not allow_complex:
                raise TypeError(f"complex dtype {dt} is not supported; the solvers are real")
            is_complex = True
        if name not in ("float32", "complex64"):
            single = False
    if is_complex:
        return xp.complex64 if single else xp.complex128
    return xp.float32 if single else xp.float64


def check_real_numeric(name: str, dtype, *, allow_complex: bool = False) -> None:
    """TypeError unless ``dtype`` is boolean, integer or real floating, naming the fix.

    Object and string arrays would otherwise fail deep inside NumPy or
    scipy (or, for object arrays, be solved in slow, silent Python
    arithmetic); complex ones would lose their imaginary part.

    Examples
    --------
    >>> import numpy as np
    >>> check_real_numeric("b", np.dtype(np.float16))
    >>> check_real_numeric("b", np.dtype(object))
    Traceback (most recent call last):
    ...
    TypeError: b has dtype object; it must be a real numeric array: convert it with numpy.asarray(b, dtype=float)
    """
    kind = getattr(dtype, "kind", None)  # NumPy and CuPy dtypes; array-API ones are numeric
    if kind == "c" and allow_complex:
        return
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {dtype}; the solvers are real")
    if kind is not None and kind not in "biuf":
        raise TypeError(f"{name} has dtype {dtype}; it must be a real numeric array: convert it "
                        f"with numpy.asarray({name}, dtype=float)")


def _is_numpy_matrix(a) -> bool:
    """True for ``numpy.matrix`` (checked by type name: numpy is not imported for it)."""
    return any(c.__name__ == "matrix" and c.__module__.startswith("numpy") for c in type(a).__mro__)


def as_rhs(b, name: str = "b", *, allow_complex: bool = False):
    """Return ``(xp, b)`` with ``b`` 1-D; accepts shape ``(n,)`` or ``(n, 1)``.

    Lists and other array-likes (and ``numpy.matrix``) become NumPy arrays.
    """
    if isinstance(b, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a {type(b).__name__}")
    if not is_array_api_obj(b) or _is_numpy_matrix(b):
        import numpy as np

        b = np.asarray(b)
    check_real_numeric(name, b.dtype, allow_complex=allow_complex)
    xp = array_namespace(b)
    if b.ndim == 2 and b.shape[1] == 1:
        b = xp.reshape(b, (b.shape[0],))
    if b.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1), got {b.shape}")
    return xp, b


def is_batch(b) -> bool:
    """Whether ``b`` holds several systems: shape ``(..., n)`` beyond ``(n,)`` and ``(n, 1)``.

    A column ``(n, 1)`` stays one system, as scipy ravels it; ``(1, n)`` is a
    batch of one.

    Examples
    --------
    >>> import numpy as np
    >>> is_batch(np.ones(3)), is_batch(np.ones((3, 1))), is_batch(np.ones((1, 3)))
    (False, False, True)
    """
    shape = getattr(b, "shape", None)
    if shape is None and not isinstance(b, (str, bytes)):
        try:
            import numpy as np

            shape = np.shape(b)
        except (TypeError, ValueError):
            return False
    if shape is None or len(shape) < 2:
        return False
    return not (len(shape) == 2 and shape[1] == 1)


def as_rhs_block(B, name: str = "b", *, allow_complex: bool = False):
    """``(xp, B, shape)``: ``B`` of shape ``(..., n)`` as a ``(k, n)`` array and its leading shape."""
    if not is_array_api_obj(B) or _is_numpy_matrix(B):
        import numpy as np

        B = np.asarray(B)
    check_real_numeric(name, B.dtype, allow_complex=allow_complex)
    xp = array_namespace(B)
    shape = tuple(B.shape[:-1])
    count = math.prod(shape)
    if count == 0:
        raise ValueError(f"{name} of shape {B.shape} holds no system")
    return xp, xp.reshape(B, (count, B.shape[-1])), shape


def as_initial_block(x0, xp, block_shape, shape, dtype):
    """``x0`` for a batch: None (zeros), or an array of ``B``'s shape, as a fresh ``(k, n)`` copy."""
    if x0 is None:
        return xp.zeros(block_shape, dtype=dtype)
    if not is_array_api_obj(x0) and "numpy" in xp.__name__:
        import numpy as np

        x0 = xp.asarray(np.asarray(x0))
    if not is_array_api_obj(x0) or array_namespace(x0).__name__ != xp.__name__:
        raise TypeError(f"x0 must be an array of the same namespace as b ({xp.__name__})")
    expected = tuple(shape) + (block_shape[1],)
    if tuple(x0.shape) != expected:
        raise ValueError(f"x0 has shape {tuple(x0.shape)}, expected b's shape {expected}")
    return xp.astype(xp.reshape(x0, block_shape), dtype, copy=True)


def per_system_tolerance(name: str, value, shape):
    """``rtol``/``atol`` of a batch: a scalar or an array broadcast to ``shape``, flattened.

    Examples
    --------
    >>> per_system_tolerance("rtol", [1e-6, 1e-8], (2,)).tolist()
    [1e-06, 1e-08]
    """
    import numpy as np

    try:
        values = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0 or an array of them broadcastable to "
                         f"the batch shape {shape}, got {value!r}") from None
    if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
        raise ValueError(f"{name} must be finite and >= 0 for every system, got {value!r}")
    return values.reshape(-1).copy()


def as_initial_guess(x0, xp, n: int, dtype):
    """A fresh working copy of ``x0`` (never aliases the user's array)."""
    if x0 is None:
        return xp.zeros(n, dtype=dtype)
    if not is_array_api_obj(x0) or _is_numpy_matrix(x0):
        if "numpy" in xp.__name__ and not isinstance(x0, (str, bytes)):
            import numpy as np

            x0 = xp.asarray(np.asarray(x0))  # lists and other array-likes, as scipy
    if not is_array_api_obj(x0) or array_namespace(x0).__name__ != xp.__name__:
        raise TypeError(f"x0 must be an array of the same namespace as b ({xp.__name__})")
    if x0.shape not in ((n,), (n, 1)):
        raise ValueError(f"x0 has shape {x0.shape}, expected ({n},)")
    return xp.astype(xp.reshape(x0, (n,)), dtype, copy=True)
