"""Matrix inverse roots and the methods built on them: Shampoo, SOAP, distributed Shampoo."""

from .distributed import DistributedShampoo
from .roots import RootError, RootInfo, inverse_root
from .shampoo import Shampoo
from .soap import SOAP

__all__ = ["DistributedShampoo", "RootError", "RootInfo", "SOAP", "Shampoo", "inverse_root"]
