"""Tsallis-INF over a finite grid of arms: plain-data state and pure update.

The math behind :class:`linsolve.OmegaBandit`, in small functions over
a :class:`TsallisState` (optax's ``init``/``update`` shape), so that every
step can be tested without a solver and the state saved and restored.

References
----------
Zimmert and Seldin, "Tsallis-INF: An optimal algorithm for stochastic and
adversarial bandits", JMLR 22 (2021), Algorithm 1 with the 1/2-Tsallis
entropy (alpha = 1/2) and the anytime rate ``eta_t = 2 / sqrt(t)``.
Khodak et al., "Learning to Relax", ICLR 2024, section 3 (costs are SOR
iteration counts, normalised by their running mean; see
:func:`tsallis_loss_estimates`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# Sum-of-probabilities accuracy the normaliser search aims for (the tests
# demand 1e-10; the search reaches a few ulps of 1 in practice).
_NORMALISER_RTOL = 4 * np.finfo(np.float64).eps
_NORMALISER_MAXITER = 200


class TsallisState(NamedTuple):
    """State of Tsallis-INF after ``t - 1`` rounds.

    Attributes
    ----------
    importance_sums : numpy.ndarray, shape (K,)
        Per arm, the sum over past rounds of ``(c - 1) / p_arm`` for rounds
        in which that arm was played (importance-weighted cost minus one,
        the best possible iteration count).
    t : int
        Number of the next round (1 before any update).
    cost_sum : float
        Sum of all costs observed so far (for the running mean).
    """

    importance_sums: np.ndarray
    t: int
    cost_sum: float


def tsallis_init(n_arms: int) -> TsallisState:
    """State before the first round: zero loss estimates, ``t = 1``.

    Examples
    --------
    >>> tsallis_init(3)
    TsallisState(importance_sums=array([0., 0., 0.]), t=1, cost_sum=0.0)
    """
    if not isinstance(n_arms, (int, np.integer)) or isinstance(n_arms, bool) or n_arms < 1:
        raise ValueError(f"n_arms must be a positive int, got {n_arms!r}")
    return TsallisState(np.zeros(int(n_arms)), 1, 0.0)


def tsallis_eta(t: int) -> float:
    """Anytime learning rate ``eta_t = 2 / sqrt(t)`` (Zimmert and Seldin, Thm. 1)."""
    return 2.0 / math.sqrt(t)


def tsallis_probabilities(loss_estimates, eta: float) -> tuple[np.ndarray, float]:
    """Tsallis-INF distribution ``p_i = 4 / (eta (L_i - x))^2`` with ``sum p = 1``.

    This is the minimiser of ``<p, L> - (4/eta) sum sqrt(p_i)`` over the
    simplex (Zimmert and Seldin, Algorithm 1, alpha = 1/2); the normaliser
    ``x < min L`` is its Lagrange multiplier.

    Parameters
    ----------
    loss_estimates : array_like, shape (K,)
        Cumulative loss estimates ``L_i``; any finite reals.
    eta : float
        Learning rate, finite and positive.

    Returns
    -------
    p : numpy.ndarray, shape (K,)
        Probabilities, all positive, summing to 1 within a few ulps.
    x : float
        The normaliser, strictly below ``min(L)``.

    Notes
    -----
    Writing ``a_i = eta (L_i - min L) / 2 >= 0`` and ``z = eta (min L - x) / 2``
    gives ``p_i = 1 / (a_i + z)^2`` and the equation
    ``g(z) = sum_i (a_i + z)^-2 = 1`` on the bracket ``[1, sqrt(K)]``
    (``g(1) >= 1`` from the best arm's term, ``g(sqrt K) <= 1`` termwise).
    ``g`` is decreasing and convex, so Newton started at the left end
    ``z = 1`` (that is, ``x = min L - 2/eta``) rises monotonically to the
    root and never overshoots; steps are still clipped to the bracket, with
    bisection as the fallback, against rounding. The authors' MATLAB code
    (learners/TsallisINF.m) runs 20 Newton steps from ``x = -1`` instead,
    which overshoots past ``min L`` when ``min L < -1`` or ``eta`` is large.
    The shift by ``min L`` also makes the search scale-free: the result
    depends only on ``eta (L - min L)``.

    Examples
    --------
    >>> p, x = tsallis_probabilities([0.0, 0.0], eta=1.0)
    >>> p.tolist(), round(x, 12)
    ([0.5, 0.5], -2.828427124746)
    >>> p, x = tsallis_probabilities([0.0, 3.0, 10.0], eta=2.0)
    >>> bool(abs(p.sum() - 1) < 1e-12), bool(p[0] > p[1] > p[2] > 0), bool(x < 0)
    (True, True, True)
    """
    losses = np.asarray(loss_estimates, dtype=np.float64)
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(f"loss_estimates must be a non-empty 1-D array, got shape {losses.shape}")
    if not np.all(np.isfinite(losses)):
        raise ValueError("loss_estimates must be finite")
    eta = float(eta)
    if not (math.isfinite(eta) and eta > 0.0):
        raise ValueError(f"eta must be finite and positive, got {eta!r}")
    n_arms = losses.size
    best = float(losses.min())
    gaps = 0.5 * eta * (losses - best)  # a_i >= 0; inf only for absurd eta*L, then p_i = 0+
    z = _solve_normaliser(gaps, n_arms)
    with np.errstate(over="ignore"):  # an overflowing gap gives p_i = 0, floored below
        p = 1.0 / (gaps + z) ** 2
    # The search stops within a few ulps of sum p = 1; dividing by the sum
    # removes those ulps (a relative change far below the stopping test).
    p /= p.sum()
    # Probabilities so small that they underflow are replaced by the
    # smallest positive double: the importance weight 1/p stays finite and
    # the distribution stays in the interior of the simplex.
    p = np.maximum(p, np.finfo(np.float64).tiny)
    x = best - 2.0 * z / eta
    if not x < best:
        # 2z/eta is below half an ulp of min L (eta ~ 1e16 |L|): x is not
        # representable apart from min L; report the nearest double below.
        x = float(np.nextafter(best, -np.inf))
    return p, float(x)


def _solve_normaliser(gaps: np.ndarray, n_arms: int) -> float:
    """Root ``z`` in ``[1, sqrt(K)]`` of ``sum (gaps + z)^-2 = 1``: safeguarded Newton."""
    lo, hi = 1.0, math.sqrt(n_arms)
    z = lo
    for _ in range(_NORMALISER_MAXITER):
        inv = 1.0 / (gaps + z)  # in (0, 1]: no overflow
        inv2 = inv * inv
        excess = float(inv2.sum()) - 1.0  # g(z) - 1, decreasing in z
        if abs(excess) <= _NORMALISER_RTOL:
            return z
        if excess > 0.0:
            lo = z
        else:
            hi = z
        slope = 2.0 * float((inv2 * inv).sum())  # -g'(z) > 0
        step = z + excess / slope
        if not lo < step < hi:
            step = 0.5 * (lo + hi)
        if step == z:
            return z
        z = step
    return z


def tsallis_loss_estimates(state: TsallisState) -> np.ndarray:
    """Normalised cumulative loss estimates ``L_i = importance_sums_i / (mean cost - 1)``.

    Follows SPEC section 3 and learners/TsallisINF.m: the importance-weighted
    sums hold the raw ``c - 1`` and the whole sum is divided, at prediction
    time, by the *current* running mean cost minus one, so that earlier
    rounds are rescaled as the mean moves. Where the mean cost is not above
    1 (no rounds yet, or every solve took at most one iteration) the scale
    is 1: the authors' code divides by zero there (scale = 0 when all costs
    are 1) and by a negative number when costs are 0; here the sums are then
    zero or nonpositive and used as they are.

    Examples
    --------
    >>> state = TsallisState(np.array([30.0, 0.0]), t=3, cost_sum=22.0)
    >>> tsallis_loss_estimates(state).tolist()   # mean cost 11 -> scale 10
    [3.0, 0.0]
    """
    rounds = state.t - 1
    scale = state.cost_sum / rounds - 1.0 if rounds > 0 else 1.0
    if not scale > 0.0:
        scale = 1.0
    return np.asarray(state.importance_sums, dtype=np.float64) / scale


def tsallis_distribution(state: TsallisState) -> tuple[np.ndarray, float]:
    """Probabilities and normaliser for round ``state.t`` (``eta = 2/sqrt(t)``)."""
    return tsallis_probabilities(tsallis_loss_estimates(state), tsallis_eta(state.t))


def tsallis_update(state: TsallisState, arm: int, cost: float,
                   prob: float | None = None) -> TsallisState:
    """State after arm ``arm``, drawn from :func:`tsallis_distribution`, cost ``cost``.

    Parameters
    ----------
    state : TsallisState
    arm : int
        Index of the arm played.
    cost : float
        Observed cost (SOR iterations), finite and nonnegative.
    prob : float, optional
        Probability with which ``arm`` was drawn; recomputed from ``state``
        when not given (it is a function of the state alone).

    Returns
    -------
    TsallisState
        A new state; the input is not modified.

    Examples
    --------
    >>> s = tsallis_update(tsallis_init(2), arm=0, cost=11.0)   # p_0 = 1/2
    >>> s.importance_sums.tolist(), s.t, s.cost_sum
    ([20.0, 0.0], 2, 11.0)
    """
    sums = np.asarray(state.importance_sums, dtype=np.float64)
    arm = check_arm(arm, sums.size)
    cost = check_cost(cost)
    if prob is None:
        prob = float(tsallis_distribution(state)[0][arm])
    prob = float(prob)
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"prob must be in (0, 1], got {prob!r}")
    sums = sums.copy()
    sums[arm] += (cost - 1.0) / prob
    return TsallisState(sums, state.t + 1, state.cost_sum + cost)


def sample_arm(p: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw from ``p`` using exactly one ``rng.random()``.

    One uniform per round keeps the stream of choices a function of the
    Generator's state alone, which is what makes save/restore bit-exact.
    """
    cdf = np.cumsum(p)
    u = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), p.size - 1))


def check_arm(arm, n_arms: int) -> int:
    if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)) or not 0 <= arm < n_arms:
        raise ValueError(f"arm must be an int in [0, {n_arms}), got {arm!r}")
    return int(arm)


def check_cost(cost) -> float:
    try:
        value = float(cost)
    except (TypeError, ValueError):
        raise TypeError(f"cost must be a real number, got {cost!r}") from None
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"cost must be finite and nonnegative, got {cost!r}")
    return value


def state_to_dict(state: TsallisState) -> dict:
    """JSON-ready form (lists, floats, ints); exact under ``json`` round trips."""
    return {"importance_sums": [float(v) for v in state.importance_sums],
            "t": int(state.t), "cost_sum": float(state.cost_sum)}


def state_from_dict(data: dict, n_arms: int) -> TsallisState:
    sums = np.asarray(data["importance_sums"], dtype=np.float64)
    if sums.shape != (n_arms,):
        raise ValueError(f"importance_sums must have {n_arms} entries, got shape {sums.shape}")
    t = int(data["t"])
    if t < 1:
        raise ValueError(f"t must be >= 1, got {t}")
    return TsallisState(sums, t, float(data["cost_sum"]))
