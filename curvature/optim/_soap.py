"""SOAP over a tree of parameters: one :class:`curvature.SOAP` per parameter."""

from __future__ import annotations

from ..shampoo.soap import SOAP
from ._per_parameter import per_parameter
from ._transforms import GradientTransformation, compose

__all__ = ["scale_by_soap", "soap"]


def scale_by_soap(**soap_kwargs) -> GradientTransformation:
    """SOAP directions (Adam in the eigenbasis of Shampoo's factors), one per parameter.

    Each parameter gets its own :class:`curvature.SOAP` with
    ``soap_kwargs`` (``beta1``, ``beta2``, ``eps``, ``precondition_frequency``,
    ``shampoo_beta``, ``max_dim``, ``precondition_1d``, ``rotate``). SOAP
    keeps its own first moment, so it is normally used without
    :func:`curvature.optim.trace`.

    Notes
    -----
    State: ``{"blocks": [[SOAP.state_dict()] per parameter]}``, rebuilt at each
    ``update`` (see :func:`curvature.optim.scale_by_shampoo`); the directions
    equal those of one :class:`curvature.SOAP` per parameter, bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import scale_by_soap
    >>> opt = scale_by_soap(rotate=False)            # identity basis: Adam
    >>> grads = [np.array([[1.0, -2.0], [0.5, 0.0]])]
    >>> directions, state = opt.update(grads, opt.init(grads))
    >>> np.round(directions[0], 6)                    # Adam's first step: sign(g)
    array([[ 1., -1.],
           [ 1.,  0.]])
    """
    return per_parameter("scale_by_soap", lambda shape: SOAP(shape, **soap_kwargs))


def soap(learning_rate, *, weight_decay: float = 0.0, weight_decay_mask=None,
         momentum: float = 0.0, nesterov: bool = False, **soap_kwargs) -> GradientTransformation:
    """SOAP with decoupled weight decay and a learning rate: ``x <- x - lr (D + wd x)``.

    Parameters
    ----------
    learning_rate : float or callable
        A rate, or a schedule ``learning_rate(count)``.
    weight_decay, weight_decay_mask
        Decoupled weight decay (AdamW's form, as in the SOAP paper's code).
    momentum, nesterov
        Extra heavy-ball momentum on SOAP's direction (0: none; SOAP has its
        own first moment ``beta1``).
    **soap_kwargs
        As in :func:`scale_by_soap`.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.optim import apply_updates, soap
    >>> params = [np.ones((2, 2))]
    >>> opt = soap(0.01)
    >>> updates, state = opt.update([np.ones((2, 2))], opt.init(params), params)
    >>> apply_updates(params, updates)[0]   # the rank-1 gradient is one rotated entry: 2 -> 1
    array([[0.995, 0.995],
           [0.995, 0.995]])
    """
    return compose(scale_by_soap(**soap_kwargs), learning_rate, momentum, nesterov, weight_decay,
                   weight_decay_mask)
