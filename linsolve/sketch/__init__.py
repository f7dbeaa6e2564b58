"""Randomized sketching: sketch-and-project solves and the sketched Newton method."""

from .constrained import ConstrainedProblem, constrained_problem
from .newton import sketched_newton
from .solve import SKETCHES, sketch_solve

__all__ = ["ConstrainedProblem", "SKETCHES", "constrained_problem", "sketch_solve",
           "sketched_newton"]
