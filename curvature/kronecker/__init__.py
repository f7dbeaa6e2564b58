"""Kronecker-factored curvature of dense layers: K-FAC and MKOR."""

from .kfac import KFAC, kl_clip_scale, precondition_layers
from .mkor import MKOR, sherman_morrison_step

__all__ = ["KFAC", "MKOR", "kl_clip_scale", "precondition_layers", "sherman_morrison_step"]
