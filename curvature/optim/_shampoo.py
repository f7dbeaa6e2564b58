"""Shampoo over a tree of parameters: one :class:`curvature.Shampoo` per parameter (or tile)."""

from __future__ import annotations

from ..shampoo.shampoo import Shampoo
from ._per_parameter import per_parameter
from ._transforms import GradientTransformation, compose

__all__ = ["scale_by_shampoo", "shampoo"]


def scale_by_shampoo(*, block_size: int | None = None, **shampoo_kwargs) -> GradientTransformation:
    """Shampoo directions, one preconditioner per parameter (learning-rate free).

    Each parameter (or, with ``block_size``, each tile of at most
    ``block_size`` along every axis, as in Distributed Shampoo) gets its own
    :class:`curvature.Shampoo`: a weight matrix the two-sided
    ``L^{-1/4} G R^{-1/4}``, a vector full-matrix AdaGrad, each block
    rescaled to its grafted method's norm (``grafting``, default Adam's
    second-moment scaling). Momentum, weight decay and the learning rate are
    the chain's later pieces (see :func:`shampoo`).

    Parameters
    ----------
    block_size : int, optional
        Tile size; default one block per parameter.
    **shampoo_kwargs
        :class:`curvature.Shampoo`'s settings (``beta2``, ``eps``,
        ``update_freq``, ``start``, ``grafting``, ``max_dim``, ``graft_beta2``,
        ``graft_eps``, ``root_method``, ``max_failures``), for every block.

    Notes
    -----
    State: ``{"blocks": [[Shampoo.state_dict() per tile] per parameter]}``
    (parameters in the tree's flattening order). Each ``update`` rebuilds the
    blocks from it with ``load_state_dict`` and returns fresh ``state_dict()``
    copies: the directions equal those of one :class:`curvature.Shampoo` per
    parameter updated in place, bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature import Shampoo
    >>> from curvature.optim import scale_by_shampoo
    >>> G = {"w": np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])}
    >>> opt = scale_by_shampoo(grafting=None)
    >>> directions, state = opt.update(G, opt.init(G))
    >>> bool(np.array_equal(directions["w"], Shampoo((3, 2), grafting=None).update(G["w"])))
    True
    >>> state["blocks"][0][0]["step"]
    1
    """
    return per_parameter("scale_by_shampoo", lambda shape: Shampoo(shape, **shampoo_kwargs),
                         block_size)


def shampoo(learning_rate, *, momentum: float = 0.0, nesterov: bool = False,
            weight_decay: float = 0.0, weight_decay_mask=None, block_size: int | None = None,
            **shampoo_kwargs) -> GradientTransformation:
    """Shampoo with grafting, then momentum, decoupled weight decay and the learning rate.

    ``chain(scale_by_shampoo(...), trace(momentum), add_decayed_weights(weight_decay),
    scale_by_learning_rate(learning_rate))`` without the pieces set to zero:
    the step is ``x <- x - lr (b + wd x)`` with ``b <- momentum b + D``.

    Parameters
    ----------
    learning_rate : float or callable
        A rate, or a schedule ``learning_rate(count)``.
    momentum : float
        Heavy-ball momentum on the grafted direction (0: none), as in
        Distributed Shampoo.
    nesterov : bool
        Nesterov's form of the momentum.
    weight_decay : float
        Decoupled weight decay (AdamW's form); needs ``params`` in ``update``.
    weight_decay_mask : tree of bool or callable, optional
        Which parameters decay (see :func:`curvature.optim.add_decayed_weights`).
    block_size, **shampoo_kwargs
        As in :func:`scale_by_shampoo`.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import apply_updates, shampoo
    >>> params = {"w": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": np.zeros(2)}
    >>> opt = shampoo(0.1, momentum=0.9, eps=1e-6)
    >>> state = opt.init(params)
    >>> grads = {"w": params["w"] - np.eye(2), "b": params["b"] - 1.0}
    >>> updates, state = opt.update(grads, state, params)
    >>> params = apply_updates(params, updates)
    >>> # grafted to Adam's first step, sign(g): norm sqrt(#nonzeros), times the rate
    >>> [round(float(np.linalg.norm(u)), 6) for u in updates.values()]
    [0.173205, 0.141421]
    """
    return compose(scale_by_shampoo(block_size=block_size, **shampoo_kwargs), learning_rate,
                   momentum, nesterov, weight_decay, weight_decay_mask)
