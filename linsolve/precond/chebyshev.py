"""Chebyshev polynomial preconditioning: ``M = p(A)``, ``p`` from the Chebyshev iteration."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from ..operators import as_operator
from ._base import Preconditioner, check_real, float_dtype, is_cupyx_sparse, is_scipy_sparse

_LANCZOS_STEPS = 20

# Default polynomial degree (4 matvecs per application): a moderate choice,
# not a tuned one. A higher degree trades CG iterations for matvecs per
# iteration; pass degree= when a benchmark says otherwise for your problem.
DEFAULT_DEGREE = 4


class Chebyshev(Preconditioner):
    """``M r = z`` after ``degree`` matvecs of the Chebyshev iteration for ``A z = r`` from 0.

    Built by :func:`chebyshev`.

    Attributes
    ----------
    degree : int
        Degree of the polynomial ``p`` (= matvecs per application).
    bounds : tuple of float
        ``(lo, hi)``, the interval the residual polynomial is minimised on.
    """

    def __init__(self, operator, degree, bounds):
        super().__init__(operator.shape, operator.dtype, operator.xp)
        self.degree = degree
        self.bounds = bounds
        self._operator = operator

    def _apply(self, r):
        # Saad, Iterative Methods for Sparse Linear Systems (2nd ed.),
        # Algorithm 12.1, from x_0 = 0 (so r_0 = r and the first step is
        # free) run for degree + 1 steps: degree matvecs, x = p(A) r with
        # 1 - t p(t) = T_{degree+1}((theta - t)/delta) / T_{degree+1}(theta/delta).
        lo, hi = self.bounds
        theta, delta = (hi + lo) / 2.0, (hi - lo) / 2.0
        sigma = theta / delta
        rho = 1.0 / sigma
        residual = r
        d = r / theta
        z = d
        for _ in range(self.degree):
            residual = residual - self._operator.matvec(d)
            rho_next = 1.0 / (2.0 * sigma - rho)
            d = (rho_next * rho) * d + (2.0 * rho_next / delta) * residual
            z = z + d
            rho = rho_next
        return z


def _namespace_and_dtype(A):
    if is_scipy_sparse(A):
        return array_namespace(np.empty(0)), A.dtype
    if is_cupyx_sparse(A):
        return array_namespace(A.data), A.dtype
    if is_array_api_obj(A):
        return array_namespace(A), A.dtype
    # LinearOperator, object with matvec, callable: NumPy vectors
    return array_namespace(np.empty(0)), getattr(A, "dtype", "float64")


def lanczos_bounds(operator, steps: int = _LANCZOS_STEPS, seed: int = 0) -> tuple[float, float]:
    """Spectral interval estimate ``(lo, hi)`` of an SPD :class:`~linsolve.Operator` by Lanczos.

    ``steps`` Lanczos steps (full reorthogonalisation, cheap at this size)
    from a seeded Gaussian start; ``lo`` is the smallest Ritz value and
    ``hi`` the largest plus ``|beta_last|``.

    Examples
    --------
    >>> import numpy as np
    >>> from array_api_compat import array_namespace
    >>> from linsolve import as_operator
    >>> op = as_operator(np.diag([1.0, 2.0, 5.0]), array_namespace(np.ones(1)), np.float64, 3)
    >>> [round(v, 8) for v in lanczos_bounds(op)]
    [1.0, 5.0]
    """
    xp, n = operator.xp, operator.shape[0]
    if n == 0:
        raise ValueError("A is 0 x 0: it has no spectrum to estimate; pass bounds=(lo, hi) "
                         "to chebyshev() yourself")
    rng = np.random.default_rng(seed)
    v = xp.asarray(rng.standard_normal(n), dtype=operator.dtype)
    v = v / math.sqrt(float(xp.sum(v * v)))
    basis = [v]
    alphas: list[float] = []
    betas: list[float] = []
    eps = float(np.finfo(np.float32 if str(operator.dtype).endswith("float32") else np.float64).eps)
    scale = 0.0
    for _ in range(min(steps, n)):
        w = operator.matvec(v)
        alpha = float(xp.sum(v * w))
        w = w - alpha * v
        if len(basis) > 1:
            w = w - betas[-1] * basis[-2]
        for _pass in range(2):  # full reorthogonalisation, twice is enough
            for u in basis:
                w = w - float(xp.sum(u * w)) * u
        beta = math.sqrt(float(xp.sum(w * w)))
        alphas.append(alpha)
        betas.append(beta)
        scale = max(scale, abs(alpha) + beta + (betas[-2] if len(betas) > 1 else 0.0))
        if not math.isfinite(beta) or beta <= 10 * n * eps * scale:
            break  # invariant subspace: the Ritz values are eigenvalues
        v = w / beta
        basis.append(v)
    k = len(alphas)
    tridiagonal = np.diag(alphas) + np.diag(betas[:k - 1], 1) + np.diag(betas[:k - 1], -1)
    ritz = np.linalg.eigvalsh(tridiagonal)
    # The upper bound must overestimate lambda_max: the residual polynomial
    # 1 - t p(t) = T_m((theta - t)/delta)/T_m(theta/delta) is below 1 in
    # absolute value on [lo, hi] and, with theta/delta > 1, on (0, lo) too,
    # so p > 0 there; past hi, |T_m| grows without bound and for even m
    # it exceeds 1, making p(t) < 0 and M indefinite. The largest Ritz value
    # underestimates lambda_max; adding |beta_k| (the norm of the part of
    # A v_k outside the Krylov space) gives a bound that is safe in practice
    # (Zhou and Li, "Bounding the spectrum of large Hermitian matrices",
    # Linear Algebra Appl. 2011). The smallest Ritz value overestimates
    # lambda_min; that costs convergence but not positivity (see above).
    hi = float(ritz[-1]) + abs(betas[-1])
    lo = float(ritz[0])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("Lanczos met a non-finite value: A @ v is not finite")
    return lo, hi


def chebyshev(A: Any, degree: int = DEFAULT_DEGREE, bounds: tuple[float, float] | None = None,
              seed: int = 0) -> Chebyshev:
    """Chebyshev polynomial preconditioner ``M = p(A) ~ A^{-1}``.

    ``M r`` is ``degree`` steps (``degree`` matvecs with ``A``) of the
    Chebyshev iteration for ``A z = r`` from ``z = 0``: ``p`` has degree
    ``degree`` and the residual polynomial ``1 - t p(t)`` is the scaled
    Chebyshev polynomial ``T_{degree+1}((theta - t)/delta) / T_{degree+1}(theta/delta)``,
    ``theta, delta = (hi + lo)/2, (hi - lo)/2``, the smallest on ``[lo, hi]``
    of its degree. ``p > 0`` on ``(0, hi]``, so ``M`` is SPD when ``hi``
    bounds the spectrum of SPD ``A``. Matrix-free and backend-agnostic.

    Parameters
    ----------
    A : array, sparse matrix, LinearOperator, object with ``matvec``, or callable
        SPD, anything :func:`linsolve.as_operator` accepts (objects without
        an array namespace act on NumPy vectors; they need a ``shape``).
    degree : int
        Polynomial degree, ``>= 1``; default 4 (``DEFAULT_DEGREE``).
    bounds : (float, float), optional
        ``(lo, hi)`` with ``0 < lo < hi``, ``hi >= lambda_max(A)``. Default:
        estimated by 20 Lanczos steps (see :func:`lanczos_bounds`).
    seed : int
        Seed of the Lanczos start vector.

    Returns
    -------
    Chebyshev
        Operator with ``matvec``, ``shape``, ``dtype``, ``@``,
        ``aslinearoperator()``, ``degree`` and ``bounds``.

    Raises
    ------
    ValueError
        ``degree < 1``, invalid ``bounds``, or a Lanczos estimate showing
        that ``A`` is not positive definite.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve.precond import chebyshev
    >>> A = np.diag([1.0, 2.0, 3.0])
    >>> M = chebyshev(A, degree=8, bounds=(1.0, 3.0))
    >>> bool(np.allclose(M @ np.array([1.0, 2.0, 3.0]), np.ones(3), atol=1e-4))
    True
    >>> chebyshev(A).degree                       # the default degree
    4
    >>> chebyshev(A, degree=4).bounds[0] > 0      # Lanczos estimate
    True
    """
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree < 1:
        raise ValueError(f"degree must be an integer >= 1, got {degree!r}")
    xp, declared = _namespace_and_dtype(A)
    dtype = float_dtype(xp, declared)
    shape = getattr(A, "shape", None)
    if shape is None or len(tuple(shape)) != 2:
        raise TypeError("chebyshev() needs A with a shape (n, n); wrap a callable in a "
                        "scipy LinearOperator")
    n = int(tuple(shape)[0])
    operator = as_operator(A, xp, dtype, n, name="A")
    if bounds is None:
        lo, hi = lanczos_bounds(operator, seed=seed)
        if lo <= 0:
            raise ValueError(f"Lanczos found a Ritz value {lo:.3e} <= 0: A is not positive "
                             "definite (or pass bounds=(lo, hi) yourself)")
        # A multiple of the identity gives lo == hi; a hair of width keeps
        # delta > 0 and p(t) ~ 1/t there.
        hi = max(hi, lo * (1.0 + 1e-3))
    else:
        try:
            lo, hi = bounds
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be a pair (lo, hi), got {bounds!r}") from None
        lo, hi = check_real("bounds[0]", lo), check_real("bounds[1]", hi)
        if not 0 < lo < hi:
            raise ValueError(f"bounds must satisfy 0 < lo < hi, got ({lo}, {hi})")
    return Chebyshev(operator, int(degree), (lo, hi))
