"""Shared plumbing of the Newton-type minimizers: inputs, counted oracles, Hessian forms.

``hess`` may take three forms, told apart once per call by
:func:`hessian_kind`:

* ``"matrix"``: ``hess(x)`` returns the dense ``(n, n)`` Hessian;
* ``"hvp"``: ``hess(x, v)`` returns the Hessian-vector product (then
  Newton directions come from :func:`linsolve.pcg`);
* ``"object"``: a curvature object with ``matvec`` and ``solve`` (a fixed
  approximation, such as :class:`curvature.MFAC`), or a callable
  ``hess(x)`` returning one (a Gauss-Newton or Fisher operator at ``x``).

A callable is a matrix callable if it takes one required positional
argument and an HVP callable if it takes two; what a one-argument callable
returns (an array or an object with ``solve``) decides between
``"matrix"`` and ``"object"`` at its first call.
"""

from __future__ import annotations

import inspect
import math
import numbers
import time
from typing import Any, Callable

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from linsolve import pcg
from linsolve.result import HistoryRecorder, MinimizeResult

from .._checks import namespace_of

KINDS = ("matrix", "hvp", "object")


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """``value`` as a float, or ValueError if it is not a real number > 0 (>= 0)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}")
    return value


def check_maxiter(maxiter) -> int:
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
        raise ValueError(f"maxiter must be an integer >= 0, got {maxiter!r}")
    return int(maxiter)


def prepare_x0(x0):
    """Return ``(xp, x0)``: a floating 1-D copy of ``x0``; NaN/Inf, 2-D or complex raise."""
    if not is_array_api_obj(x0):
        x0 = np.asarray(x0, dtype=np.float64)
    xp = array_namespace(x0)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be a 1-D array, got shape {tuple(x0.shape)}")
    if x0.shape[0] == 0:
        raise ValueError("x0 must have at least one entry")
    if xp.isdtype(x0.dtype, "complex floating"):
        raise TypeError("complex x0 is not supported; the minimizers are real")
    if not xp.isdtype(x0.dtype, "real floating"):
        x0 = xp.astype(x0, xp.float64)
    if not bool(xp.all(xp.isfinite(x0))):
        raise ValueError("x0 contains NaN or Inf; start from a finite point")
    return xp, xp.asarray(x0, copy=True)


def rounding_slack(xp, dtype, f: float, factor: float = 8.0) -> float:
    """``factor * eps(dtype) * (1 + |f|)``: how far ``f`` may move by rounding alone.

    Decrease tests compare values of ``f`` that differ by less than their
    rounding near a minimiser; the allowance must follow the working
    precision (float32's eps is 2^29 times float64's), not a float64 constant.
    """
    return factor * float(xp.finfo(dtype).eps) * (1.0 + abs(f))


def dot(xp, a, b) -> float:
    return float(xp.sum(a * b))


def norm(xp, a) -> float:
    return float(xp.linalg.vector_norm(a))


class Objective:
    """``fun`` and ``grad`` with counting and checks, writing into a :class:`HistoryRecorder`."""

    def __init__(self, fun: Callable, grad: Callable, xp, n: int, dtype,
                 recorder: HistoryRecorder):
        if not callable(fun) or not callable(grad):
            raise TypeError("fun and grad must be callables: fun(x) -> float, grad(x) -> array")
        self._fun, self._grad = fun, grad
        self.xp, self.n, self.dtype, self.rec = xp, n, dtype, recorder

    def fun(self, x) -> float:
        self.rec.n_fun += 1
        return float(self._fun(x))

    def grad(self, x):
        self.rec.n_grad += 1
        g = self._grad(x)
        namespace_of(g, "grad(x)", self.xp, "x0")
        if tuple(g.shape) != (self.n,):
            raise ValueError(f"grad(x) returned shape {tuple(g.shape)}, expected ({self.n},)")
        if g.dtype != self.dtype:
            g = self.xp.astype(g, self.dtype)
        return g


def _required_positional(func) -> int | None:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def hessian_kind(hess) -> str:
    """``"object"``, ``"hvp"`` or ``"matrix"`` (provisional for one-argument callables)."""
    # A class with matvec/solve is a factory hess(x) -> object, not a fixed object.
    if (not inspect.isclass(hess) and callable(getattr(hess, "matvec", None))
            and callable(getattr(hess, "solve", None))):
        return "object"
    if not callable(hess):
        raise TypeError("hess must be a callable hess(x) -> matrix, an HVP callable "
                        "hess(x, v) -> array, or an object with matvec and solve; "
                        f"got {type(hess).__name__}")
    return "hvp" if _required_positional(hess) == 2 else "matrix"


class LocalHessian:
    """The Hessian (or its approximation) at one point, in the form ``hess`` gave it.

    ``solve(g)`` returns ``H^{-1} g`` (or None when the solve broke down:
    an indefinite matrix for CG, a singular matrix); ``matvec`` is ``H v``;
    ``dense()`` builds the ``n x n`` matrix (``n`` products for operators).
    """

    def __init__(self, hess, kind: str, x, xp, n: int, dtype, rec: HistoryRecorder,
                 inner_rtol: float = 1e-10):
        self.xp, self.n, self.dtype, self.rec = xp, n, dtype, rec
        self.kind, self.inner_rtol = kind, inner_rtol
        self.matrix = None
        self.operator = None
        rec.n_hess += 1
        if kind == "hvp":
            self.operator = _HVP(hess, x, xp, n, dtype)
        elif kind == "object":
            self.operator = hess      # a fixed curvature object
        else:
            self._take(hess(x))       # a matrix, or a curvature object built at x

    def _take(self, value) -> None:
        if is_array_api_obj(value):
            namespace_of(value, "hess(x)", self.xp, "x0")
            if tuple(value.shape) != (self.n, self.n):
                raise ValueError(f"hess(x) returned shape {tuple(value.shape)}, "
                                 f"expected ({self.n}, {self.n})")
            self.kind = "matrix"
            self.matrix = value if value.dtype == self.dtype else self.xp.astype(value, self.dtype)
        elif callable(getattr(value, "matvec", None)) and callable(getattr(value, "solve", None)):
            self.kind = "object"
            self.operator = value
        else:
            raise TypeError("hess(x) must return a 2-D array or an object with matvec and solve, "
                            f"got {type(value).__name__}")

    def matvec(self, v):
        if self.matrix is not None:
            return self.matrix @ v
        return self.operator.matvec(v)

    def solve(self, g):
        xp = self.xp
        if self.matrix is not None:
            self.rec.n_factorizations += 1
            try:
                direction = xp.linalg.solve(self.matrix, g)
            except np.linalg.LinAlgError:  # singular (also CuPy's and array_api_strict's error)
                return None
            return direction
        if self.kind == "hvp":
            result = pcg(self.operator.matvec, g, rtol=self.inner_rtol, maxiter=10 * self.n)
            self.rec.n_hvp += result.matvecs
            if result.reason in ("DIVERGED_INDEFINITE_MAT", "DIVERGED_NANORINF"):
                return None
            return result.x
        return self.operator.solve(g)

    def dense(self):
        """The ``n x n`` matrix, symmetrised (``n`` products for an operator)."""
        if self.matrix is not None:
            H = self.matrix
        else:
            xp = self.xp
            eye = xp.eye(self.n, dtype=self.dtype)
            H = xp.stack([self.matvec(eye[i, :]) for i in range(self.n)], axis=0)
            if self.kind == "hvp":
                self.rec.n_hvp += self.n
        return (H + H.T) / 2


class _HVP:
    def __init__(self, hess, x, xp, n, dtype):
        self.hess, self.x, self.xp, self.n, self.dtype = hess, x, xp, n, dtype
        self.shape = (n, n)

    def matvec(self, v):
        out = self.hess(self.x, v)
        namespace_of(out, "hess(x, v)", self.xp, "x0")
        if out.dtype != self.dtype:
            out = self.xp.astype(out, self.dtype)
        return out


def new_recorder(*extra: str) -> HistoryRecorder:
    rec = HistoryRecorder("n_hvp", *extra)
    rec.n_hvp = 0
    return rec


def record(rec: HistoryRecorder, *, fun: float, grad_norm: float, step: float, **extra) -> None:
    rec.record(fun=fun, grad_norm=grad_norm, step=step, n_hvp=rec.n_hvp, **extra)


def finish(rec: HistoryRecorder, x, fun: float, reason: str, iterations: int, start: float,
           message: str, **extra: Any) -> MinimizeResult:
    return MinimizeResult(x=x, fun=fun, converged=reason.startswith("CONVERGED"), reason=reason,
                          iterations=iterations, history=rec.arrays(), message=message,
                          time=time.perf_counter() - start, extra=extra)


def finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def stop_test(rec: HistoryRecorder, x, f: float, gnorm: float, k: int, gtol: float,
              maxiter: int, start: float) -> MinimizeResult | None:
    """The minimizers' common exits at iterate ``k``: NaN/Inf, ``gnorm <= gtol``, ``maxiter``.

    Returns the :class:`MinimizeResult` to hand back, or None to go on.
    """
    if not (math.isfinite(f) and math.isfinite(gnorm)):
        return finish(rec, x, f, "DIVERGED_NANORINF", k, start, "NaN or Inf met")
    if gnorm <= gtol:
        return finish(rec, x, f, "CONVERGED_GTOL", k, start,
                      f"gradient norm {gnorm:.3e} <= gtol {gtol:.3e}")
    if k >= maxiter:
        return finish(rec, x, f, "DIVERGED_ITS", k, start, f"maxiter {maxiter} reached")
    return None
