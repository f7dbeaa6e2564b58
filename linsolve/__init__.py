"""Iterative linear solvers: PCG, SOR/SSOR, preconditioners (sketching to come)."""

from . import precond
from .omega import OmegaBandit, OmegaContextualBandit, young_omega
from .operators import Operator, as_operator
from .pcg import pcg
from .result import REASONS, SolveResult
from .sor import SorMatrix, sor

__all__ = ["OmegaBandit", "OmegaContextualBandit", "REASONS", "Operator", "SolveResult", "as_operator", "pcg", "precond", "sor", "SorMatrix", "young_omega"]
