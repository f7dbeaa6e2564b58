"""Contextual bandits over a grid of arms for a scalar context: the pure math.

Two learners from Khodak et al., "Learning to Relax" (ICLR 2024), section 4,
used by :class:`linsolve.OmegaContextualBandit`:

* Tsallis-INF per context bin: the context interval is cut into equal bins
  and an independent :mod:`linsolve.tuning.tsallis` state runs in each
  (learners/TsallisINFCB.m in the authors' code); only :func:`bin_index`
  lives here.
* ChebCB: per-arm least squares of the cost on Chebyshev polynomial features
  of the context, with SquareCB sampling (Foster and Rakhlin, "Beyond UCB",
  ICML 2020) and the exploration parameter ``gamma`` of learners/ChebCB.m.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .tsallis import check_arm, check_cost

# Lower bound on the denominator of gamma (normalised squared-error units per
# round): keeps gamma finite when every cost so far was the same.
_GAMMA_FLOOR = 1e-12


def bin_centres(low: float, high: float, n_bins: int) -> np.ndarray:
    """Centres ``low + (high - low) * (j + 1/2) / n_bins`` of equal bins."""
    return low + (high - low) * np.linspace(0.5 / n_bins, 1.0 - 0.5 / n_bins, n_bins)


def bin_index(context: float, low: float, high: float, n_bins: int) -> int:
    """Bin of ``context``: the nearest centre, the lower on a tie (as TsallisINFCB.m).

    Examples
    --------
    >>> [bin_index(c, 0.0, 1.0, 4) for c in (0.0, 0.25, 0.3, 1.0)]
    [0, 0, 1, 3]
    """
    return int(np.argmin(np.abs(bin_centres(low, high, n_bins) - context)))


def chebyshev_features(context: float, low: float, high: float, degree: int) -> np.ndarray:
    """``[T_0(s), ..., T_degree(s)]`` at ``s = 2 (context - low) / (high - low) - 1``.

    Examples
    --------
    >>> chebyshev_features(0.75, 0.0, 1.0, 3).tolist()   # s = 1/2
    [1.0, 0.5, -0.5, -1.0]
    """
    s = 2.0 * (context - low) / (high - low) - 1.0
    s = min(max(s, -1.0), 1.0)  # rounding at the end points
    features = np.empty(degree + 1)
    features[0] = 1.0
    if degree >= 1:
        features[1] = s
    for j in range(2, degree + 1):  # T_j = 2 s T_{j-1} - T_{j-2}
        features[j] = 2.0 * s * features[j - 1] - features[j - 2]
    return features


class ChebCBState(NamedTuple):
    """Sufficient statistics of ChebCB after ``t - 1`` rounds.

    Attributes
    ----------
    gram : numpy.ndarray, shape (K, m, m)
        Per arm, ``sum phi phi^T`` over the rounds it was played
        (``m = degree + 1`` features).
    moments : numpy.ndarray, shape (K, m)
        Per arm, ``sum phi (c - 1)``.
    t : int
        Number of the next round.
    cost_max, cost_min : float
        Extremes of the costs so far (0 before the first round).
    online_sq_error : float
        ``sum_s (yhat_s - (c_s - 1))^2`` over past rounds, raw units, where
        ``yhat_s`` was the played arm's prediction when it was chosen.
    """

    gram: np.ndarray
    moments: np.ndarray
    t: int
    cost_max: float
    cost_min: float
    online_sq_error: float


def chebcb_init(n_arms: int, degree: int) -> ChebCBState:
    """Empty statistics: every arm predicts ``c - 1 = 0`` (optimistic) and ``gamma = 0``."""
    m = degree + 1
    return ChebCBState(np.zeros((n_arms, m, m)), np.zeros((n_arms, m)), 1, 0.0, 0.0, 0.0)


def chebcb_scale(state: ChebCBState, degree: int, width: float) -> tuple[float, float]:
    """Normalisation ``K N`` of ``c - 1`` and the approximation term ``alpha``.

    As learners/ChebCB.m: ``K`` = largest cost so far, ``L`` = cost range over
    the context width (a Lipschitz constant), ``N = 2 + 4 width L / K
    (1 + log m)`` and ``alpha = (pi + (2/pi) log(2m + 1)) / (2 K N (m + 1))
    width L``, with ``m = degree + 1`` features. Before any cost, or if all
    costs are 0, the scale is 1 (the authors' code would divide by zero);
    it is never below 1.
    """
    m = degree + 1
    spread = state.cost_max - state.cost_min  # = width * L
    if state.t <= 1 or not state.cost_max > 0.0:
        return 1.0, 0.0
    n_factor = 2.0 + 4.0 * spread / state.cost_max * (1.0 + math.log(m))
    # Floored at 1: costs are iteration counts, and a scale from sub-unit
    # costs (K ~ 1e-200) would underflow when squared in gamma.
    scale = max(state.cost_max * n_factor, 1.0)
    alpha = (math.pi + 2.0 / math.pi * math.log(2.0 * m + 1.0)) / (2.0 * scale * (m + 1)) * spread
    return scale, alpha


def chebcb_coefficients(state: ChebCBState, ridge: float) -> np.ndarray:
    """Per-arm ridge solutions ``(G_i + ridge I)^{-1} r_i``, shape (K, m), raw units.

    The authors fit each arm by minimum-norm least squares and, when a
    coefficient leaves the box that Chebyshev coefficients of a Lipschitz
    cost obey, refit with those bounds (``lsqlin``). A ridge term instead
    keeps the fit unique with few samples, and keeps the statistics
    additive (state is O(K m^2), not the whole history); the box is not
    imposed.
    """
    m = state.gram.shape[-1]
    return np.linalg.solve(state.gram + ridge * np.eye(m), state.moments[..., None])[..., 0]


def chebcb_gamma(state: ChebCBState, degree: int, width: float) -> float:
    """SquareCB exploration parameter after ``n = t - 1`` rounds (learners/ChebCB.m).

    ``gamma = 2 n sqrt(K n / (R + 2 alpha^2 n))`` with ``R`` the online squared
    error in normalised units. Differences from the authors' code: ``R``
    compares the prediction of ``c - 1`` with ``c - 1`` (the MATLAB compares it
    with ``c``, off by ``1 / (K N)`` per round), and the residual of the
    last box-constrained refit, which the MATLAB subtracts from ``R`` when one
    ran, is not (no box here); the denominator is floored at ``1e-12 n``.
    """
    rounds = state.t - 1
    if rounds == 0:
        return 0.0
    n_arms = state.gram.shape[0]
    scale, alpha = chebcb_scale(state, degree, width)
    online = state.online_sq_error / scale**2
    denominator = max(online + 2.0 * alpha**2 * rounds, _GAMMA_FLOOR * rounds)
    return 2.0 * rounds * math.sqrt(n_arms * rounds / denominator)


def squarecb_probabilities(predictions, gamma: float) -> np.ndarray:
    """SquareCB's inverse-gap weighting: ``p_i = 1 / (K + gamma (yhat_i - yhat_*))``.

    The greedy arm (first minimiser) takes the remaining mass, at least
    ``1/K``. Every probability is positive for finite ``gamma``.

    Examples
    --------
    >>> squarecb_probabilities([0.0, 1.0, 2.0], gamma=0.0).round(12).tolist()
    [0.333333333333, 0.333333333333, 0.333333333333]
    >>> p = squarecb_probabilities([0.5, 0.0, 1.0], gamma=10.0)
    >>> int(p.argmax()), bool(abs(p.sum() - 1) < 1e-15)
    (1, True)
    """
    yhat = np.asarray(predictions, dtype=np.float64)
    gamma = float(gamma)
    if not (math.isfinite(gamma) and gamma >= 0.0):
        raise ValueError(f"gamma must be finite and nonnegative, got {gamma!r}")
    n_arms = yhat.size
    best = int(np.argmin(yhat))
    p = 1.0 / (n_arms + gamma * (yhat - yhat[best]))
    p[best] = 0.0
    p[best] = 1.0 - p.sum()
    return np.maximum(p, np.finfo(np.float64).tiny)


def chebcb_distribution(state: ChebCBState, features: np.ndarray, degree: int, width: float,
                        ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """``(p, yhat_raw)``: SquareCB probabilities and raw predictions of ``c - 1``."""
    yhat_raw = chebcb_coefficients(state, ridge) @ features
    scale, _ = chebcb_scale(state, degree, width)
    return squarecb_probabilities(yhat_raw / scale, chebcb_gamma(state, degree, width)), yhat_raw


def chebcb_update(state: ChebCBState, arm: int, cost: float, features: np.ndarray,
                  ridge: float) -> ChebCBState:
    """State after playing ``arm`` at a context with ``features`` and paying ``cost``.

    Examples
    --------
    >>> s0 = chebcb_init(2, degree=1)
    >>> s1 = chebcb_update(s0, 1, 5.0, chebyshev_features(0.5, 0.0, 1.0, 1), ridge=1.0)
    >>> s1.moments.tolist(), s1.t, s1.online_sq_error   # first prediction was 0
    ([[0.0, 0.0], [4.0, 0.0]], 2, 16.0)
    """
    arm = check_arm(arm, state.gram.shape[0])
    cost = check_cost(cost)
    target = cost - 1.0
    prediction = float(chebcb_coefficients(state, ridge)[arm] @ features)
    gram = state.gram.copy()
    moments = state.moments.copy()
    gram[arm] += np.outer(features, features)
    moments[arm] += features * target
    first = state.t == 1
    return ChebCBState(gram, moments, state.t + 1,
                       cost if first else max(state.cost_max, cost),
                       cost if first else min(state.cost_min, cost),
                       state.online_sq_error + (prediction - target) ** 2)


def chebcb_to_dict(state: ChebCBState) -> dict:
    return {"gram": state.gram.tolist(), "moments": state.moments.tolist(), "t": int(state.t),
            "cost_max": float(state.cost_max), "cost_min": float(state.cost_min),
            "online_sq_error": float(state.online_sq_error)}


def chebcb_from_dict(data: dict, n_arms: int, degree: int) -> ChebCBState:
    m = degree + 1
    gram = np.asarray(data["gram"], dtype=np.float64)
    moments = np.asarray(data["moments"], dtype=np.float64)
    if gram.shape != (n_arms, m, m) or moments.shape != (n_arms, m):
        raise ValueError(f"ChebCB statistics must have shapes {(n_arms, m, m)} and {(n_arms, m)}, "
                         f"got {gram.shape} and {moments.shape}")
    return ChebCBState(gram, moments, int(data["t"]), float(data["cost_max"]),
                       float(data["cost_min"]), float(data["online_sq_error"]))
