"""The switch between writing in place and returning new arrays, for every reference kernel.

One gate: :func:`writes_in_place` decides, once per namespace, whether a
kernel writes its result into its argument or returns a new array, and
:func:`_store` applies that decision. The other reference modules look
both up here, so a test that turns the switch off (to run the functional
branch on a mutable namespace) does so in one place.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def writes_in_place(xp) -> bool:
    """Whether arrays of namespace ``xp`` support item assignment (decided once per namespace).

    False for JAX, whose arrays are immutable; True for NumPy, CuPy and
    ``array_api_strict``. Probed on a one-element array of ``xp`` rather
    than by name, so any other library is classified by what it does.

    Examples
    --------
    >>> import numpy as np
    >>> from array_api_compat import array_namespace
    >>> writes_in_place(array_namespace(np.zeros(1)))
    True
    """
    probe = xp.zeros((1,))
    try:
        probe[0] = 1.0
    except Exception:  # TypeError for JAX; any refusal means: build new arrays
        return False
    return True


def _store(xp, out, value):
    """The kernel's result ``value`` in ``out``'s dtype: written into ``out`` (and ``out``
    returned) where ``xp`` writes in place, else returned as a new array."""
    value = xp.astype(value, out.dtype, copy=False)
    if writes_in_place(xp):
        out[...] = value
        return out
    return value
