"""Equality-constrained problems ``min f(x) s.t. c(x) = 0``: the protocol and a builder from callables.

A problem is any object with five methods (NumPy arrays in and out):

- ``fun(x) -> float``: the objective ``f``;
- ``grad(x) -> (n,)``: its gradient;
- ``cons(x) -> (m,)``: the constraint values ``c``;
- ``jac(x) -> (m, n)``: the constraint Jacobian ``G``;
- ``hess_lagrangian(x, lam) -> (n, n)``: the Hessian of the Lagrangian
  ``L = f + lam' c`` in ``x``.

:func:`constrained_problem` builds one from callables and fills in missing
derivatives: gradients and Jacobians by the complex step (exact to
rounding for functions written with NumPy operations that accept complex
input), the Hessian of the Lagrangian by central differences of its
gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

_COMPLEX_STEP = 1e-30


@runtime_checkable
class ConstrainedProblem(Protocol):
    """What :func:`linsolve.sketched_newton` needs from a problem."""

    def fun(self, x: np.ndarray) -> float: ...

    def grad(self, x: np.ndarray) -> np.ndarray: ...

    def cons(self, x: np.ndarray) -> np.ndarray: ...

    def jac(self, x: np.ndarray) -> np.ndarray: ...

    def hess_lagrangian(self, x: np.ndarray, lam: np.ndarray) -> np.ndarray: ...


def _complex_step_jacobian(func, x, name: str = "cons"):
    """Rows ``d func / d x_j`` by the complex step; returns (len(func(x)), n) or (n,) for scalars.

    Every perturbed call must return the shape of the first: ValueError naming
    ``name`` (the callable given to :func:`constrained_problem`) otherwise.
    """
    n = x.shape[0]
    columns = []
    for j in range(n):
        z = x.astype(complex)
        z[j] += 1j * _COMPLEX_STEP
        column = np.imag(np.asarray(func(z), dtype=complex)) / _COMPLEX_STEP
        if columns and column.shape != columns[0].shape:
            raise ValueError(
                f"{name} returned shape {column.shape} at x + i h e_{j} but {columns[0].shape} "
                f"at x + i h e_0 (the complex-step derivative evaluates it once per "
                f"coordinate): {name} must return the same number of values at every point; "
                "keep inactive constraints as zero entries rather than dropping them")
        columns.append(column)
    return np.stack(columns, axis=-1)


@dataclass(frozen=True)
class CallableProblem:
    """A :class:`ConstrainedProblem` assembled from callables (see :func:`constrained_problem`)."""

    objective: Callable[[Any], Any]
    constraints: Callable[[Any], Any]
    gradient: Callable[[Any], Any] | None = None
    jacobian: Callable[[Any], Any] | None = None
    hessian: Callable[[Any, Any], Any] | None = None
    name: str = "problem"
    fd_step: float = 1e-6

    def fun(self, x):
        return float(np.real(self.objective(x)))

    def grad(self, x):
        if self.gradient is not None:
            return np.asarray(self.gradient(x), dtype=float).reshape(-1)
        return _complex_step_jacobian(lambda z: self.objective(z), x, "fun").reshape(-1)

    def cons(self, x):
        return np.atleast_1d(np.asarray(self.constraints(x), dtype=float))

    def jac(self, x):
        if self.jacobian is not None:
            return np.atleast_2d(np.asarray(self.jacobian(x), dtype=float))
        return np.atleast_2d(_complex_step_jacobian(
            lambda z: np.atleast_1d(self.constraints(z)), x, "cons"))

    def hess_lagrangian(self, x, lam):
        if self.hessian is not None:
            return np.asarray(self.hessian(x, lam), dtype=float)
        n = x.shape[0]
        lam = np.asarray(lam, dtype=float).reshape(-1)
        H = np.empty((n, n))

        def lagrangian_gradient(point):
            J = self.jac(point)
            if J.shape[0] != lam.shape[0]:
                raise ValueError(f"cons returned {J.shape[0]} values near x but {lam.shape[0]} "
                                 "at the point the multipliers belong to: cons must return "
                                 "the same number of values at every point; keep inactive "
                                 "constraints as zero entries rather than dropping them")
            return self.grad(point) + J.T @ lam

        for j in range(n):
            h = self.fd_step * max(1.0, abs(float(x[j])))
            up, down = x.copy(), x.copy()
            up[j] += h
            down[j] -= h
            H[:, j] = (lagrangian_gradient(up) - lagrangian_gradient(down)) / (2 * h)
        return (H + H.T) / 2


def constrained_problem(fun: Callable, cons: Callable, *, grad: Callable | None = None,
                        jac: Callable | None = None,
                        hess_lagrangian: Callable | None = None,
                        name: str = "problem") -> CallableProblem:
    """Build a :class:`ConstrainedProblem` from callables.

    Parameters
    ----------
    fun : callable ``x -> float``
    cons : callable ``x -> (m,)``
    grad, jac : callables, optional
        Exact derivatives; when missing, computed by the complex step, which
        needs ``fun``/``cons`` to accept complex arrays (NumPy ufuncs do).
    hess_lagrangian : callable ``(x, lam) -> (n, n)``, optional
        When missing, central differences of ``grad + jac' lam`` (error of
        order 1e-10 relative; it only slows Newton's local rate slightly).
    name : str

    Examples
    --------
    >>> import numpy as np
    >>> p = constrained_problem(lambda x: x[0] ** 2 + x[1] ** 2, lambda x: [x[0] + x[1] - 1])
    >>> p.grad(np.array([1.0, 2.0])), p.jac(np.array([1.0, 2.0]))
    (array([2., 4.]), array([[1., 1.]]))
    >>> np.round(p.hess_lagrangian(np.array([1.0, 2.0]), np.array([3.0])), 6)
    array([[2., 0.],
           [0., 2.]])
    """
    for label, value in (("fun", fun), ("cons", cons)):
        if not callable(value):
            raise TypeError(f"{label} must be callable, got {type(value).__name__}")
    for label, value in (("grad", grad), ("jac", jac), ("hess_lagrangian", hess_lagrangian)):
        if value is not None and not callable(value):
            raise TypeError(f"{label} must be callable or None, got {type(value).__name__}")
    return CallableProblem(fun, cons, grad, jac, hess_lagrangian, name)
