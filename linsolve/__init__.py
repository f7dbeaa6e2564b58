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


def _installed_version() -> str:
    """The installed distribution's version; "0+unknown" in a tree never installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("curvature-linsolve")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()
