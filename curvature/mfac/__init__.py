"""M-FAC: the empirical Fisher of a window of gradients, inverted matrix-free."""

from .static import MFACStatic
from .window import MFAC, BlockedMFAC

__all__ = ["BlockedMFAC", "MFAC", "MFACStatic"]
