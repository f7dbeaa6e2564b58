"""Test problems of the Newton family: value, gradient, Hessian (and its Gauss-Newton form).

Every builder returns a :class:`NewtonProblem` on NumPy float64 arrays:

* :func:`logistic_regression` (l2-regularised, labels in {-1, +1}):
  ``f(x) = mean(log(1 + exp(-y_i a_i' x))) + mu/2 ||x||^2``; from
  :func:`breast_cancer`, :func:`digits_one_vs_rest` (scikit-learn's
  shipped data sets, features standardised, a ones column for the bias)
  or :func:`synthetic_ill_conditioned`. Its Gauss-Newton matrix (the
  Fisher matrix of the model) equals its Hessian.
* :func:`log_sum_exp`: ``rho log sum exp((a_i' x - b_i)/rho) + mu/2 ||x||^2``.
* :func:`rosenbrock`: ``100 (x2 - x1^2)^2 + (1 - x1)^2`` (2-D), with the
  Gauss-Newton matrix ``2 J'J`` of its residuals ``(10 (x2 - x1^2), 1 - x1)``.
* :func:`polytope_feasibility`: find ``x`` with ``A x <= b`` by minimising
  the convex C^2 penalty ``f = sum_i rho^2 softplus((a_i' x - b_i)/rho)^2 / 2``.

scikit-learn is imported inside the data loaders only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["NewtonProblem", "logistic_regression", "breast_cancer", "digits_one_vs_rest",
           "synthetic_ill_conditioned", "log_sum_exp", "rosenbrock", "polytope_feasibility"]


@dataclass(frozen=True)
class NewtonProblem:
    """A smooth objective with its derivatives and a start."""

    name: str
    fun: Callable
    grad: Callable
    hess: Callable
    x0: np.ndarray
    hvp: Callable | None = None
    gauss_newton: Callable | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.x0.shape[0])


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


def logistic_regression(A: np.ndarray, y: np.ndarray, mu: float = 1e-3, x0=None,
                        name: str = "logistic") -> NewtonProblem:
    """l2-regularised logistic loss of the rows of ``A`` with labels ``y`` in {-1, +1}.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]); y = np.array([1.0, -1.0, 1.0])
    >>> p = logistic_regression(A, y, mu=0.1)
    >>> abs(p.fun(np.zeros(2)) - float(np.log(2.0))) < 1e-15
    True
    """
    A = np.asarray(A, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, d = A.shape
    if not np.all(np.abs(y) == 1):
        raise ValueError("labels must be -1 or +1")

    def fun(x):
        return float(np.mean(np.logaddexp(0.0, -y * (A @ x))) + 0.5 * mu * (x @ x))

    def grad(x):
        return -(A.T @ (y * _sigmoid(-y * (A @ x)))) / m + mu * x

    def weights(x):
        z = A @ x
        return _sigmoid(z) * _sigmoid(-z)

    def hess(x):
        return (A.T * weights(x)) @ A / m + mu * np.eye(d)

    def hvp(x, v):
        return A.T @ (weights(x) * (A @ v)) / m + mu * v

    x0 = np.zeros(d) if x0 is None else np.asarray(x0, dtype=np.float64)
    return NewtonProblem(name, fun, grad, hess, x0, hvp=hvp, gauss_newton=hess,
                         extra={"m": m, "mu": mu})


def _standardise_with_bias(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    X = (X - X.mean(axis=0)) / scale
    return np.hstack([X, np.ones((X.shape[0], 1))])


def breast_cancer(mu: float = 1e-3, x0_scale: float = 0.0,
                  standardise: bool = True) -> NewtonProblem:
    """Logistic regression on scikit-learn's breast cancer data (569 x 31 with bias).

    ``standardise=False`` keeps the raw features (column means from 4e-3 to
    9e2) beside the ones column: a badly scaled problem, named
    ``breast_cancer_raw``.
    """
    from sklearn.datasets import load_breast_cancer

    X, t = load_breast_cancer(return_X_y=True)
    if standardise:
        A, name = _standardise_with_bias(X), "breast_cancer"
    else:
        A, name = np.hstack([X, np.ones((X.shape[0], 1))]), "breast_cancer_raw"
    return logistic_regression(A, 2.0 * t - 1.0, mu, x0_scale * np.ones(A.shape[1]), name=name)


def digits_one_vs_rest(digit: int = 0, mu: float = 1e-3, x0_scale: float = 0.0) -> NewtonProblem:
    """Logistic regression, ``digit`` against the rest, on scikit-learn's digits (1797 x 65)."""
    from sklearn.datasets import load_digits

    X, t = load_digits(return_X_y=True)
    A = _standardise_with_bias(X)
    return logistic_regression(A, np.where(t == digit, 1.0, -1.0), mu,
                               x0_scale * np.ones(A.shape[1]), name=f"digits_{digit}_vs_rest")


def synthetic_ill_conditioned(m: int = 500, d: int = 50, cond: float = 1e3, mu: float = 1e-3,
                              seed: int = 0, x0_scale: float = 0.0) -> NewtonProblem:
    """Logistic regression on Gaussian features whose columns scale from 1 to ``1/sqrt(cond)``.

    Labels come from a planted ``x_true`` with 10% of them flipped, so the
    classes overlap and the minimiser is finite even for tiny ``mu``.
    """
    rng = np.random.default_rng(seed)
    scales = np.logspace(0, -0.5 * np.log10(cond), d)
    A = rng.standard_normal((m, d)) * scales
    x_true = rng.standard_normal(d) / scales
    y = np.sign(A @ x_true + 1e-12)
    flip = rng.random(m) < 0.1
    y[flip] = -y[flip]
    return logistic_regression(A, y, mu, x0_scale * np.ones(d), name="synthetic_logistic")


def log_sum_exp(m: int = 200, d: int = 50, rho: float = 0.5, mu: float = 1e-3,
                seed: int = 0) -> NewtonProblem:
    """``rho * log(sum exp((A x - b)/rho)) + mu/2 ||x||^2`` on Gaussian data (Nesterov's test)."""
    rng = np.random.default_rng(seed)
    A = rng.uniform(-1.0, 1.0, (m, d))
    b = rng.uniform(-1.0, 1.0, m)

    def softmax(x):
        z = (A @ x - b) / rho
        w = np.exp(z - z.max())
        return w / w.sum(), z

    def fun(x):
        z = (A @ x - b) / rho
        zmax = z.max()
        return float(rho * (zmax + np.log(np.sum(np.exp(z - zmax)))) + 0.5 * mu * (x @ x))

    def grad(x):
        p, _ = softmax(x)
        return A.T @ p + mu * x

    def hess(x):
        p, _ = softmax(x)
        Ap = A.T @ p
        return ((A.T * p) @ A - np.outer(Ap, Ap)) / rho + mu * np.eye(d)

    def hvp(x, v):
        p, _ = softmax(x)
        Av = A @ v
        return (A.T @ (p * Av) - (A.T @ p) * (p @ Av)) / rho + mu * v

    return NewtonProblem("log_sum_exp", fun, grad, hess, np.zeros(d), hvp=hvp)


def rosenbrock(x0=(-2.0, 2.0)) -> NewtonProblem:
    """The 2-D Rosenbrock function with its Gauss-Newton matrix ``2 J'J``.

    Examples
    --------
    >>> import numpy as np
    >>> p = rosenbrock()
    >>> p.fun(np.ones(2)), bool(np.all(p.grad(np.ones(2)) == 0))
    (0.0, True)
    """

    def fun(x):
        return float(100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2)

    def grad(x):
        return np.array([-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]),
                         200.0 * (x[1] - x[0] ** 2)])

    def hess(x):
        return np.array([[1200.0 * x[0] ** 2 - 400.0 * x[1] + 2.0, -400.0 * x[0]],
                         [-400.0 * x[0], 200.0]])

    def gauss_newton(x):
        J = np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])
        return 2.0 * J.T @ J

    return NewtonProblem("rosenbrock", fun, grad, hess, np.asarray(x0, dtype=np.float64),
                         gauss_newton=gauss_newton)


def polytope_feasibility(m: int = 300, d: int = 50, rho: float = 0.1,
                         seed: int = 0) -> NewtonProblem:
    """Find ``A x <= b`` (a random polytope containing a ball around ``x_c``) via a smooth penalty.

    ``f(x) = (1/2) sum_i s_i^2`` with ``s_i = rho softplus((a_i' x - b_i)/rho)``:
    convex, C^2, zero gradient only near the polytope. The start is far
    outside (``x0 = 10 * ones``).
    """
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, d))
    x_c = rng.standard_normal(d)
    b = A @ x_c + rng.uniform(0.5, 1.5, m)

    def parts(x):
        z = (A @ x - b) / rho
        s = rho * np.logaddexp(0.0, z)
        return s, _sigmoid(z), z

    def fun(x):
        s, _, _ = parts(x)
        return float(0.5 * s @ s)

    def grad(x):
        s, sig, _ = parts(x)
        return A.T @ (s * sig)

    def hess(x):
        s, sig, _ = parts(x)
        w = sig * sig + s * sig * (1.0 - sig) / rho
        return (A.T * w) @ A

    def hvp(x, v):
        s, sig, _ = parts(x)
        w = sig * sig + s * sig * (1.0 - sig) / rho
        return A.T @ (w * (A @ v))

    return NewtonProblem("polytope_feasibility", fun, grad, hess, 10.0 * np.ones(d), hvp=hvp,
                         extra={"A": A, "b": b})
