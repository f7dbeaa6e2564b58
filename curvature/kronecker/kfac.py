"""K-FAC: Kronecker-factored approximate curvature of one dense layer.

Martens and Grosse, "Optimizing Neural Networks with Kronecker-factored
Approximate Curvature" (ICML 2015). For a dense layer ``s = W_bar a_bar``
(``W_bar = [W, b]`` of shape ``(out, in + 1)``, ``a_bar = [a, 1]``) with
per-example output gradients ``g = dL_i/ds``, the Fisher block of the layer
is approximated by

    F = E[vec(g a_bar') vec(g a_bar')'] ~ kron(A, G),
    A = E[a_bar a_bar'],  G = E[g g'],

(column-major ``vec``, see :mod:`curvature.kronecker._kron`), the two factors kept as
exponential moving averages over mini-batches and symmetrised. The
preconditioned gradient is ``F_damped^{-1} vec(grad_W)`` in one of two
modes:

``"eigen"``
    Exactly ``(kron(A, G) + lambda I)^{-1}``, through ``A = Qa Da Qa'`` and
    ``G = Qg Dg Qg'``:
    ``Qg [(Qg' V Qa) / (dg da' + lambda)] Qa'`` (M&G section 6.3's "exact"
    alternative; the form kfac-pytorch uses by default).
``"inverse"``
    Factored Tikhonov damping, ``(A + pi sqrt(lambda) I)^{-1} kron
    (G + sqrt(lambda)/pi I)^{-1}`` (M&G eq. in section 6.3). The damping
    ``lambda`` is the one of the Kronecker product: each factor gets
    ``sqrt(lambda)``, so that the product's identity term is ``lambda I``
    (plus the cross terms ``pi sqrt(lambda) I kron G + A kron sqrt(lambda)/pi I``
    the factored form adds). With ``pi_heuristic=True`` ``pi`` is M&G's
    trace-norm choice ``pi = sqrt((tr A / dim A) / (tr G / dim G))``,
    otherwise ``pi = 1``.

The inverses (eigendecompositions) are refreshed every
``inverse_update_freq`` factor updates; between refreshes ``solve``,
``matvec`` and ``precondition`` use the frozen ones, so ``matvec`` is
always the exact inverse of ``solve``.

Per-example gradients: ``update(a, g)`` wants ``g`` as the gradient of
each example's own loss with respect to the layer output (for a loss that
is the *mean* over a batch of ``n``, that is ``n`` times the backpropagated
``dL/ds``), so that ``G`` estimates ``E[g g']`` whatever the batch size.
"""

from __future__ import annotations

import math
from typing import Any

from cext import kernels_for

from .._checks import (check_finite_statistics, check_finite_switch, check_positive_int,
                       checks_finite, finite_apply, linalg_failure, namespace_of,
                       refuse_nonfinite)
from ._kron import (check_decay, check_layer_batch, check_positive, check_real, check_vector,
                    kl_clip_scale, symmetrise, unvec, vec, with_ones)
from .._state import Array, Count, Equal, Real, check_state, copy_array, restoring

__all__ = ["KFAC", "kl_clip_scale", "precondition_layers"]

_MODES = ("eigen", "inverse")


class KFAC:
    """Kronecker-factored curvature ``kron(A, G)`` of one dense layer.

    Parameters
    ----------
    in_features, out_features : int
        The layer maps ``in_features`` inputs to ``out_features`` outputs.
    bias : bool
        Append a ones column to the activations (the bias is the last column
        of the weight gradient, which is then ``(out, in + 1)``).
    damping : float
        ``lambda > 0`` (see the module notes for its meaning in each mode).
        Can be changed between calls.
    decay : float
        EMA decay of the factors, ``A <- decay A + (1 - decay) A_batch``; the
        first update sets ``A = A_batch`` (no bias toward zero). ``0`` keeps
        only the last batch.
    mode : {"eigen", "inverse"}
        Exact damped inverse through two eigendecompositions, or the factored
        damping form.
    pi_heuristic : bool
        ``"inverse"`` mode: scale the factor damping by M&G's trace-norm ``pi``.
    inverse_update_freq : int
        Refresh the eigendecompositions / inverses at updates 1, 1 + k, 1 + 2k, ...
    kl_clip : float, optional
        If set, :meth:`precondition` with a learning rate scales the direction
        by :func:`kl_clip_scale` of this layer alone (for a whole network,
        call :func:`kl_clip_scale` over all layers instead).
    check_finite : bool or None
        NaN/Inf contract of :meth:`precondition`, :meth:`solve` and
        :meth:`matvec`, as in :class:`curvature.MFAC`: True checks every call
        (ValueError for NaN or Inf in the input, or for a result that
        overflows), False checks nothing, None (default) checks host arrays
        only, so that no call synchronises with a device. :meth:`update`
        always refuses non-finite activations and gradients.

    Attributes
    ----------
    shape : (d, d)
        ``d = out * (in + bias)``: the operator on the column-major vec of the
        weight gradient (``linsolve.pcg(..., M=kfac)`` applies :meth:`solve`).
    dtype
        That of the first ``update`` (None before).
    factors : (A, G) or None
        The current EMA factors, exactly symmetric.
    step : int
        Factor updates so far.

    Notes
    -----
    Before the first update (no factors) the operator is the identity.
    Eigenvalues of ``A``, ``G`` below zero (rounding of a semidefinite
    factor) are clipped to zero in ``"eigen"`` mode.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.kronecker.kfac import KFAC
    >>> rng = np.random.default_rng(0)
    >>> layer = KFAC(3, 2, damping=1e-2)
    >>> a, g = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    >>> layer.update(a, g)
    >>> A, G = layer.factors
    >>> A.shape, G.shape                          # A includes the bias column
    ((4, 4), (2, 2))
    >>> grad_W = g.T @ np.c_[a, np.ones(16)] / 16    # (out, in + 1), bias last
    >>> D = layer.precondition(grad_W)
    >>> F = np.kron(A, G) + 1e-2 * np.eye(8)          # column-major vec: grad_W.T.ravel()
    >>> bool(np.allclose(D.T.ravel(), np.linalg.solve(F, grad_W.T.ravel())))
    True
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 damping: float = 1e-3, decay: float = 0.95, mode: str = "eigen",
                 pi_heuristic: bool = False, inverse_update_freq: int = 1,
                 kl_clip: float | None = None, check_finite: bool | None = None):
        self.check_finite = check_finite_switch(check_finite)
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.bias = bool(bias)
        self._damping = check_positive("damping", damping)
        self.decay = check_decay("decay", decay)
        if mode not in _MODES:
            raise ValueError(f"mode must be 'eigen' or 'inverse', got {mode!r}")
        self.mode = mode
        self.pi_heuristic = bool(pi_heuristic)
        self.inverse_update_freq = check_positive_int("inverse_update_freq", inverse_update_freq)
        self.kl_clip = None if kl_clip is None else check_positive("kl_clip", kl_clip)
        self.rows = self.out_features
        self.cols = self.in_features + int(self.bias)
        d = self.rows * self.cols
        self.shape = (d, d)
        self.dtype = None
        self.step = 0
        self._xp = None
        self._A = self._G = None
        # Frozen operator: eigen mode (Qa, da, Qg, dg); inverse mode (A_inv, G_inv, pi).
        self._frozen = None
        self._frozen_from = None  # the (A, G) the frozen operator was computed from

    # --- attributes -----------------------------------------------------
    @property
    def damping(self) -> float:
        return self._damping

    @damping.setter
    def damping(self, value) -> None:
        self._damping = check_positive("damping", value)
        if self.mode == "inverse" and self._frozen is not None:
            # The factor inverses hold the damping: recompute them from the
            # factors they were computed from (eigen mode applies it on the fly).
            self._frozen = self._invert(*self._frozen_from)

    @property
    def factors(self):
        return None if self._A is None else (self._A, self._G)

    @property
    def pi(self) -> float:
        """The factored-damping ``pi`` of the frozen inverses (1 unless ``pi_heuristic``)."""
        if self.mode != "inverse" or self._frozen is None:
            return 1.0
        return self._frozen[2]

    # --- factor update --------------------------------------------------
    def update(self, a: Any, g: Any) -> None:
        """Fold one mini-batch into the factors.

        Parameters
        ----------
        a : array (batch, in_features)
            The layer's inputs (without the ones column).
        g : array (batch, out_features)
            Per-example output gradients (see the module notes on scaling).

        Raises
        ------
        ValueError
            Shapes, different batch sizes, NaN or Inf, or factors that overflow
            the dtype (inputs near the square root of its largest value); the
            factors are unchanged.
        TypeError
            Not real floating arrays, or another array library than before.
        """
        xp, a, g = check_layer_batch(a, g, self._xp, self.in_features, self.out_features)
        dtype = xp.result_type(a.dtype, g.dtype) if self.dtype is None else self.dtype
        a, g = xp.astype(a, dtype), xp.astype(g, dtype)
        if self.bias:
            a = with_ones(xp, a)
        n = a.shape[0]
        A_batch = xp.matmul(xp.matrix_transpose(a), a) / n
        G_batch = xp.matmul(xp.matrix_transpose(g), g) / n
        if self._A is None:
            A, G = A_batch, G_batch
        else:
            A = self.decay * self._A + (1.0 - self.decay) * A_batch
            G = self.decay * self._G + (1.0 - self.decay) * G_batch
        # Finite inputs whose squares overflow give Inf (and NaN in eigh/inv): refused.
        check_finite_statistics(xp, (A, G), "the Kronecker factors A = E[a a'], G = E[g g']",
                                "KFAC")
        if self._A is None:
            self._xp, self.dtype = xp, dtype
        # Symmetrised so that eigh and the inverses see exactly symmetric input.
        self._A, self._G = symmetrise(xp, A), symmetrise(xp, G)
        self.step += 1
        if (self.step - 1) % self.inverse_update_freq == 0:
            self.refresh()

    def refresh(self) -> None:
        """Recompute the eigendecompositions / inverses from the current factors now."""
        if self._A is None:
            return
        self._frozen_from = (self._A, self._G)
        self._frozen = self._invert(self._A, self._G)

    def _invert(self, A, G):
        xp = self._xp
        if self.mode == "eigen":
            with linalg_failure("KFAC"):
                da, Qa = xp.linalg.eigh(A)
                dg, Qg = xp.linalg.eigh(G)
            return (Qa, xp.clip(da, min=0.0), Qg, xp.clip(dg, min=0.0))
        root = math.sqrt(self._damping)
        pi = 1.0
        if self.pi_heuristic:
            trace_a = float(xp.sum(xp.linalg.diagonal(A))) / A.shape[0]
            trace_g = float(xp.sum(xp.linalg.diagonal(G))) / G.shape[0]
            if trace_a > 0.0 and trace_g > 0.0:
                pi = math.sqrt(trace_a / trace_g)
        eye_a = xp.eye(A.shape[0], dtype=A.dtype)
        eye_g = xp.eye(G.shape[0], dtype=G.dtype)
        with linalg_failure("KFAC", "factor inversion"):
            A_inv = symmetrise(xp, xp.linalg.inv(A + (pi * root) * eye_a))
            G_inv = symmetrise(xp, xp.linalg.inv(G + (root / pi) * eye_g))
        check_finite_statistics(xp, (A_inv, G_inv), "the damped factor inverses", "KFAC")
        return (A_inv, G_inv, pi)

    # --- applying the operator ------------------------------------------
    def _apply(self, xp, V, inverse: bool, name: str, owner: str):
        """``F_damped^{-1} V`` (inverse=True) or ``F_damped V`` on an (out, in+1) matrix,
        under the ``check_finite`` contract (``name``, ``owner``: for its messages)."""
        if self._frozen is None:
            return finite_apply(xp, lambda V: V, V, name, owner, self.check_finite)
        return finite_apply(xp, lambda V: self._apply_linear(V, inverse), V, name, owner,
                            self.check_finite)

    def _apply_linear(self, V, inverse: bool):
        xp = self._xp
        if self.mode == "eigen":
            Qa, da, Qg, dg = self._frozen
            rotated = xp.matmul(xp.matmul(xp.matrix_transpose(Qg), V), Qa)
            scale = dg[:, None] * da[None, :] + self._damping
            rotated = rotated / scale if inverse else rotated * scale
            return xp.matmul(xp.matmul(Qg, rotated), xp.matrix_transpose(Qa))
        A_inv, G_inv, pi = self._frozen
        if inverse:
            return xp.matmul(xp.matmul(G_inv, V), A_inv)
        root = math.sqrt(self._damping)
        A, G = self._frozen_from
        Ad = A + (pi * root) * xp.eye(A.shape[0], dtype=A.dtype)
        Gd = G + (root / pi) * xp.eye(G.shape[0], dtype=G.dtype)
        return xp.matmul(xp.matmul(Gd, V), Ad)

    def _check_matrix(self, V, name):
        """``(xp, V)``: library, shape and dtype; finiteness is the caller's (``check_finite``)."""
        xp = namespace_of(V, name, self._xp, "this layer")
        if tuple(V.shape) != (self.rows, self.cols):
            raise ValueError(f"{name} must have shape ({self.rows}, {self.cols}) (out, in"
                             f"{' + 1 for the bias' if self.bias else ''}), got {tuple(V.shape)}")
        return xp, check_real(xp, V, name, finite=False)

    def precondition(self, grad_W: Any, lr: float | None = None) -> Any:
        """The preconditioned gradient ``F_damped^{-1} grad_W`` as an ``(out, in + 1)`` matrix.

        With ``kl_clip`` set and ``lr`` given, scaled by this layer's
        :func:`kl_clip_scale`.
        """
        xp, V = self._check_matrix(grad_W, "grad_W")
        D = self._apply(xp, V, True, "grad_W", "KFAC.precondition")
        if self._xp is None:
            return D
        if self.kl_clip is not None and lr is not None:
            D = D * kl_clip_scale([D], [V], lr, self.kl_clip)
        return D

    def solve(self, v: Any) -> Any:
        """``F_damped^{-1} v`` for ``v = vec(V)`` (column-major, see the module notes)."""
        xp, v = check_vector(v, "v", self._xp, self.shape[0], finite=False)
        return vec(xp, self._apply(xp, unvec(xp, v, self.rows, self.cols), True, "v",
                                   "KFAC.solve"))

    def matvec(self, v: Any) -> Any:
        """``F_damped v``: ``(kron(A, G) + lambda I) v`` in eigen mode, the factored product
        ``kron(A + pi sqrt(lambda) I, G + sqrt(lambda)/pi I) v`` in inverse mode."""
        xp, v = check_vector(v, "v", self._xp, self.shape[0], finite=False)
        return vec(xp, self._apply(xp, unvec(xp, v, self.rows, self.cols), False, "v",
                                   "KFAC.matvec"))

    # --- state ----------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Copies of the factors and of the frozen factors the inverses came from."""
        xp = self._xp
        frozen = self._frozen_from or (None, None)
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias, "mode": self.mode, "damping": self._damping,
                "step": self.step,
                "A": copy_array(xp, self._A) if xp is not None else None,
                "G": copy_array(xp, self._G) if xp is not None else None,
                "frozen_A": copy_array(xp, frozen[0]) if xp is not None else None,
                "frozen_G": copy_array(xp, frozen[1]) if xp is not None else None}

    def _state_spec(self) -> dict:
        """What :meth:`load_state_dict` accepts (see :func:`linsolve.validation.state.check_state`)."""
        A, G = (self.cols, self.cols), (self.rows, self.rows)
        return {"in_features": Equal(self.in_features), "out_features": Equal(self.out_features),
                "bias": Equal(self.bias), "mode": Equal(self.mode),
                "damping": Real(positive=True), "step": Count(),
                "A": Array(A, optional=True, together="factors"),
                "G": Array(G, optional=True, together="factors"),
                "frozen_A": Array(A, optional=True, together="factors"),
                "frozen_G": Array(G, optional=True, together="factors")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a layer of the same size; the inverses are
        recomputed from the saved frozen factors, so solves continue unchanged.

        The whole state is checked first: a bad one raises ``ValueError`` or
        ``TypeError`` naming the key, and leaves this layer as it was (also when
        recomputing the inverses fails).
        """
        check_state(state, self._state_spec(), type(self).__name__)
        with restoring(self):
            self._damping = float(state["damping"])
            self.step = int(state["step"])
            if state["A"] is None:
                self._xp = self.dtype = self._A = self._G = None
                self._frozen = self._frozen_from = None
                return
            xp = namespace_of(state["A"], "state['A']")
            self._xp, self.dtype = xp, state["A"].dtype
            self._A, self._G = copy_array(xp, state["A"]), copy_array(xp, state["G"])
            self._frozen_from = (copy_array(xp, state["frozen_A"]),
                                 copy_array(xp, state["frozen_G"]))
            self._frozen = self._invert(*self._frozen_from)

    def __repr__(self) -> str:
        return (f"KFAC(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias}, mode={self.mode!r}, damping={self._damping:g}, "
                f"step={self.step})")


def precondition_layers(layers, grads) -> list:
    """``[layer.precondition(grad) for ...]`` with same-shaped eigen-mode layers batched.

    Layers of one shape, damping, dtype and namespace (eigen mode, with
    frozen eigendecompositions) go through one call of the ``cext`` kernel
    ``kron_eigen_solve`` (Numba for NumPy, CuPy for CuPy): for many small
    layers one BLAS call per product costs more in overhead than in flops.
    Other layers (inverse mode, no update yet) use :meth:`KFAC.precondition`.
    Results equal the per-layer ones to float64 summation order. No KL
    clipping here: apply :func:`kl_clip_scale` over the results.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.kronecker.kfac import KFAC, precondition_layers
    >>> rng = np.random.default_rng(0)
    >>> layers = [KFAC(4, 3) for _ in range(3)]
    >>> for layer in layers:
    ...     layer.update(rng.standard_normal((8, 4)), rng.standard_normal((8, 3)))
    >>> grads = [rng.standard_normal((3, 5)) for _ in layers]
    >>> batched = precondition_layers(layers, grads)
    >>> all(np.allclose(D, layer.precondition(g)) for D, layer, g in zip(batched, layers, grads))
    True
    """
    layers, grads = list(layers), list(grads)
    if len(layers) != len(grads):
        raise ValueError(f"{len(layers)} layers but {len(grads)} gradients")
    results: list = [None] * len(layers)
    groups: dict = {}
    for index, (layer, grad) in enumerate(zip(layers, grads)):
        xp, V = layer._check_matrix(grad, "grad")
        if checks_finite(layer.check_finite, V):
            refuse_nonfinite(xp, V, f"grads[{index}]", "precondition_layers")
        if layer.mode != "eigen" or layer._frozen is None or V.dtype != layer.dtype:
            results[index] = layer.precondition(V)
            continue
        key = (xp.__name__, layer.rows, layer.cols, layer.damping, str(layer.dtype))
        groups.setdefault(key, []).append(index)
    for indices in groups.values():
        xp = layers[indices[0]]._xp
        frozen = [layers[i]._frozen for i in indices]
        Qr, dr, Ql, dl = (xp.stack([f[k] for f in frozen]) for k in range(4))
        X = xp.stack([grads[i] for i in indices])
        # The kernel returns out (written in place on NumPy/CuPy, a new array on JAX).
        out = kernels_for(xp).kron_eigen_solve(Ql, dl, Qr, dr, layers[indices[0]].damping, X,
                                               xp.empty(X.shape, dtype=X.dtype))
        for position, i in enumerate(indices):
            results[i] = out[position, ...]
    return results
