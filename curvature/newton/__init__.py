"""Newton-type minimizers: damped, lazy-Hessian and gradient-normalized Newton, and
polynomial preconditioning."""

from .damped import SCHEDULES, aicn_step, damped_newton, root_step
from .gradient_normalized import gradient_normalized_newton
from .lazy import cubic_step, lazy_newton
from .polynomial import (PolynomialPreconditioner, krylov_gradient, polynomial_preconditioner,
                         preconditioned_fast_gradient, preconditioned_gradient)

__all__ = ["PolynomialPreconditioner", "SCHEDULES", "aicn_step", "cubic_step", "damped_newton",
           "gradient_normalized_newton", "krylov_gradient", "lazy_newton",
           "polynomial_preconditioner", "preconditioned_fast_gradient", "preconditioned_gradient",
           "root_step"]
