"""Copying optimiser state in and out of ``state_dict``: one rule for every object."""

from __future__ import annotations


def copy_array(xp, array):
    """A fresh copy of ``array`` in namespace ``xp``, or None for None."""
    return None if array is None else xp.asarray(array, copy=True)


def copy_arrays(xp, arrays):
    """Fresh copies of a list of arrays, or None for None."""
    return None if arrays is None else [xp.asarray(a, copy=True) for a in arrays]
