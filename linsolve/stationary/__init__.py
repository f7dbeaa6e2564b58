"""Stationary iterations: SOR and SSOR sweeps (host and device) and the matrix they sweep."""

from .sor import ORDERINGS, SorMatrix, sor

__all__ = ["ORDERINGS", "SorMatrix", "sor"]
