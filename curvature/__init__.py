"""Hessian and Fisher approximations and Newton-type methods."""

from .distributed import DistributedShampoo
from .gradient_normalized import gradient_normalized_newton
from .hutchinson import hutchinson_diagonal, hutchpp_trace
from .kfac import KFAC, kl_clip_scale, precondition_layers
from .lazy_newton import cubic_step, lazy_newton
from .mfac import MFAC, BlockedMFAC
from .mfac_static import MFACStatic
from .mkor import MKOR, sherman_morrison_step
from .newton import damped_newton
from .polynomial import (PolynomialPreconditioner, krylov_gradient, polynomial_preconditioner,
                         preconditioned_fast_gradient, preconditioned_gradient)
from .roots import RootError, RootInfo, inverse_root
from .shampoo import Shampoo
from .soap import SOAP
from . import optim  # the optimizer interface over parameter trees (after its objects)

__all__ = ["BlockedMFAC", "DistributedShampoo", "KFAC", "MFAC", "MFACStatic", "MKOR",
           "PolynomialPreconditioner", "RootError", "RootInfo", "SOAP", "Shampoo", "cubic_step",
           "damped_newton", "gradient_normalized_newton", "hutchinson_diagonal", "hutchpp_trace",
           "inverse_root", "kl_clip_scale", "krylov_gradient", "lazy_newton", "optim",
           "polynomial_preconditioner", "precondition_layers", "preconditioned_fast_gradient",
           "preconditioned_gradient", "sherman_morrison_step"]

from cext._version import __version__  # noqa: E402  (after __all__: not part of it)
