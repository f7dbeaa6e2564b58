"""Input checks shared by the curvature objects and the minimizers."""

from __future__ import annotations

import contextlib
import math

import numpy as np
from array_api_compat import (array_namespace, is_array_api_strict_namespace, is_jax_array,
                              is_lazy_array, is_numpy_array, is_torch_array)

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
        where = ("" if expected is None else
                 f" of {owner}'s library ({_library(expected)})")
        convert = "numpy" if expected is None else _library(expected)
        raise TypeError(f"{name} must be an array{where}, got {type(x).__name__}: convert it "
                        f"with {convert}.asarray({name}, dtype={convert}.float64) "
                        "(or float32)") from None
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


def all_finite(xp, x) -> bool:
    """True when every entry of ``x`` is finite, in one fused reduction.

    A sum over ``x`` is finite only if every entry is (NaN and Inf propagate);
    one that overflows from finite entries is the one false alarm, settled by
    the exact elementwise test, which is paid only then. NumPy sums the
    squares, ``vdot(x, x)``: one BLAS pass that raises no floating-point
    warnings and, its terms being non-negative, meets no ``Inf - Inf``
    (2-3 us at 4096 entries, against 10 for ``all(isfinite(x))``); other
    namespaces take ``sum(x)``.

    Examples
    --------
    >>> import numpy as np
    >>> xp = namespace_of(np.zeros(1), "x")
    >>> all_finite(xp, np.array([1e308, 1e308])), all_finite(xp, np.array([1.0, np.nan]))
    (True, False)
    """
    if isinstance(x, np.ndarray):
        total = float(np.vdot(x, x)) if x.dtype.kind == "f" else float(np.sum(x))
    else:
        total = float(xp.sum(x))
    if math.isfinite(total):
        return True
    return bool(xp.all(xp.isfinite(x)))


def check_finite_switch(value):
    """The ``check_finite`` argument of the curvature objects: True, False or None.

    None (the default) checks host arrays and leaves device arrays alone
    (see :func:`finite_apply`).
    """
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"check_finite must be True, False or None (check host arrays only, the "
                    f"default), got {value!r}")


def on_host(x) -> bool:
    """True for arrays whose values Python can read without waiting on a device.

    NumPy (memmaps included), array-api-strict, torch on the CPU and concrete
    JAX arrays on the CPU. CuPy, torch CUDA and JAX on an accelerator are not
    (reading a value there blocks until the device has finished its queue),
    and neither are traced JAX values (inside ``jit`` there is no value to read)
    or other lazy arrays.
    """
    if type(x) is np.ndarray or is_numpy_array(x):    # the common case in 0.1 us, not 1
        return True
    if is_jax_array(x):
        import jax

        if isinstance(x, jax.core.Tracer):
            return False
        return all(device.platform == "cpu" for device in x.devices())
    if is_torch_array(x):
        return x.device.type == "cpu"
    if is_lazy_array(x):
        return False
    try:
        return is_array_api_strict_namespace(array_namespace(x))
    except TypeError:
        return False


def finite_apply(xp, apply, v, name: str, owner: str, check_finite=None):
    """``apply(v)`` for a linear ``apply``, under the curvature objects' NaN/Inf contract.

    With checking on (``check_finite=True``, or None and ``v`` on the host):

    * NaN or Inf in ``v`` raises a ValueError naming ``owner``, ``name`` and
      the count of bad entries;
    * a non-finite result from a finite ``v`` (an overflow) is retried once
      on ``v`` scaled by a power of two and raises if it still overflows
      (:func:`linear_without_overflow`).

    The common case costs one fused reduction over the result
    (:func:`all_finite`), not one over ``v`` and one over the result: the
    curvature operators are invertible, so every entry of ``v`` enters some
    entry of the result with a non-zero coefficient, and in IEEE arithmetic
    ``NaN * a`` is NaN and ``Inf * a`` infinite for ``a != 0`` (no BLAS skips
    a non-zero coefficient): NaN or Inf in ``v`` always reach the result.
    Only a non-finite result is traced back to ``v``.

    With checking off (``check_finite=False``, or None and ``v`` on a device:
    CuPy, torch CUDA, JAX on an accelerator or traced), ``apply(v)`` is
    returned as it is: NaN or Inf in ``v`` come out as NaN or Inf in the
    result and an overflow is not retried. Checking a device array means
    copying a flag to the host, a synchronisation per call that stalls the
    device's queue; pass ``check_finite=True`` to pay it, or test the loss
    once per step.

    Examples
    --------
    >>> import numpy as np
    >>> xp = namespace_of(np.zeros(1), "v")
    >>> finite_apply(xp, lambda v: 2 * v, np.array([1.0, np.inf, 3.0]), "v", "Op.solve")
    Traceback (most recent call last):
    ...
    ValueError: Op.solve: v contains NaN or Inf (1 of 3 entries); the curvature objects need finite input: find the step that produced it (a loss or gradient that overflowed, a learning rate too large), or pass check_finite=False to let NaN through to the result
    """
    if not checks_finite(check_finite, v):
        return apply(v)
    x = apply(v)
    if all_finite(xp, x):
        return x
    refuse_nonfinite(xp, v, name, owner)
    return _rescaled(xp, apply, v, owner)


def checks_finite(check_finite, x) -> bool:
    """Whether the ``check_finite`` switch (True, False, None) checks ``x``: None checks
    host arrays only (see :func:`finite_apply`)."""
    return on_host(x) if check_finite is None else check_finite


def refuse_nonfinite(xp, x, name: str, owner: str) -> None:
    """ValueError naming ``owner``, ``name`` and the count of NaN/Inf entries, if any."""
    if all_finite(xp, x):
        return
    bad = int(xp.sum(xp.astype(~xp.isfinite(x), xp.int64)))
    size = math.prod(x.shape)
    raise ValueError(f"{owner}: {name} contains NaN or Inf ({bad} of {size} entries); the "
                     "curvature objects need finite input: find the step that produced it "
                     "(a loss or gradient that overflowed, a learning rate too large), or "
                     "pass check_finite=False to let NaN through to the result")


def linear_without_overflow(xp, apply, v, owner: str):
    """``apply(v)`` for a linear ``apply``; if that overflowed for a finite ``v``,
    ``2**e apply(v / 2**e)`` with ``2**e ~ max|v|`` (see :func:`_rescaled`).
    A non-finite ``v`` gives ``apply(v)`` as it is."""
    x = apply(v)
    if all_finite(xp, x) or not all_finite(xp, v):
        return x
    return _rescaled(xp, apply, v, owner)


def _rescaled(xp, apply, v, owner: str):
    """``2**e apply(v / 2**e)`` with ``2**e ~ max|v|``, for a finite ``v`` whose
    ``apply(v)`` overflowed: intermediate products such as ``G v`` can overflow
    where the result does not. The power-of-two scaling is exact, and the retry
    costs one more application, only then. ValueError naming ``owner`` when the
    result itself overflows."""
    _, exponent = math.frexp(float(xp.max(xp.abs(v))))
    x = apply(v * 2.0 ** -exponent) * 2.0 ** exponent
    if not all_finite(xp, x):
        raise ValueError(f"{owner}: the result overflows {x.dtype} (max|v| ~ 2**{exponent} "
                         "against the curvature's scale); scale the input down")
    return x
