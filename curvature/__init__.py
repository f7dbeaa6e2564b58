"""Hessian and Fisher approximations and Newton-type methods."""

from .distributed import DistributedShampoo
from .kfac import KFAC, kl_clip_scale, precondition_layers
from .mfac import MFAC, BlockedMFAC
from .mfac_static import MFACStatic
from .mkor import MKOR, sherman_morrison_step
from .roots import RootError, RootInfo, inverse_root
from .shampoo import Shampoo
from .soap import SOAP

__all__ = ["BlockedMFAC", "DistributedShampoo", "KFAC", "MFAC", "MFACStatic", "MKOR", "RootError", "RootInfo", "SOAP",
           "Shampoo", "inverse_root", "kl_clip_scale", "precondition_layers",
           "sherman_morrison_step"]
