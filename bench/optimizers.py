"""A small NumPy MLP on scikit-learn's digits and the optimisers compared on it.

The network is ``64 -> hidden -> 10`` with tanh and a softmax cross-entropy
loss, gradients by hand-written backpropagation (checked against finite
differences in the tests). Parameters are a list ``[W1, b1, W2, b2]``
with ``W1`` of shape ``(64, hidden)``; the data are the 1797 8x8 digit
images that ship with scikit-learn (no download), pixel values scaled by
1/16, split 75/25 with a fixed seed.

Every optimiser has ``step(params, grads, lr)`` (updates the arrays in
place) and is built by :func:`make_optimizer`:

``sgd``
    heavy-ball momentum 0.9, ``b <- 0.9 b + g``, ``x <- x - lr b``.
``adam``
    Kingma and Ba, (0.9, 0.999, 1e-8), bias-corrected.
``shampoo``
    one :class:`curvature.Shampoo` per parameter (weight matrices get the
    two-sided ``L^{-1/4} G R^{-1/4}``, biases a full 1-D factor with
    exponent -1/2), eps 1e-6, roots every step, Adam grafting (each block rescaled
    to the norm of Adam's second-moment-scaled gradient), then momentum
    0.9 on the grafted direction as above.
``soap``
    one :class:`curvature.SOAP` per parameter (its own first moment;
    basis refresh every 10 steps), ``x <- x - lr D``.
``mfac``
    :class:`curvature.MFAC` over all parameters flattened (window of the
    last ``m`` = 32 mini-batch gradients, damping 0.1; the mini-batch
    gradients here have norms of order 0.1-1, so the window's curvature
    ``(1/m) sum g g'`` and the damping are of similar size; a sweep over
    damping 1e-3..1 with tuned rates gave similar best losses, 0.1 was the
    least sensitive to the rate): ``update(g)``, then
    ``d = solve(g)``, then momentum 0.9 applied to ``d`` (momentum after
    the inverse-Hessian-vector product, as in Frantar et al. 2021).
``kfac``
    one :class:`curvature.kronecker.kfac.KFAC` per dense layer (eigen mode: the exact
    ``(kron(A, G) + lambda I)^{-1}``, damping 1e-2, factor EMA decay 0.95,
    eigendecompositions every step -- 65 x 65 at most here, cheap), the
    empirical Fisher (output gradients of the labelled loss, per example),
    KL clipping 1e-2 over all layers (Ba, Grosse and Martens, ICLR 2017), then
    heavy-ball momentum 0.9 on the clipped direction.
``mkor``
    one :class:`curvature.kronecker.mkor.MKOR` per dense layer (paper form, decay
    0.95, Sherman-Morrison updates of the factor inverses from the
    batch-mean activation and output gradient, the paper's norm-based
    stabiliser with threshold 10 (without it the 65 x 65 input inverse
    grew to entries of 5e8 and the loss levelled at 3.3e-3), norm-matched
    direction), then heavy-ball momentum 0.9.

K-FAC and MKOR read per-layer inputs and per-example output gradients:
their ``step(params, grads, lr, layers)`` takes the ``layers`` list of
:func:`loss_and_grad` with ``return_layers=True`` (the class attribute
``needs_layers`` tells the training loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Digits", "OPTIMIZERS", "TRANSFORM_METHODS", "init_params", "load_digits_split",
           "loss_and_grad", "accuracy", "make_optimizer", "make_transform", "needs_layers",
           "jax_loss_and_grad"]

OPTIMIZERS = ("sgd", "adam", "shampoo", "soap", "mfac", "kfac", "mkor")

MFAC_WINDOW = 32
MFAC_DAMPING = 0.1
KFAC_DAMPING = 1e-2
KFAC_KL_CLIP = 1e-2
KFAC_INVERSE_FREQ = 1
MKOR_DECAY = 0.95
MKOR_FORM = "paper"
MKOR_STABILIZER = 10.0


@dataclass
class Digits:
    """Train/test split of the digits data (features in [0, 1], float64)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int = 0, test_size: float = 0.25) -> Digits:
    """The 1797 digits, pixels / 16, split with ``train_test_split(random_state=seed)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    X = data.data.astype(np.float64) / 16.0
    X_train, X_test, y_train, y_test = train_test_split(
        X, data.target, test_size=test_size, random_state=seed, stratify=data.target)
    return Digits(X_train, y_train, X_test, y_test)


def init_params(sizes=(64, 32, 10), seed: int = 0) -> list[np.ndarray]:
    """Glorot-uniform weights, zero biases: ``[W1, b1, W2, b2, ...]``."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params.append(rng.uniform(-limit, limit, (fan_in, fan_out)))
        params.append(np.zeros(fan_out))
    return params


def _forward(params, X):
    """Activations of every layer (tanh hidden layers) and the output logits."""
    activations = [X]
    h = X
    layers = len(params) // 2
    for i in range(layers):
        z = h @ params[2 * i] + params[2 * i + 1]
        h = np.tanh(z) if i < layers - 1 else z
        activations.append(h)
    return activations


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def loss_and_grad(params, X, y, *, need_grad: bool = True, return_layers: bool = False):
    """Mean softmax cross-entropy and its gradient (list like ``params``).

    With ``return_layers=True`` also a list, one ``(inputs, output_grads)``
    pair per dense layer: the layer's input activations ``(n, fan_in)`` and
    the per-example gradients of each example's own loss with respect to the
    layer's pre-activations ``(n, fan_out)`` (``n`` times the backpropagated
    gradient of the mean loss): what K-FAC and MKOR factor.

    Examples
    --------
    >>> params = init_params((4, 3, 2), seed=0)
    >>> X, y = np.ones((5, 4)), np.array([0, 1, 0, 1, 1])
    >>> loss, grads = loss_and_grad(params, X, y)
    >>> [g.shape for g in grads]
    [(4, 3), (3,), (3, 2), (2,)]
    """
    activations = _forward(params, X)
    logp = _log_softmax(activations[-1])
    n = X.shape[0]
    loss = -float(logp[np.arange(n), y].mean())
    if not need_grad:
        return loss
    delta = np.exp(logp)
    delta[np.arange(n), y] -= 1.0
    delta /= n                                  # d loss / d logits
    grads = [None] * len(params)
    layers = [None] * (len(params) // 2)
    for i in reversed(range(len(params) // 2)):
        h = activations[i]
        grads[2 * i] = h.T @ delta
        grads[2 * i + 1] = delta.sum(axis=0)
        layers[i] = (h, n * delta)
        if i > 0:
            delta = (delta @ params[2 * i].T) * (1.0 - h * h)   # tanh' = 1 - tanh^2
    if return_layers:
        return loss, grads, layers
    return loss, grads


def accuracy(params, X, y) -> float:
    """Fraction of ``X`` classified as ``y``."""
    return float((_forward(params, X)[-1].argmax(axis=1) == y).mean())


class SGD:
    def __init__(self, params, momentum=0.9):
        self.momentum = momentum
        self.buffers = [np.zeros_like(p) for p in params]

    def step(self, params, grads, lr):
        for p, g, b in zip(params, grads, self.buffers):
            b *= self.momentum
            b += g
            p -= lr * b


class Adam:
    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8):
        self.beta1, self.beta2, self.eps, self.t = beta1, beta2, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, params, grads, lr):
        self.t += 1
        c1, c2 = 1 - self.beta1 ** self.t, 1 - self.beta2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


class ShampooOpt:
    """Per-parameter Shampoo with Adam grafting, then heavy-ball momentum."""

    def __init__(self, params, momentum=0.9, update_freq=1):
        from curvature import Shampoo

        self.blocks = [Shampoo(p.shape, grafting="adam", update_freq=update_freq, eps=1e-6)
                       for p in params]
        self.momentum = momentum
        self.buffers = [np.zeros_like(p) for p in params]

    def step(self, params, grads, lr):
        for p, g, block, b in zip(params, grads, self.blocks, self.buffers):
            b *= self.momentum
            b += block.update(g)
            p -= lr * b


class SOAPOpt:
    """Per-parameter SOAP (its own first moment)."""

    def __init__(self, params, precondition_frequency=10):
        from curvature import SOAP

        self.blocks = [SOAP(p.shape, precondition_frequency=precondition_frequency)
                       for p in params]

    def step(self, params, grads, lr):
        for p, g, block in zip(params, grads, self.blocks):
            p -= lr * block.update(g)


class MFACOpt:
    """M-FAC: push the gradient, IHVP direction ``F^{-1} g``, momentum after it."""

    def __init__(self, params, m=MFAC_WINDOW, damping=MFAC_DAMPING, momentum=0.9):
        from curvature import MFAC

        self.sizes = [p.size for p in params]
        self.mfac = MFAC(sum(self.sizes), m, damping=damping)
        self.momentum = momentum
        self.buffer = np.zeros(sum(self.sizes))

    def step(self, params, grads, lr):
        g = np.concatenate([x.ravel() for x in grads])
        self.mfac.update(g)
        self.buffer *= self.momentum
        self.buffer += self.mfac.solve(g)
        offset = 0
        for p, size in zip(params, self.sizes):
            p -= lr * self.buffer[offset:offset + size].reshape(p.shape)
            offset += size


class _KroneckerOpt:
    """Shared part of K-FAC and MKOR: one curvature object per dense layer.

    The MLP stores ``W`` as ``(fan_in, fan_out)`` (``h @ W``); the curvature
    objects want the ``(out, in + 1)`` gradient ``[W_grad', b_grad]``
    (column-major vec convention of :mod:`curvature.kronecker._kron`).
    """

    needs_layers = True

    def __init__(self, params, momentum):
        self.momentum = momentum
        self.buffers = [np.zeros_like(p) for p in params]

    @staticmethod
    def _joined(grads, i):
        return np.concatenate([grads[2 * i].T, grads[2 * i + 1][:, None]], axis=1)

    @staticmethod
    def _split(D):
        return D[:, :-1].T, D[:, -1]

    def _apply(self, params, directions, lr):
        for p, d, b in zip(params, directions, self.buffers):
            b *= self.momentum
            b += d
            p -= lr * b


class KFACOpt(_KroneckerOpt):
    """K-FAC per layer (eigen mode), KL clipping over all layers, then heavy-ball momentum."""

    def __init__(self, params, damping=KFAC_DAMPING, decay=0.95, kl_clip=KFAC_KL_CLIP,
                 inverse_update_freq=KFAC_INVERSE_FREQ, momentum=0.9):
        from curvature.kronecker.kfac import KFAC

        super().__init__(params, momentum)
        self.kl_clip = kl_clip
        self.layers = [KFAC(params[2 * i].shape[0], params[2 * i].shape[1], damping=damping,
                            decay=decay, inverse_update_freq=inverse_update_freq)
                       for i in range(len(params) // 2)]

    def step(self, params, grads, lr, layers):
        from curvature.kronecker.kfac import kl_clip_scale

        joined, directions = [], []
        for i, (layer, (inputs, output_grads)) in enumerate(zip(self.layers, layers)):
            layer.update(inputs, output_grads)
            joined.append(self._joined(grads, i))
            directions.append(layer.precondition(joined[-1]))
        nu = kl_clip_scale(directions, joined, lr, self.kl_clip) if self.kl_clip else 1.0
        self._apply(params, [part for D in directions for part in self._split(nu * D)], lr)


class MKOROpt(_KroneckerOpt):
    """MKOR per layer (paper form, norm-matched directions), then heavy-ball momentum."""

    def __init__(self, params, decay=MKOR_DECAY, form=MKOR_FORM, momentum=0.9):
        from curvature.kronecker.mkor import MKOR

        super().__init__(params, momentum)
        self.layers = [MKOR(params[2 * i].shape[0], params[2 * i].shape[1], decay=decay,
                            form=form, stabilizer_threshold=MKOR_STABILIZER)
                       for i in range(len(params) // 2)]

    def step(self, params, grads, lr, layers):
        directions = []
        for i, (layer, (inputs, output_grads)) in enumerate(zip(self.layers, layers)):
            layer.update(inputs, output_grads)
            directions += self._split(layer.precondition(self._joined(grads, i)))
        self._apply(params, directions, lr)


_CLASSES = {"sgd": SGD, "adam": Adam, "shampoo": ShampooOpt, "soap": SOAPOpt, "mfac": MFACOpt,
            "kfac": KFACOpt, "mkor": MKOROpt}

LR_GRIDS = {
    "sgd": (0.01, 0.03, 0.1, 0.3, 1.0),
    "adam": (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
    "shampoo": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
    "soap": (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
    "mfac": (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
    "kfac": (1e-3, 3e-3, 1e-2, 3e-2, 0.1),
    "mkor": (0.01, 0.03, 0.1, 0.3, 1.0),
}
"""Learning rates tried on the first epoch (see :func:`bench.curvature_bench.run_optimizers`)."""


def make_optimizer(name: str, params):
    """A fresh optimiser ``name`` (one of :data:`OPTIMIZERS`) for ``params``."""
    try:
        return _CLASSES[name](params)
    except KeyError:
        raise ValueError(f"unknown optimiser {name!r}; use one of {', '.join(OPTIMIZERS)}") from None


# ------------------------------------------- the optimizer interface ----

TRANSFORM_METHODS = ("sgd", "shampoo", "soap", "mfac", "kfac", "mkor")
"""Methods with an equivalent in :mod:`curvature.optim` (:func:`make_transform`)."""


def make_transform(name: str, lr: float, n_layers: int = 2):
    """The :mod:`curvature.optim` optimizer that equals ``make_optimizer(name)`` with rate ``lr``.

    Same settings as the per-object classes above: for the MLP's parameters
    ``[W1, b1, W2, b2, ...]`` (``W`` of shape ``(fan_in, fan_out)``, layout
    ``"in_out"``) K-FAC and MKOR declare one :class:`curvature.optim.DenseLayer`
    per ``(W, b)`` pair and take the ``layers`` of :func:`loss_and_grad` as
    ``activations`` and ``output_grads``.
    """
    from curvature import optim

    layers = [optim.DenseLayer(2 * i, 2 * i + 1) for i in range(n_layers)]
    if name == "sgd":
        return optim.chain(optim.trace(0.9), optim.scale_by_learning_rate(lr))
    if name == "shampoo":
        return optim.shampoo(lr, momentum=0.9, grafting="adam", update_freq=1, eps=1e-6)
    if name == "soap":
        return optim.soap(lr, precondition_frequency=10)
    if name == "mfac":
        return optim.mfac(lr, m=MFAC_WINDOW, damping=MFAC_DAMPING, momentum=0.9)
    if name == "kfac":
        return optim.kfac(lr, layers, momentum=0.9, kl_clip=KFAC_KL_CLIP, damping=KFAC_DAMPING,
                          decay=0.95, inverse_update_freq=KFAC_INVERSE_FREQ)
    if name == "mkor":
        return optim.mkor(lr, layers, momentum=0.9, decay=MKOR_DECAY, form=MKOR_FORM,
                          stabilizer_threshold=MKOR_STABILIZER)
    raise ValueError(f"no curvature.optim equivalent of {name!r}; use one of "
                     f"{', '.join(TRANSFORM_METHODS)}")


def needs_layers(name: str) -> bool:
    """K-FAC and MKOR read each layer's inputs and output gradients."""
    return name in ("kfac", "mkor")


def jax_loss_and_grad():
    """A jitted ``f(params, X, y) -> (loss, grads, layers)``: :func:`loss_and_grad`
    of the same MLP by ``jax.value_and_grad``, for ``jax.numpy`` parameters.

    ``layers`` are the ``(inputs, output_grads)`` pairs K-FAC and MKOR take:
    the per-example output gradients are ``n`` times the gradient of the mean
    loss with respect to a zero added to each layer's pre-activations.
    """
    import jax
    import jax.numpy as jnp

    def loss(params, shifts, X, y):
        h, inputs = X, []
        n_layers = len(params) // 2
        for i in range(n_layers):
            inputs.append(h)
            z = h @ params[2 * i] + params[2 * i + 1] + shifts[i]
            h = jnp.tanh(z) if i < n_layers - 1 else z
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), inputs

    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)

    @jax.jit
    def f(params, X, y):
        n = X.shape[0]
        shifts = [jnp.zeros((n, params[2 * i + 1].shape[0]), dtype=X.dtype)
                  for i in range(len(params) // 2)]
        (value, inputs), (grads, shift_grads) = value_and_grad(params, shifts, X, y)
        return value, grads, [(a, n * s) for a, s in zip(inputs, shift_grads)]

    return f
