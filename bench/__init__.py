"""Benchmarks: problems, convergence tables, plots, speed checks, pytest-benchmark suites.

Run ``python -m bench`` (see :mod:`bench.__main__`). Nothing in the library
imports this package.
"""

from .methods import METHODS
from .problems import PROBLEMS, Problem, load_matrix, make_problem

__all__ = ["METHODS", "PROBLEMS", "Problem", "load_matrix", "make_problem"]
