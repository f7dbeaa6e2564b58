"""M-FAC as a ``torch.optim`` optimizer: one gradient window per parameter group.

The group's gradients, concatenated in the group's order, are pushed into a
live :class:`curvature.MFAC` (or :class:`curvature.BlockedMFAC`, one block per
parameter) and the direction ``F^{-1} g`` comes back through
:func:`curvature.optim._mfac.mfac_direction`, the step
:func:`curvature.optim.scale_by_mfac` takes; then momentum, weight decay and
the rate as in :mod:`curvature.torch._base`. The window is owned by the
group's first parameter (its entry of ``state_dict()["state"]``).

On the CPU the window is a NumPy array and the passes over it are the
compiled kernels of :mod:`cext.numba.mfac` (what NumPy input gets): the
gradients go in and the directions come out as NumPy *views* of the tensors
(``Tensor.numpy()``, ``torch.from_numpy``: shared memory, no copy). The
array-API reference kernels that torch tensors would otherwise get cast the
window slice they read (``astype`` copies), i.e. copy the ``m x d`` window
three times a step. On a GPU the window is a tensor on the parameters'
device and the reference kernels run there. ``state_dict()`` holds tensors
either way.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from array_api_compat import array_namespace

from ..mfac.window import _check_damping
from ..optim._call import restore
from ..optim._mfac import _DTYPES, _dtype_name, make_window, mfac_direction
from .._checks import check_positive_int
from ._base import CurvatureOptimizer, xp_of

__all__ = ["MFAC"]


class MFAC(CurvatureOptimizer):
    """M-FAC (Frantar, Kurtic and Alistarh 2021) over each parameter group, for ``torch.optim``.

    ``F = damping I + (1/m) sum g_i g_i'`` over the last ``m`` gradients of
    the group (all its parameters flattened); the direction ``F^{-1} g``,
    then heavy-ball momentum (after the inverse-Hessian-vector product, as
    in the paper), decoupled weight decay and the rate:
    :func:`curvature.optim.mfac`'s step, in place.

    Parameters
    ----------
    params : iterable of tensors or dicts
        Parameters or groups; one window per group. Every parameter of a
        group must get a gradient at every step (the window spans them all):
        put parameters that may not in a group of their own.
    lr : float
        Learning rate.
    m, damping, per_parameter, dtype
        As :func:`curvature.optim.scale_by_mfac` (per group too; read when
        the window is built). ``dtype`` is ``"float32"`` or ``"float64"``
        (default: the group's parameters').
    momentum, nesterov, weight_decay
        As :func:`curvature.optim.mfac`.

    Examples
    --------
    >>> import torch
    >>> from curvature.torch import MFAC
    >>> params = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)),
    ...           torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))]
    >>> opt = MFAC(params, lr=0.1, m=4, damping=1.0)
    >>> for p in params:
    ...     p.grad = torch.ones_like(p)
    >>> opt.step()
    >>> round(1.0 - params[0][0].item(), 6)    # F = I + g g': F^{-1} g = g / (1 + |g|^2)
    0.0125
    """

    _KEY = "mfac"

    def __init__(self, params, lr: float = 1e-2, *, m: int = 32, damping: float = 0.1,
                 momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 per_parameter: bool = False, dtype: str | None = None):
        check_positive_int("m", m)
        _check_damping(damping)
        if dtype is not None and _dtype_name(dtype) not in _DTYPES:
            raise ValueError(f"MFAC: dtype must be 'float32' or 'float64', got {dtype!r}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        m=m, damping=damping, per_parameter=bool(per_parameter), dtype=dtype)
        super().__init__(params, defaults)

    def _owners(self, group):
        return group["params"][:1]

    @staticmethod
    def _namespace(owner):
        """NumPy's for CPU tensors (the compiled kernels, on views), else torch's."""
        return array_namespace(np.empty(0)) if owner.device.type == "cpu" else xp_of(owner)

    def _build(self, group, owner):
        params = group["params"]
        xp = self._namespace(owner)
        if group["dtype"] is not None:
            dtype = _dtype_name(group["dtype"])
        else:
            dtype = str(functools.reduce(torch.promote_types, [p.dtype for p in params]))
            dtype = dtype.rsplit(".", 1)[-1]
        return make_window(xp, [p.numel() for p in params], group["m"], group["damping"],
                           group["per_parameter"], dtype if dtype in _DTYPES else "float64")

    def _dump(self, live):
        return _map_arrays(live.state_dict(), np.ndarray, torch.from_numpy)

    def _load(self, group, owner, data, where):
        if self._namespace(owner) is not xp_of(owner):
            data = _map_arrays(data, torch.Tensor, lambda t: t.numpy())
        return restore(self._build(group, owner), data, where)

    def _directions(self, group, loss):
        owner = type(self).__name__
        params = group["params"]
        grads = [self._grad(owner, p, f"parameter {i} of its group")
                 for i, p in enumerate(params)]
        missing = [i for i, g in enumerate(grads) if g is None]
        if len(missing) == len(grads):
            return {}
        if missing:
            raise ValueError(f"{owner}: parameter {missing[0]} of a group has no gradient while "
                             "others have one; the M-FAC window spans every parameter of its "
                             "group: put parameters that do not always get a gradient in a "
                             "group of their own")
        window = self.live(group, params[0])
        if window.xp is xp_of(grads[0]):
            return dict(zip(params, mfac_direction(window.xp, window, grads, owner)))
        views = [g.detach().numpy() for g in grads]          # shared memory, no copy
        directions = mfac_direction(window.xp, window, views, owner)
        return {p: torch.from_numpy(d) for p, d in zip(params, directions)}


def _map_arrays(tree, kind, convert):
    """``tree`` with every array of type ``kind`` replaced by ``convert(array)``."""
    if isinstance(tree, kind):
        return convert(tree)
    if isinstance(tree, dict):
        return {k: _map_arrays(v, kind, convert) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_arrays(v, kind, convert) for v in tree)
    return tree
