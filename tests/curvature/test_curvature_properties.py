"""Hypothesis: the curvature operators against dense float64 references.

Each property draws shapes, a dtype (float32/float64) and the conditioning
(damping, scale of the data, prescribed spectra), builds the operator, and
compares it with a dense float64 computation from the *same* (dtype-rounded)
data, so the only differences left are the operator's own rounding.

Tolerances are ``c * eps * kappa`` with ``kappa`` the condition number of the
matrix the operator inverts, measured on the dense reference; each test says
which ``eps`` (of the storage dtype, of the output dtype, or of the float64
accumulation) enters and why. The constants ``c`` are small multiples of the
dimension, never fitted to observed errors.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curvature.kronecker.kfac import KFAC
from curvature.mfac.window import MFAC, BlockedMFAC
from curvature.mfac.static import MFACStatic
from curvature.kronecker.mkor import sherman_morrison_step
from curvature.newton.polynomial import polynomial_preconditioner

from tests.problems import random_spd, to_numpy

EPS64 = float(np.finfo(np.float64).eps)

dtypes = st.sampled_from([np.float32, np.float64])
dampings = st.floats(-3.0, 1.0).map(lambda e: 10.0 ** e)   # log-uniform in [1e-3, 10]
seeds = st.integers(0, 2**16)


def _eps(dtype) -> float:
    return float(np.finfo(dtype).eps)


def _relative(x, reference) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(x - reference) / max(np.linalg.norm(reference), 1e-300))


def _condition(F: np.ndarray) -> float:
    w = np.linalg.eigvalsh(F)
    return float(w[-1] / w[0])


def _woodbury_condition(F: np.ndarray, damping: float) -> float:
    """``lambda_max(F) / damping``: the amplification of M-FAC's ``(v - G'c) / damping``.

    It equals kappa(F) when the window does not span the whole space (F then has the
    eigenvalue ``damping``) and exceeds it otherwise (d <= number of gradients): the
    Woodbury form cancels ``v`` against ``G'c`` whatever F's own conditioning."""
    return float(np.linalg.eigvalsh(F)[-1] / damping)


def _dense_solve(F: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``F^{-1} v`` for a symmetric positive definite float64 ``F`` (eigh, the house oracle)."""
    w, Q = np.linalg.eigh(F)
    return Q @ ((Q.T @ v) / w)


def _fisher(window: np.ndarray, damping: float) -> np.ndarray:
    """``damping I + W'W/k`` in float64 (``lambda I`` for an empty window)."""
    k, d = window.shape
    W = window.astype(np.float64)
    F = damping * np.eye(d)
    return F + W.T @ W / k if k else F


# --- M-FAC ---------------------------------------------------------------------
#
# The passes over the window accumulate in float64 and the m x m system is
# float64 whatever the window dtype (curvature/mfac/window.py, module notes), so the
# solve carries a float64 forward error ~ eps64 * kappa_W, kappa_W =
# lambda_max(F) / damping >= kappa(F) (Woodbury's ``v - G'c`` cancels by up to
# that, see _woodbury_condition) and, for a float32 output, one final rounding
# eps32. Hence ``||x - x_ref|| / ||x_ref|| <= c (eps_out + eps64 kappa_W)`` with
# ``c = 4 (m + 8)``. The round trip ``F (F^{-1} v) - v`` is bounded by
# ``||F|| ||dx|| <= kappa(F) * (solve error) * ||v||``.


def _mfac_tolerance(m: int, out_dtype, kappa: float) -> float:
    return 4 * (m + 8) * (_eps(out_dtype) + EPS64 * kappa)


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 60), m=st.integers(1, 8), data=st.data(), damping=dampings,
       log_scale=st.floats(-1.0, 1.0), seed=seeds, dtype=dtypes)
def test_mfac_solve_matches_dense_and_inverts_matvec(d, m, data, damping, log_scale, seed,
                                                     dtype):
    pushes = data.draw(st.integers(0, 3 * m), label="pushes")
    rng = np.random.default_rng(seed)
    grads = (10.0 ** log_scale * rng.standard_normal((pushes, d))).astype(dtype)
    v = rng.standard_normal(d).astype(dtype)
    mfac = MFAC(d, m, damping, dtype=dtype)
    for g in grads:
        mfac.update(g)
    assert mfac.size == min(pushes, m) and mfac.count == pushes

    F = _fisher(grads[max(0, pushes - m):], damping)      # the last min(pushes, m) gradients
    kappa = _condition(F)
    v64 = v.astype(np.float64)
    x = mfac.solve(v)
    assert x.shape == (d,) and x.dtype == dtype            # result_type(v, window)
    tolerance = _mfac_tolerance(m, dtype, _woodbury_condition(F, damping))
    assert _relative(x, _dense_solve(F, v64)) <= tolerance
    assert _relative(mfac.matvec(v), F @ v64) <= tolerance
    assert _relative(mfac.matvec(x), v64) <= kappa * tolerance


@settings(max_examples=25, deadline=None)
@given(block_sizes=st.lists(st.integers(1, 20), min_size=1, max_size=4), m=st.integers(1, 6),
       data=st.data(), damping=dampings, seed=seeds, dtype=dtypes)
def test_blocked_mfac_equals_independent_mfacs_per_block(block_sizes, m, data, damping, seed,
                                                         dtype):
    pushes = data.draw(st.integers(0, 3 * m), label="pushes")
    rng = np.random.default_rng(seed)
    dim = sum(block_sizes)
    offsets = np.concatenate([[0], np.cumsum(block_sizes)])
    grads = rng.standard_normal((pushes, dim)).astype(dtype)
    v = rng.standard_normal(dim).astype(dtype)
    blocked = BlockedMFAC(block_sizes, m, damping, dtype=dtype)
    singles = [MFAC(size, m, damping, dtype=dtype) for size in block_sizes]
    for g in grads:
        blocked.update(g)
        for single, lo, hi in zip(singles, offsets[:-1], offsets[1:]):
            single.update(g[lo:hi])

    x, y = blocked.solve(v), blocked.matvec(v)
    assert x.dtype == dtype and y.dtype == dtype
    for single, lo, hi in zip(singles, offsets[:-1], offsets[1:]):
        # Both are float64 computations of the same block operator: each is within
        # the M-FAC bound of the dense block solve, so of each other within twice it.
        F = _fisher(grads[max(0, pushes - m):, lo:hi], damping)
        tolerance = 2 * _mfac_tolerance(m, dtype, _woodbury_condition(F, damping))
        reference = np.asarray(single.solve(v[lo:hi]), dtype=np.float64)
        assert _relative(x[lo:hi], reference) <= tolerance
        assert _relative(y[lo:hi], np.asarray(single.matvec(v[lo:hi]), np.float64)) <= tolerance


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 60), m=st.integers(1, 8), damping=dampings,
       log_scale=st.floats(-1.0, 1.0), seed=seeds, dtype=dtypes)
def test_mfac_static_inverse_diagonal_is_diag_of_dense_inverse(d, m, damping, log_scale, seed,
                                                              dtype):
    rng = np.random.default_rng(seed)
    G = (10.0 ** log_scale * rng.standard_normal((m, d))).astype(dtype)
    static = MFACStatic(G, damping)
    F = _fisher(G, damping)
    kappa = _woodbury_condition(F, damping)
    F_inverse = np.linalg.inv(F)

    diagonal = static.inverse_diagonal()
    assert diagonal.shape == (d,) and diagonal.dtype == dtype   # the window's dtype
    # (1 - ||U_i||^2) / damping with U from the Cholesky factor of m damping I + GG'
    # (float64, condition number kappa_W = lambda_max(F) / damping): its relative
    # perturbation eps64 * kappa_W moves ||U_i||^2 by ~ eps64 * kappa_W, i.e. the
    # entry by eps64 * kappa_W / damping in absolute terms -- the cancellation
    # 1 - ||U_i||^2 leaves no relative bound -- and the dense inverse errs by
    # eps64 * kappa(F) * ||F^{-1}|| <= eps64 * kappa_W / damping too.
    # plus one rounding to the window's dtype
    assert np.max(np.abs(diagonal - np.diag(F_inverse))
                  - np.finfo(dtype).eps * np.abs(np.diag(F_inverse))) \
        <= 8 * (m + 8) * EPS64 * kappa / damping
    v = rng.standard_normal(d).astype(dtype)
    x = static.solve(v)
    assert x.dtype == dtype                                   # results use G's dtype
    assert _relative(x, F_inverse @ v.astype(np.float64)) <= _mfac_tolerance(m, dtype, kappa)


# --- K-FAC ---------------------------------------------------------------------
#
# The factors are formed, eigendecomposed and applied in the layer's dtype,
# so the perturbation is eps(dtype) * ||A|| on A and likewise on G, i.e.
# ``2 eps ||kron(A, G)||`` on the Kronecker product, and the relative error of
# the damped solve is ``c eps(dtype) kappa`` with ``kappa = (||A|| ||G|| + lambda)
# / lambda`` (the damped product's condition number) and ``c = 4 (rows + cols)``
# for the rotations.

def _kfac_batches(rng, in_features, out_features, batches, scale, dtype):
    return [((scale * rng.standard_normal((n, in_features))).astype(dtype),
             rng.standard_normal((n, out_features)).astype(dtype)) for n in batches]


def _kfac_factors(batches, bias: bool, decay: float):
    """The EMA factors A, G of ``KFAC.update`` in float64, from the same rounded batches."""
    A = G = None
    for a, g in batches:
        a, g = a.astype(np.float64), g.astype(np.float64)
        if bias:
            a = np.c_[a, np.ones(a.shape[0])]
        A_batch, G_batch = a.T @ a / a.shape[0], g.T @ g / g.shape[0]
        A, G = (A_batch, G_batch) if A is None else \
            (decay * A + (1 - decay) * A_batch, decay * G + (1 - decay) * G_batch)
    return A, G


kfac_layers = dict(in_features=st.integers(1, 6), out_features=st.integers(1, 6),
                   bias=st.booleans(), batches=st.lists(st.integers(1, 20), min_size=1,
                                                        max_size=3),
                   decay=st.floats(0.0, 0.99), damping=dampings,
                   log_scale=st.floats(-1.0, 1.0), seed=seeds, dtype=dtypes)


@settings(max_examples=30, deadline=None)
@given(**kfac_layers)
def test_kfac_eigen_mode_equals_dense_kron_solve(in_features, out_features, bias, batches, decay,
                                                 damping, log_scale, seed, dtype):
    rng = np.random.default_rng(seed)
    data = _kfac_batches(rng, in_features, out_features, batches, 10.0 ** log_scale, dtype)
    layer = KFAC(in_features, out_features, bias=bias, damping=damping, decay=decay)
    for a, g in data:
        layer.update(a, g)
    A, G = _kfac_factors(data, bias, decay)
    F = np.kron(A, G) + damping * np.eye(A.shape[0] * G.shape[0])
    assert layer.shape == F.shape
    kappa = _condition(F)
    v = rng.standard_normal(F.shape[0]).astype(dtype)
    x = layer.solve(v)
    assert x.dtype == dtype                                   # the dtype of the first update
    tolerance = 4 * (layer.rows + layer.cols) * _eps(dtype) * kappa
    assert _relative(x, _dense_solve(F, v.astype(np.float64))) <= tolerance
    assert _relative(layer.matvec(v), F @ v.astype(np.float64)) <= tolerance


@settings(max_examples=30, deadline=None)
@given(**kfac_layers, mode=st.sampled_from(["eigen", "inverse"]), pi_heuristic=st.booleans())
def test_kfac_matvec_inverts_solve(in_features, out_features, bias, batches, decay, damping,
                                   log_scale, seed, dtype, mode, pi_heuristic):
    rng = np.random.default_rng(seed)
    data = _kfac_batches(rng, in_features, out_features, batches, 10.0 ** log_scale, dtype)
    layer = KFAC(in_features, out_features, bias=bias, damping=damping, decay=decay, mode=mode,
                 pi_heuristic=pi_heuristic)
    for a, g in data:
        layer.update(a, g)
    A, G = _kfac_factors(data, bias, decay)
    if mode == "eigen":
        F = np.kron(A, G) + damping * np.eye(A.shape[0] * G.shape[0])
    else:
        # factored damping: kron(A + pi sqrt(lambda) I, G + sqrt(lambda)/pi I)
        root, pi = math.sqrt(damping), 1.0
        if pi_heuristic:
            pi = math.sqrt((np.trace(A) / A.shape[0]) / (np.trace(G) / G.shape[0]))
        assert math.isclose(layer.pi, pi, rel_tol=16 * _eps(dtype))
        F = np.kron(A + pi * root * np.eye(A.shape[0]), G + root / pi * np.eye(G.shape[0]))
    kappa = _condition(F)
    v = rng.standard_normal(F.shape[0]).astype(dtype)
    x = layer.solve(v)
    assert x.dtype == dtype and layer.matvec(x).dtype == dtype
    tolerance = 4 * (layer.rows + layer.cols) * _eps(dtype) * kappa
    assert _relative(x, _dense_solve(F, v.astype(np.float64))) <= tolerance
    # F (F^{-1} v) - v: the solve's error times ||F||, i.e. kappa * tolerance relative to v
    assert _relative(layer.matvec(x), v.astype(np.float64)) <= kappa * tolerance


# --- MKOR's Sherman-Morrison step ------------------------------------------------

def _decayed_rank_one_inverse(J: np.ndarray, v: np.ndarray, gamma: float) -> np.ndarray:
    """``(gamma J^{-1} + (1-gamma) v v')^{-1}`` in float64 without inverting J and without
    the Sherman-Morrison difference formula: with ``J = L L'`` it is
    ``L (gamma I + c z z')^{-1} L'``, ``z = L'v``, ``c = 1 - gamma``, and the middle
    matrix is inverted through its eigendecomposition, known in closed form: eigenvalue
    ``gamma + c ||z||^2`` on ``z``, ``gamma`` on the complement (accurate to eps64 / gamma;
    a numerical eigh would lose its small eigenvalue to eps64 ||middle||)."""
    L = np.linalg.cholesky(J)
    z = L.T @ v
    z2 = float(z @ z)
    projector = np.outer(z, z) / z2 if z2 > 0 else np.zeros((len(v), len(v)))
    middle_inverse = (np.eye(len(v)) - projector) / gamma + projector / (gamma + (1 - gamma) * z2)
    return L @ middle_inverse @ L.T


# On every backend; the backend fixture holds no state between examples.
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 8), log_cond=st.floats(0.0, 5.0), log_scale=st.floats(-2.0, 2.0),
       gamma=st.floats(0.5, 1.0, exclude_min=True), seed=seeds, dtype=dtypes)
def test_sherman_morrison_step_is_the_dense_decayed_inverse(backend, n, log_cond, log_scale,
                                                            gamma, seed, dtype):
    F = random_spd(n, cond=10.0 ** log_cond, seed=seed)
    J = np.linalg.inv(F)
    J = ((J + J.T) / 2).astype(dtype)
    v = (10.0 ** log_scale * np.random.default_rng(seed + 1).standard_normal(n)).astype(dtype)
    J_new, accepted = sherman_morrison_step(backend.asarray(J), backend.asarray(v), gamma)
    assert array_namespace(J_new) is backend.xp
    J_new = to_numpy(J_new)

    # an SPD J has denominator 1 + c v'Jv >= 1: the guard never refuses it
    assert accepted
    assert J_new.shape == (n, n) and J_new.dtype == dtype and np.array_equal(J_new, J_new.T)
    J64 = J.astype(np.float64)
    reference = _decayed_rank_one_inverse(J64, v.astype(np.float64), gamma)
    # J/gamma - coef (Ju)(Ju)' in `dtype`: the subtracted term is at most J/gamma, and
    # the error of u = Jw enters as coef ||Ju|| ||J|| ||w|| <= ||J||/gamma * ||Jw|| ||w||
    # / w'Jw <= ||J||/gamma * (1 + sqrt(kappa(J))) (Kantorovich), so the absolute error
    # is <= c n eps ||J|| (1 + sqrt(kappa)) / gamma, c = 8. The reference starts from
    # the Cholesky factor of J (backward error n eps64 ||J||), which the map
    # J -> (gamma J^{-1} + c vv')^{-1} amplifies by at most ~kappa(J) / gamma.
    kappa = _condition(J64)
    scale = np.linalg.norm(J64, 2) / gamma
    error = np.linalg.norm(J_new.astype(np.float64) - reference, 2)
    assert error <= 8 * n * (_eps(dtype) * (1 + math.sqrt(kappa)) + EPS64 * kappa) * scale


# --- polynomial preconditioner -------------------------------------------------

def _elementary_symmetric(values: np.ndarray, k: int) -> float:
    """``sigma_k(values)`` by the product expansion (positive terms only, float64)."""
    sigma = np.zeros(k + 1)
    sigma[0] = 1.0
    for value in values:
        sigma[1:] = sigma[1:] + value * sigma[:-1]
    return float(sigma[k])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 8), data=st.data(), seed=seeds, dtype=dtypes)
def test_polynomial_preconditioner_on_eigenvectors(n, data, seed, dtype):
    tau = data.draw(st.integers(0, min(3, n - 1)), label="tau")
    log_spectrum = data.draw(st.lists(st.floats(0.0, 6.0), min_size=n, max_size=n),
                             label="log10 eigenvalues")
    spectrum = 10.0 ** np.array(log_spectrum)
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    B = ((Q * spectrum) @ Q.T).astype(dtype)
    P = polynomial_preconditioner(B, tau)
    assert P.degree == tau and P.dtype == dtype

    # B is scaled by s = tr(B) so the scaled eigenvalues sum to 1: every power trace,
    # every Newton-identity term and every Horner term is O(1) in units of s^k, and the
    # cancellations among them leave an *absolute* error c (k + 1)^2 n eps s^k (eps of
    # B's dtype, which also rounds B itself by eps ||B|| <= eps s). No relative bound
    # exists: sigma_tau of the spectrum without its largest eigenvalues can be far
    # below s^tau. c = 8.
    s = float(np.sum(spectrum))
    eps = _eps(dtype)
    for k in range(tau + 2):
        assert abs(P.sigma[k] - _elementary_symmetric(spectrum, k)) <= \
            8 * (k + 1) ** 2 * n * eps * s ** k
    for j in range(n):
        u = Q[:, j].astype(dtype)
        expected = _elementary_symmetric(np.delete(spectrum, j), tau)
        Pu = P.solve(u)
        assert Pu.dtype == dtype
        error = np.linalg.norm(Pu.astype(np.float64) - expected * Q[:, j])
        assert error <= 8 * (tau + 1) ** 2 * n * eps * s ** tau
