"""Iterative linear solvers: Krylov methods, SOR/SSOR, preconditioners, sketching, MPI.

Laid out by method family over one solver core: :mod:`linsolve.core`
(setup, stopping test, monitor, history, result), :mod:`linsolve.krylov`,
:mod:`linsolve.stationary`, :mod:`linsolve.sketch`, :mod:`linsolve.tuning`,
:mod:`linsolve.precond` and :mod:`linsolve.mpi`.
"""

from cext.threads import get_num_threads, num_threads, set_num_threads

from . import precond
from .core.operators import Operator, as_operator
from .krylov import bicgstab, block_cg, fgmres, gmres, minres, pcg
from .result import (MINIMIZE_REASONS, REASONS, BatchSolveResult, HistoryRecorder, MinimizeResult,
                     SolveResult)
from .sketch import ConstrainedProblem, constrained_problem, sketch_solve, sketched_newton
from .stationary import SorMatrix, sor
from .tuning import OmegaBandit, OmegaContextualBandit, young_omega
from . import _moved  # noqa: E402,F401  (old module paths, after the modules they name)

__all__ = ["BatchSolveResult", "ConstrainedProblem", "HistoryRecorder", "MINIMIZE_REASONS",
           "MinimizeResult", "OmegaBandit", "OmegaContextualBandit", "Operator", "REASONS",
           "SolveResult", "SorMatrix", "as_operator", "bicgstab", "block_cg",
           "constrained_problem", "fgmres", "get_num_threads", "gmres", "minres", "num_threads",
           "pcg", "precond", "set_num_threads", "sketch_solve", "sketched_newton", "sor",
           "young_omega"]

from cext._version import __version__  # noqa: E402  (after __all__: not part of it)
