"""Hessian and Fisher approximations and Newton-type methods."""

from .roots import RootError, RootInfo, inverse_root
from .shampoo import Shampoo
from .soap import SOAP

__all__ = ["RootError", "RootInfo", "SOAP", "Shampoo", "inverse_root"]
