"""Shampoo: a Kronecker-factored preconditioner per tensor (Gupta, Koren, Singer 2018).

For an order-k gradient ``G`` each mode ``i`` keeps a factor
``F_i = sum_t G_(i) G_(i)'`` (``G_(i)``: the mode-i unfolding), and the
direction is ``G x_1 F_1^{-1/(2k)} x_2 ... x_k F_k^{-1/(2k)}``: for a matrix,
``L^{-1/4} G R^{-1/4}``; for a vector, full-matrix AdaGrad ``L^{-1/2} g``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

from array_api_compat import array_namespace

from .._checks import (check_finite_statistics, check_finite_switch, check_square_summable,
                       finite_apply, namespace_of, refuse_complex)
from ._grafting import check_grafting, graft_direction
from ..kronecker._kron import check_positive
from .._state import (Array, Arrays, Count, Equal, Where, check_state, copy_array,
                     copy_arrays)
from .roots import RootError, inverse_root

__all__ = ["Shampoo"]

_ROOT_METHODS = ("auto", "eigh", "newton")   # inverse_root's methods


def _unfold(xp, X, mode):
    """Mode-``mode`` unfolding: that axis first, the rest flattened, C order."""
    order = (mode,) + tuple(i for i in range(X.ndim) if i != mode)
    return xp.reshape(xp.permute_dims(X, order), (X.shape[mode], -1))


def _cycle_modes(xp, X, ops):
    """Apply ``ops[i]`` (acting on an ``(n_i, rest)`` matrix) along each mode.

    Each op works on axis 0, which is then moved last: after all k modes the
    axes are back in their original order (the classic Shampoo loop), so no
    op ever needs an axis other than the first.
    """
    for op in ops:
        shape = X.shape
        Y = op(xp.reshape(X, (shape[0], -1)))
        Y = xp.reshape(Y, shape)
        X = xp.permute_dims(Y, tuple(range(1, len(shape))) + (0,))
    return X


def _check_finite(xp, grad, name="gradient"):
    if not bool(xp.all(xp.isfinite(grad))):
        raise ValueError(f"{name} contains NaN or Inf")


def check_floating(xp, x, name: str, owner: str):
    """TypeError for an integer or boolean ``x``, naming the fix: the statistics need a
    floating dtype, and which one (float32 or float64) is the caller's choice."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{owner}: {name} has dtype {x.dtype}; it must be a real floating array "
                        f"(float32 or float64): convert it with xp.astype({name}, xp.float64) "
                        "(or float32)")
    return x


def _take_gradient(optimizer, grad, method: str):
    """``(xp, grad)`` checked and cast for ``optimizer`` (Shampoo or SOAP), before any state changes.

    An array of the library of the first gradient, shape
    ``optimizer.param_shape``, real floating, finite, and ``sum(grad**2)``
    representable in the working dtype (it bounds every statistic the
    method keeps). The first gradient fixes ``optimizer``'s namespace and
    dtype; the returned one is cast to that dtype.
    """
    xp = namespace_of(grad, "grad", optimizer._xp, method)
    if tuple(grad.shape) != optimizer.param_shape:
        raise ValueError(f"gradient shape {tuple(grad.shape)} != {optimizer.param_shape}")
    refuse_complex(xp, grad, "gradient")
    check_floating(xp, grad, "grad", method)
    _check_finite(xp, grad)
    check_square_summable(xp, grad, "grad", method,
                          dtype=grad.dtype if optimizer.dtype is None else optimizer.dtype)
    if optimizer._xp is None:
        optimizer._xp, optimizer.dtype = xp, grad.dtype
    return xp, xp.astype(grad, optimizer.dtype)


class Shampoo:
    """Shampoo preconditioner for one tensor of the given shape; returns directions.

    Learning-rate free: ``update(grad)`` returns the direction ``D`` and the
    caller steps ``x -= lr * D`` (and adds momentum if wanted).

    Parameters
    ----------
    shape : tuple of int
        Parameter (and gradient) shape; its order k sets the exponents
        ``-1/(2k)``.
    beta2 : float
        1.0 sums the factors (AdaGrad-style); below 1 an exponential moving
        average ``F <- beta2 F + (1 - beta2) G_(i) G_(i)'``, bias-corrected
        before each root (see ``bias_correction``).
    eps : float
        The ridge, added once to each factor's diagonal before the root: the
        roots are those of ``F_hat + eps I`` (``F_hat``: the bias-corrected
        factor), by :func:`curvature.shampoo.roots.inverse_root` with ``eps`` as its
        ridge, for every ``root_method``. Below about ``100 u ||F||`` (``u``
        the dtype's rounding unit: ``1e-5 ||F||`` in float32, ``2e-14 ||F||``
        in float64) the ridge is lost in rounding, the root of a
        rank-deficient factor fails its residual check, and the previous
        roots are kept.
    update_freq : int
        Roots are recomputed every ``update_freq`` steps from ``start``.
    start : int
        First (1-based) step that is preconditioned; before it the direction
        is the grafted method's (or the gradient without grafting). Factors
        accumulate from step 1.
    grafting : {"adam", "adagrad", "sgd", None}
        Each direction is rescaled to the norm of this method's direction
        (see :mod:`curvature.shampoo._grafting`; ``adam`` is Adam's second-moment
        scaling, its first moment is the caller's).
    max_dim : int
        Modes longer than this keep only the factor's diagonal (a diagonal,
        AdaGrad-like preconditioner ``diag(F_i)^{-1/(2k)}`` on that mode),
        so no ``max_dim``-sized eigendecomposition is ever needed.
    graft_beta2, graft_eps : float
        Adam/AdaGrad constants of the grafted method.
    root_method : {"auto", "eigh", "newton"}
        Passed to :func:`curvature.shampoo.roots.inverse_root` as ``method``.
    check_finite : bool or None
        NaN/Inf contract of :meth:`solve` and :meth:`matvec`, as in
        :class:`curvature.MFAC`: True checks every call (ValueError for NaN
        or Inf in ``v``, or for a result that overflows from a finite one),
        False checks nothing, None (default) checks host arrays and leaves
        device arrays (CuPy, CUDA torch, JAX on an accelerator) unchecked, so
        that no call synchronises with the device. :meth:`update` always
        refuses a non-finite gradient.
    bias_correction : bool
        With ``beta2 < 1``, divide each factor by ``1 - beta2^t`` (``t``: the
        steps accumulated) before its root, as Distributed Shampoo does, so
        that the early EMA, which starts from zero, is not too small by that
        factor. Without it, and with ``eps`` negligible, the first direction
        is ``(1 - beta2)^{-1/2}`` times the corrected one (10x at
        ``beta2 = 0.99``). No effect with ``beta2 = 1``.
    max_failures : int
        A failed root keeps the previous roots; this many consecutive
        failures raise :class:`curvature.shampoo.roots.RootError`. Before the first
        root succeeds there are no previous roots: the step is the grafted
        direction (the gradient without grafting). Early factors are sums of
        fewer outer products than their size, singular up to the ridge
        ``eps``, and their roots fail the residual check (e.g. a 100-vector,
        unit-scale float64 gradients, the default ``eps``: the first root at
        step 100): such failures, within the first ``max(shape)`` steps, are
        not counted, and a ``RuntimeWarning`` says so. A larger ``eps``
        makes them succeed sooner.

    Attributes
    ----------
    shape : tuple
        ``(d, d)`` with ``d`` the parameter size: the operator's shape on the
        flattened parameter. The parameter shape is ``param_shape``.
    dtype
        Set by the first gradient.

    Notes
    -----
    ``solve(v)`` applies the current (frozen) preconditioner
    ``F_1^{-1/(2k)} kron ... kron F_k^{-1/(2k)}`` to a flattened (C order)
    gradient-shaped vector, without grafting; ``matvec(v)`` applies its
    inverse. Before the first root both are the identity.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.shampoo.shampoo import Shampoo
    >>> opt = Shampoo((3, 2), grafting=None)
    >>> G = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    >>> D = opt.update(G)           # roots of L = G G' + eps I,  R = G' G + eps I
    >>> np.round(D, 6)              # L^{-1/4} G R^{-1/4}: signs kept, scale removed
    array([[1., 0.],
           [0., 1.],
           [0., 0.]])
    >>> v = np.arange(6.0)
    >>> bool(np.allclose(opt.matvec(opt.solve(v)), v))
    True
    """

    def __init__(self, shape: Sequence[int], beta2: float = 1.0, eps: float = 1e-12,
                 update_freq: int = 1, start: int = 1, grafting: str | None = "adam",
                 max_dim: int = 2048, *, graft_beta2: float = 0.999,
                 graft_eps: float = 1e-8, root_method: str = "auto",
                 max_failures: int = 5, bias_correction: bool = True,
                 check_finite: bool | None = None):
        self.check_finite = check_finite_switch(check_finite)
        self.param_shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in self.param_shape):
            raise ValueError(f"shape must have positive entries, got {shape!r}")
        if not 0.0 < beta2 <= 1.0:
            raise ValueError(f"beta2 must be in (0, 1], got {beta2!r}")
        eps = check_positive("eps", eps, allow_zero=True)
        if root_method not in _ROOT_METHODS:
            raise ValueError(f"root_method must be one of {_ROOT_METHODS}, got {root_method!r}")
        for name, value in (("update_freq", update_freq), ("start", start),
                            ("max_dim", max_dim), ("max_failures", max_failures)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.beta2, self.eps = float(beta2), float(eps)
        self.update_freq, self.start, self.max_dim = update_freq, start, max_dim
        self.grafting = check_grafting(grafting)
        self.graft_beta2, self.graft_eps = float(graft_beta2), float(graft_eps)
        self.root_method = root_method
        self.max_failures = max_failures
        self.bias_correction = bool(bias_correction)
        self.order = len(self.param_shape)
        self.power = 2 * self.order
        self.diagonal = tuple(n > max_dim for n in self.param_shape)
        # steps after which every factor could be of full rank (see max_failures)
        self._full_rank_steps = max(self.param_shape, default=0)
        d = math.prod(self.param_shape)
        self.shape = (d, d)
        self.dtype = None
        self._xp = None
        self.step = 0
        self.failures = 0
        self.factors: list | None = None
        self.roots: list | None = None
        self.graft_state = None

    # --- the update -----------------------------------------------------
    def update(self, grad: Any) -> Any:
        """Accumulate ``grad`` and return the direction (same shape and namespace).

        Raises
        ------
        ValueError
            Wrong shape, NaN or Inf, or a gradient whose squares (or the summed
            factors) overflow the dtype; the state is unchanged.
        TypeError
            A complex, integer or boolean gradient, or not an array (of the
            first gradient's library).
        """
        # sum(grad**2) is the trace of each new factor term and bounds the grafting's
        # second moment; the summed factors (beta2 = 1) are checked in _accumulate.
        xp, grad = _take_gradient(self, grad, "Shampoo")
        t = self.step + 1
        self._accumulate(xp, grad)
        graft = None
        if self.grafting is not None:
            graft, self.graft_state = graft_direction(
                xp, self.grafting, self.graft_state, grad, t, self.graft_beta2, self.graft_eps)
        if t >= self.start and (t - self.start) % self.update_freq == 0:
            self._refresh_roots(xp, t)
        self.step = t
        if t < self.start or self.roots is None:
            return grad if graft is None else graft
        direction = self._precondition(xp, grad)
        if graft is None:
            return direction
        norm = float(xp.linalg.vector_norm(direction))
        if norm == 0.0:
            return direction
        return direction * (float(xp.linalg.vector_norm(graft)) / norm)

    def _accumulate(self, xp, grad):
        new = []
        for mode, diagonal in enumerate(self.diagonal):
            U = _unfold(xp, grad, mode)
            new.append(xp.sum(U * U, axis=1) if diagonal
                       else xp.matmul(U, xp.matrix_transpose(U)))
        if self.factors is None:
            factors = [(1.0 - self.beta2) * F if self.beta2 < 1.0 else F for F in new]
        elif self.beta2 == 1.0:
            factors = [F + N for F, N in zip(self.factors, new)]
        else:
            factors = [self.beta2 * F + (1.0 - self.beta2) * N
                       for F, N in zip(self.factors, new)]
        check_finite_statistics(xp, factors, "the factors", "Shampoo")
        self.factors = factors

    def _refresh_roots(self, xp, t):
        """Roots of the factors after ``t`` accumulated steps."""
        roots = []
        ok = True
        # Bias correction of the EMA (Distributed Shampoo's
        # use_bias_correction): F_t sums weights (1 - beta2) beta2^(t-s), which
        # total 1 - beta2^t, not 1.
        correct = self.bias_correction and self.beta2 < 1.0
        scale = 1.0 / (1.0 - self.beta2 ** t) if correct else 1.0
        for F, diagonal in zip(self.factors, self.diagonal):
            if correct:
                F = F * scale
            if diagonal:
                shifted = F + self.eps
                ok = ok and bool(xp.all(shifted > 0))
                roots.append(shifted ** (-1.0 / self.power))
                continue
            # inverse_root adds the ridge eps I itself, once, for every method.
            X, info = inverse_root(F, self.power, eps=self.eps,
                                   method=self.root_method, return_info=True)
            ok = ok and info.converged
            roots.append(X)
        if ok:
            self.roots, self.failures = roots, 0
            return
        if self.roots is None and self.step < self._full_rank_steps:
            # Nothing to keep yet, and the factors may still be singular but
            # for eps (sums of fewer outer products than their size): the
            # grafted direction until a root succeeds, not a failure streak.
            # One message per place (no step number in it: Python shows it once).
            warnings.warn("Shampoo: the inverse roots of the first factors failed their "
                          "residual check; the grafted direction is used until they succeed "
                          "(a larger eps makes them succeed sooner)", RuntimeWarning,
                          stacklevel=3)
            return
        # Keep the previous roots (none yet: the grafted direction).
        self.failures += 1
        if self.failures >= self.max_failures:
            raise RootError(f"Shampoo: {self.failures} consecutive inverse-root failures "
                            f"at step {self.step + 1}; increase eps or use float64")

    def _ops(self, xp, inverse=False):
        ops = []
        for R, diagonal in zip(self.roots, self.diagonal):
            if diagonal:
                ops.append((lambda M, r=R: M / r[:, None]) if inverse
                           else (lambda M, r=R: M * r[:, None]))
            elif inverse:
                ops.append(lambda M, r=R: xp.linalg.solve(r, M))
            else:
                ops.append(lambda M, r=R: xp.matmul(r, M))
        return ops

    def _precondition(self, xp, grad):
        return _cycle_modes(xp, grad, self._ops(xp))

    # --- operator interface on the flattened parameter -------------------
    def _flat_apply(self, v, inverse):
        owner = "Shampoo." + ("matvec" if inverse else "solve")
        xp = namespace_of(v, "v", self._xp, "Shampoo")
        if tuple(v.shape) != (self.shape[0],):
            raise ValueError(f"v must have shape ({self.shape[0]},), got {tuple(v.shape)}")
        if self.roots is None:
            return finite_apply(xp, lambda v: v, v, "v", owner, self.check_finite)

        def apply(v):
            X = xp.reshape(v, self.param_shape)
            return xp.reshape(_cycle_modes(xp, X, self._ops(xp, inverse)), (-1,))

        return finite_apply(xp, apply, v, "v", owner, self.check_finite)

    def solve(self, v: Any) -> Any:
        """Preconditioned direction of a flattened (C order) gradient, frozen factors.

        Raises ValueError for a wrong shape and, with checking on (see
        ``check_finite``), for NaN or Inf in ``v`` or an overflowing result.
        """
        return self._flat_apply(v, inverse=False)

    def matvec(self, v: Any) -> Any:
        """Inverse of :meth:`solve`: the curvature approximation times ``v`` (checked alike)."""
        return self._flat_apply(v, inverse=True)

    # --- state ----------------------------------------------------------
    def state_dict(self) -> dict:
        """Copies of the state: Python scalars and arrays of the gradient's namespace."""
        xp = self._xp
        return {
            "param_shape": list(self.param_shape),
            "step": self.step,
            "failures": self.failures,
            "factors": copy_arrays(xp, self.factors),
            "roots": copy_arrays(xp, self.roots),
            "graft_state": copy_array(xp, self.graft_state) if xp is not None else None,
        }

    def _state_spec(self) -> dict:
        """What :meth:`load_state_dict` accepts (see :func:`linsolve.validation.state.check_state`)."""
        modes = tuple((n,) if diagonal else (n, n)
                      for n, diagonal in zip(self.param_shape, self.diagonal))
        return {"param_shape": Equal(list(self.param_shape)), "step": Count(),
                "failures": Count(), "factors": Arrays(modes), "roots": Arrays(modes),
                "graft_state": (Array(self.param_shape, optional=True)
                                if self.grafting in ("adam", "adagrad")
                                else Where(lambda v: v is None, "None (no grafting state)"))}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; later updates continue bit for bit.

        The whole state is checked first: a bad one raises ``ValueError`` or
        ``TypeError`` naming the key, and leaves this object as it was.
        """
        check_state(state, self._state_spec(), type(self).__name__)
        arrays = [a for key in ("factors", "roots") for a in (state[key] or [])]
        if state["graft_state"] is not None:
            arrays.append(state["graft_state"])
        self.step, self.failures = int(state["step"]), int(state["failures"])
        if not arrays:
            self._xp = self.dtype = None
            self.factors = self.roots = self.graft_state = None
            return
        xp = array_namespace(*arrays)
        self._xp, self.dtype = xp, arrays[0].dtype
        self.factors = copy_arrays(xp, state["factors"])
        self.roots = copy_arrays(xp, state["roots"])
        self.graft_state = copy_array(xp, state["graft_state"])
