"""Krylov subspace methods, each its recurrence over the solver core."""

from .pcg import pcg

__all__ = ["pcg"]
