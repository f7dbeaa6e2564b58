"""The stopping test every solver shares: tolerance, verdicts, true residual, breakdowns.

scipy's rule decides convergence, ``||r_k|| <= max(rtol ||b||, atol)``, and
PETSc's ``KSPConvergedReason`` names the outcome. Two kinds of solvers use it:

- Methods that update their residual by a recursion (the Krylov family)
  test the recursive norm each iteration and, when it meets the tolerance,
  recompute ``b - A x`` (:class:`ResidualTest`). A solve is only reported
  converged when that true residual meets the tolerance too; otherwise the
  method continues from the true residual (residual replacement, van der
  Vorst and Ye, SIAM J. Sci. Comput. 22, 2000), and gives up with
  ``DIVERGED_BREAKDOWN`` when a replacement no longer halves it: the
  tolerance is below the attainable accuracy of the working precision.
- Methods that measure the true residual as they go (the stationary sweeps,
  sketch-and-project) take the verdict of their last measured norm
  (:func:`verdict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

STAGNATION_FACTOR = 0.5
"""A residual replacement must bring the true residual below this fraction of the
previous replacement's, or the solve has stagnated (``DIVERGED_BREAKDOWN``)."""

DRIFT_FACTOR = 2.0
"""A periodic check (``check_every``) replaces the recursive residual only when the
true one is this much larger: below it, the recursion is left alone (so CG's
iterates stay equal to scipy's)."""


@dataclass(frozen=True)
class Tolerance:
    """scipy's stopping rule: ``tol = max(rtol ||b||, atol)`` and the reason meeting it gives.

    ``reason`` is ``"CONVERGED_RTOL"`` when the relative term decides (ties
    included), else ``"CONVERGED_ATOL"``.

    Examples
    --------
    >>> Tolerance.of(1e-3, 0.0, 10.0)
    Tolerance(tol=0.01, reason='CONVERGED_RTOL')
    >>> Tolerance.of(1e-3, 1.0, 10.0).reason
    'CONVERGED_ATOL'
    """

    tol: float
    reason: str

    @classmethod
    def of(cls, rtol: float, atol: float, bnorm: float) -> "Tolerance":
        return cls(max(rtol * bnorm, atol),
                   "CONVERGED_RTOL" if rtol * bnorm >= atol else "CONVERGED_ATOL")

    def met(self, rnorm: float) -> "Stop":
        """The verdict of a true residual that meets the tolerance."""
        return Stop(self.reason, f"||r|| = {rnorm:.3e} <= {self.tol:.3e}", rnorm)


@dataclass(frozen=True)
class Stop:
    """A solver's verdict: PETSc's reason, a sentence for humans, the true residual if known."""

    reason: str
    message: str
    true_residual_norm: float | None = None

    @property
    def converged(self) -> bool:
        return self.reason.startswith("CONVERGED")


@dataclass(frozen=True)
class Replacement:
    """Continue from the true residual ``r`` (norm ``rnorm``) with fresh directions."""

    r: Any
    rnorm: float


def not_finite(name: str, value: float, k: int) -> Stop | None:
    """``DIVERGED_NANORINF`` when a scalar of the recurrence (``name``) is NaN or Inf."""
    if math.isfinite(value):
        return None
    return Stop("DIVERGED_NANORINF", f"{name} is {value} at iteration {k}")


def b_verdict(bnorm: float) -> Stop | None:
    """The verdict before any iteration: NaN/Inf in ``b``, or ``b = 0`` (``x = 0`` is exact)."""
    if not math.isfinite(bnorm):
        return Stop("DIVERGED_NANORINF", "b contains NaN or Inf", bnorm)
    if bnorm == 0.0:
        return Stop("CONVERGED_ATOL", "b = 0: x = 0 is exact", 0.0)
    return None


class ResidualTest:
    """The exit test of a method with a recursively updated residual.

    Parameters
    ----------
    tolerance : Tolerance
    maxiter : int
    true_residual : callable
        ``() -> (r, ||r||)``: ``b - A x`` at the current iterate and its norm
        (one product with ``A``; under MPI a reduction too).
    dtype : object
        The working dtype, named in the stagnation message.

    Examples
    --------
    >>> import numpy as np
    >>> test = ResidualTest(Tolerance.of(1e-6, 0.0, 1.0), 10,
    ...                     lambda: (np.zeros(2), 0.0), np.float64)
    >>> test.check(0, 1.0) is None           # above the tolerance: iterate
    True
    >>> test.check(3, 1e-7).reason           # recursive norm met: true one checked
    'CONVERGED_RTOL'
    >>> test.check(10, 1.0).reason
    'DIVERGED_ITS'
    """

    def __init__(self, tolerance: Tolerance, maxiter: int,
                 true_residual: Callable[[], tuple[Any, float]], dtype: Any):
        self.tolerance = tolerance
        self.tol = tolerance.tol
        self.maxiter = maxiter
        self.true_residual = true_residual
        self.dtype = dtype
        self.replacements = 0
        self._last_replacement = math.inf

    def check(self, k: int, rnorm: float) -> Stop | Replacement | None:
        """At the top of iteration ``k`` with recursive norm ``rnorm``: stop, replace, or go on."""
        if not math.isfinite(rnorm):
            return Stop("DIVERGED_NANORINF", f"residual norm is {rnorm} at iteration {k}")
        if rnorm <= self.tol:
            r, rtrue = self.true_residual()
            if rtrue <= self.tol:
                return self.tolerance.met(rtrue)
            if rtrue > STAGNATION_FACTOR * self._last_replacement or not math.isfinite(rtrue):
                return Stop("DIVERGED_BREAKDOWN",
                            f"true residual {rtrue:.3e} stagnated above the tolerance "
                            f"{self.tol:.3e} (limit of attainable accuracy in {self.dtype})",
                            rtrue)
            self._last_replacement = rtrue
            self.replacements += 1
            return Replacement(r, rtrue)
        if k >= self.maxiter:
            return Stop("DIVERGED_ITS", f"reached maxiter = {self.maxiter} with ||r|| = "
                                        f"{rnorm:.3e}")
        return None

    def drifted(self, rnorm: float) -> Replacement | None:
        """The periodic check: the true residual when it has drifted above the recursive one."""
        r, rtrue = self.true_residual()
        if rtrue > DRIFT_FACTOR * rnorm:
            self.replacements += 1
            return Replacement(r, rtrue)
        return None


def _positive(value: float, k: int, name: str, reason: str, meaning: str) -> Stop | None:
    """NaN/Inf, or ``value <= 0`` (``reason``): the scalar ``name`` that a definite
    operator keeps positive."""
    if not math.isfinite(value):
        return Stop("DIVERGED_NANORINF", f"{name} is {value} at iteration {k}")
    if value <= 0.0:
        return Stop(reason, f"{name} = {value:.3e} <= 0: {meaning}")
    return None


def preconditioner_verdict(rho: float, k: int) -> Stop | None:
    """``r'Mr``: NaN/Inf, or not positive (``DIVERGED_INDEFINITE_PC``)."""
    return _positive(rho, k, "r'Mr", "DIVERGED_INDEFINITE_PC", "M is not positive definite")


def curvature_verdict(pAp: float, k: int) -> Stop | None:
    """``p'Ap``: NaN/Inf, or not positive (``DIVERGED_INDEFINITE_MAT``)."""
    return _positive(pAp, k, "p'Ap", "DIVERGED_INDEFINITE_MAT", "A is not positive definite")


def verdict(rnorm: float, k: int, tolerance: Tolerance, maxiter: int, *,
            grow_limit: float = math.inf, diverged: str = "") -> Stop:
    """The verdict of a solve that stopped at iteration ``k`` with measured ``||r|| = rnorm``.

    ``DIVERGED_DTOL`` when ``rnorm > grow_limit`` (``dtol ||r_0||``), with
    ``diverged`` appended to its message.

    Examples
    --------
    >>> stop = verdict(1e-9, 12, Tolerance.of(1e-8, 0.0, 1.0), 100)
    >>> stop.reason, stop.message, stop.true_residual_norm
    ('CONVERGED_RTOL', '||r|| = 1.000e-09 <= 1.000e-08', 1e-09)
    >>> verdict(5.0, 100, Tolerance.of(1e-8, 0.0, 1.0), 100).reason
    'DIVERGED_ITS'
    """
    if not math.isfinite(rnorm):
        return Stop("DIVERGED_NANORINF", f"residual norm is {rnorm} at iteration {k}", rnorm)
    if rnorm <= tolerance.tol:
        return tolerance.met(rnorm)
    if rnorm > grow_limit:
        return Stop("DIVERGED_DTOL", f"||r|| grew to {rnorm:.3e} > dtol * ||r0||{diverged}", rnorm)
    return Stop("DIVERGED_ITS", f"reached maxiter = {maxiter} with ||r|| = {rnorm:.3e}", rnorm)
