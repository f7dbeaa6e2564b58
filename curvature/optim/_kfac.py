"""K-FAC over declared dense layers: one :class:`curvature.KFAC` per layer."""

from __future__ import annotations

from ..kronecker._kron import check_positive
from ..kronecker.kfac import KFAC, kl_clip_scale, precondition_layers
from ._call import rename_errors
from ._layers import per_layer
from ._transforms import GradientTransformation, _check_rate_or_schedule, compose, learning_rate_at

__all__ = ["kfac", "kfac_directions", "scale_by_kfac"]


def kfac_directions(objects, inputs, outputs, joined, names, kl_clip=None, lr=None) -> list:
    """One K-FAC step over live layers: update every factor from its layer's inputs and
    output gradients, precondition the joined gradients together (same-shaped layers
    batched), KL-clip over all of them with rate ``lr`` when ``kl_clip`` is set.

    Shared by :func:`scale_by_kfac` and ``curvature.torch.KFAC``; errors name the layer.
    """
    for layer, a, g, name in zip(objects, inputs, outputs, names):
        with rename_errors(name):
            layer.update(a, g)
    directions = precondition_layers(objects, joined)
    if kl_clip is None:
        return directions
    nu = kl_clip_scale(directions, joined, lr, kl_clip)
    return [nu * D for D in directions]


def scale_by_kfac(layers, *, kl_clip: float | None = None, learning_rate=None,
                  **kfac_kwargs) -> GradientTransformation:
    """K-FAC directions ``(A kron G + lambda I)^{-1} grad`` for the declared dense layers.

    Each :class:`curvature.optim.DenseLayer` of ``layers`` gets a
    :class:`curvature.KFAC` (Martens and Grosse 2015) with ``kfac_kwargs``
    (``damping``, ``decay``, ``mode``, ``pi_heuristic``,
    ``inverse_update_freq``). ``update`` takes, besides the gradients, each
    layer's inputs and per-example output gradients::

        update(grads, state, params, activations=[a_1, ...], output_grads=[g_1, ...])

    ``a_l`` is ``(batch, in_features)``; ``g_l`` is ``(batch, out_features)``,
    the gradient of each example's *own* loss with respect to the layer's
    outputs (for a mean loss over ``n`` examples: ``n`` times the
    backpropagated gradient). The factors are updated, the directions come
    from :func:`curvature.kronecker.kfac.precondition_layers` (same-shaped layers
    batched), and parameters outside the declared layers pass through.

    Parameters
    ----------
    layers : list or dict of DenseLayer
        The dense layers (see :class:`curvature.optim.DenseLayer`).
    kl_clip : float, optional
        KL clipping over all layers (:func:`curvature.kronecker.kfac.kl_clip_scale`):
        the directions are scaled by ``nu = min(1, sqrt(kl_clip /
        (lr^2 sum_l <D_l, grad_l>)))``, which needs ``learning_rate``.
    learning_rate : float or callable, optional
        The rate the chain applies later (for the KL clipping only).
    **kfac_kwargs
        :class:`curvature.KFAC` settings, for every layer.

    Notes
    -----
    State: ``{"layers": [KFAC.state_dict() per layer], "count": int}``. Each
    ``update`` rebuilds the layers with ``load_state_dict``, which recomputes
    the eigendecompositions of the frozen factors (KFAC keeps no
    eigenvectors in its state): two small ``eigh`` per layer and step beyond
    those of the refresh.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature import KFAC
    >>> from curvature.optim import DenseLayer, scale_by_kfac
    >>> rng = np.random.default_rng(0)
    >>> params = {"w": rng.standard_normal((3, 2)), "b": np.zeros(2)}   # a @ w + b
    >>> a, g = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
    >>> grads = {"w": a.T @ g / 16, "b": g.mean(axis=0)}
    >>> opt = scale_by_kfac([DenseLayer("w", "b")], damping=1e-2)
    >>> D, state = opt.update(grads, opt.init(params), params, activations=[a],
    ...                       output_grads=[g])
    >>> layer = KFAC(3, 2, damping=1e-2)
    >>> layer.update(a, g)
    >>> expected = layer.precondition(np.c_[grads["w"].T, grads["b"]])   # (out, in + 1)
    >>> bool(np.allclose(D["w"], expected[:, :3].T)), bool(np.allclose(D["b"], expected[:, 3]))
    (True, True)
    """
    if kl_clip is not None:
        kl_clip = check_positive("kl_clip", kl_clip)
        if learning_rate is None:
            raise ValueError("scale_by_kfac: kl_clip needs the learning_rate the step will use")
        _check_rate_or_schedule("learning_rate", learning_rate)

    def make(in_features, out_features, bias):
        return KFAC(in_features, out_features, bias=bias, **kfac_kwargs)

    def step(objects, inputs, outputs, joined, count, names):
        lr = None if kl_clip is None else learning_rate_at(learning_rate, count)
        return kfac_directions(objects, inputs, outputs, joined, names, kl_clip, lr)

    return per_layer("scale_by_kfac", layers, make, step)


def kfac(learning_rate, layers, *, momentum: float = 0.0, nesterov: bool = False,
         kl_clip: float | None = None, weight_decay: float = 0.0, weight_decay_mask=None,
         **kfac_kwargs) -> GradientTransformation:
    """K-FAC on the declared layers, then momentum, decoupled weight decay and the rate.

    ``chain(scale_by_kfac(layers, kl_clip=kl_clip, learning_rate=learning_rate,
    ...), trace(momentum), add_decayed_weights(weight_decay),
    scale_by_learning_rate(learning_rate))`` without the pieces set to zero.
    See :func:`scale_by_kfac` for the activations ``update`` needs.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import DenseLayer, apply_updates, kfac
    >>> rng = np.random.default_rng(1)
    >>> params = [rng.standard_normal((4, 3)), np.zeros(3)]
    >>> opt = kfac(0.1, [DenseLayer(0, 1)], momentum=0.9, kl_clip=1e-2, damping=1e-2)
    >>> state = opt.init(params)
    >>> X, T = rng.standard_normal((32, 4)), rng.standard_normal((32, 3))
    >>> for _ in range(5):                        # least squares 0.5 |X W + b - T|^2 / n
    ...     residual = X @ params[0] + params[1] - T
    ...     grads = [X.T @ residual / 32, residual.mean(axis=0)]
    ...     updates, state = opt.update(grads, state, params, activations=[X],
    ...                                 output_grads=[residual])
    ...     params = apply_updates(params, updates)
    >>> state[0]["count"], state[0]["layers"][0]["step"]
    (5, 5)
    """
    method = scale_by_kfac(layers, kl_clip=kl_clip, learning_rate=learning_rate, **kfac_kwargs)
    return compose(method, learning_rate, momentum, nesterov, weight_decay, weight_decay_mask)
