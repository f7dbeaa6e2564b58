"""Learning SOR's relaxation factor across a sequence of linear systems.

Khodak et al., "Learning to Relax: Setting Solver Parameters Across a
Sequence of Linear System Instances", ICLR 2024. A tuner picks ``omega``
from a grid before each solve and learns from the iteration count:

* :class:`OmegaBandit`: Tsallis-INF (no context), math in
  :mod:`linsolve.tuning.tsallis`;
* :class:`OmegaContextualBandit`: a scalar context per system (e.g. the
  diagonal offset), Tsallis-INF per context bin or ChebCB, math in
  :mod:`linsolve.tuning.contextual`;
* :func:`young_omega`: the instance-optimal comparator.

A tuner is plain data plus a NumPy Generator: ``state_dict()`` is
JSON-serialisable and ``load_state_dict`` resumes with bit-identical choices.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, NamedTuple

import numpy as np

from ..validation.inputs import check_maxiter
from ..validation.sparse import checked_csr
from . import contextual as _ctx
from . import tsallis as _tsallis
from ..validation.state import (Array, Count, Equal, GeneratorState, ListOf, Nested, Real, Where,
                     check_state, plain)
from ..result import SolveResult

DEFAULT_OMEGAS = np.linspace(1.0, 1.95, 20)
SOLVERS = ("sor", "ssor-pcg")
METHODS = ("tsallis-bins", "chebcb")
_FORMAT_VERSION = 1


class Round(NamedTuple):
    """One round of a tuner's history."""

    context: float | None
    arm: int
    omega: float
    cost: float


class _OmegaTuner:
    """Shared machinery: grid, Generator, pending choice, history, solve, state dict."""

    def __init__(self, omegas, seed):
        grid = np.array(omegas, dtype=np.float64).reshape(-1) if np.ndim(omegas) <= 1 else None
        if grid is None:
            raise ValueError(f"omegas must be a 1-D grid, got shape {np.shape(omegas)}")
        if grid.size == 0:
            raise ValueError("omegas must not be empty")
        if not np.all((grid > 0.0) & (grid < 2.0)):
            raise ValueError(f"every omega must lie in the open interval (0, 2), got {grid.tolist()}")
        grid.setflags(write=False)
        self.omegas = grid
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._pending: tuple[int, float | None, float] | None = None
        self._rng_before_choice = None  # generator state before the pending choose()
        self._history: list[Round] = []

    # -- subclass hooks -------------------------------------------------------
    def _check_context(self, context):  # returns the context to record
        raise NotImplementedError

    def _distribution(self, context) -> np.ndarray:
        raise NotImplementedError

    def _learn(self, arm: int, cost: float, context, prob: float) -> None:
        raise NotImplementedError

    def _config(self) -> dict:
        raise NotImplementedError

    def _state_to_dict(self) -> Any:
        raise NotImplementedError

    def _state_from_dict(self, data) -> None:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------
    @property
    def n_arms(self) -> int:
        return self.omegas.size

    @property
    def history(self) -> list[Round]:
        """Past rounds as :class:`Round` ``(context, arm, omega, cost)`` records (a copy)."""
        return list(self._history)

    def probabilities(self, context=None) -> np.ndarray:
        """The distribution the next :meth:`choose` draws from (no randomness used)."""
        return self._distribution(self._check_context(context))

    def choose(self, context=None) -> tuple[int, float]:
        """Draw ``(arm_index, omega)`` for the next system; call :meth:`update` after it."""
        if self._pending is not None:
            raise RuntimeError("choose() called twice: report the cost of the last choice "
                               "with update(cost) first")
        context = self._check_context(context)
        p = self._distribution(context)
        self._rng_before_choice = self._rng.bit_generator.state
        arm = _tsallis.sample_arm(p, self._rng)
        self._pending = (arm, context, float(p[arm]))
        return arm, float(self.omegas[arm])

    def cancel(self) -> None:
        """Withdraw the pending :meth:`choose` (its solve failed): nothing is learnt, and
        the generator is put back so that the next choice is the one this would have been.

        A choice restored from a :meth:`state_dict` is withdrawn without that
        rewind (the state before it was not saved).
        """
        if self._pending is None:
            raise RuntimeError("cancel() without a pending choose()")
        if self._rng_before_choice is not None:
            self._rng.bit_generator.state = self._rng_before_choice
        self._pending = self._rng_before_choice = None

    def update(self, cost: float, context=None) -> None:
        """Learn the cost (e.g. SOR iterations) of the omega returned by :meth:`choose`."""
        if self._pending is None:
            raise RuntimeError("update() without a pending choose(): call choose() first, "
                               "or observe(arm, cost, context) to record a given arm")
        arm, chosen_context, prob = self._pending
        if context is not None and self._check_context(context) != chosen_context:
            raise ValueError(f"context {context!r} differs from the one chosen for, "
                             f"{chosen_context!r}")
        cost = _tsallis.check_cost(cost)
        self._learn(arm, cost, chosen_context, prob)
        self._pending = None
        self._history.append(Round(chosen_context, arm, float(self.omegas[arm]), cost))

    def observe(self, arm: int, cost: float, context=None) -> None:
        """Learn ``cost`` for ``arm``, assumed drawn from the current distribution."""
        arm = _tsallis.check_arm(arm, self.n_arms)
        if self._pending is not None:
            if arm != self._pending[0]:
                raise RuntimeError(f"arm {arm} observed while arm {self._pending[0]} is pending")
            return self.update(cost, context)
        context = self._check_context(context)
        cost = _tsallis.check_cost(cost)
        self._learn(arm, cost, context, float(self._distribution(context)[arm]))
        self._history.append(Round(context, arm, float(self.omegas[arm]), cost))

    def solve(self, A: Any, b: Any, context=None, solver: str = "sor", **kwargs) -> SolveResult:
        """Choose omega, solve ``A x = b``, learn from the iteration count.

        Parameters
        ----------
        A, b : matrix and right-hand side, as :func:`linsolve.sor` or
            :func:`linsolve.pcg` take them.
        context : float, optional
            Required by :class:`OmegaContextualBandit`.
        solver : {"sor", "ssor-pcg"}
            ``"sor"``: :func:`linsolve.sor` (``symmetric=False`` unless given).
            A sequence of matrices of one sparsity pattern with a coloured
            ``ordering`` pays the colouring once: :func:`linsolve.sor` reuses
            its last pattern (see :meth:`linsolve.SorMatrix.refactor`).
            ``"ssor-pcg"``: :func:`linsolve.pcg` with ``M = linsolve.precond.ssor(A, omega)``.
        **kwargs
            Passed on; ``rtol`` defaults to 1e-8 and ``maxiter`` to ``10 n``.

        Returns
        -------
        SolveResult
            With ``extra["omega"]``, ``extra["arm"]`` and ``extra["cost"]``:
            the iterations, or ``maxiter`` when the solve did not converge.
            If the solver raises, the tuner is left as it was before the call.

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp
        >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(10, 10), format="csr")
        >>> tuner = OmegaBandit(seed=0)
        >>> result = tuner.solve(A, np.ones(10))
        >>> result.converged, result.extra["cost"] == result.iterations == tuner.history[0].cost
        (True, True)
        """
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        rtol = kwargs.pop("rtol", 1e-8)
        # at least one iteration: the cost the tuner learns from is the count
        maxiter = check_maxiter(kwargs.pop("maxiter", None), 10 * int(np.shape(b)[0]), minimum=1)
        arm, omega = self.choose(context)
        try:
            if solver == "sor":
                from ..stationary.sor import sor
                kwargs.setdefault("symmetric", False)
                result = sor(A, b, omega, rtol=rtol, maxiter=maxiter, **kwargs)
            else:
                from ..krylov.pcg import pcg
                from ..precond import ssor
                result = pcg(A, b, M=ssor(A, omega), rtol=rtol, maxiter=maxiter, **kwargs)
        except BaseException:
            self.cancel()  # a solve that raised leaves the tuner as it was
            raise
        cost = result.iterations if result.converged else maxiter
        self.update(cost)
        return dataclasses.replace(result, extra={**result.extra, "omega": omega, "arm": arm,
                                                  "cost": cost})

    def state_dict(self) -> dict:
        """Everything needed to resume: config, learner state, Generator state, history.

        Only lists, floats, ints, strings and None: ``json.dumps`` writes it
        and ``json.loads`` gives it back exactly (floats round-trip by repr).
        """
        bit_generator = self._rng.bit_generator
        return {"type": type(self).__name__, "version": _FORMAT_VERSION,
                "config": self._config(), "state": self._state_to_dict(),
                "rng": {"bit_generator": type(bit_generator).__name__,
                        "state": plain(bit_generator.state)},
                "pending": None if self._pending is None else list(self._pending),
                "history": [list(r) for r in self._history]}

    def _state_spec(self) -> dict:
        """What :meth:`load_state_dict` accepts (see :func:`linsolve.validation.state.check_state`)."""
        name = type(self).__name__
        last_arm = self.n_arms - 1

        def real(value):
            return not isinstance(value, bool) and isinstance(value, numbers.Real) \
                and math.isfinite(value)

        def context_ok(context):  # what _check_context would have recorded (raises: False)
            if context is None:
                return self._check_context(None) is None
            return real(context) and self._check_context(context) == context

        def round_ok(entry):  # [context, arm, omega, cost], as state_dict writes it
            context, arm, omega, cost = entry
            Count(0, last_arm)("arm", arm, None)
            return (context_ok(context) and real(omega) and omega == float(self.omegas[arm])
                    and real(cost) and cost >= 0.0)

        def pending_ok(entry):  # [arm, context, probability]
            arm, context, prob = entry
            Count(0, last_arm)("arm", arm, None)
            return context_ok(context) and real(prob) and 0.0 < prob <= 1.0

        return {"type": Equal(name, f": not a {name} state dict"),
                "version": Equal(_FORMAT_VERSION),
                "config": Equal(plain(self._config()),
                                ": state dict was saved by a tuner with a different "
                                "configuration; use from_state_dict"),
                "state": self._learner_spec(), "rng": GeneratorState(),
                "pending": Where(lambda p: p is None or pending_ok(p),
                                 f"None or [arm in [0, {last_arm}], context, probability "
                                 "in (0, 1]]"),
                "history": ListOf(Where(round_ok, f"[context, arm in [0, {last_arm}], that "
                                                  "arm's omega, finite cost >= 0]"))}

    def load_state_dict(self, data: dict) -> None:
        """Restore a :meth:`state_dict` taken from a tuner built with the same arguments.

        The whole state is checked first: a bad one raises ``ValueError`` or
        ``TypeError`` naming the key, and leaves this tuner (and its Generator)
        as it was. A loaded state sets the Generator's state; when it was saved
        from another bit generator, the tuner gets a new Generator of that kind
        (a Generator passed in at construction is then no longer advanced).
        """
        check_state(data, self._state_spec(), type(self).__name__)
        self._state_from_dict(data["state"])
        name = data["rng"]["bit_generator"]
        if type(self._rng.bit_generator).__name__ != name:
            self._rng = np.random.Generator(getattr(np.random, name)())
        self._rng.bit_generator.state = data["rng"]["state"]
        pending = data["pending"]
        self._pending = None if pending is None else (int(pending[0]), pending[1], float(pending[2]))
        self._rng_before_choice = None
        self._history = [Round(c, int(a), float(w), float(k)) for c, a, w, k in data["history"]]

    @classmethod
    def from_state_dict(cls, data: dict):
        """A new tuner resumed from ``data``."""
        tuner = cls(**data["config"])
        tuner.load_state_dict(data)
        return tuner


class OmegaBandit(_OmegaTuner):
    """Tsallis-INF over a grid of SOR relaxation factors.

    Learning rate ``eta_t = 2/sqrt(t)``, importance-weighted estimates of
    the cost normalised by its running mean (see
    :func:`linsolve.tuning.tsallis.tsallis_loss_estimates`), probabilities
    ``p_i = 4 / (eta_t (L_i - x))^2`` (:func:`~linsolve.tuning.tsallis.tsallis_probabilities`).

    Parameters
    ----------
    omegas : array_like
        Grid of relaxation factors in (0, 2). Default ``linspace(1, 1.95, 20)``.
    seed : int, numpy.random.Generator or None
        Randomness of the draws. A Generator passed in is used (and advanced)
        directly.

    Examples
    --------
    >>> import numpy as np
    >>> tuner = OmegaBandit(np.linspace(1.0, 1.9, 4), seed=0)
    >>> for t in range(200):          # synthetic costs: omega = 1.6 is best
    ...     arm, omega = tuner.choose()
    ...     tuner.update(50 + 100 * abs(omega - 1.6))
    >>> int(tuner.probabilities().argmax()), tuner.history[-1].cost >= 50
    (2, True)
    >>> import json
    >>> clone = OmegaBandit.from_state_dict(json.loads(json.dumps(tuner.state_dict())))
    >>> clone.choose() == tuner.choose()
    True
    """

    def __init__(self, omegas=DEFAULT_OMEGAS, seed=None):
        super().__init__(omegas, seed)
        self.state = _tsallis.tsallis_init(self.n_arms)

    def _check_context(self, context):
        # No context is needed; one given is recorded in the history only.
        return None if context is None else float(context)

    def _distribution(self, context):
        return _tsallis.tsallis_distribution(self.state)[0]

    def _learn(self, arm, cost, context, prob):
        self.state = _tsallis.tsallis_update(self.state, arm, cost, prob)

    def _config(self):
        return {"omegas": self.omegas.tolist()}

    def _state_to_dict(self):
        return _tsallis.state_to_dict(self.state)

    def _state_from_dict(self, data):
        self.state = _tsallis.state_from_dict(data, self.n_arms)

    def _learner_spec(self):
        return _tsallis_spec(self.n_arms)


class OmegaContextualBandit(_OmegaTuner):
    """Omega tuning with a scalar context per system (Khodak et al., section 4).

    Parameters
    ----------
    context_range : (float, float)
        Interval ``[low, high]`` holding every context; contexts outside raise.
    omegas : array_like
        Grid in (0, 2). Default ``linspace(1, 1.95, 20)``.
    method : {"tsallis-bins", "chebcb"}
        ``"tsallis-bins"``: independent Tsallis-INF in each of ``n_bins``
        equal bins of the context interval (the context goes to the nearest
        bin centre). ``"chebcb"``: per-arm ridge regression of the cost on
        the Chebyshev polynomials ``T_0..T_degree`` of the context scaled to
        [-1, 1], with SquareCB sampling (see :mod:`linsolve.tuning.contextual`).
    n_bins : int
        Bins for ``"tsallis-bins"`` (the paper uses 5).
    degree : int
        Largest Chebyshev degree for ``"chebcb"`` (the paper uses 5: six features).
    ridge : float
        Ridge parameter of ``"chebcb"``'s per-arm fits, in units of one
        observation at zero cost-minus-one.
    seed : int, numpy.random.Generator or None

    Examples
    --------
    >>> import numpy as np
    >>> tuner = OmegaContextualBandit((0.0, 1.0), omegas=[1.2, 1.8], method="chebcb", seed=1)
    >>> rng = np.random.default_rng(0)
    >>> for t in range(300):          # omega = 1.2 is best below 0.5, 1.8 above
    ...     c = rng.random()
    ...     arm, omega = tuner.choose(c)
    ...     tuner.update(20.0 if (c < 0.5) == (omega < 1.5) else 60.0)
    >>> [int(tuner.probabilities(c).argmax()) for c in (0.1, 0.9)]
    [0, 1]
    """

    def __init__(self, context_range, omegas=DEFAULT_OMEGAS, method: str = "tsallis-bins", *,
                 n_bins: int = 5, degree: int = 5, ridge: float = 1.0, seed=None):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        try:
            low, high = (float(v) for v in context_range)
        except (TypeError, ValueError):
            raise ValueError(f"context_range must be a pair (low, high), got {context_range!r}") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"context_range must be finite with low < high, got {context_range!r}")
        for name, value in (("n_bins", n_bins), ("degree", degree)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (1 if name == "n_bins" else 0):
                raise ValueError(f"{name} must be a {'positive' if name == 'n_bins' else 'nonnegative'} int, got {value!r}")
        ridge = float(ridge)
        if not (math.isfinite(ridge) and ridge > 0.0):
            raise ValueError(f"ridge must be finite and positive, got {ridge!r}")
        super().__init__(omegas, seed)
        self.context_range = (low, high)
        self.method = method
        self.n_bins, self.degree, self.ridge = int(n_bins), int(degree), ridge
        if method == "tsallis-bins":
            self.state = tuple(_tsallis.tsallis_init(self.n_arms) for _ in range(self.n_bins))
        else:
            self.state = _ctx.chebcb_init(self.n_arms, self.degree)

    def _check_context(self, context):
        if context is None:
            raise ValueError("OmegaContextualBandit needs a context (a float in context_range)")
        try:
            value = float(context)
        except (TypeError, ValueError):
            raise TypeError(f"context must be a real number, got {context!r}") from None
        low, high = self.context_range
        if not low <= value <= high:
            raise ValueError(f"context {value!r} is outside context_range [{low}, {high}]")
        return value

    def _bin(self, context):
        return _ctx.bin_index(context, *self.context_range, self.n_bins)

    def _features(self, context):
        return _ctx.chebyshev_features(context, *self.context_range, self.degree)

    def _width(self):
        return self.context_range[1] - self.context_range[0]

    def _distribution(self, context):
        if self.method == "tsallis-bins":
            return _tsallis.tsallis_distribution(self.state[self._bin(context)])[0]
        return _ctx.chebcb_distribution(self.state, self._features(context), self.degree,
                                        self._width(), self.ridge)[0]

    def _learn(self, arm, cost, context, prob):
        if self.method == "tsallis-bins":
            j = self._bin(context)
            states = list(self.state)
            states[j] = _tsallis.tsallis_update(states[j], arm, cost, prob)
            self.state = tuple(states)
        else:
            self.state = _ctx.chebcb_update(self.state, arm, cost, self._features(context),
                                            self.ridge)

    def _config(self):
        return {"context_range": list(self.context_range), "omegas": self.omegas.tolist(),
                "method": self.method, "n_bins": self.n_bins, "degree": self.degree,
                "ridge": self.ridge}

    def _state_to_dict(self):
        if self.method == "tsallis-bins":
            return [_tsallis.state_to_dict(s) for s in self.state]
        return _ctx.chebcb_to_dict(self.state)

    def _state_from_dict(self, data):
        if self.method == "tsallis-bins":
            if len(data) != self.n_bins:
                raise ValueError(f"expected {self.n_bins} bin states, got {len(data)}")
            self.state = tuple(_tsallis.state_from_dict(d, self.n_arms) for d in data)
        else:
            self.state = _ctx.chebcb_from_dict(data, self.n_arms, self.degree)

    def _learner_spec(self):
        if self.method == "tsallis-bins":
            return ListOf(_tsallis_spec(self.n_arms), length=self.n_bins)
        m = self.degree + 1
        return Nested({"gram": Array((self.n_arms, m, m), json=True),
                       "moments": Array((self.n_arms, m), json=True), "t": Count(1),
                       **{key: Real(minimum=0.0)
                          for key in ("cost_max", "cost_min", "online_sq_error")}})


def _tsallis_spec(n_arms: int):
    """A Tsallis-INF learner state as :func:`linsolve.tuning.tsallis.state_to_dict` writes it."""
    return Nested({"importance_sums": Array((n_arms,), json=True), "t": Count(1),
                   "cost_sum": Real(minimum=0.0)})


def jacobi_spectral_radius(A: Any, *, tol: float = 1e-10, seed: int = 0) -> float:
    """Spectral radius of the Jacobi iteration matrix ``I - D^{-1} A``, by Lanczos.

    ``I - D^{-1} A`` is similar to ``I - S`` with ``S = D^{-1/2} A D^{-1/2}``
    symmetric when ``A`` is, so ``rho_J = max |1 - lambda(S)|``, the
    extreme eigenvalues of ``S`` found by :func:`scipy.sparse.linalg.eigsh`
    (``which="BE"``: one from each end), not a dense eigendecomposition.
    Systems with fewer than 3 unknowns, too small for ARPACK, use ``eigvalsh``.

    Raises
    ------
    ValueError
        ``A`` not square or a diagonal entry not positive.
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    A = sp.csr_matrix(checked_csr(A) if sp.issparse(A) else A, dtype=np.float64)
    n = A.shape[0]
    if A.shape != (n, n) or n == 0:
        raise ValueError(f"A must be square and non-empty, got shape {A.shape}")
    d = A.diagonal()
    if not np.all(d > 0):
        raise ValueError("young_omega needs a positive diagonal (A symmetric positive definite)")
    scaling = sp.diags(1.0 / np.sqrt(d))
    S = (scaling @ A @ scaling).tocsr()
    if n < 3:
        eigenvalues = np.linalg.eigvalsh(S.toarray())
    else:
        v0 = np.random.default_rng(seed).standard_normal(n)
        eigenvalues = spla.eigsh(S, k=2, which="BE", tol=tol, v0=v0, return_eigenvectors=False)
    return float(np.max(np.abs(1.0 - eigenvalues)))


def young_omega(A: Any, *, tol: float = 1e-10, seed: int = 0) -> float:
    """Young's optimal SOR factor ``2 / (1 + sqrt(1 - rho_J^2))``, the instance-optimal comparator.

    Optimal for consistently ordered matrices with real Jacobi eigenvalues
    (e.g. 5-point stencils with a constant diagonal shift); the
    authors' solvers/omega_opt.m writes it as ``1 + (rho/(1 + sqrt(1 - rho^2)))^2``,
    the same number.

    Parameters
    ----------
    A : sparse or dense matrix
        Symmetric with a positive diagonal and ``rho_J < 1``.
    tol, seed
        Lanczos tolerance and the seed of its start vector.

    Raises
    ------
    ValueError
        ``rho_J >= 1`` (Jacobi does not converge, the formula does not apply).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> N = 20
    >>> T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    >>> A = sp.kron(sp.eye(N), T) + sp.kron(T, sp.eye(N))
    >>> h = 1.0 / (N + 1)
    >>> bool(abs(young_omega(A) - 2 / (1 + np.sin(np.pi * h))) < 1e-8)
    True
    """
    rho = jacobi_spectral_radius(A, tol=tol, seed=seed)
    if not rho < 1.0:
        raise ValueError(f"Jacobi spectral radius {rho} >= 1: Young's formula needs rho_J < 1")
    return 2.0 / (1.0 + math.sqrt(1.0 - rho * rho))
