"""Shampoo and SOAP as ``torch.optim`` optimizers: one preconditioner per parameter (tile).

The directions come from :func:`curvature.optim._per_parameter.tiled_direction`
over live :class:`curvature.Shampoo` / :class:`curvature.SOAP` objects, the
step :func:`curvature.optim.scale_by_shampoo` takes over objects rebuilt from
its state; momentum, weight decay and the rate as in :mod:`curvature.torch._base`.
"""

from __future__ import annotations

from typing import Any

from ..optim._call import restore
from ..optim._per_parameter import make_tiles, tile_shapes, tiled_direction
from ..shampoo.distributed import split_blocks
from ..shampoo.shampoo import Shampoo as _Shampoo
from ..shampoo.soap import SOAP as _SOAP
from ._base import CurvatureOptimizer, xp_of

__all__ = ["SOAP", "Shampoo"]


class _PerParameter(CurvatureOptimizer):
    """One curvature object per parameter (per tile with ``block_size``)."""

    _KEY = "blocks"
    _CLASS: Any = None
    _SETTINGS: tuple = ()

    def _make(self, group):
        settings = {k: group[k] for k in self._SETTINGS}
        return lambda shape: self._CLASS(shape, **settings)

    def _check_settings(self, defaults):
        split_blocks((1,), defaults.get("block_size"))       # checks block_size
        self._make(defaults)((1,))                            # checks the method's settings

    def _build(self, group, owner):
        return make_tiles(self._make(group), owner.shape, group.get("block_size"))

    def _dump(self, live):
        return [block.state_dict() for block in live]

    def _load(self, group, owner, data, where):
        shapes = tile_shapes(owner.shape, group.get("block_size"))
        if not isinstance(data, list) or len(data) != len(shapes):
            raise ValueError(f"{where} must be a list of {len(shapes)} block states (parameter "
                             f"of shape {tuple(owner.shape)}), got {data!r:.80}")
        make = self._make(group)
        return [restore(make(shape), state, f"{where}[{j}]")
                for j, (shape, state) in enumerate(zip(shapes, data))]

    def _directions(self, group, loss):
        owner = type(self).__name__
        out = {}
        for i, p in enumerate(group["params"]):
            g = self._grad(owner, p, f"parameter {i} of its group")
            if g is None:
                continue
            out[p] = tiled_direction(xp_of(g), self.live(group, p), g,
                                     group.get("block_size"), f"{owner}: parameter {i} "
                                     f"(shape {tuple(p.shape)})")
        return out


class Shampoo(_PerParameter):
    """Shampoo (Gupta, Koren and Singer 2018) with grafting, as a ``torch.optim`` optimizer.

    Each parameter (or tile of at most ``block_size`` along every axis) gets
    a :class:`curvature.Shampoo`: for a matrix gradient ``G`` the direction
    ``L^{-1/4} G R^{-1/4}`` rescaled to the grafted method's norm; then
    heavy-ball momentum, decoupled weight decay and the rate, exactly
    :func:`curvature.optim.shampoo`'s step but in place.

    Parameters
    ----------
    params : iterable of tensors or dicts
        Parameters or parameter groups; every setting below may be given per group.
    lr : float
        Learning rate (schedulers from ``torch.optim.lr_scheduler`` change it).
    momentum, nesterov, weight_decay
        As :func:`curvature.optim.shampoo`.
    block_size : int, optional
        Tile size (Distributed Shampoo's blocking).
    beta2, eps, update_freq, start, grafting, max_dim
        :class:`curvature.Shampoo`'s settings (and likewise ``graft_beta2``,
        ``graft_eps``, ``root_method``, ``max_failures``, ``bias_correction``),
        read when a parameter's preconditioner is built (its first step, or
        ``load_state_dict``).

    Examples
    --------
    >>> import torch
    >>> from curvature.torch import Shampoo
    >>> torch.manual_seed(0)                                  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 3, dtype=torch.float64)
    >>> opt = Shampoo(model.parameters(), lr=0.1, momentum=0.9, eps=1e-6)
    >>> X, y = torch.randn(32, 4, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)
    >>> before = torch.nn.functional.mse_loss(model(X), y).item()
    >>> for _ in range(20):
    ...     opt.zero_grad()
    ...     torch.nn.functional.mse_loss(model(X), y).backward()
    ...     opt.step()
    >>> torch.nn.functional.mse_loss(model(X), y).item() < before
    True
    """

    _CLASS = _Shampoo
    _SETTINGS = ("beta2", "eps", "update_freq", "start", "grafting", "max_dim", "graft_beta2",
                 "graft_eps", "root_method", "max_failures", "bias_correction")

    def __init__(self, params, lr: float = 1e-3, *, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 block_size: int | None = None, beta2: float = 1.0, eps: float = 1e-12,
                 update_freq: int = 1, start: int = 1, grafting: str | None = "adam",
                 max_dim: int = 2048, graft_beta2: float = 0.999, graft_eps: float = 1e-8,
                 root_method: str = "auto", max_failures: int = 5, bias_correction: bool = True):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        block_size=block_size, beta2=beta2, eps=eps, update_freq=update_freq,
                        start=start, grafting=grafting, max_dim=max_dim,
                        graft_beta2=graft_beta2, graft_eps=graft_eps, root_method=root_method,
                        max_failures=max_failures, bias_correction=bias_correction)
        self._check_settings(defaults)
        super().__init__(params, defaults)


class SOAP(_PerParameter):
    """SOAP (Vyas et al. 2024): Adam in the eigenbasis of Shampoo's factors, for ``torch.optim``.

    One :class:`curvature.SOAP` per parameter; then decoupled weight decay
    and the rate (and optional extra momentum), as :func:`curvature.optim.soap`.

    Parameters
    ----------
    params : iterable of tensors or dicts
        Parameters or parameter groups.
    lr : float
        Learning rate.
    weight_decay, momentum, nesterov
        As :func:`curvature.optim.soap` (SOAP keeps its own first moment ``beta1``).
    beta1, beta2, eps, precondition_frequency, shampoo_beta, max_dim, precondition_1d, rotate
        :class:`curvature.SOAP`'s settings, read when the preconditioner is built.

    Examples
    --------
    >>> import torch
    >>> from curvature.torch import SOAP
    >>> w = torch.nn.Parameter(torch.ones(2, 2, dtype=torch.float64))
    >>> opt = SOAP([w], lr=0.01)
    >>> w.grad = torch.ones(2, 2, dtype=torch.float64)
    >>> opt.step()
    >>> w.detach()             # as curvature.optim.soap: the rank-1 gradient is one rotated entry
    tensor([[0.9950, 0.9950],
            [0.9950, 0.9950]], dtype=torch.float64)
    """

    _CLASS = _SOAP
    _SETTINGS = ("beta1", "beta2", "eps", "precondition_frequency", "shampoo_beta", "max_dim",
                 "precondition_1d", "rotate")

    def __init__(self, params, lr: float = 3e-3, *, weight_decay: float = 0.0,
                 momentum: float = 0.0, nesterov: bool = False, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, precondition_frequency: int = 10,
                 shampoo_beta: float | None = None, max_dim: int = 10000,
                 precondition_1d: bool = False, rotate: bool = True):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        beta1=beta1, beta2=beta2, eps=eps,
                        precondition_frequency=precondition_frequency,
                        shampoo_beta=shampoo_beta, max_dim=max_dim,
                        precondition_1d=precondition_1d, rotate=rotate)
        self._check_settings(defaults)
        super().__init__(params, defaults)
