"""Iterative linear solvers: PCG, SOR/SSOR, preconditioners, sketching, sketched Newton."""

from cext.threads import get_num_threads, num_threads, set_num_threads

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
           "SorMatrix", "as_operator", "constrained_problem", "get_num_threads", "num_threads",
           "pcg", "precond", "set_num_threads", "sketch_solve", "sketched_newton", "sor",
           "young_omega"]

from cext._version import __version__  # noqa: E402  (after __all__: not part of it)
