"""Preconditioners for :func:`linsolve.pcg`: operators with ``matvec``, ``shape``, ``dtype``."""

__all__: list[str] = []
