"""Optimizers over parameter trees: ``init(params)``, a pure ``update``, ``apply_updates``.

In the style of optax, for the curvature methods of this package: Shampoo
and SOAP (one preconditioner per parameter), K-FAC and MKOR (on dense
layers the user declares, with activations and output gradients supplied),
M-FAC (over the flattened collection); learning rate, momentum and weight
decay are separate pieces that :func:`chain` composes. Parameters are any
nesting of lists, tuples and dicts of arrays of one array library (NumPy,
JAX, PyTorch, CuPy, ``array_api_strict``); the state is plain data. See
``docs/optimizers.md``.

Examples
--------
>>> import numpy as np
>>> from curvature import optim
>>> params = {"w": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": np.zeros(2)}
>>> opt = optim.shampoo(learning_rate=0.1, momentum=0.9, eps=1e-6)
>>> state = opt.init(params)
>>> grads = {"w": params["w"], "b": params["b"] + 1.0}
>>> updates, state = opt.update(grads, state, params)
>>> params = optim.apply_updates(params, updates)
>>> sorted(params)
['b', 'w']
"""

from ._kfac import kfac, scale_by_kfac
from ._layers import DenseLayer
from ._mfac import mfac, scale_by_mfac
from ._mkor import mkor, scale_by_mkor
from ._shampoo import scale_by_shampoo, shampoo
from ._soap import scale_by_soap, soap
from ._transforms import (GradientTransformation, add_decayed_weights, apply_updates, chain,
                          scale_by_learning_rate, trace)

__all__ = ["DenseLayer", "GradientTransformation", "add_decayed_weights", "apply_updates",
           "chain", "kfac", "mfac", "mkor", "scale_by_kfac", "scale_by_learning_rate",
           "scale_by_mfac", "scale_by_mkor", "scale_by_shampoo", "scale_by_soap", "shampoo",
           "soap", "trace"]
