"""MKOR over declared dense layers: one :class:`curvature.MKOR` per layer."""

from __future__ import annotations

from ..kronecker.mkor import MKOR
from ._call import rename_errors
from ._layers import per_layer
from ._transforms import GradientTransformation, compose

__all__ = ["mkor", "mkor_directions", "scale_by_mkor"]


def mkor_directions(objects, inputs, outputs, joined, names, loss=None) -> list:
    """One MKOR step over live layers: feed ``loss`` (MKOR-H's switch), update each
    layer's factor inverses, precondition its joined gradient.

    Shared by :func:`scale_by_mkor` and ``curvature.torch.MKOR``; errors name the layer.
    """
    directions = []
    for layer, a, g, J, name in zip(objects, inputs, outputs, joined, names):
        with rename_errors(name):
            if loss is not None:
                layer.observe_loss(loss)
            layer.update(a, g)
            directions.append(layer.precondition(J))
    return directions


def scale_by_mkor(layers, **mkor_kwargs) -> GradientTransformation:
    """MKOR directions ``J_G grad J_A`` (norm-matched) for the declared dense layers.

    Each :class:`curvature.optim.DenseLayer` gets a :class:`curvature.MKOR`
    (Mozaffari et al. 2023) with ``mkor_kwargs`` (``decay``, ``form``,
    ``stabilizer_threshold``, ``reinvert_every``, ``norm_match``, ``hybrid``,
    ...), whose factor inverses follow rank-1 Sherman-Morrison updates from
    the batch means of the activations and output gradients, supplied as
    for :func:`curvature.optim.scale_by_kfac`::

        update(grads, state, params, activations=[...], output_grads=[...], loss=None)

    ``loss`` (optional): the training loss at the current parameters, fed
    to every layer's :meth:`curvature.MKOR.observe_loss` before the update
    (MKOR-H's switch to the first-order direction with ``hybrid=True``).

    Notes
    -----
    State: ``{"layers": [MKOR.state_dict() per layer], "count": int}``, rebuilt
    at each ``update``; the directions equal the per-object ones bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import DenseLayer, scale_by_mkor
    >>> rng = np.random.default_rng(0)
    >>> params = {"w": rng.standard_normal((3, 2)), "b": np.zeros(2), "scale": np.ones(1)}
    >>> a, g = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    >>> grads = {"w": a.T @ g / 8, "b": g.mean(axis=0), "scale": np.ones(1)}
    >>> opt = scale_by_mkor([DenseLayer("w", "b")])
    >>> D, state = opt.update(grads, opt.init(params), params, activations=[a], output_grads=[g])
    >>> D["scale"]                                 # not in a declared layer: passed through
    array([1.])
    >>> norm = lambda tree: np.sqrt(sum(np.sum(tree[k] ** 2) for k in ("w", "b")))
    >>> bool(np.isclose(norm(D), norm(grads)))    # norm-matched direction
    True
    """

    def make(in_features, out_features, bias):
        return MKOR(in_features, out_features, bias=bias, **mkor_kwargs)

    def step(objects, inputs, outputs, joined, count, names, loss=None):
        return mkor_directions(objects, inputs, outputs, joined, names, loss)

    return per_layer("scale_by_mkor", layers, make, step, extra_args={"loss"})


def mkor(learning_rate, layers, *, momentum: float = 0.0, nesterov: bool = False,
         weight_decay: float = 0.0, weight_decay_mask=None,
         **mkor_kwargs) -> GradientTransformation:
    """MKOR on the declared layers, then momentum, decoupled weight decay and the rate.

    ``chain(scale_by_mkor(layers, ...), trace(momentum),
    add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate))``
    without the pieces set to zero.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import DenseLayer, mkor
    >>> opt = mkor(0.1, {"out": DenseLayer(("out", "w"), ("out", "b"), layout="out_in")})
    >>> params = {"out": {"w": np.zeros((2, 3)), "b": np.zeros(2)}}     # torch's (out, in)
    >>> grads = {"out": {"w": np.ones((2, 3)), "b": np.ones(2)}}
    >>> updates, state = opt.update(grads, opt.init(params), params,
    ...                             activations={"out": np.ones((4, 3))},
    ...                             output_grads={"out": np.ones((4, 2))})
    >>> updates["out"]["w"].shape, updates["out"]["b"].shape
    ((2, 3), (2,))
    """
    return compose(scale_by_mkor(layers, **mkor_kwargs), learning_rate, momentum, nesterov,
                   weight_decay, weight_decay_mask)
