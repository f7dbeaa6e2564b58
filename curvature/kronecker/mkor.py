"""MKOR: Kronecker-factor inverses kept up to date by rank-1 Sherman-Morrison steps.

Mozaffari, Li, Zhang and Dehnavi, "MKOR: Momentum-Enabled
Kronecker-Factor-Based Optimizer Using Rank-1 Updates" (NeurIPS 2023),
Algorithm 1. Like K-FAC (:mod:`curvature.kronecker.kfac`, same column-major vec
convention) a dense layer's curvature is ``kron(A, G)``, but the factors are
rank-1 EMAs of the *batch-mean* input ``a_bar = mean [a, 1]`` and output
gradient ``g_bar = mean g`` (Algorithm 1, lines 2-3),

    A <- gamma A + (1 - gamma) a_bar a_bar',   A_0 = I   (G likewise),

and only their inverses ``J_A = A^{-1}``, ``J_G = G^{-1}`` are used, updated
in O(d^2) by Sherman-Morrison:

    J <- J/gamma - ((1-gamma)/gamma^2) (J v)(J v)' / (1 + ((1-gamma)/gamma) v' J v),

which is exactly ``(gamma J^{-1} + (1-gamma) v v')^{-1}``. (Algorithm 1,
lines 7-8, prints ``gamma J + (1-gamma)/(gamma^2 (1 + gamma (1-gamma) v'Jv))
(Jv)(Jv)'``: ``gamma`` for ``1/gamma``, ``+`` for ``-`` and ``gamma (1-gamma)``
for ``(1-gamma)/gamma``; that is not the inverse of any decayed rank-1 update
-- it is 15% off in a random test -- so the exact Sherman-Morrison form of
the factor EMA is used.)

The direction is ``J_G grad_W J_A`` rescaled to the Frobenius norm of
``grad_W`` (weight and bias together; Algorithm 1, line 10, "rescale
gradients"; ``norm_match=False`` leaves it raw). The caller's first-order
optimiser (momentum) then takes the step (line 14).

Norm-based stabiliser (Algorithm 1, lines 5-6), off unless
``stabilizer_threshold`` (``epsilon``) is given: before each
Sherman-Morrison step an inverse whose largest entry exceeds ``epsilon`` is
mixed with the identity, ``J <- zeta J + (1 - zeta) I`` (``zeta =
stabilizer_weight``), counted in ``stabilized``. A mixed ``J`` is no longer
the inverse of an O(d^2)-updatable factor, so with the stabiliser on the
factors are kept only when ``reinvert_every`` needs them (each mixing then
re-sets the factor to the exact inverse of the mixed ``J``, O(d^3));
otherwise ``factors`` is None. Algorithm 1 fixes neither the norm nor
``epsilon``; the largest entry is the authors' code's measure, and
``epsilon`` is measured against the identity start ``J_0 = I``. Off by
default, so that ``J`` stays the exact inverse of the factor EMA; without
it, directions the batch means stop exciting grow like ``gamma^-t`` until
the blow-up reset below.

Safeguards (not in the paper):

* Denominator guard: the step is refused (inverse unchanged, counted in
  ``refused``) when ``1 + c v'Jv`` is not finite or below
  ``denominator_guard * (1 + |c v'Jv|)``. For an SPD ``J`` the denominator
  is at least 1, so the guard never refuses a healthy step; it catches an
  inverse that has lost definiteness and overflowing vectors.
* Symmetrisation ``(J + J')/2`` after every step (rounding otherwise lets
  the two triangles drift apart and ``J`` become non-normal).
* Reset on blow-up: an inverse with NaN/Inf or an entry above
  ``reset_threshold`` is reset to the identity (its factor too), counted
  in ``resets``. A layer whose inputs stop varying makes ``A``'s
  unexcited directions decay like ``gamma^t``, so ``J_A`` grows like
  ``gamma^-t`` there (a zero gradient does exactly that); the reset bounds
  it (the stabiliser above does so earlier and more gently).
* ``reinvert_every=k``: every k updates the inverses are recomputed
  exactly from the factors, which are kept (O(d^2) each) for this and for
  inspection; this removes the rounding drift of long SM chains.

``form="code"`` reproduces the update of the authors' public code
(Mohammad-Mozaffari/mkor, ``mkor/mkor.py``), which differs from Algorithm 1:
the inverse is first mixed with the identity, ``M = 0.95 J + 0.05 I``
(``code_mixing``), then updated by an *undecayed* unit-weight step,
``J <- (M^{-1} + v v')^{-1}`` (``decay`` is not used); after a step whose
inverse has an entry above 2 (``code_reset_threshold``) both inverses of the
layer are flagged, and a flagged inverse is set to ``I`` at its next update
in place of the step (the very first update of each inverse is such a reset,
so that update's vectors are not used). No factors are kept in this form
(``factors`` is None, ``reinvert_every`` is refused). Not reproduced: fp16
inverses, the elementwise clamp of activations and gradients to +-100
before averaging, updates only every ``inv_freq`` = 10 steps (the caller
decides when to call :meth:`update`). The guard and symmetrisation stay on
(they change nothing in a healthy step).

Hybrid mode (MKOR-H): the paper falls back to the first-order method
mid-training once the second-order updates stop speeding up the loss
decrease. One run observes only the method in use, so here
:meth:`MKOR.observe_loss` tracks the loss decrease and switches to the
first-order direction (the gradient itself, for the caller's first-order
optimiser) for good once the relative decrease over ``hybrid_window``
observations falls below ``hybrid_tolerance``; and (an addition, never
triggered by an SPD inverse) any step whose second-order direction is not
a descent direction (``<D, grad> <= 0``) uses the gradient.
"""

from __future__ import annotations

import math
from typing import Any

from .._checks import check_finite_switch, check_positive_int, finite_apply, namespace_of
from ._kron import (check_decay, check_layer_batch, check_positive, check_real, check_vector,
                    symmetrise, unvec, vec, with_ones)
from .._state import (Array, Choice, Count, Equal, ListOf, Real, check_state, copy_array)

__all__ = ["MKOR", "sherman_morrison_step"]


def sherman_morrison_step(J: Any, v: Any, gamma: float, *, guard: float = 1e-8):
    """One decayed rank-1 inverse update: ``(gamma J^{-1} + (1-gamma) v v')^{-1}``.

    Parameters
    ----------
    J : array (n, n)
        The current inverse (symmetric positive definite when healthy).
    v : array (n,)
    gamma : float
        Decay in (0, 1] (1 leaves ``J`` unchanged).
    guard : float
        Relative denominator guard (see the module notes).

    Raises
    ------
    TypeError
        ``J`` or ``v`` not an array, ``v`` of another library than ``J``,
        or not real floating.
    ValueError
        ``J`` not square, ``v`` not of shape ``(n,)`` or not finite,
        ``gamma`` outside (0, 1].

    Returns
    -------
    J_new : array (n, n)
        Exactly symmetric; ``J`` itself when the step is refused.
    accepted : bool

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.kronecker.mkor import sherman_morrison_step
    >>> J, v = np.eye(2), np.array([1.0, 0.0])
    >>> J_new, ok = sherman_morrison_step(J, v, 0.5)   # inverse of 0.5 I + 0.5 v v'
    >>> J_new, ok
    (array([[1., 0.],
           [0., 2.]]), True)
    """
    xp = namespace_of(J, "J")
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"J must be a square 2-D array, got shape {tuple(J.shape)}")
    _, v = check_vector(v, "v", xp, J.shape[0], "J")
    gamma = check_decay("gamma", gamma, allow_one=True)
    if gamma == 0.0:
        raise ValueError("gamma must be in (0, 1], got 0.0: gamma = 0 drops J^{-1} and "
                         "leaves the singular v v'")
    guard = check_positive("guard", guard, allow_zero=True)
    return _rank_one_inverse(J, v, gamma, 1.0 - gamma, guard)


def _rank_one_inverse(J, v, alpha: float, beta: float, guard: float):
    """``(alpha J^{-1} + beta v v')^{-1}`` by Sherman-Morrison, guarded; (J_new, accepted).

    ``J/alpha - (beta/alpha^2) (Jv)(Jv)' / (1 + (beta/alpha) v'Jv)``: the paper
    form is ``alpha = gamma, beta = 1 - gamma``, the authors' code ``alpha = beta = 1``.
    """
    xp = namespace_of(J, "J")
    c = beta / alpha
    # v'Jv through w = v / max|v| with the scale squared in Python floats, so an
    # overflowing vector gives q = inf (refused) rather than an array overflow.
    scale = float(xp.max(xp.abs(v))) if v.shape[0] else 0.0
    if scale == 0.0:
        return symmetrise(xp, J / alpha), True
    w = v / scale
    u = xp.matmul(J, w)
    q = (scale * scale) * float(xp.sum(w * u))
    denominator = 1.0 + c * q
    if not (math.isfinite(denominator) and denominator >= guard * (1.0 + abs(c * q))) \
            or not bool(xp.all(xp.isfinite(u))):
        return J, False
    coefficient = c * (scale * scale) / (alpha * denominator)
    J_new = J / alpha - coefficient * (u[:, None] * u[None, :])
    return symmetrise(xp, J_new), True


class MKOR:
    """Rank-1-updated Kronecker-factor inverses of one dense layer.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
        Ones column appended to the activations (bias = last weight column).
    decay : float
        ``gamma`` in (0, 1).
    form : {"paper", "code"}
        The paper's update (default) or the authors' code's (see the module notes).
    code_mixing : float
        ``form="code"``: ``M = code_mixing J + (1 - code_mixing) I`` before each step.
    code_reset_threshold : float
        ``form="code"``: an inverse entry above this flags both inverses for a
        reset to ``I`` at their next update.
    stabilizer_threshold : float, optional
        The paper's norm-based stabiliser ``epsilon`` (off when None): an inverse
        whose largest entry exceeds it is mixed with ``I`` before the next step.
    stabilizer_weight : float
        ``zeta`` in ``J <- zeta J + (1 - zeta) I`` (in [0, 1)).
    denominator_guard : float
        Relative guard on the Sherman-Morrison denominator.
    reset_threshold : float
        An inverse entry above this (or NaN/Inf) resets that inverse to I.
    reinvert_every : int, optional
        Recompute the inverses exactly from the kept factors every k updates.
    norm_match : bool
        Rescale :meth:`precondition`'s direction to the gradient's norm.
    hybrid : bool
        MKOR-H switching (needs :meth:`observe_loss` calls).
    hybrid_window, hybrid_tolerance : int, float
        Switch when ``(L_old - L_new) / |L_old| < hybrid_tolerance`` over the
        last ``hybrid_window`` observed losses (after a full window).
    check_finite : bool or None
        NaN/Inf contract of :meth:`precondition`, :meth:`solve` and
        :meth:`matvec`, as in :class:`curvature.KFAC`: None (default) checks
        host arrays only; :meth:`update` always refuses non-finite input.

    Attributes
    ----------
    shape : (d, d)
        The operator on the column-major vec of the ``(out, in + bias)`` weight.
    inverses : (J_A, J_G)
        Identity before the first update.
    factors : (A, G) or None
        The accumulated factors (from the identity); None in ``form="code"``
        and with the stabiliser on but no ``reinvert_every``.
    step, refused, resets, stabilized, fallbacks : int
        Updates, refused SM steps, resets, stabiliser mixings, per-step hybrid
        fallbacks.
    phase : {"second", "first"}

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.kronecker.mkor import MKOR
    >>> rng = np.random.default_rng(0)
    >>> layer = MKOR(3, 2, decay=0.9)
    >>> for _ in range(50):
    ...     layer.update(rng.standard_normal((8, 3)), rng.standard_normal((8, 2)))
    >>> J_A, J_G = layer.inverses
    >>> A, G = layer.factors
    >>> bool(np.allclose(J_A @ A, np.eye(4))), bool(np.allclose(J_G @ G, np.eye(2)))
    (True, True)
    >>> grad_W = rng.standard_normal((2, 4))
    >>> D = layer.precondition(grad_W)                     # J_G grad_W J_A, norm-matched
    >>> bool(np.isclose(np.linalg.norm(D), np.linalg.norm(grad_W)))
    True
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 decay: float = 0.95, form: str = "paper", code_mixing: float = 0.95,
                 code_reset_threshold: float = 2.0,
                 stabilizer_threshold: float | None = None, stabilizer_weight: float = 0.9,
                 denominator_guard: float = 1e-8, reset_threshold: float = 1e10,
                 reinvert_every: int | None = None, norm_match: bool = True,
                 hybrid: bool = False, hybrid_window: int = 50,
                 hybrid_tolerance: float = 1e-3, check_finite: bool | None = None):
        self.check_finite = check_finite_switch(check_finite)
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.bias = bool(bias)
        self.decay = check_decay("decay", decay)
        if self.decay == 0.0:
            raise ValueError("decay must be in (0, 1): the update divides by it")
        if form not in ("paper", "code"):
            raise ValueError(f"form must be 'paper' or 'code', got {form!r}")
        self.form = form
        self.code_mixing = check_decay("code_mixing", code_mixing, allow_one=True)
        self.code_reset_threshold = check_positive("code_reset_threshold", code_reset_threshold)
        self.stabilizer_threshold = (None if stabilizer_threshold is None else
                                     check_positive("stabilizer_threshold", stabilizer_threshold))
        self.stabilizer_weight = check_decay("stabilizer_weight", stabilizer_weight)
        self.denominator_guard = check_positive("denominator_guard", denominator_guard)
        self.reset_threshold = check_positive("reset_threshold", reset_threshold)
        self.reinvert_every = (None if reinvert_every is None
                               else check_positive_int("reinvert_every", reinvert_every))
        if self.reinvert_every is not None and form == "code":
            raise ValueError("reinvert_every needs the kept factors of form='paper'")
        self.norm_match = bool(norm_match)
        self.hybrid = bool(hybrid)
        self.hybrid_window = check_positive_int("hybrid_window", hybrid_window)
        self.hybrid_tolerance = check_positive("hybrid_tolerance", hybrid_tolerance,
                                               allow_zero=True)
        self.rows = self.out_features
        self.cols = self.in_features + int(self.bias)
        d = self.rows * self.cols
        self.shape = (d, d)
        self.dtype = None
        self._xp = None
        self._J = self._F = None   # [J_A, J_G], [A, G] (see ``factors``)
        self._keep_factors = form == "paper" and (self.stabilizer_threshold is None
                                                  or self.reinvert_every is not None)
        self._reset_flags = [True, True]   # form="code": reset to I at the next update
        self.step = self.refused = self.resets = self.stabilized = self.fallbacks = 0
        self.phase = "second"
        self._losses: list[float] = []

    # --- attributes -----------------------------------------------------
    @property
    def inverses(self):
        return None if self._J is None else tuple(self._J)

    @property
    def factors(self):
        return None if self._F is None else tuple(self._F)

    def _identity(self, n):
        return self._xp.eye(n, dtype=self.dtype)

    # --- updates --------------------------------------------------------
    def update(self, a: Any, g: Any) -> None:
        """Rank-1 updates of both inverses from the batch means of ``a`` and ``g``.

        ``a`` is ``(batch, in_features)`` (or the mean vector ``(in_features,)``),
        ``g`` is ``(batch, out_features)`` (or its mean), per-example output
        gradients as for :class:`curvature.kronecker.kfac.KFAC`.
        """
        xp, a, g = check_layer_batch(a, g, self._xp, self.in_features, self.out_features)
        if self._J is None:
            self._xp, self.dtype = xp, xp.result_type(a.dtype, g.dtype)
            self._J = [self._identity(self.cols), self._identity(self.rows)]
            self._F = ([self._identity(self.cols), self._identity(self.rows)]
                       if self._keep_factors else None)
        a, g = xp.astype(a, self.dtype), xp.astype(g, self.dtype)
        if self.bias:
            a = with_ones(xp, a)
        means = (xp.mean(a, axis=0), xp.mean(g, axis=0))
        self.step += 1
        for i, v in enumerate(means):
            self._update_one(i, v)
        if self.reinvert_every is not None and self.step % self.reinvert_every == 0:
            self.reinvert()

    def _update_one(self, i: int, v) -> None:
        xp, gamma = self._xp, self.decay
        J = self._J[i]
        eye = self._identity(J.shape[0])
        if self.form == "code" and self._reset_flags[i]:
            # The authors' code: a flagged inverse becomes I in place of this step.
            self._reset_flags[i] = False
            self._J[i] = eye
            if self.step > 1:          # the first update's reset is the identity start
                self.resets += 1
            return
        F = None if self._F is None else self._F[i]
        if self.stabilizer_threshold is not None and \
                float(xp.max(xp.abs(J))) > self.stabilizer_threshold:
            # Norm-based stabiliser (Algorithm 1, lines 5-6).
            zeta = self.stabilizer_weight
            J = symmetrise(xp, zeta * J + (1.0 - zeta) * eye)
            if F is not None:
                F = symmetrise(xp, xp.linalg.inv(J))
            self.stabilized += 1
        if self.form == "code":
            mixed = self.code_mixing * J + (1.0 - self.code_mixing) * eye
            J_new, ok = _rank_one_inverse(mixed, v, 1.0, 1.0, self.denominator_guard)
        else:
            J_new, ok = _rank_one_inverse(J, v, gamma, 1.0 - gamma, self.denominator_guard)
        if not ok:
            self.refused += 1
            self._J[i] = J
            if F is not None:
                self._F[i] = F
            return
        if F is not None:
            F = symmetrise(xp, gamma * F + (1.0 - gamma) * (v[:, None] * v[None, :]))
        largest = float(xp.max(xp.abs(J_new)))
        if not (bool(xp.all(xp.isfinite(J_new))) and math.isfinite(largest)
                and largest <= self.reset_threshold
                and (F is None or bool(xp.all(xp.isfinite(F))))):
            self.resets += 1
            J_new = eye
            F = None if F is None else eye
        elif self.form == "code" and largest > self.code_reset_threshold:
            self._reset_flags = [True, True]
        self._J[i] = J_new
        if F is not None:
            self._F[i] = F

    def reinvert(self) -> None:
        """Replace both inverses by the exact inverses of the kept factors."""
        if self._F is None:
            return
        xp = self._xp
        for i, F in enumerate(self._F):
            J = symmetrise(xp, xp.linalg.inv(F))
            if bool(xp.all(xp.isfinite(J))) and float(xp.max(xp.abs(J))) <= self.reset_threshold:
                self._J[i] = J

    def observe_loss(self, loss: float) -> None:
        """Hybrid mode: feed the training loss after each step (see the module notes).

        Raises
        ------
        ValueError
            A NaN or Inf loss (in any mode): training has already diverged, which
            no switch of the preconditioner repairs; the state is unchanged.
        TypeError
            Not a real number.
        """
        try:
            loss = float(loss)
        except (TypeError, ValueError):
            raise TypeError(f"loss must be a real number, got {loss!r}") from None
        if not math.isfinite(loss):
            raise ValueError(f"MKOR.observe_loss: the loss is {loss}; a non-finite loss means "
                             "training diverged: restore a checkpoint or lower the step size")
        if not self.hybrid or self.phase == "first":
            return
        self._losses.append(loss)
        if len(self._losses) > self.hybrid_window:
            old = self._losses.pop(0)
            if old == 0.0 or (old - loss) / abs(old) < self.hybrid_tolerance:
                self.phase = "first"

    # --- applying -------------------------------------------------------
    def _check_matrix(self, V, name):
        """``(xp, V)``: library, shape and dtype; finiteness is the caller's (``check_finite``)."""
        xp = namespace_of(V, name, self._xp, "this layer")
        if tuple(V.shape) != (self.rows, self.cols):
            raise ValueError(f"{name} must have shape ({self.rows}, {self.cols}), "
                             f"got {tuple(V.shape)}")
        return xp, check_real(xp, V, name, finite=False)

    def precondition(self, grad_W: Any) -> Any:
        """``J_G grad_W J_A`` (norm-matched), or ``grad_W`` itself in the first-order phase."""
        xp, V = self._check_matrix(grad_W, "grad_W")
        owner = "MKOR.precondition"
        if self._J is None or self.phase == "first":
            return finite_apply(xp, lambda V: V, V, "grad_W", owner, self.check_finite)
        J_A, J_G = self._J
        D = finite_apply(xp, lambda V: xp.matmul(xp.matmul(J_G, V), J_A), V, "grad_W", owner,
                         self.check_finite)
        if self.hybrid and not float(xp.sum(D * V)) > 0.0:
            self.fallbacks += 1
            return V
        if self.norm_match:
            norm_d = float(xp.linalg.vector_norm(D))
            if norm_d > 0.0 and math.isfinite(norm_d):
                D = D * (float(xp.linalg.vector_norm(V)) / norm_d)
        return D

    def solve(self, v: Any) -> Any:
        """``kron(J_A, J_G) v``: the kept inverses on a column-major vec (no norm matching)."""
        xp, v = check_vector(v, "v", self._xp, self.shape[0], finite=False)
        if self._J is None:
            return finite_apply(xp, lambda v: v, v, "v", "MKOR.solve", self.check_finite)
        J_A, J_G = self._J

        def apply(v):
            V = unvec(xp, v, self.rows, self.cols)
            return vec(xp, xp.matmul(xp.matmul(J_G, V), J_A))

        return finite_apply(xp, apply, v, "v", "MKOR.solve", self.check_finite)

    def matvec(self, v: Any) -> Any:
        """The inverse of :meth:`solve`: ``kron(J_A^{-1}, J_G^{-1}) v`` by two solves."""
        xp, v = check_vector(v, "v", self._xp, self.shape[0], finite=False)
        if self._J is None:
            return finite_apply(xp, lambda v: v, v, "v", "MKOR.matvec", self.check_finite)
        J_A, J_G = self._J

        def apply(v):
            V = xp.linalg.solve(J_G, unvec(xp, v, self.rows, self.cols))
            return vec(xp, xp.matrix_transpose(xp.linalg.solve(J_A, xp.matrix_transpose(V))))

        return finite_apply(xp, apply, v, "v", "MKOR.matvec", self.check_finite)

    # --- state ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        xp = self._xp
        arrays = {}
        for name, group in (("J", self._J), ("F", self._F)):
            for key, arr in zip(("A", "G"), group or (None, None)):
                arrays[f"{name}_{key}"] = None if arr is None else copy_array(xp, arr)
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias, "form": self.form, "step": self.step,
                "refused": self.refused, "resets": self.resets, "stabilized": self.stabilized,
                "fallbacks": self.fallbacks, "reset_flags": list(self._reset_flags),
                "phase": self.phase, "losses": list(self._losses), **arrays}

    def _state_spec(self) -> dict:
        """What :meth:`load_state_dict` accepts (see :func:`linsolve.validation.state.check_state`)."""
        A, G = (self.cols, self.cols), (self.rows, self.rows)
        return {"in_features": Equal(self.in_features), "out_features": Equal(self.out_features),
                "bias": Equal(self.bias), "form": Equal(self.form),
                **{key: Count() for key in ("step", "refused", "resets", "stabilized",
                                            "fallbacks")},
                "reset_flags": ListOf(Choice((True, False)), length=2),
                "phase": Choice(("second", "first")),
                "losses": ListOf(Real(), max_length=self.hybrid_window),
                "J_A": Array(A, optional=True, together="inverses"),
                "J_G": Array(G, optional=True, together="inverses"),
                "F_A": Array(A, optional=True, together="factors"),
                "F_G": Array(G, optional=True, together="factors")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a layer of the same size and form.

        The whole state is checked first: a bad one raises ``ValueError`` or
        ``TypeError`` naming the key, and leaves this layer as it was.
        """
        check_state(state, self._state_spec(), type(self).__name__)
        if state["F_A"] is not None and state["J_A"] is None:
            raise ValueError("MKOR state: state['F_A'] and state['F_G'] must be None "
                             "when state['J_A'] is None (factors without inverses)")
        for key in ("step", "refused", "resets", "stabilized", "fallbacks"):
            setattr(self, key, int(state[key]))
        self._reset_flags = [bool(f) for f in state["reset_flags"]]
        self.phase, self._losses = state["phase"], [float(x) for x in state["losses"]]
        if state["J_A"] is None:
            self._xp = self.dtype = self._J = self._F = None
            return
        xp = namespace_of(state["J_A"], "state['J_A']")
        self._xp, self.dtype = xp, state["J_A"].dtype
        self._J = [copy_array(xp, state["J_A"]), copy_array(xp, state["J_G"])]
        self._F = (None if state["F_A"] is None
                   else [copy_array(xp, state["F_A"]), copy_array(xp, state["F_G"])])

    def __repr__(self) -> str:
        return (f"MKOR(in_features={self.in_features}, out_features={self.out_features}, "
                f"form={self.form!r}, decay={self.decay:g}, step={self.step})")
