"""Krylov subspace methods, each its recurrence over the solver core."""

from .block_cg import block_cg
from .pcg import pcg

__all__ = ["block_cg", "pcg"]
