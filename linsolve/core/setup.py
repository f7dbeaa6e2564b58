"""A solve's setup, shared by every solver: arguments checked once, the system coerced once.

:func:`settings` checks what every solver takes (scipy's keywords, the
tolerances, the monitor, the callback); :func:`krylov_system` turns
``A, b, x0, M`` into operators and working arrays of one namespace and
dtype, as every Krylov method needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..validation.inputs import (as_initial_guess, as_rhs, check_maxiter, check_nonnegative,
                                 reject_unknown_keywords, working_dtype)
from .monitor import Monitor
from .operators import Operator, as_operator


@dataclass(frozen=True)
class Settings:
    """The arguments every solver takes, checked: tolerances, monitor, callback."""

    rtol: float
    atol: float
    monitor: Monitor
    callback: Callable[[Any], None] | None


def settings(solver: str, kwargs: dict, *, rtol: Any, atol: Any, monitor: Any, label: str,
             callback: Any = None, active: bool = True, flush: bool = False) -> Settings:
    """Check a solver's common arguments; raise at once, naming the argument and the fix.

    ``kwargs`` are the keywords the solver did not take (``tol=`` among
    them: scipy's old name is refused with the new one named). ``label``,
    ``active`` and ``flush`` go to :class:`~linsolve.core.monitor.Monitor`.

    Examples
    --------
    >>> settings("pcg", {}, rtol=1e-8, atol=0, monitor=False, label="KSP").rtol
    1e-08
    >>> settings("pcg", {"tol": 1e-8}, rtol=1e-5, atol=0, monitor=False, label="KSP")
    Traceback (most recent call last):
    ...
    TypeError: pcg() got an unexpected keyword argument 'tol': use rtol= (scipy renamed tol to rtol in 1.12; the stopping rule is ||r|| <= max(rtol*||b||, atol))
    """
    reject_unknown_keywords(solver, kwargs)
    rtol = check_nonnegative("rtol", rtol)
    atol = check_nonnegative("atol", atol)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(x) or None, got "
                        f"{type(callback).__name__}")
    return Settings(rtol, atol, Monitor(monitor, label, active=active, flush=flush), callback)


@dataclass(frozen=True)
class KrylovSystem:
    """``A x = b`` as a Krylov method works on it: one namespace, one working dtype.

    ``x`` is a fresh copy of ``x0`` (zeros by default); ``M`` is None
    without a preconditioner. ``dot(u, v)`` is the real inner product
    ``Re(u^H v)`` as a Python float (the kernels' fused, float64-accumulated
    dot; under MPI the sum over ranks): a method computes every inner
    product and norm through it, so the same recurrence runs serial and
    distributed.
    """

    xp: Any
    A: Operator
    M: Operator | None
    b: Any
    x: Any
    n: int
    dtype: Any
    maxiter: int
    dot: Callable[[Any, Any], float]

    def norm(self, v) -> float:
        """``sqrt(dot(v, v))``; NaN where the squares came out negative or NaN."""
        vv = self.dot(v, v)
        return math.sqrt(vv) if vv >= 0 else float("nan")

    def residual(self, x, record) -> tuple[Any, float]:
        """``(b - A x, ||b - A x||)``, the product counted in ``record.matvecs``."""
        r = self.b - self.A.matvec(x)
        record.matvecs += 1
        return r, self.norm(r)


def rhs_and_dtype(A: Any, b: Any, *, allow_complex: bool):
    """``(xp, b, n, dtype)``: ``b`` 1-D in the working dtype that ``A`` and ``b`` fix together.

    Like scipy, ``A`` and ``b`` fix the precision; ``M`` is applied in it.
    """
    xp, b = as_rhs(b, allow_complex=allow_complex)
    dtype = working_dtype(xp, b, A, allow_complex=allow_complex)
    return xp, xp.astype(b, dtype), b.shape[0], dtype


def krylov_operators(A: Any, M: Any, xp: Any, dtype: Any, n: int):
    """``(A, M)`` as :class:`~linsolve.core.operators.Operator` objects (``M`` may be None).

    ``M`` may be anything ``A`` may be, a pyamg ``aspreconditioner()``, or
    an object with ``solve`` (a curvature approximation of ``A``, applied
    through ``solve``).
    """
    A_op = as_operator(A, xp, dtype, n, name="A")
    M_op = None if M is None else as_operator(M, xp, dtype, n, name="M", prefer_solve=True)
    return A_op, M_op


def check_x0(x0: Any) -> None:
    """A string ``x0`` other than scipy's ``'Mb'`` (start from ``M @ b``) is refused."""
    if isinstance(x0, str) and x0 != "Mb":
        raise ValueError(f"x0 must be an array, None or 'Mb' (start from M @ b), got {x0!r}")


def initial_iterate(x0: Any, b: Any, M: Operator | None, xp: Any, n: int, dtype: Any,
                    record: Any):
    """The working copy of ``x0`` (zeros for None); ``'Mb'`` is scipy's start from ``M @ b``,
    the one application of ``M`` counted in ``record.psolves``.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> from array_api_compat import array_namespace
    >>> record = SimpleNamespace(psolves=0)
    >>> xp = array_namespace(np.ones(2))
    >>> initial_iterate("Mb", np.ones(2), None, xp, 2, np.float64, record).tolist()
    [1.0, 1.0]
    """
    if isinstance(x0, str):
        Mb = b if M is None else M.matvec(b)
        record.psolves = 0 if M is None else 1
        return xp.astype(Mb, dtype, copy=True)  # M may return b itself
    return as_initial_guess(x0, xp, n, dtype)


def krylov_system(A: Any, b: Any, x0: Any, M: Any, maxiter: Any, *,
                  allow_complex: bool = False, default_maxiter: int | None = None) -> KrylovSystem:
    """Coerce ``A, b, x0, M`` for a Krylov method; ``maxiter`` defaults to ``10 n``.

    Examples
    --------
    >>> import numpy as np
    >>> system = krylov_system(np.eye(3), [1, 2, 3], None, None, None)
    >>> system.maxiter, system.x.tolist()
    (30, [0.0, 0.0, 0.0])
    """
    xp, b, n, dtype = rhs_and_dtype(A, b, allow_complex=allow_complex)
    maxiter = check_maxiter(maxiter, 10 * n if default_maxiter is None else default_maxiter)
    A_op, M_op = krylov_operators(A, M, xp, dtype, n)
    x = as_initial_guess(x0, xp, n, dtype)
    return KrylovSystem(xp, A_op, M_op, b, x, n, dtype, maxiter, A_op.kernels.dot)
