"""The one result type of every linear solver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Reason = Literal[
    "CONVERGED_RTOL",
    "CONVERGED_ATOL",
    "DIVERGED_ITS",
    "DIVERGED_BREAKDOWN",
    "DIVERGED_INDEFINITE_MAT",
    "DIVERGED_INDEFINITE_PC",
    "DIVERGED_NANORINF",
    "DIVERGED_DTOL",
]
"""PETSc's ``KSPConvergedReason`` names, the closed set of ``SolveResult.reason``."""

REASONS: tuple[str, ...] = Reason.__args__


@dataclass(frozen=True)
class SolveResult:
    """Outcome of an iterative solve.

    Attributes
    ----------
    x : array
        The final iterate, in the namespace and dtype of the input.
    converged : bool
        True only if the *true* residual ``||b - A x||`` meets the tolerance.
    reason : str
        One of :data:`REASONS` (PETSc's names).
    iterations : int
        Iterations performed.
    residual_norms : numpy.ndarray
        Host float64 array of length ``iterations + 1``, initial residual
        first. Entries are the solver's recursively updated residual norms;
        where the solver replaced its residual by the true one, the entry
        is the true norm.
    true_residual_norm : float
        ``||b - A x||`` recomputed at exit.
    matvecs : int
        Products with ``A``.
    time : float
        Wall-clock seconds.
    message : str
        A sentence on why the solver stopped, for humans.
    psolves : int
        Applications of the preconditioner.

    Unpacks as ``x, info = result`` with scipy's meaning of ``info``: 0 if
    converged, the iteration count (at least 1) if the iteration limit was
    reached, -1 on breakdown (indefinite matrix or preconditioner, NaN/Inf).

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve import pcg
    >>> x, info = pcg(np.diag([1.0, 2.0]), np.array([1.0, 1.0]))
    >>> info, np.allclose(x, [1.0, 0.5])
    (0, True)
    """

    x: Any
    converged: bool
    reason: str
    iterations: int
    residual_norms: np.ndarray
    true_residual_norm: float
    matvecs: int
    time: float
    message: str = ""
    psolves: int = 0
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r}; expected one of {REASONS}")

    @property
    def info(self) -> int:
        """scipy's convergence flag (see the class docstring)."""
        if self.converged:
            return 0
        if self.reason == "DIVERGED_ITS":
            return max(self.iterations, 1)
        return -1

    def __iter__(self):
        return iter((self.x, self.info))
