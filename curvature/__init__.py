"""Hessian and Fisher approximations and Newton-type methods."""

from .mfac import MFAC, BlockedMFAC
from .mfac_static import MFACStatic
from .roots import RootError, RootInfo, inverse_root
from .shampoo import Shampoo
from .soap import SOAP

__all__ = ["BlockedMFAC", "MFAC", "MFACStatic", "RootError", "RootInfo", "SOAP", "Shampoo", "inverse_root"]
