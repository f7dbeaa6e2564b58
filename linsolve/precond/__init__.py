"""Preconditioners for :func:`linsolve.pcg`: operators with ``matvec``, ``shape``, ``dtype``."""

from ._base import Preconditioner
from .amg import AMG, amg
from .chebyshev import Chebyshev, chebyshev, lanczos_bounds
from .ichol0 import IChol0, ichol0
from .ilu0 import ILU0, ilu0
from .jacobi import Jacobi, jacobi
from .ssor import SSOR, ssor

__all__ = ["AMG", "Chebyshev", "IChol0", "ILU0", "Jacobi", "Preconditioner", "SSOR", "amg",
           "chebyshev", "ichol0", "ilu0", "jacobi", "lanczos_bounds", "ssor"]
