"""Hessian and Fisher approximations and Newton-type methods (in progress)."""

__all__: list[str] = []
