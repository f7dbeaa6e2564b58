"""Iterative linear solvers: PCG, SOR/SSOR, preconditioners, sketching, sketched Newton."""

from . import precond
from .constrained import ConstrainedProblem, constrained_problem
from .omega import OmegaBandit, OmegaContextualBandit, young_omega
from .operators import Operator, as_operator
from .pcg import pcg
from .result import MINIMIZE_REASONS, REASONS, HistoryRecorder, MinimizeResult, SolveResult
from .sketch import sketch_solve
from .sketched_newton import sketched_newton
from .sor import SorMatrix, sor

__all__ = ["ConstrainedProblem", "HistoryRecorder", "MINIMIZE_REASONS", "MinimizeResult",
           "OmegaBandit", "OmegaContextualBandit", "Operator", "REASONS", "SolveResult",
           "SorMatrix", "as_operator", "constrained_problem", "pcg", "precond", "sketch_solve",
           "sketched_newton", "sor", "young_omega"]
