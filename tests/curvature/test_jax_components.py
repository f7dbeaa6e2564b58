"""Every public curvature component on JAX and ``array_api_strict``, against NumPy.

Each case runs one component (a public function or class of
:mod:`curvature`, plus :func:`linsolve.pcg` on a matrix-free operator) on
small seeded data, once on the backend under test in float32 or float64 and
once on NumPy in float64, *through the same code*: the comparison checks
that the component runs on the namespace (JAX arrays are immutable) and
computes the same thing, not what the right answer is -- the module's own
tests do that. Changes to a component's semantics therefore move both runs.

Tolerances are derived, per case, as

    || y - y_ref || / || y_ref ||  <=  C * eps(dtype) * kappa  +  slack,

* ``eps(dtype)``: the unit roundoff of the dtype under test (float32 input
  is rounded to float32 before the run, so even an exact algorithm is off
  by ``eps32 * kappa`` from the float64 reference);
* ``kappa``: the condition-ish number of what the component computes,
  measured on the float64 reference run and named in each case (the
  condition number of the matrix solved with, ``lambda_max / damping`` for
  M-FAC's Woodbury form, the product of the factors' condition numbers for
  Kronecker products, eigenvalue gaps for eigenbases);
* ``C = 10 * n`` with ``n`` the problem size: ``n`` for the length of the
  sums in a product or factorisation, ``10`` for the few such steps chained
  (inputs rounded, a product, a solve, a product back);
* ``slack``: where a run stops on a tolerance, both runs stop anywhere
  inside it: ``2 * gtol / (mu ||x*||)`` for minimizers stopped at
  ``||grad|| <= gtol`` on a ``mu``-strongly convex problem, ``2 * kappa *
  rtol`` for CG stopped at ``||r|| <= rtol ||b||``. Stopping tolerances are
  set from the *tested* dtype (``gtol = sqrt(eps)``, attainable in
  float32) and the NumPy reference uses the same values.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from array_api_compat import array_namespace

import curvature
from curvature import (KFAC, MFAC, MKOR, SOAP, BlockedMFAC, DistributedShampoo, MFACStatic,
                       Shampoo, cubic_step, damped_newton, gradient_normalized_newton,
                       hutchinson_diagonal, hutchpp_trace, inverse_root, kl_clip_scale,
                       krylov_gradient, lazy_newton, polynomial_preconditioner,
                       precondition_layers, preconditioned_fast_gradient,
                       preconditioned_gradient, sherman_morrison_step)
from curvature.hutchinson import rademacher
from linsolve import pcg

from tests.conftest import Backend, load_backend
from tests.problems import random_spd


@dataclass(frozen=True)
class Context:
    """Where a case runs: the backend, the working dtype, and the tested dtype's eps
    (which sets the stopping tolerances of both runs)."""

    backend: Backend
    dtype_name: str
    eps: float

    @property
    def xp(self):
        return self.backend.xp

    @property
    def dtype(self):
        return self.backend.dtype(self.dtype_name)

    @property
    def gtol(self) -> float:
        return math.sqrt(self.eps)

    def array(self, a):
        return self.backend.asarray(a, self.dtype_name)


@dataclass
class Outcome:
    """What a case returns: outputs to compare, and (read from the reference run) its
    ``kappa``, size ``n`` and stopping ``slack``."""

    outputs: dict[str, Any]
    kappa: float = 1.0
    n: int = 1
    slack: float = 0.0
    host_outputs: bool = False   # the component returns NumPy arrays by design


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Context], Outcome]
    covers: tuple[str, ...]      # the public names it exercises


CASES: dict[str, Case] = {}


def case(name: str, *covers: str):
    def register(run):
        CASES[name] = Case(name, run, covers or (name,))
        return run
    return register


def _np(x) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        return np.asarray(x, dtype=np.float64)
    return Backend.to_numpy(x).astype(np.float64)


def _cond(M) -> float:
    """Condition number of a symmetric matrix (inf for a semidefinite one)."""
    w = np.linalg.eigvalsh(_np(M))
    return float(w[-1] / w[0]) if w[0] > 0 else math.inf


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- M-FAC ---------------------------------------------------------------------
# One size for every window here (d = 12, m = 3): JAX compiles each operation once
# per shape and dtype, and that compilation, not the arithmetic, is this file's cost.

def _mfac_outcome(op, ctx, v, d):
    F = op.matvec  # kappa_W = lambda_max(F) / damping (the Woodbury cancellation)
    dense = np.stack([_np(F(ctx.array(e))) for e in np.eye(d)])
    kappa = float(np.linalg.eigvalsh((dense + dense.T) / 2)[-1] / op.damping)
    return Outcome({"solve": op.solve(ctx.array(v)), "matvec": op.matvec(ctx.array(v))},
                   kappa=kappa, n=d)


@case("MFAC")
def _mfac(ctx):
    rng = _rng(1)
    grads, v = rng.standard_normal((5, 12)), rng.standard_normal(12)
    op = MFAC(12, m=3, damping=0.1, dtype=ctx.dtype_name, xp=ctx.xp)
    for g in grads:
        op.update(ctx.array(g))
    return _mfac_outcome(op, ctx, v, 12)


@case("BlockedMFAC")
def _blocked_mfac(ctx):
    rng = _rng(2)
    grads, v = rng.standard_normal((5, 12)), rng.standard_normal(12)
    op = BlockedMFAC([7, 5], m=3, damping=0.1, dtype=ctx.dtype_name, xp=ctx.xp)
    for g in grads:
        op.update(ctx.array(g))
    return _mfac_outcome(op, ctx, v, 12)


@case("MFACStatic")
def _mfac_static(ctx):
    rng = _rng(3)
    G, v = rng.standard_normal((3, 12)), rng.standard_normal(12)
    op = MFACStatic(ctx.array(G), damping=0.1)
    F = 0.1 * np.eye(12) + G.T @ G / 3
    return Outcome({"solve": op.solve(ctx.array(v)), "matvec": op.matvec(ctx.array(v)),
                    "inverse_diagonal": op.inverse_diagonal(),
                    "inverse_column": op.inverse_column(3),
                    "inverse_entry": op.inverse_entry(2, 7)},
                   kappa=float(np.linalg.eigvalsh(F)[-1] / 0.1), n=12)


# --- K-FAC and MKOR ----------------------------------------------------------------

def _kfac_layer(ctx, seed, mode="eigen", **kw):
    rng = _rng(seed)
    layer = KFAC(3, 2, damping=1e-2, mode=mode, **kw)
    for _ in range(3):
        layer.update(ctx.array(rng.standard_normal((16, 3))),
                     ctx.array(rng.standard_normal((16, 2))))
    return layer, rng


def _kron_kappa(layer) -> float:
    """Condition number of the damped ``kron(A, G) + lambda I`` (eigen mode), or of the
    product of the damped factors (inverse mode): both bounded by this."""
    A, G = (np.linalg.eigvalsh(_np(F)) for F in layer.factors)
    lam = layer.damping
    return float((A[-1] * G[-1] + lam + math.sqrt(lam) * (A[-1] + G[-1]))
                 / (max(A[0] * G[0], 0.0) + lam))


def _kfac_outcome(ctx, layer, rng):
    grad_W = rng.standard_normal((2, 4))
    v = rng.standard_normal(8)
    return Outcome({"precondition": layer.precondition(ctx.array(grad_W)),
                    "solve": layer.solve(ctx.array(v)), "matvec": layer.matvec(ctx.array(v)),
                    "A": layer.factors[0], "G": layer.factors[1]},
                   kappa=_kron_kappa(layer), n=8)


@case("KFAC[eigen]", "KFAC")
def _kfac_eigen(ctx):
    return _kfac_outcome(ctx, *_kfac_layer(ctx, 4))


@case("KFAC[inverse]", "KFAC")
def _kfac_inverse(ctx):
    return _kfac_outcome(ctx, *_kfac_layer(ctx, 5, mode="inverse", pi_heuristic=True))


@case("precondition_layers")
def _precondition_layers(ctx):
    layers = [_kfac_layer(ctx, seed)[0] for seed in (6, 7, 8)]
    layers.append(_kfac_layer(ctx, 9, mode="inverse")[0])
    rng = _rng(10)
    grads = [ctx.array(rng.standard_normal((2, 4))) for _ in layers]
    results = precondition_layers(layers, grads)
    return Outcome({f"layer{i}": D for i, D in enumerate(results)},
                   kappa=max(_kron_kappa(layer) for layer in layers), n=8)


@case("kl_clip_scale")
def _kl_clip(ctx):
    rng = _rng(11)
    D = [ctx.array(rng.standard_normal((3, 4)) + 2.0) for _ in range(2)]
    g = [ctx.array(rng.standard_normal((3, 4)) + 2.0) for _ in range(2)]
    # a sum of 24 positive-mean products: kappa = sum |D g| / |sum D g|
    terms = sum(float(np.sum(np.abs(_np(a) * _np(b)))) for a, b in zip(D, g))
    total = abs(sum(float(np.sum(_np(a) * _np(b))) for a, b in zip(D, g)))
    return Outcome({"scale": kl_clip_scale(D, g, lr=0.5, kl_clip=1e-3)},
                   kappa=terms / total, n=24)


@case("sherman_morrison_step")
def _sherman_morrison(ctx):
    J = np.linalg.inv(random_spd(5, cond=10.0, seed=12))
    v = _rng(12).standard_normal(5)
    J_new, accepted = sherman_morrison_step(ctx.array(J), ctx.array(v), 0.9)
    return Outcome({"J": J_new, "accepted": accepted}, kappa=_cond(J_new), n=5)


@case("MKOR")
def _mkor(ctx):
    rng = _rng(13)
    layer = MKOR(3, 2, decay=0.9)
    for _ in range(4):
        layer.update(ctx.array(rng.standard_normal((16, 3))),
                     ctx.array(rng.standard_normal((16, 2))))
    grad_W, v = rng.standard_normal((2, 4)), rng.standard_normal(8)
    J_A, J_G = layer.inverses
    return Outcome({"precondition": layer.precondition(ctx.array(grad_W)),
                    "solve": layer.solve(ctx.array(v)), "matvec": layer.matvec(ctx.array(v)),
                    "J_A": J_A, "J_G": J_G},
                   # four chained rank-1 updates, each conditioned like the result
                   kappa=4 * _cond(J_A) * _cond(J_G), n=8)


# --- Shampoo, SOAP -------------------------------------------------------------------

def _factor_kappa(factors) -> float:
    """Inverse roots of the factors: their condition numbers bound the roots' sensitivity."""
    return max(_cond(F) for F in factors if F is not None and F.ndim == 2)


# Not compared in the Shampoo cases: the first direction. Its factors are one
# gradient's G G' and G'G, singular for a non-square G (and rank one for a vector):
# the root then resolves rounding in their null space, amplified by eps^(-1/p).
# From the second step on the factors are full rank and kappa is theirs.

@case("Shampoo")
def _shampoo(ctx):
    rng = _rng(14)
    opt = Shampoo((4, 3), eps=1e-6)
    opt.update(ctx.array(rng.standard_normal((4, 3))))
    directions = {f"step{t}": opt.update(ctx.array(rng.standard_normal((4, 3))))
                  for t in range(1, 3)}
    directions["solve"] = opt.solve(ctx.array(rng.standard_normal(12)))
    return Outcome(directions, kappa=_factor_kappa(opt.factors), n=12)


def _gap_kappa(factors) -> float:
    """Eigenbasis sensitivity: ``||F|| / min gap`` of each factor's eigenvalues."""
    worst = 1.0
    for F in factors:
        if F is None:
            continue
        w = np.linalg.eigvalsh(_np(F))
        worst = max(worst, float(w[-1] / np.min(np.diff(w))))
    return worst


@case("SOAP")
def _soap(ctx):
    rng = _rng(15)
    opt = SOAP((4, 3), precondition_frequency=2)
    # Not compared: the first direction. Its basis comes from the first gradient's own
    # factors G G' and G'G, so the rotated gradient is G's diagonal singular-value
    # matrix; Adam's first step is the sign of each entry, and the off-diagonal zeros
    # come out as rounding with arbitrary signs (ill-posed in any precision).
    opt.update(ctx.array(rng.standard_normal((4, 3))))
    directions = {f"step{t}": opt.update(ctx.array(rng.standard_normal((4, 3))))
                  for t in range(1, 4)}
    return Outcome(directions, kappa=_gap_kappa(opt.factors), n=12)


@case("DistributedShampoo")
def _distributed_shampoo(ctx):
    from linsolve.mpi import SerialComm

    rng = _rng(16)
    # (2,): three vector gradients make its 2 x 2 factor full rank (a (5,) vector's
    # would have rank 3 and a root that resolves rounding in the null space).
    opt = DistributedShampoo([(4, 3), (2,)], comm=SerialComm(), eps=1e-6)
    outputs = {}
    for t in range(3):
        grads = [ctx.array(rng.standard_normal((4, 3))), ctx.array(rng.standard_normal(2))]
        for i, D in enumerate(opt.update(grads)):
            if t > 0:
                outputs[f"step{t}_param{i}"] = D
    factors = [F for block in opt.blocks.values() for F in block.factors]
    return Outcome(outputs, kappa=_factor_kappa(factors), n=12, host_outputs=True)


@case("inverse_root", "inverse_root", "RootInfo")
def _inverse_root(ctx):
    A = random_spd(6, cond=100.0, seed=17)
    tol = 1000 * ctx.eps
    X_eigh = inverse_root(ctx.array(A), 4, eps=0.0, method="eigh")
    X_newton, info = inverse_root(ctx.array(A), 4, eps=0.0, method="newton", tol=tol,
                                  return_info=True)
    # Newton stops at max|M - I| <= tol: X is off by about n tol / p from the root.
    return Outcome({"eigh": X_eigh, "newton": X_newton, "converged": info.converged},
                   kappa=100.0, n=6, slack=2 * 6 * tol / 4)


# --- Hutchinson ---------------------------------------------------------------------

@case("hutchinson_diagonal")
def _hutchinson(ctx):
    H = ctx.array(random_spd(6, cond=10.0, seed=18))
    estimate = hutchinson_diagonal(lambda v: H @ v, 6, samples=20, seed=0, xp=ctx.xp,
                                   dtype=ctx.dtype)
    return Outcome({"diagonal": estimate}, kappa=10.0, n=6)


@case("hutchpp_trace")
def _hutchpp(ctx):
    H = ctx.array(random_spd(6, cond=10.0, seed=19))
    trace = hutchpp_trace(lambda v: H @ v, 6, samples=7, seed=1, xp=ctx.xp, dtype=ctx.dtype)
    # The range sketch Q = qr(H S) is as well conditioned as H S: kappa(H) kappa(S), with
    # S the first 6 x 2 Rademacher draw of the seed (a seed that draws two equal columns
    # leaves Q's second column rounding noise: an ill-posed estimate).
    sketch = rademacher(np.random.default_rng(1), (6, 2))
    return Outcome({"trace": trace}, kappa=10.0 * float(np.linalg.cond(sketch)), n=6)


# --- Newton-type minimizers ---------------------------------------------------------
# f(x) = x'Ax/2 - b'x + sum(x^4)/4: strongly convex with mu = lambda_min(A) = 1.

_QUARTIC_A = random_spd(6, cond=10.0, seed=20)
_QUARTIC_B = _rng(20).standard_normal(6)


def _quartic(ctx):
    xp = ctx.xp
    A, b = ctx.array(_QUARTIC_A), ctx.array(_QUARTIC_B)
    eye = xp.eye(6, dtype=ctx.dtype)

    def fun(x):
        return float(0.5 * xp.sum(x * (A @ x)) - xp.sum(b * x) + 0.25 * xp.sum(x ** 4))

    def grad(x):
        return A @ x - b + x ** 3

    def hess(x):
        return A + 3.0 * eye * (x ** 2)[None, :]

    def hvp(x, v):
        return A @ v + 3.0 * (x ** 2) * v

    return fun, grad, hess, hvp, ctx.array(np.zeros(6))


def _minimizer_outcome(ctx, result):
    x = _np(result.x)
    H = _QUARTIC_A + 3.0 * np.diag(x ** 2)
    return Outcome({"x": result.x, "fun": result.fun}, kappa=_cond(H), n=6,
                   slack=2 * ctx.gtol / (1.0 * np.linalg.norm(x)))


@case("damped_newton")
def _damped_newton(ctx):
    fun, grad, hess, _, x0 = _quartic(ctx)
    return _minimizer_outcome(ctx, damped_newton(fun, grad, hess, x0, gtol=ctx.gtol))


@case("damped_newton[hvp]", "damped_newton", "pcg")
def _damped_newton_hvp(ctx):
    fun, grad, _, hvp, x0 = _quartic(ctx)
    return _minimizer_outcome(ctx, damped_newton(fun, grad, hvp, x0, gtol=ctx.gtol,
                                                 inner_rtol=100 * ctx.eps))


@case("lazy_newton")
def _lazy_newton(ctx):
    fun, grad, hess, _, x0 = _quartic(ctx)
    return _minimizer_outcome(ctx, lazy_newton(fun, grad, hess, x0, period=2, gtol=ctx.gtol))


@case("lazy_newton[cubic, hvp]", "lazy_newton")
def _lazy_newton_cubic(ctx):
    fun, grad, _, hvp, x0 = _quartic(ctx)
    return _minimizer_outcome(ctx, lazy_newton(fun, grad, hvp, x0, period=3,
                                               regularization="cubic", gtol=ctx.gtol))


@case("cubic_step")
def _cubic_step(ctx):
    lam = np.array([-1.0, 0.5, 2.0, 3.0])
    U, _ = np.linalg.qr(_rng(21).standard_normal((4, 4)))
    g = _rng(22).standard_normal(4)
    h, r = cubic_step(ctx.array(lam), ctx.array(U), ctx.array(g), 3.0)
    shifted = _np(lam) + 1.5 * r     # H + M r/2 I, the matrix the step solves with
    return Outcome({"h": h, "r": r}, kappa=float(shifted.max() / shifted.min()), n=4)


@case("gradient_normalized_newton")
def _gradient_normalized(ctx):
    fun, grad, hess, _, x0 = _quartic(ctx)
    return _minimizer_outcome(ctx, gradient_normalized_newton(fun, grad, hess, x0,
                                                              gtol=ctx.gtol))


@case("gradient_normalized_newton[hvp]", "gradient_normalized_newton", "pcg")
def _gradient_normalized_hvp(ctx):
    fun, grad, _, hvp, x0 = _quartic(ctx)
    return _minimizer_outcome(ctx, gradient_normalized_newton(fun, grad, hvp, x0,
                                                              gtol=ctx.gtol,
                                                              inner_rtol=100 * ctx.eps))


# --- polynomial preconditioning -------------------------------------------------------
# B = random SPD, eigenvalues log-spaced in [1, 20]; f(x) = x'Bx/2 - b'x (mu = 1).
# P_tau (tau = 2) and its sigma_k come from the power traces up to tr(B^3) through
# Newton's identities: kappa = kappa(B)^(tau + 1) for them.

_POLY_B = random_spd(6, cond=20.0, seed=23)
_POLY_b = _rng(23).standard_normal(6)


def _poly_problem(ctx):
    xp = ctx.xp
    B, b = ctx.array(_POLY_B), ctx.array(_POLY_b)
    return (B, lambda x: float(0.5 * xp.sum(x * (B @ x)) - xp.sum(b * x)),
            lambda x: B @ x - b, ctx.array(np.zeros(6)))


def _poly_minimizer(ctx, result):
    x = _np(result.x)
    return Outcome({"x": result.x, "fun": result.fun}, kappa=20.0, n=6,
                   slack=2 * ctx.gtol / np.linalg.norm(x))


@case("polynomial_preconditioner", "polynomial_preconditioner", "pcg")
def _polynomial(ctx):
    B = ctx.array(_POLY_B)
    v = _rng(24).standard_normal(6)
    P = polynomial_preconditioner(B, 2)
    # P.matvec is P_tau^{-1} v by CG with the matrix-free P.apply to
    # rtol = max(1e-12, 1000 eps): slack 2 kappa(P_tau) rtol.
    dense_P = polynomial_preconditioner(_POLY_B, 2).solve(np.eye(6))
    rtol = max(1e-12, 1000 * ctx.eps)
    return Outcome({"solve": P.solve(ctx.array(v)), "matvec": P.matvec(ctx.array(v)),
                    "sigma": P.sigma}, kappa=20.0 ** 3, n=6,
                   slack=2 * float(np.linalg.cond(dense_P)) * rtol)


@case("PolynomialPreconditioner")
def _polynomial_hutchinson(ctx):
    B = ctx.array(_POLY_B)
    v = _rng(25).standard_normal(6)
    P = polynomial_preconditioner(lambda u: B @ u, 2, traces="hutchinson", samples=30,
                                  seed=0, n=6, xp=ctx.xp)
    return Outcome({"solve": P.solve(ctx.array(v)), "sigma": P.sigma},
                   kappa=20.0 ** 3, n=6)


@case("preconditioned_gradient")
def _preconditioned_gradient(ctx):
    B, fun, grad, x0 = _poly_problem(ctx)
    P = polynomial_preconditioner(B, 2)
    return _poly_minimizer(ctx, preconditioned_gradient(fun, grad, x0, P, gtol=ctx.gtol))


@case("preconditioned_fast_gradient")
def _preconditioned_fast_gradient(ctx):
    B, fun, grad, x0 = _poly_problem(ctx)
    P = polynomial_preconditioner(B, 2)
    return _poly_minimizer(ctx, preconditioned_fast_gradient(fun, grad, x0, P,
                                                             gtol=ctx.gtol))


@case("krylov_gradient")
def _krylov_gradient(ctx):
    B, fun, grad, x0 = _poly_problem(ctx)
    return _poly_minimizer(ctx, krylov_gradient(fun, grad, B, x0, 2, gtol=ctx.gtol))


# --- linsolve.pcg on operators of any namespace ---------------------------------------
# A: eigenvalues log-spaced in [1, 100]; CG stopped at ||r|| <= rtol ||b|| leaves
# ||x - x*|| <= kappa rtol ||x*|| on each run.

_PCG_A = random_spd(12, cond=100.0, seed=26)
_PCG_b = _rng(26).standard_normal(12)


def _pcg_outcome(ctx, result, rtol):
    return Outcome({"x": result.x}, kappa=100.0, n=12, slack=2 * 100.0 * rtol)


@case("pcg[hvp]", "pcg")
def _pcg_hvp(ctx):
    A = ctx.array(_PCG_A)
    rtol = 1000 * ctx.eps
    return _pcg_outcome(ctx, pcg(lambda v: A @ v, ctx.array(_PCG_b), rtol=rtol), rtol)


@case("pcg[dense, M=MFAC]", "pcg")
def _pcg_dense(ctx):
    A = ctx.array(_PCG_A)
    M = MFAC(12, m=3, damping=1.0, dtype=ctx.dtype_name, xp=ctx.xp)
    for g in _rng(27).standard_normal((3, 12)):
        M.update(ctx.array(g))
    rtol = 1000 * ctx.eps
    return _pcg_outcome(ctx, pcg(A, ctx.array(_PCG_b), M=M, rtol=rtol), rtol)


# --- the comparison -------------------------------------------------------------------

@dataclass
class Comparison:
    errors: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.0

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)


_REFERENCES: dict[tuple[str, float], Outcome] = {}


def reference_outcome(name: str, eps: float) -> Outcome:
    """Case ``name`` on NumPy float64 with the stopping tolerances of ``eps`` (computed once)."""
    key = (name, eps)
    if key not in _REFERENCES:
        _REFERENCES[key] = CASES[name].run(Context(load_backend("numpy"), "float64", eps))
    return _REFERENCES[key]


def compare(name: str, backend: Backend, dtype_name: str) -> Comparison:
    """Run case ``name`` on ``backend`` in ``dtype_name`` and on NumPy float64; the
    relative differences per output and the derived tolerance."""
    eps = float(np.finfo(dtype_name).eps)
    reference = reference_outcome(name, eps)
    tested = CASES[name].run(Context(backend, dtype_name, eps))
    assert tested.outputs.keys() == reference.outputs.keys()
    tolerance = 10 * reference.n * eps * reference.kappa + reference.slack
    # A case must be well posed in the tested dtype, or the comparison says nothing.
    assert tolerance < 0.1, f"{name}: kappa = {reference.kappa:.3g} is too large for {dtype_name}"
    result = Comparison(tolerance=tolerance)
    for key, expected in reference.outputs.items():
        got = tested.outputs[key]
        if isinstance(expected, (bool, str, np.bool_)):
            assert got == expected, f"{name}: {key} is {got!r}, NumPy gives {expected!r}"
            continue
        if not isinstance(got, (int, float, list, tuple)) and not tested.host_outputs:
            library = array_namespace(got).__name__.removeprefix("array_api_compat.")
            assert library == backend.xp.__name__.removeprefix("array_api_compat."), \
                f"{name}: {key} came back as a {library} array"
        got, expected = _np(got), _np(expected)
        assert got.shape == expected.shape, f"{name}: {key} has shape {got.shape}"
        scale = float(np.linalg.norm(expected))
        difference = float(np.linalg.norm(got - expected))
        result.errors[key] = difference / scale if scale > 0 else difference
    return result


# JAX compiles each operation per shape and dtype: its half of the matrix runs in
# `make test-slow` (each curvature module's own dense-reference test covers JAX in
# `make test`); array_api_strict runs here.
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("backend", ["numpy", "array_api_strict",
                                     pytest.param("jax", marks=pytest.mark.slow)],
                         indirect=True)
def test_component_matches_numpy(name, dtype_name, backend):
    """Every case runs under array_api_strict too (NumPy against itself checks the
    float32 path and the tolerances)."""
    comparison = compare(name, backend, dtype_name)
    for key, error in comparison.errors.items():
        assert error <= comparison.tolerance, (
            f"{name} on {backend.name} {dtype_name}: {key} differs from NumPy float64 by "
            f"{error:.3e} (relative), above the derived {comparison.tolerance:.3e}")


# --- the kernels' calling convention --------------------------------------------------

def test_writes_in_place_tells_immutable_namespaces(backend):
    from cext.registry import writes_in_place

    assert writes_in_place(backend.xp) is backend.mutable


def _kernel_calls(rng):
    """``(kernel, NumPy arguments)`` for every kernel that returns what it writes; the
    ``out`` arguments hold NaN so that a kernel that writes nothing is noticed."""
    import scipy.sparse as sp

    d, k, nb = 9, 3, 2
    offsets = (0, 4, 9)
    G = rng.standard_normal((4, d))
    A = sp.random(5, 5, density=0.5, random_state=1, format="csr") + sp.eye(5, format="csr")
    spd = np.stack([random_spd(k, cond=10.0, seed=s) for s in range(nb)])
    Q = np.stack([np.linalg.qr(rng.standard_normal((3, 3)))[0] for _ in range(2)])
    R = np.stack([np.linalg.qr(rng.standard_normal((4, 4)))[0] for _ in range(2)])
    X = rng.standard_normal((2, 3, 4))
    nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
    return {
        "csr_spmv": (A.indptr, A.indices, A.data, rng.standard_normal(5), nan(5)),
        "dia_spmv": (np.array([-1, 0, 1]), rng.standard_normal((3, 6)), rng.standard_normal(6),
                     nan(6)),
        "cg_update_p": (rng.standard_normal(6), rng.standard_normal(6), 0.5),
        "window_gemv": (G, rng.standard_normal(d), offsets, nan(nb, k)),
        "window_axpy_gemv_t": (G, rng.standard_normal((nb, k)), rng.standard_normal(d), 0.5,
                               -2.0, offsets, nan(d)),
        "window_push_gemv": (G, 1, rng.standard_normal(d), offsets, nan(nb, 2)),
        "spd_inverse_factor": (spd, nan(nb, k, k)),
        "factor_apply": (rng.standard_normal((nb, k, k)), rng.standard_normal((nb, k)),
                         nan(nb, k)),
        "kron_matvec": (Q, R, X, nan(2, 3, 4)),
        "kron_eigen_solve": (Q, rng.random((2, 3)), R, rng.random((2, 4)), 0.1, X,
                             nan(2, 3, 4)),
        # batched CG: (n, k) blocks
        "csr_spmm_dot": (A.indptr, A.indices, A.data, rng.standard_normal((5, 3)), nan(5, 3),
                         nan(3)),
        "block_cg_update": (rng.standard_normal((5, 3)), rng.standard_normal((5, 3)),
                            rng.standard_normal((5, 3)), rng.standard_normal((5, 3)),
                            rng.standard_normal(3), nan(3)),
        "block_update_p": (rng.standard_normal((5, 3)), rng.standard_normal((5, 3)),
                           rng.standard_normal(3)),
        "block_dots": (rng.standard_normal((5, 3)), rng.standard_normal((5, 3)), nan(3)),
        "dia_spmm_dot": (np.array([-1, 0, 1]), rng.standard_normal((3, 6)),
                         rng.standard_normal((6, 3)), nan(6, 3), nan(3)),
        # the Krylov family's fused updates
        "bicgstab_update_p": (rng.standard_normal(6), rng.standard_normal(6),
                              rng.standard_normal(6), 0.5, 0.25),
        "gmres_project": (np.linalg.qr(rng.standard_normal((7, 4)))[0].T.copy(), 2,
                          rng.standard_normal(7), np.zeros(6), 16.0),
        "gmres_combine": (rng.standard_normal((4, 7)), rng.standard_normal(4), 3,
                          rng.standard_normal(7)),
    }


def test_every_writing_kernel_returns_its_result(backend):
    """``out = kernel(..., out)`` on every backend: NumPy's compiled kernels return the
    argument they wrote, the reference kernels on JAX new arrays (arguments untouched)."""
    from cext import kernels_for
    from cext.registry import RESULT_ARGUMENTS

    calls = _kernel_calls(_rng(30))
    assert set(calls) == set(RESULT_ARGUMENTS)
    numpy_kernels = kernels_for(load_backend("numpy").xp)
    kernels = kernels_for(backend.xp)
    for name, args in calls.items():
        expected = getattr(numpy_kernels, name)(*(a.copy() if isinstance(a, np.ndarray) else a
                                                  for a in args))
        moved = [backend.asarray(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                 else a for a in args]
        if backend.name != "numpy":   # integer CSR arrays too, for the reference csr_spmv
            moved = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in moved]
        before = [_np(a) if hasattr(a, "shape") and not isinstance(a, tuple) else None
                  for a in moved]
        got = getattr(kernels, name)(*moved)
        pairs = zip(got, expected) if isinstance(expected, tuple) else [(got, expected)]
        for result, reference in pairs:
            np.testing.assert_allclose(_np(result), reference, rtol=1e-12, atol=1e-12,
                                       err_msg=f"{name} on {backend.name}")
        if not backend.mutable:
            for arg, copy in zip(moved, before):
                if copy is not None:
                    np.testing.assert_array_equal(_np(arg), copy,
                                                  err_msg=f"{name} wrote into an argument")


# The cases whose code branches on writes_in_place (the M-FAC window and Gram
# matrices, the batched K-FAC kernel, pcg's updates): run again under
# array_api_strict with the functional branch forced, so that it is shown to use
# array-API constructs only (xp.where with masks, new arrays), not JAX's .at[].
_FUNCTIONAL_CASES = ("MFAC", "BlockedMFAC", "precondition_layers", "pcg[hvp]",
                     "pcg[dense, M=MFAC]")


@pytest.mark.parametrize("name", _FUNCTIONAL_CASES)
def test_functional_branch_is_array_api_only(name, monkeypatch):
    # (linsolve.pcg is also the name of the function the package exports)
    for name_ in ("cext.reference._common", "curvature.mfac.window", "linsolve.pcg"):
        monkeypatch.setattr(importlib.import_module(name_), "writes_in_place", lambda xp: False)
    comparison = compare(name, load_backend("array_api_strict"), "float64")
    for key, error in comparison.errors.items():
        assert error <= comparison.tolerance, f"{name}: {key} differs by {error:.3e}"


def test_every_public_component_has_a_case():
    covered = {name for c in CASES.values() for name in c.covers}
    # The functions and classes; not exception classes (RootError) or subpackages.
    public = {name for name in curvature.__all__
              if callable(getattr(curvature, name))
              and not (isinstance(getattr(curvature, name), type)
                       and issubclass(getattr(curvature, name), Exception))}
    missing = public - covered
    assert not missing, f"no JAX comparison for {sorted(missing)}"
