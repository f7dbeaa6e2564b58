"""SOAP: Adam in the eigenbasis of Shampoo's factors (Vyas et al. 2024, arXiv:2409.11321).

Each mode ``i`` of the parameter keeps Shampoo's factor ``F_i`` (an EMA of
``G_(i) G_(i)'``) and an orthogonal basis ``Q_i`` approximating its
eigenvectors. Adam runs on the rotated gradient ``G x_1 Q_1' ... x_k Q_k'``
and its direction is rotated back. The basis comes from one ``eigh`` at the
first step and is then refreshed every ``precondition_frequency`` steps by
one power step ``Q_i <- qr(F_i Q_i)``, as in the authors' code
(nikhilvyas/SOAP, ``get_orthogonal_matrix_QR``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from array_api_compat import array_namespace

from .._checks import (check_finite_switch, check_positive_int, finite_apply, linalg_failure,
                       namespace_of)
from ..kronecker._kron import check_positive
from .._state import Array, Arrays, Count, Equal, check_state, copy_array, copy_arrays
from .shampoo import _cycle_modes, _take_gradient, _unfold

__all__ = ["SOAP"]


class SOAP:
    """SOAP directions for one tensor of the given shape (learning-rate free).

    Parameters
    ----------
    shape : tuple of int
        Parameter shape.
    beta1, beta2, eps : float
        Adam's constants, ``0 <= beta < 1`` and ``eps > 0`` (Kingma and Ba's
        eps is a positive constant: with ``eps = 0`` a coordinate whose
        second moment is zero divides zero by zero). The direction is ``m_hat / (sqrt(v_hat) + eps)``
        in the rotated basis, rotated back (Kingma and Ba's placement of
        eps; the reference code adds eps before bias correction, a
        ``sqrt(1 - beta2^t)`` rescaling of eps).
    precondition_frequency : int
        The basis is refreshed at steps ``t`` with ``t % f == 0``.
    shampoo_beta : float, optional
        EMA constant of the factors; default ``beta2`` (as the reference code).
    max_dim : int
        Modes longer than this are not rotated (identity basis on that mode);
        a positive int.
    precondition_1d : bool
        Rotate 1-D parameters too (default False, as the reference code:
        their factor is a full ``d x d`` matrix).
    rotate : bool
        False keeps the identity basis on every mode: then SOAP is Adam.
    check_finite : bool or None
        NaN/Inf contract of :meth:`solve` and :meth:`matvec`, as in
        :class:`curvature.Shampoo`: None (default) checks host arrays only.

    Notes
    -----
    Departures from the reference code (nikhilvyas/SOAP). The first call is
    an Adam step in the basis built from the first gradient, where the code
    only builds the basis and returns no update. This is not confined to the
    first step: the first gradient stays in both moments, so at call ``t``
    they average ``g_1 .. g_t`` with bias corrections ``1 - beta^t``, where
    the code's average ``g_2 .. g_t`` with ``1 - beta^(t-1)``, and every
    later direction differs (the first gradient's weight decays like
    ``beta^t``); and the basis is refreshed at calls ``t % f == 0``, one call
    before the code (whose counter starts after its skipped call). The
    factors ``F_i`` are the code's at every call. eps is placed as in Adam
    (see above). As in the code, the
    first moment lives in the parameter's coordinates and is rotated each
    step, the second moment lives in the rotated coordinates; at a refresh
    the columns of each ``Q_i`` are sorted by the estimated eigenvalues
    ``diag(Q_i' F_i Q_i)`` (descending) and the second moment is permuted
    along that mode the same way before the power step, so each of its
    entries stays attached to (nearly) the same eigenvector.

    ``solve(v)`` applies the frozen diagonal preconditioner in the current
    basis, ``Q (sqrt(v_hat) + eps)^{-1} Q'``, to a flattened (C order)
    vector; ``matvec`` its inverse; the identity before the first step.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.shampoo.soap import SOAP
    >>> opt = SOAP((2, 2), rotate=False)     # identity basis: Adam
    >>> G = np.array([[1.0, -2.0], [0.5, 0.0]])
    >>> np.round(opt.update(G), 6)           # Adam's first step: sign(g)
    array([[ 1., -1.],
           [ 1.,  0.]])

    The first gradient stays in the moments of every later step:

    >>> G2 = np.array([[3.0, 1.0], [-1.0, 2.0]])
    >>> m = (0.9 * 0.1 * G + 0.1 * G2) / (1 - 0.9**2)
    >>> v = (0.999 * 0.001 * G**2 + 0.001 * G2**2) / (1 - 0.999**2)
    >>> bool(np.allclose(opt.update(G2), m / (np.sqrt(v) + 1e-8)))
    True
    """

    def __init__(self, shape: Sequence[int], beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, precondition_frequency: int = 10,
                 shampoo_beta: float | None = None, max_dim: int = 10000, *,
                 precondition_1d: bool = False, rotate: bool = True,
                 check_finite: bool | None = None):
        self.check_finite = check_finite_switch(check_finite)
        self.param_shape = tuple(int(s) for s in shape)
        if any(s < 1 for s in self.param_shape):
            raise ValueError(f"shape must have positive entries, got {shape!r}")
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if shampoo_beta is None:
            shampoo_beta = beta2
        if not 0.0 <= shampoo_beta < 1.0:
            raise ValueError(f"shampoo_beta must be in [0, 1), got {shampoo_beta!r}")
        if not isinstance(precondition_frequency, int) or precondition_frequency < 1:
            raise ValueError("precondition_frequency must be a positive int, "
                             f"got {precondition_frequency!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive("eps", eps)
        max_dim = check_positive_int("max_dim", max_dim)
        self.shampoo_beta = float(shampoo_beta)
        self.precondition_frequency = precondition_frequency
        self.max_dim = max_dim
        one_d = len(self.param_shape) == 1 and not precondition_1d
        self.rotated = tuple(rotate and not one_d and n <= max_dim for n in self.param_shape)
        d = math.prod(self.param_shape)
        self.shape = (d, d)
        self.dtype = None
        self._xp = None
        self.step = 0
        self.exp_avg = None        # first moment, parameter coordinates
        self.exp_avg_sq = None     # second moment, rotated coordinates
        self.factors = None        # per mode: F_i or None (not rotated)
        self.bases = None          # per mode: Q_i or None (identity)

    # --- rotations --------------------------------------------------------
    def _project(self, xp, X):
        """``X x_i Q_i'`` on every rotated mode."""
        ops = [(lambda M: M) if Q is None else (lambda M, Q=Q: xp.matmul(xp.matrix_transpose(Q), M))
               for Q in self.bases]
        return _cycle_modes(xp, X, ops)

    def _project_back(self, xp, X):
        ops = [(lambda M: M) if Q is None else (lambda M, Q=Q: xp.matmul(Q, M))
               for Q in self.bases]
        return _cycle_modes(xp, X, ops)

    # --- the update -----------------------------------------------------
    def update(self, grad: Any) -> Any:
        """Return the SOAP direction for ``grad`` (same shape and namespace).

        Raises
        ------
        ValueError
            Wrong shape, NaN or Inf, or a gradient whose squares overflow its
            dtype (the factors and the second moment would); the state is
            unchanged.
        TypeError
            A complex, integer or boolean gradient, or not an array (of the
            first gradient's library).
        """
        # Every statistic is an average of the gradient's squares or outer products,
        # bounded by sum(grad**2) (trace of each factor; the rotations are orthogonal).
        xp, grad = _take_gradient(self, grad, "SOAP")
        t = self.step + 1
        if self.bases is None:
            self._init_basis(xp, grad)
        b1, b2 = self.beta1, self.beta2
        rotated_grad = self._project(xp, grad)
        square = rotated_grad * rotated_grad
        if self.exp_avg is None:
            self.exp_avg = (1.0 - b1) * grad
            self.exp_avg_sq = (1.0 - b2) * square
        else:
            self.exp_avg = b1 * self.exp_avg + (1.0 - b1) * grad
            self.exp_avg_sq = b2 * self.exp_avg_sq + (1.0 - b2) * square
        m_hat = self._project(xp, self.exp_avg) / (1.0 - b1 ** t)
        v_hat = self.exp_avg_sq / (1.0 - b2 ** t)
        direction = self._project_back(xp, m_hat / (xp.sqrt(v_hat) + self.eps))
        self.step = t
        if t > 1:
            self._accumulate(xp, grad)
            if t % self.precondition_frequency == 0:
                self._refresh_basis(xp)
        return direction

    def _accumulate(self, xp, grad):
        sb = self.shampoo_beta
        for mode, F in enumerate(self.factors):
            if F is not None:
                U = _unfold(xp, grad, mode)
                self.factors[mode] = sb * F + (1.0 - sb) * xp.matmul(U, xp.matrix_transpose(U))

    def _init_basis(self, xp, grad):
        self.factors = [xp.zeros((n, n), dtype=self.dtype) if r else None
                        for n, r in zip(self.param_shape, self.rotated)]
        self._accumulate(xp, grad)
        self.bases = []
        for F in self.factors:
            if F is None:
                self.bases.append(None)
                continue
            with linalg_failure("SOAP"):
                _, Q = xp.linalg.eigh(F)
            self.bases.append(xp.flip(Q, axis=1))   # descending eigenvalues

    def _refresh_basis(self, xp):
        exp_avg_sq = self.exp_avg_sq
        for mode, (F, Q) in enumerate(zip(self.factors, self.bases)):
            if F is None:
                continue
            estimated = xp.sum(Q * xp.matmul(F, Q), axis=0)    # diag(Q' F Q)
            order = xp.argsort(estimated, descending=True)
            Q = xp.take(Q, order, axis=1)
            exp_avg_sq = xp.take(exp_avg_sq, order, axis=mode)
            with linalg_failure("SOAP", "QR power step"):
                self.bases[mode], _ = xp.linalg.qr(xp.matmul(F, Q))
        self.exp_avg_sq = exp_avg_sq

    # --- operator interface ---------------------------------------------
    def _flat_apply(self, v, inverse):
        owner = "SOAP." + ("matvec" if inverse else "solve")
        xp = namespace_of(v, "v", self._xp, "SOAP")
        if tuple(v.shape) != (self.shape[0],):
            raise ValueError(f"v must have shape ({self.shape[0]},), got {tuple(v.shape)}")
        if self.exp_avg_sq is None:
            return finite_apply(xp, lambda v: v, v, "v", owner, self.check_finite)
        scale = xp.sqrt(self.exp_avg_sq / (1.0 - self.beta2 ** self.step)) + self.eps

        def apply(v):
            X = self._project(xp, xp.reshape(v, self.param_shape))
            X = X * scale if inverse else X / scale
            return xp.reshape(self._project_back(xp, X), (-1,))

        return finite_apply(xp, apply, v, "v", owner, self.check_finite)

    def solve(self, v: Any) -> Any:
        """Frozen preconditioner ``Q diag(1 / (sqrt(v_hat) + eps)) Q'`` times ``v``.

        Raises ValueError for a wrong shape and, with checking on (see
        ``check_finite``), for NaN or Inf in ``v`` or an overflowing result.
        """
        return self._flat_apply(v, inverse=False)

    def matvec(self, v: Any) -> Any:
        """Inverse of :meth:`solve` times ``v``."""
        return self._flat_apply(v, inverse=True)

    # --- state ----------------------------------------------------------
    def state_dict(self) -> dict:
        """Copies of the state: Python scalars and arrays of the gradient's namespace."""
        xp = self._xp
        return {
            "param_shape": list(self.param_shape),
            "step": self.step,
            "exp_avg": copy_array(xp, self.exp_avg),
            "exp_avg_sq": copy_array(xp, self.exp_avg_sq),
            "factors": copy_arrays(xp, self.factors),
            "bases": copy_arrays(xp, self.bases),
        }

    def _state_spec(self) -> dict:
        """What :meth:`load_state_dict` accepts (see :func:`linsolve.validation.state.check_state`)."""
        modes = tuple((n, n) if rotated else None
                      for n, rotated in zip(self.param_shape, self.rotated))
        shape = self.param_shape
        return {"param_shape": Equal(list(shape)), "step": Count(),
                "exp_avg": Array(shape, optional=True, together="moments"),
                "exp_avg_sq": Array(shape, optional=True, together="moments"),
                "factors": Arrays(modes, together="moments"),
                "bases": Arrays(modes, together="moments")}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; later updates continue bit for bit.

        The whole state is checked first: a bad one raises ``ValueError`` or
        ``TypeError`` naming the key, and leaves this object as it was.
        """
        check_state(state, self._state_spec(), type(self).__name__)
        self.step = int(state["step"])
        if state["exp_avg"] is None:
            self._xp = self.dtype = None
            self.exp_avg = self.exp_avg_sq = self.factors = self.bases = None
            return
        xp = array_namespace(state["exp_avg"])
        self._xp, self.dtype = xp, state["exp_avg"].dtype
        self.exp_avg = copy_array(xp, state["exp_avg"])
        self.exp_avg_sq = copy_array(xp, state["exp_avg_sq"])
        self.factors = copy_arrays(xp, state["factors"])
        self.bases = copy_arrays(xp, state["bases"])
