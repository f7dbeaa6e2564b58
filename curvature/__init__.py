"""Hessian and Fisher approximations and Newton-type methods."""

# Grouped by family: roots, Shampoo and SOAP (shampoo/), Kronecker factors
# (kronecker/), M-FAC (mfac/), the Newton family (newton/); estimators and the
# optimizer interface beside them.
from .hutchinson import hutchinson_diagonal, hutchpp_trace
from .kronecker import KFAC, MKOR, kl_clip_scale, precondition_layers, sherman_morrison_step
from .mfac import MFAC, BlockedMFAC, MFACStatic
from .newton import (PolynomialPreconditioner, cubic_step, damped_newton,
                     gradient_normalized_newton, krylov_gradient, lazy_newton,
                     polynomial_preconditioner, preconditioned_fast_gradient,
                     preconditioned_gradient)
from .shampoo import SOAP, DistributedShampoo, RootError, RootInfo, Shampoo, inverse_root
from . import optim  # the optimizer interface over parameter trees (after its objects)

__all__ = ["BlockedMFAC", "DistributedShampoo", "KFAC", "MFAC", "MFACStatic", "MKOR",
           "PolynomialPreconditioner", "RootError", "RootInfo", "SOAP", "Shampoo", "cubic_step",
           "damped_newton", "gradient_normalized_newton", "hutchinson_diagonal", "hutchpp_trace",
           "inverse_root", "kl_clip_scale", "krylov_gradient", "lazy_newton", "optim",
           "polynomial_preconditioner", "precondition_layers", "preconditioned_fast_gradient",
           "preconditioned_gradient", "sherman_morrison_step"]

from cext._version import __version__  # noqa: E402  (after __all__: not part of it)
