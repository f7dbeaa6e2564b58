"""Iterative linear solvers: PCG, preconditioners, and (to come) SOR and sketching."""

from . import precond
from .operators import Operator, as_operator
from .pcg import pcg
from .result import REASONS, SolveResult

__all__ = ["REASONS", "Operator", "SolveResult", "as_operator", "pcg", "precond"]
