"""Chebyshev polynomial preconditioning: ``M = p(A)``, ``p`` from the Chebyshev iteration."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from cext.reference.chebyshev import chebyshev_combine

from ..core.operators import as_operator, is_cupyx_sparse, is_scipy_sparse
from ._base import Preconditioner, check_real, float_dtype

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
        self._steps = chebyshev_steps(degree, bounds)
        self._fused = _fused_step(operator)

    def _apply(self, r):
        # Saad, Iterative Methods for Sparse Linear Systems (2nd ed.),
        # Algorithm 12.1, from x_0 = 0 (so r_0 = r and the first step is
        # free) run for degree + 1 steps: degree matvecs, x = p(A) r with
        # 1 - t p(t) = T_{degree+1}((theta - t)/delta) / T_{degree+1}(theta/delta).
        # Departure: run in its three-term form (Golub and Varga), with
        # d_{k-1} = z_k - z_{k-1} and the residual r - A z_k from its
        # definition, so one step is one pass over A and three vectors
        # (cext.numba.chebyshev), and z_1 = r/theta is never stored. Same
        # polynomial; the iterates differ from Algorithm 12.1's in rounding.
        if self._fused is not None:
            return self._apply_fused(r)
        operator = self._operator
        # the same vector formula as the fused kernels, on new arrays
        # (any namespace, any operator: dense, matrix-free, CuPy)
        y, w = r, r
        for sy, sw, a, b in self._steps:
            y, w = chebyshev_combine(r, y, w, operator.matvec(y), sy, sw, a, b), y
        return y

    def _apply_block(self, R):
        # the vector formula on the (n, k) block: each step one product of A with the
        # block (one pass over A for CSR and DIA); the same polynomial as the vector
        # form, the columns equal to matvec's to rounding
        if self.xp.__name__ != "array_api_compat.numpy" or self._operator.layout not in (
                "csr", "dia"):
            return None
        Y, W = R, R
        for sy, sw, a, b in self._steps:
            Y, W = chebyshev_combine(R, Y, W, self._operator.matmat(Y), sy, sw, a, b), Y
        return Y

    def _apply_fused(self, r):
        # z_1 = r/theta and z_0 = 0 are read from r (scales sy, sw); z_2 and
        # z_3 go to two new buffers, and from then on each step overwrites
        # the older of the two (out is w: one pass, no temporaries)
        if not (r.flags.c_contiguous and r.flags.writeable):
            r = np.array(r)  # one compiled signature per dtype (contiguous, writable)
        step, matrix = self._fused
        scalar = np.dtype(self.dtype).type  # float32 matrices: float32 scalars, no upcast
        y, w = r, r
        buffers = [np.empty_like(r), np.empty_like(r)]
        for k, (sy, sw, a, b) in enumerate(self._steps):
            out = step(*matrix, r, y, w, buffers[k % 2],
                       scalar(sy), scalar(sw), scalar(a), scalar(b))
            y, w = out, (r if k == 0 else y)
        return y


def chebyshev_steps(degree: int, bounds: tuple[float, float]) -> tuple[tuple[float, ...], ...]:
    """Coefficients ``(sy, sw, a, b)`` of each of the ``degree`` steps of the three-term form.

    Step ``k`` makes ``z_{k+1} = z_k + a (z_k - z_{k-1}) + b (r - A z_k)``
    from ``z_1 = r/theta``, ``z_0 = 0``, with Algorithm 12.1's
    ``rho_{k} = 1/(2 sigma - rho_{k-1})``, ``rho_0 = 1/sigma``,
    ``sigma = theta/delta``: ``a = rho_k rho_{k-1}``, ``b = 2 rho_k/delta``.
    ``sy, sw`` scale the vectors the step reads (see
    :mod:`cext.numba.chebyshev`): the first step reads ``z_1`` and ``z_0``
    as ``r/theta`` and ``0 * r``, the second ``z_1`` as ``r/theta``.

    Examples
    --------
    >>> [tuple(round(c, 6) for c in step) for step in chebyshev_steps(2, (1.0, 3.0))]
    [(0.5, 0.0, 0.142857, 0.571429), (1.0, 0.5, 0.076923, 0.538462)]
    """
    lo, hi = bounds
    theta, delta = (hi + lo) / 2.0, (hi - lo) / 2.0
    sigma = theta / delta
    rho = 1.0 / sigma
    steps = []
    for k in range(degree):
        rho_next = 1.0 / (2.0 * sigma - rho)
        sy = 1.0 / theta if k == 0 else 1.0
        sw = 0.0 if k == 0 else (1.0 / theta if k == 1 else 1.0)
        steps.append((sy, sw, rho_next * rho, 2.0 * rho_next / delta))
        rho = rho_next
    return tuple(steps)


def _fused_step(operator):
    """``(kernel, matrix arrays)`` of the fused step for a CSR or DIA NumPy operator, else None.

    The kernel comes from the registry (wrapped by the thread policy).
    CuPy operators take the generic path: its product is CuPy's own kernel,
    where the reference step would pad the rows on the device.
    """
    layout = getattr(operator, "layout", None)
    if layout not in ("csr", "dia") or operator.kernels.backend != "numba":
        return None
    name = f"{layout}_chebyshev_step"
    kernel = getattr(operator.kernels, name)
    if layout == "csr":
        return kernel, (operator.indptr, operator.indices, operator.data)
    return kernel, (operator.offsets, operator.values)


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

    ``steps`` steps of the plain three-term Lanczos recurrence from a seeded
    random start (uniform on ``[-1, 1)``); ``lo`` is the smallest Ritz value
    and ``hi`` the largest plus ``|beta_last|``. Each step is one product
    with ``A`` fused with the step's vector update and ``alpha`` (one pass
    over ``A`` for a CSR or DIA NumPy operator), and one pass over two
    vectors for ``beta``: the MINRES kernels
    (:func:`cext.numba.minres.csr_minres_lanczos`,
    :func:`~cext.numba.minres.minres_orthogonalize`), which every backend has.
    Their dots are summed in parallel on large matrices, so, like pcg's
    iterates, the bounds may differ in the last bits between thread counts.

    Examples
    --------
    >>> import numpy as np
    >>> from array_api_compat import array_namespace
    >>> from linsolve import as_operator
    >>> op = as_operator(np.diag([1.0, 2.0, 5.0]), array_namespace(np.ones(1)), np.float64, 3)
    >>> [round(v, 8) for v in lanczos_bounds(op)]
    [1.0, 5.0]
    """
    # Without reorthogonalisation, as PETSc's and hypre's Chebyshev estimates run
    # (Paige: lost orthogonality duplicates converged Ritz values, it does not move
    # the extreme ones out of the spectrum's hull). Full reorthogonalisation (twice
    # against every earlier vector: about 400 vector passes for 20 steps, ten times
    # the cost) bought nothing measurable: pcg + chebyshev iterations to rtol 1e-8,
    # random b, 2-D Poisson N = 512 / scikit-fem P1 triangles / P1 tetrahedra /
    # P2 tetrahedra / elasticity (bench.fem): 338 / 344 / 67 / 79 / 262 with it,
    # 338 / 344 / 67 / 80 / 260 now. Fewer steps raise lo (the smallest Ritz value
    # converges slowest): 15 steps cost those solves about one iteration more, 10
    # steps up to seven.
    xp, n = operator.xp, operator.shape[0]
    if n == 0:
        raise ValueError("A is 0 x 0: it has no spectrum to estimate; pass bounds=(lo, hi) "
                         "to chebyshev() yourself")
    kernels = operator.kernels
    fused = kernels.backend == "numba" and operator.layout in ("csr", "dia")
    rng = np.random.default_rng(seed)
    # uniform, not Gaussian: a random start either way, drawn five times faster
    start = rng.random(n)
    start = 2.0 * start - 1.0
    # scipy minres's names (linsolve.krylov.minres): y = beta v is the Lanczos vector
    # v_k unnormalised, r1 the previous one (oldb v_{k-1}), r2 = y
    y = xp.asarray(start, dtype=operator.dtype)
    beta_sq = float(kernels.dot(y, y))
    beta, oldb = math.sqrt(beta_sq), 0.0
    r1, r2 = xp.zeros_like(y), y
    alphas: list[float] = []
    betas: list[float] = []
    eps = float(np.finfo(np.float32 if str(operator.dtype).endswith("float32") else np.float64).eps)
    scale = 0.0
    for k in range(min(steps, n)):
        # r1 <- A v - (beta/oldb) r1 = A v - beta_k v_{k-1}; alpha = v . r1, after the
        # subtraction (Paige's stable order); then r1 -= alpha v, and beta_{k+1} = |r1|
        sr = -beta / oldb if k else 0.0
        if fused:
            if operator.layout == "csr":
                r1, yr = kernels.csr_minres_lanczos(operator.indptr, operator.indices,
                                                    operator.data, y, r1, 1.0 / beta, 0.0, sr)
            else:
                r1, yr = kernels.dia_minres_lanczos(operator.offsets, operator.values, y, r1,
                                                    1.0 / beta, 0.0, sr)
        else:
            r1, yr = kernels.minres_lanczos(operator.matvec(y), y, r1, 1.0 / beta, 0.0, sr)
        alpha = float(yr) / beta
        if not math.isfinite(alpha):  # before it spreads through r1 (and warns on the way)
            raise ValueError("Lanczos met a non-finite value: A @ v is not finite")
        r1, pp = kernels.minres_orthogonalize(r1, r2, alpha / beta)
        r1, r2 = r2, r1
        y = r2
        oldb, beta = beta, math.sqrt(float(pp))
        alphas.append(alpha)
        betas.append(beta)
        scale = max(scale, abs(alpha) + beta + oldb * (k > 0))
        if not math.isfinite(beta) or beta <= 10 * n * eps * scale:
            break  # invariant subspace: the Ritz values are eigenvalues
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

    Cost of ``M @ r``: ``degree`` products with ``A``. On a scipy sparse
    ``A`` (CSR, or DIA for stencils) each degree step is one compiled pass
    over ``A`` that also does the step's vector work, in ``A``'s precision
    (float32 stays float32); other inputs run the same recurrence on arrays.

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
