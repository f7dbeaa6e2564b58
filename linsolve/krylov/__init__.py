"""Krylov subspace methods, each its recurrence over the solver core."""

from .bicgstab import bicgstab
from .block_cg import block_cg
from .gmres import fgmres, gmres
from .minres import minres
from .pcg import pcg

__all__ = ["bicgstab", "block_cg", "fgmres", "gmres", "minres", "pcg"]
