"""Iterative linear solvers: PCG, SOR/SSOR, preconditioners (sketching to come)."""

from . import precond
from .omega import OmegaBandit, OmegaContextualBandit, young_omega
from .operators import Operator, as_operator
from .pcg import pcg
from .result import MINIMIZE_REASONS, REASONS, HistoryRecorder, MinimizeResult, SolveResult
from .sor import SorMatrix, sor

__all__ = ["HistoryRecorder", "MINIMIZE_REASONS", "MinimizeResult", "OmegaBandit", "OmegaContextualBandit", "REASONS", "Operator", "SolveResult", "as_operator", "pcg", "precond", "sor", "SorMatrix", "young_omega"]
