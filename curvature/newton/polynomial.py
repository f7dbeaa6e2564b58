"""Polynomial preconditioning (Doikov and Rodomanov, "Polynomial Preconditioning for
Gradient Methods", ICML 2023).

For a symmetric positive definite ``B`` with eigenvalues ``lambda_1 >= ... >=
lambda_n > 0`` the preconditioner of degree ``tau`` is

    P_tau = sum_{i=0}^{tau} (-1)^i sigma_{tau-i}(B) B^i,

with ``sigma_k`` the elementary symmetric polynomials of the eigenvalues.
It shares ``B``'s eigenvectors: ``P_tau u_j = sigma_tau(lambda without
lambda_j) u_j``, so ``P_tau B`` has eigenvalues ``lambda_j
sigma_tau(lambda_{-j})``, all at most ``sigma_{tau+1}(lambda)``, and its
condition number is at most ``sum_{i > tau} lambda_i / lambda_n``: the
``tau`` largest eigenvalues are taken out of the trace bound.

The ``sigma_k`` come from the power traces ``p_k = tr(B^k)`` by Newton's
identities ``k sigma_k = sum_{i=1}^k (-1)^{i-1} sigma_{k-i} p_i``, either
exactly (``traces="exact"``: powers of the dense ``B``) or by Hutchinson
(``traces="hutchinson"``: ``p_k ~ mean z' B^k z``, one Krylov sequence
per probe). ``B`` is scaled by ``s = tr(B)`` first, so the scaled
eigenvalues sum to one and ``sigma_k <= 1/k!``: the identities then add
terms of similar size (their alternating sum cancels badly for large
``k``, which is why degrees stay small; the paper uses 1 to 3).
``P_tau`` is applied by Horner's rule in ``tau`` products.

Also here: the preconditioned gradient method ``x+ = x - P_tau g /
sigma_{tau+1}`` and its accelerated version (the paper's Algorithms 1
and 2, with ``f`` smooth relative to ``B``), and the adaptive Krylov
variant, which minimises the model ``f + g'h + (L/2) h'Bh`` over the
Krylov subspace ``span{g, Bg, ..., B^tau g}`` -- it contains every
``P_tau g`` -- with ``L`` found by backtracking.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any, Callable

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from linsolve import pcg

from ._hessian import (Objective, check_maxiter, check_positive, finish, new_recorder, norm,
                       prepare_x0, record, rounding_slack, stop_test)
from ..hutchinson import _check as _check_samples
from ..hutchinson import rademacher

__all__ = ["PolynomialPreconditioner", "polynomial_preconditioner",
           "elementary_symmetric_from_traces", "preconditioned_gradient",
           "preconditioned_fast_gradient", "krylov_gradient"]


_TRAPEZOID_FACTOR = 4500.0   # krylov_gradient's trapezoid switch: 4500 eps (1 + |f|),
                             # 1e-12 (1 + |f|) in float64


def elementary_symmetric_from_traces(power_traces) -> list[float]:
    """``sigma_0..sigma_K`` from ``p_1..p_K`` by Newton's identities.

    Examples
    --------
    >>> lam = np.array([1.0, 2.0, 3.0])
    >>> elementary_symmetric_from_traces([np.sum(lam ** k) for k in (1, 2, 3)])
    [1.0, 6.0, 11.0, 6.0]
    """
    sigma = [1.0]
    for k in range(1, len(power_traces) + 1):
        total = sum((-1) ** (i - 1) * sigma[k - i] * float(power_traces[i - 1])
                    for i in range(1, k + 1))
        sigma.append(total / k)
    return sigma


class PolynomialPreconditioner:
    """``P_tau`` of an SPD ``B``: ``solve(v) = P_tau v`` (an approximate inverse up to scale).

    Attributes
    ----------
    degree : int
    sigma : tuple of float
        ``sigma_0 .. sigma_{degree+1}`` of ``B``'s eigenvalues (estimated
        when the traces were).
    scale : float
        ``s = tr(B)`` used to normalise the power traces.
    lipschitz : float
        ``sigma_{degree+1}``, the bound on ``lambda_max(P_tau B)``: the step
        size of the preconditioned gradient method is its inverse.

    ``solve`` is what :func:`linsolve.pcg` calls for ``M``. ``matvec``
    (``P_tau^{-1} v``) exists for the curvature interface; it costs a CG
    solve with ``P_tau``.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve import pcg
    >>> B = np.diag([50.0, 3.0, 2.0, 1.0]); v = np.ones(4)
    >>> P = polynomial_preconditioner(B, 1)       # P_1 = sigma_1 I - B
    >>> bool(np.allclose(P.solve(v), (56.0 - np.diag(B)) * v))
    True
    >>> bool(np.allclose(P.solve(P.matvec(v)), v))
    True
    >>> pcg(B, v, M=P, rtol=1e-12).converged
    True
    """

    def __init__(self, matvec_B: Callable, n: int, xp, dtype, degree: int,
                 scaled_sigma: list[float], scale: float):
        self._B, self.n, self.xp, self.dtype = matvec_B, n, xp, dtype
        self.degree, self.scale = degree, scale
        self._scaled = scaled_sigma
        self.sigma = tuple(c * scale ** k for k, c in enumerate(scaled_sigma))
        self.lipschitz = self.sigma[degree + 1]
        self.shape = (n, n)

    def apply(self, v):
        """``P_tau v`` by Horner's rule (``degree`` products with ``B``)."""
        tau, s = self.degree, self.scale
        r = (-1.0) ** tau * v
        for i in range(tau - 1, -1, -1):
            r = self._B(r) / s + ((-1.0) ** i * self._scaled[tau - i]) * v
        return r * s ** tau

    solve = apply

    def matvec(self, v):
        """``P_tau^{-1} v`` by CG with :meth:`apply`, to ``rtol = max(1e-12, 1000 eps)``.

        ``eps`` of ``v``'s dtype: 1e-12 in float64; in float32 CG's true residual
        stalls near ``eps kappa(P_tau)`` (about 3e-7 for a ``P_tau`` of condition 3),
        so a fixed 1e-12 could never be met there.
        """
        xp = array_namespace(v)
        eps = float(xp.finfo(v.dtype).eps) if xp.isdtype(v.dtype, "real floating") else 0.0
        result = pcg(self.apply, v, rtol=max(1e-12, 1000.0 * eps), maxiter=10 * self.n)
        if not result.converged:
            raise RuntimeError(f"P_tau^{{-1}} v: the CG solve with P_tau did not converge "
                               f"({result.reason}); P_tau is ill-conditioned or not "
                               "positive definite at this degree")
        return result.x


def _dense(matvec, xp, n, dtype):
    """``B`` as an ``n x n`` array from ``n`` products ``matvec(e_i)``."""
    eye = xp.eye(n, dtype=dtype)
    return xp.stack([matvec(eye[:, i]) for i in range(n)], axis=1)


def polynomial_preconditioner(B: Any, degree: int, traces: str = "exact", *, samples: int = 30,
                              seed=None, n: int | None = None, xp=None
                              ) -> PolynomialPreconditioner:
    """Build ``P_tau`` for the SPD ``B`` (see the module docstring).

    Parameters
    ----------
    B : array (n, n), object with ``matvec``, or callable ``v -> B v``
    degree : int
        ``tau >= 0`` (0 gives the identity).
    traces : {"exact", "hutchinson"}
        How the power traces ``tr(B^k)``, ``k <= degree + 1``, are found:
        powers of the dense matrix (``n`` products to build it from an
        operator), or ``samples`` Rademacher probes (``(degree + 1)
        samples`` products).
    samples, seed : optional
        For ``"hutchinson"``.
    n, xp : optional
        Size and namespace when ``B`` is not an array (default NumPy).

    Raises
    ------
    ValueError
        Unknown ``traces``, negative degree, non-square ``B``, missing ``n``,
        non-positive estimated traces, ``samples`` not a positive integer, or
        (Hutchinson) an estimated ``sigma_k``, ``k <= degree + 1``, that is
        not positive.

    Examples
    --------
    >>> import numpy as np
    >>> B = np.diag([100.0, 10.0, 1.0, 1.0])
    >>> P = polynomial_preconditioner(B, degree=1)
    >>> P.sigma[:2], np.round(P.solve(np.ones(4)) * np.diag(B), 8).tolist()
    ((1.0, 112.0), [1200.0, 1020.0, 111.0, 111.0])
    """
    if traces not in ("exact", "hutchinson"):
        raise ValueError(f"unknown traces {traces!r}; expected 'exact' or 'hutchinson'")
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree < 0:
        raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
    degree = int(degree)
    if is_array_api_obj(B):
        xp = array_namespace(B)
        if B.ndim != 2 or B.shape[0] != B.shape[1]:
            raise ValueError(f"B must be a square 2-D array, got shape {tuple(B.shape)}")
        n = B.shape[0]
        dtype = B.dtype if xp.isdtype(B.dtype, "real floating") else xp.float64
        B = xp.astype(B, dtype)
        if not bool(xp.all(xp.isfinite(B))):
            raise ValueError("B contains NaN or Inf")
        matrix = B
        matvec = lambda v: matrix @ v  # noqa: E731
    else:
        matrix = None
        matvec = B.matvec if callable(getattr(B, "matvec", None)) else B
        if not callable(matvec):
            raise TypeError("B must be an array, an object with matvec, or a callable")
        n = n if n is not None else getattr(B, "shape", (None,))[0]
        if n is None:
            raise ValueError("pass n= for an operator B without a shape")
        if xp is None:
            xp = array_namespace(np.empty(0))
        dtype = xp.float64
    K = degree + 1
    if traces == "exact":
        D = matrix if matrix is not None else _dense(matvec, xp, n, dtype)
        D = (D + D.T) / 2
        if matrix is None and not bool(xp.all(xp.isfinite(D))):
            raise ValueError("B's products are not finite (NaN or Inf in B)")
        scale = float(xp.sum(xp.linalg.diagonal(D)))
        if not scale > 0:
            raise ValueError(f"tr(B) = {scale} is not positive: B is not SPD")
        scaled = D / scale
        power, power_traces = scaled, []
        for k in range(1, K + 1):
            power_traces.append(float(xp.sum(xp.linalg.diagonal(power))))
            if k < K:
                power = power @ scaled
    else:
        n, samples = _check_samples(n, samples)
        rng = np.random.default_rng(seed)
        probes = [xp.asarray(rademacher(rng, n), dtype=dtype) for _ in range(samples)]
        sums = [0.0] * K
        for z in probes:
            w = z
            for k in range(K):
                w = matvec(w)
                sums[k] += float(xp.sum(z * w))
        scale = sums[0] / samples
        if not all(math.isfinite(total) for total in sums):
            raise ValueError("B's products z' B^k z are not finite (NaN or Inf in B)")
        if not scale > 0:
            raise ValueError(f"estimated tr(B) = {scale} is not positive: B is not SPD")
        power_traces = [sums[k] / samples / scale ** (k + 1) for k in range(K)]
    sigma = elementary_symmetric_from_traces(power_traces)
    if traces == "hutchinson":
        # Noisy traces can give sigma_k <= 0, which no SPD matrix has: P_tau would
        # not be positive definite and 1/sigma_{tau+1} no step size.
        bad = [k for k in range(1, K + 1) if not sigma[k] > 0]
        if bad:
            raise ValueError(f"estimated sigma_{bad[0]} = {sigma[bad[0]]:.3e} is not positive "
                             f"(Hutchinson noise with samples={samples}): raise samples or "
                             "use traces='exact'")
    return PolynomialPreconditioner(matvec, n, xp, dtype, degree, sigma, scale)


def _gradient_loop(obj, rec, xp, x, direction, lipschitz, gtol, maxiter, start, accelerate,
                   strong_convexity):
    f, g = obj.fun(x), obj.grad(x)
    x_prev, k = x, 0
    if accelerate and strong_convexity:
        q = math.sqrt(strong_convexity / lipschitz)
        momentum = lambda k: (1 - q) / (1 + q)  # noqa: E731
    else:
        momentum = lambda k: (k - 1) / (k + 2)  # noqa: E731
    y, g_y = x, g
    while True:
        gnorm = norm(xp, g)
        record(rec, fun=f, grad_norm=gnorm, step=0.0 if k == 0 else 1.0 / lipschitz)
        done = stop_test(rec, x, f, gnorm, k, gtol, maxiter, start)
        if done is not None:
            return done
        x_new = y - direction(g_y) / lipschitz
        k += 1
        x_prev, x = x, x_new
        f, g = obj.fun(x), obj.grad(x)
        if accelerate:
            y = x + momentum(k) * (x - x_prev)
            g_y = obj.grad(y)
        else:
            y, g_y = x, g


def preconditioned_gradient(fun: Callable, grad: Callable, x0: Any,
                            preconditioner: PolynomialPreconditioner, *, gtol: float = 1e-8,
                            maxiter: int = 1000):
    """Gradient method ``x+ = x - P_tau g / sigma_{tau+1}`` (Doikov and Rodomanov, Alg. 1).

    Assumes ``0 <= grad^2 f <= B``; returns a :class:`linsolve.MinimizeResult`
    (reasons ``CONVERGED_GTOL``, ``DIVERGED_ITS``, ``DIVERGED_NANORINF``).

    Examples
    --------
    >>> import numpy as np
    >>> B = np.diag([100.0, 1.0, 1.0]); b = np.ones(3)
    >>> f, g = lambda x: 0.5 * x @ B @ x - b @ x, lambda x: B @ x - b
    >>> [preconditioned_gradient(f, g, np.zeros(3), polynomial_preconditioner(B, tau),
    ...                          gtol=1e-10, maxiter=5000).iterations for tau in (0, 1, 2)]
    [2373, 34, 1]
    """
    return _run(fun, grad, x0, preconditioner, gtol, maxiter, accelerate=False,
                strong_convexity=None)


def preconditioned_fast_gradient(fun: Callable, grad: Callable, x0: Any,
                                 preconditioner: PolynomialPreconditioner, *,
                                 strong_convexity: float | None = None, gtol: float = 1e-8,
                                 maxiter: int = 1000):
    """Accelerated version (Nesterov's momentum in the ``P_tau^{-1}`` norm; Alg. 2).

    ``strong_convexity`` (``mu`` with ``grad^2 f >= mu P_tau^{-1}``) gives
    the constant momentum ``(1 - q)/(1 + q)``, ``q = sqrt(mu / sigma_{tau+1})``;
    without it the convex schedule ``(k - 1)/(k + 2)``, which on strongly
    convex problems may take no fewer steps than the plain method.

    Examples
    --------
    >>> import numpy as np
    >>> B = np.diag(np.r_[400.0, 200.0, np.linspace(1.0, 2.0, 8)]); b = np.ones(10)
    >>> f, g = lambda x: 0.5 * x @ B @ x - b @ x, lambda x: B @ x - b
    >>> P = polynomial_preconditioner(B, 2)
    >>> mu = float(min(np.linalg.eigvals(P.solve(np.eye(10)) @ B).real))  # of P_2 B
    >>> plain = preconditioned_gradient(f, g, np.zeros(10), P, gtol=1e-10)
    >>> fast = preconditioned_fast_gradient(f, g, np.zeros(10), P, strong_convexity=mu,
    ...                                     gtol=1e-10)
    >>> fast.converged, fast.iterations < plain.iterations
    (True, True)
    >>> bool(np.allclose(fast.x, np.linalg.solve(B, b)))
    True
    """
    if strong_convexity is not None:
        strong_convexity = check_positive("strong_convexity", strong_convexity,
                                          allow_zero=True)
        if isinstance(preconditioner, PolynomialPreconditioner) \
                and strong_convexity > preconditioner.lipschitz:
            raise ValueError(f"strong_convexity {strong_convexity:.6g} exceeds the smoothness "
                             f"constant sigma_{{tau+1}} = {preconditioner.lipschitz:.6g}; "
                             "mu <= L always holds, so mu is wrong")
    return _run(fun, grad, x0, preconditioner, gtol, maxiter, accelerate=True,
                strong_convexity=strong_convexity)


def _run(fun, grad, x0, preconditioner, gtol, maxiter, accelerate, strong_convexity):
    start = time.perf_counter()
    if not isinstance(preconditioner, PolynomialPreconditioner):
        raise TypeError("preconditioner must come from polynomial_preconditioner()")
    gtol = check_positive("gtol", gtol, allow_zero=True)
    maxiter = check_maxiter(maxiter)
    xp, x = prepare_x0(x0)
    if x.shape[0] != preconditioner.n:
        raise ValueError(f"x0 has {x.shape[0]} entries, the preconditioner {preconditioner.n}")
    rec = new_recorder()
    obj = Objective(fun, grad, xp, x.shape[0], x.dtype, rec)
    return _gradient_loop(obj, rec, xp, x, preconditioner.apply, preconditioner.lipschitz, gtol,
                          maxiter, start, accelerate, strong_convexity)


def krylov_gradient(fun: Callable, grad: Callable, B: Any, x0: Any, degree: int, *,
                    lipschitz: float = 1.0, gtol: float = 1e-8, maxiter: int = 1000):
    """Adaptive Krylov-subspace variant: the best step in ``span{g, ..., B^tau g}``.

    Each iteration minimises ``g'h + (L/2) h'Bh`` over the Krylov subspace
    (an orthonormal Arnoldi basis, a ``(tau+1)``-sized solve), accepts when
    ``f(x + h) <= f(x) + g'h + (L/2) h'Bh`` (else ``L`` doubles), then halves
    ``L``. Where ``f(x + h) - f(x)`` is within the rounding of ``f`` the
    difference is taken as ``(g(x) + g(x + h))'h / 2`` instead (Hager and
    Zhang's approximate test), so the method does not stall near the
    optimum. It needs no traces and adapts to the spectrum: the subspace
    contains every ``P_tau g``, so the model decrease is at least that of
    the preconditioned gradient step with the same ``L``.

    ``B`` is an ``(n, n)`` array, an object with ``matvec`` or a callable
    ``v -> B v``; an iteration costs ``degree + 1`` products with it.
    Returns a :class:`linsolve.MinimizeResult`; ``DIVERGED_LINE_SEARCH``
    when 60 doublings of ``L`` found no decrease, ``DIVERGED_BREAKDOWN``
    when ``V'BV`` is singular (a semidefinite ``B``). The trapezoid switch
    below applies when ``|f(x + h) - f(x)| <= 4500 eps (1 + |f|)`` (``eps``
    of ``x0``'s dtype).

    Examples
    --------
    >>> import numpy as np
    >>> B = np.diag([100.0, 10.0, 1.0, 1.0]); b = np.ones(4)
    >>> r = krylov_gradient(lambda x: 0.5 * x @ B @ x - b @ x, lambda x: B @ x - b, B,
    ...                     np.zeros(4), degree=2, gtol=1e-10)
    >>> r.converged, r.iterations
    (True, 1)
    """
    start = time.perf_counter()
    lipschitz = check_positive("lipschitz", lipschitz)
    gtol = check_positive("gtol", gtol, allow_zero=True)
    maxiter = check_maxiter(maxiter)
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree < 0:
        raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
    xp, x = prepare_x0(x0)
    n = x.shape[0]
    if is_array_api_obj(B):
        if tuple(B.shape) != (n, n):
            raise ValueError(f"B has shape {tuple(B.shape)}; x0 has {n} entries, so B must "
                             f"be ({n}, {n})")
        matvec = lambda v: B @ v  # noqa: E731
    else:
        matvec = B.matvec if callable(getattr(B, "matvec", None)) else B
        if not callable(matvec):
            raise TypeError("B must be an array, an object with matvec, or a callable")
        shape = getattr(B, "shape", None)
        if shape is not None and tuple(shape) != (n, n):
            raise ValueError(f"B has shape {tuple(shape)}; x0 has {n} entries, so B must "
                             f"be ({n}, {n})")
    rec = new_recorder()
    obj = Objective(fun, grad, xp, x.shape[0], x.dtype, rec)
    f, g = obj.fun(x), obj.grad(x)
    L, k = lipschitz, 0
    while True:
        gnorm = norm(xp, g)
        record(rec, fun=f, grad_norm=gnorm, step=0.0 if k == 0 else 1.0 / L)
        done = stop_test(rec, x, f, gnorm, k, gtol, maxiter, start)
        if done is not None:
            return done
        # Arnoldi with re-orthogonalisation: raw powers B^j g differ in scale by
        # lambda_max^j and their QR loses the small-eigenvalue directions.
        # The products B q_j of the Arnoldi loop are kept for T = V'BV, so an
        # iteration costs tau + 1 products (tau for the basis, one for its last vector).
        basis, products = [g / gnorm], []
        for _ in range(degree):
            Bq = matvec(basis[-1])
            products.append(Bq)
            w = Bq
            for _ in range(2):
                for q in basis:
                    w = w - float(xp.sum(q * w)) * q
            w_norm = norm(xp, w)
            if not w_norm > 1e-10 * max(norm(xp, Bq), 1e-300):
                break  # the Krylov space has no further direction
            basis.append(w / w_norm)
        if len(products) < len(basis):
            products.append(matvec(basis[-1]))
        V = xp.stack(basis, axis=1)
        BV = xp.stack(products, axis=1)
        T = V.T @ BV
        T = (T + T.T) / 2
        Vg = V.T @ g
        slack = rounding_slack(xp, x.dtype, f, _TRAPEZOID_FACTOR)
        for _ in range(60):
            try:
                c = xp.linalg.solve(T, -Vg / L)
            except np.linalg.LinAlgError:   # also CuPy's and array_api_strict's error
                return finish(rec, x, f, "DIVERGED_BREAKDOWN", k, start,
                              "V'BV is singular on the Krylov subspace: B is not positive "
                              "definite there")
            h = V @ c
            model_decrease = float(xp.sum(Vg * c)) + 0.5 * L * float(xp.sum(c * (T @ c)))
            f_new, g_new = obj.fun(x + h), None
            decrease = f_new - f
            if math.isfinite(f_new) and abs(decrease) <= slack:
                # f's rounding swamps the decrease near the optimum: use the
                # trapezoid (g + g_new)'h / 2 instead, as Hager and Zhang's
                # approximate Wolfe test does (exact on quadratics).
                g_new = obj.grad(x + h)
                decrease = 0.5 * float(xp.sum((g + g_new) * h))
            if math.isfinite(f_new) and decrease <= (1.0 - 1e-8) * model_decrease:
                break
            L *= 2.0
        else:
            return finish(rec, x, f, "DIVERGED_LINE_SEARCH", k, start,
                          "no decrease after 60 doublings of L")
        x = x + h
        f, g = f_new, (obj.grad(x) if g_new is None else g_new)
        L = L / 2.0
        k += 1
