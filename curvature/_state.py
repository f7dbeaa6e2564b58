"""Copying optimiser state in and out of ``state_dict``: one rule for every object."""

from __future__ import annotations

# The check before a load is shared with linsolve's omega tuners: one gate, defined there.
from linsolve.validation.state import (Array, Arrays, Choice, Count, Equal, ListOf, Nested,  # noqa: F401
                             Real, Table, Where, check_state, dtype_name, restoring)


def copy_array(xp, array):
    """A fresh copy of ``array`` in namespace ``xp``, or None for None."""
    return None if array is None else xp.asarray(array, copy=True)


def copy_arrays(xp, arrays):
    """Fresh copies of a list of arrays (None entries kept: SOAP's unrotated modes),
    or None for None."""
    return None if arrays is None else [copy_array(xp, a) for a in arrays]
