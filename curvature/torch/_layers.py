"""K-FAC and MKOR as ``torch.optim`` optimizers: layer statistics from module hooks.

K-FAC and MKOR precondition a dense layer ``s = W a + b`` from its inputs
``a`` and the gradients of each example's loss with respect to its outputs
``s``. Here they are collected by hooks on ``torch.nn.Linear`` modules (the
only layer type supported; inputs of any rank, ``(..., in_features)``,
are flattened to rows): a forward hook keeps the layer's input and puts a
gradient hook on its output. Only passes in training mode with gradients
enabled are recorded; a forward pass without a backward pass is ignored.
Several forward/backward passes before one ``step`` (gradient
accumulation) are concatenated.

Per-example output gradients: backpropagation gives ``d loss / d s``; for a
loss that is the mean over the ``n`` rows of the batch (``loss_reduction=
"mean"``, PyTorch's default) each example's own gradient is ``n`` times that,
for a sum (``"sum"``) it is the gradient itself -- the scaling
:func:`curvature.optim.scale_by_kfac` documents.

The directions come from :func:`curvature.optim._kfac.kfac_directions` and
:func:`curvature.optim._mkor.mkor_directions` over live objects, with the
gradients joined and split by the functions :mod:`curvature.optim._layers`
uses (layout ``"out_in"``, ``nn.Linear``'s). Parameters of the optimizer
that belong to no hooked layer get their plain gradient (then momentum,
weight decay and the rate), as in :mod:`curvature.optim`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ..kronecker._kron import check_positive
from ..kronecker.kfac import KFAC as _KFAC
from ..kronecker.mkor import MKOR as _MKOR
from ..optim._call import restore
from ..optim._kfac import kfac_directions
from ..optim._layers import joined_gradient, split_direction
from ..optim._mkor import mkor_directions
from ._base import CurvatureOptimizer, xp_of

__all__ = ["KFAC", "MKOR"]

_REDUCTIONS = ("mean", "sum")


def _settings_of(cls, group) -> dict:
    """The entries of ``group`` that are keyword settings of ``cls`` (a group may set any
    of them, whether or not the optimizer's defaults did)."""
    names = [name for name, parameter in inspect.signature(cls).parameters.items()
             if parameter.kind is parameter.KEYWORD_ONLY and name != "bias"]
    return {name: group[name] for name in names if name in group}


def _linear_modules(owner: str, modules) -> list:
    if isinstance(modules, torch.nn.Linear):
        return [modules]
    if isinstance(modules, torch.nn.Module):
        return [m for m in modules.modules() if isinstance(m, torch.nn.Linear)]
    try:
        found = list(modules)
    except TypeError:
        raise TypeError(f"{owner}: modules must be a torch.nn.Module (its nn.Linear layers are "
                        f"used) or a list of nn.Linear, got {type(modules).__name__}") from None
    for i, m in enumerate(found):
        if not isinstance(m, torch.nn.Linear):
            raise TypeError(f"{owner}: modules[{i}] is a {type(m).__name__}; only torch.nn.Linear "
                            "layers are supported (leave other layers out: their parameters "
                            "get the plain gradient)")
    return found


class _Layer:
    """A hooked ``nn.Linear``: its parameters and the statistics recorded since the last step."""

    __slots__ = ("module", "weight", "bias", "name", "records")

    def __init__(self, module, weight, bias, name):
        self.module, self.weight, self.bias, self.name = module, weight, bias, name
        self.records: list[list] = []      # [inputs, output grads or None] per pass


class _LayerOptimizer(CurvatureOptimizer):
    """K-FAC and MKOR: one curvature object per hooked ``nn.Linear`` (owned by its weight)."""

    _KEY = "layer"
    _CLASS: Any = None

    def __init__(self, params, modules, defaults):
        owner = type(self).__name__
        if defaults["loss_reduction"] not in _REDUCTIONS:
            raise ValueError(f"{owner}: loss_reduction must be one of {_REDUCTIONS}, got "
                             f"{defaults['loss_reduction']!r}")
        self._make(defaults)(1, 1, True)                     # checks the method's settings
        linear = _linear_modules(owner, modules)
        super().__init__(params, defaults)
        group_of = {p: i for i, g in enumerate(self.param_groups) for p in g["params"]}
        self._layers: dict[torch.Tensor, _Layer] = {}
        self._handles = []
        for module in linear:
            weight, bias = module.weight, module.bias
            if weight not in group_of or weight in self._layers:
                continue                                   # frozen, or listed twice
            name = f"layer {len(self._layers)} ({module.__class__.__name__}" \
                   f"({module.in_features}, {module.out_features}))"
            if bias is not None and bias in group_of and group_of[bias] != group_of[weight]:
                raise ValueError(f"{owner}: the weight and the bias of {name} are in different "
                                 "parameter groups; K-FAC and MKOR precondition them together: "
                                 "put both in one group")
            layer = _Layer(module, weight, bias if bias is not None and bias in group_of
                           else None, name)
            self._layers[weight] = layer
            self._handles.append(module.register_forward_hook(self._forward_hook(layer)))
        if not self._layers:
            raise ValueError(f"{owner}: none of the nn.Linear layers of modules has its weight "
                             "among params: nothing to precondition")

    # ------------------------------------------------------------- hooks ----
    def _forward_hook(self, layer):
        reduction = self.defaults["loss_reduction"]

        def hook(module, inputs, output):
            if not (module.training and torch.is_grad_enabled() and output.requires_grad):
                return
            a = inputs[0].detach()
            record = [a.reshape(-1, a.shape[-1]), None]
            rows = record[0].shape[0]

            def grad_hook(grad):
                g = grad.detach().reshape(-1, grad.shape[-1])
                record[1] = g * rows if reduction == "mean" else g
            output.register_hook(grad_hook)
            layer.records.append(record)
        return hook

    def remove_hooks(self) -> None:
        """Detach the hooks from the modules (the optimizer then needs :meth:`observe`)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __del__(self):
        # the hooks hold the layers' records, not the optimizer: left on the modules they
        # would keep recording every training forward pass after the optimizer is gone
        try:
            self.remove_hooks()
        except Exception:  # interpreter shutdown: the modules may be gone already
            pass

    def observe(self, module, inputs, output_grads) -> None:
        """Record one batch of ``module``'s inputs ``(rows, in_features)`` and per-example
        output gradients ``(rows, out_features)`` by hand: what the hooks do, for a
        forward pass the hooks do not see (a functional model, recorded data)."""
        layer = self._layers.get(getattr(module, "weight", None))
        if layer is None or layer.module is not module:
            raise ValueError(f"{type(self).__name__}.observe: module is not one of the "
                             "optimizer's nn.Linear layers")
        layer.records.append([inputs, output_grads])

    def _statistics(self, layer):
        complete = [(a, g) for a, g in layer.records if g is not None]
        if not complete:
            raise ValueError(f"{type(self).__name__}: {layer.name} has a gradient but no "
                             "recorded forward and backward pass since the last step; run the "
                             "model in training mode with gradients enabled before step() "
                             "(or feed observe())")
        if len(complete) == 1:
            return complete[0]
        return torch.cat([a for a, _ in complete]), torch.cat([g for _, g in complete])

    # ------------------------------------------------------------ method ----
    def _make(self, group):
        raise NotImplementedError

    def _owners(self, group):
        return [p for p in group["params"] if p in self._layers]

    def _build(self, group, owner):
        layer = self._layers[owner]
        return self._make(group)(layer.module.in_features, layer.module.out_features,
                                 layer.bias is not None)

    def _dump(self, live):
        return live.state_dict()

    def _load(self, group, owner, data, where):
        return restore(self._build(group, owner), data, where)

    def _method(self, group, objects, inputs, outputs, joined, names, loss):
        raise NotImplementedError

    def _directions(self, group, loss):
        owner = type(self).__name__
        out = {}
        layers, objects, inputs, outputs, joined = [], [], [], [], []
        for i, p in enumerate(group["params"]):
            g = self._grad(owner, p, f"parameter {i} of its group")
            if g is None:
                continue
            if p in self._layers:
                layer = self._layers[p]
                bias_grad = None
                if layer.bias is not None:
                    bias_grad = self._grad(owner, layer.bias, f"the bias of {layer.name}")
                    if bias_grad is None:
                        raise ValueError(f"{owner}: {layer.name} has a weight gradient but no "
                                         "bias gradient")
                a, s = self._statistics(layer)
                layers.append(layer)
                objects.append(self.live(group, p))
                inputs.append(a)
                outputs.append(s)
                joined.append(joined_gradient(xp_of(g), g, bias_grad, "out_in"))
            elif not any(layer.bias is p for layer in self._layers.values()):
                out[p] = g                                # in no hooked layer: plain gradient
        if layers:
            names = [f"{owner}: {layer.name}" for layer in layers]
            directions = self._method(group, objects, inputs, outputs, joined, names, loss)
            for layer, D in zip(layers, directions):
                W, b = split_direction(xp_of(D), D, layer.module.in_features,
                                       layer.bias is not None, "out_in")
                out[layer.weight] = W
                if b is not None:
                    out[layer.bias] = b
        return out

    def step(self, closure=None):
        try:
            return super().step(closure)
        finally:
            for layer in self._layers.values():
                layer.records.clear()


class KFAC(_LayerOptimizer):
    """K-FAC (Martens and Grosse 2015) on the ``nn.Linear`` layers of a model, for ``torch.optim``.

    Each hooked layer gets a :class:`curvature.KFAC` (factors ``A = E[a a']``
    with a ones column for the bias, ``G = E[g g']``, moving averages; eigen
    mode solves ``(A kron G + damping I)^{-1}`` exactly); KL clipping over a
    group's layers with the group's current rate; then heavy-ball momentum,
    decoupled weight decay and the rate: :func:`curvature.optim.kfac`'s step,
    in place.

    Parameters
    ----------
    params : iterable of tensors or dicts
        Parameters or groups; those in no hooked layer get the plain gradient.
    modules : torch.nn.Module or list of torch.nn.Linear
        The layers to precondition (a module: all its ``nn.Linear``
        submodules whose weight is among ``params``). A layer's weight and
        bias must be in one group.
    lr : float
        Learning rate.
    momentum, nesterov, weight_decay, kl_clip
        As :func:`curvature.optim.kfac` (``kl_clip`` per group, over its layers).
    loss_reduction : {"mean", "sum"}
        How the loss combines the rows of a batch (see the module notes).
    **kfac_settings
        :class:`curvature.KFAC`'s ``damping``, ``decay``, ``mode``,
        ``pi_heuristic``, ``inverse_update_freq`` (per group too; read when
        a layer's object is built).

    Examples
    --------
    >>> import torch
    >>> from curvature.torch import KFAC
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> opt = KFAC(model.parameters(), model, lr=0.1, momentum=0.9, damping=1e-2, kl_clip=1e-2)
    >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> before = torch.nn.functional.cross_entropy(model(X), y).item()
    >>> for _ in range(10):
    ...     opt.zero_grad()
    ...     torch.nn.functional.cross_entropy(model(X), y).backward()
    ...     opt.step()
    >>> torch.nn.functional.cross_entropy(model(X), y).item() < before
    True
    """

    def __init__(self, params, modules, lr: float = 1e-2, *, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, kl_clip: float | None = None,
                 loss_reduction: str = "mean", **kfac_settings):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        kl_clip=kl_clip, loss_reduction=loss_reduction, **kfac_settings)
        if kl_clip is not None:
            check_positive("kl_clip", kl_clip)
        super().__init__(params, modules, defaults)

    def _make(self, group):
        settings = _settings_of(_KFAC, group)
        return lambda i, o, bias: _KFAC(i, o, bias=bias, **settings)

    def _method(self, group, objects, inputs, outputs, joined, names, loss):
        lr = float(group["lr"])
        # at a zero rate (a schedule's) the step is zero whatever the clipping: none needed
        kl_clip = group["kl_clip"] if lr > 0.0 else None
        return kfac_directions(objects, inputs, outputs, joined, names, kl_clip,
                               None if kl_clip is None else lr)


class MKOR(_LayerOptimizer):
    """MKOR (Mozaffari et al. 2023) on the ``nn.Linear`` layers of a model, for ``torch.optim``.

    Each hooked layer gets a :class:`curvature.MKOR` (rank-1
    Sherman-Morrison updates of the factor inverses from the batch means of
    the inputs and output gradients; norm-matched direction); then momentum,
    decoupled weight decay and the rate: :func:`curvature.optim.mkor`'s step,
    in place. With ``hybrid=True`` pass a ``closure``: its loss feeds
    :meth:`curvature.MKOR.observe_loss` (the switch to the first-order
    direction).

    Parameters
    ----------
    params, modules, lr, momentum, nesterov, weight_decay, loss_reduction
        As :class:`KFAC`.
    **mkor_settings
        :class:`curvature.MKOR`'s settings (``decay``, ``form``,
        ``stabilizer_threshold``, ``norm_match``, ``hybrid``, ...).

    Examples
    --------
    >>> import torch
    >>> from curvature.torch import MKOR
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(4, 3, dtype=torch.float64)
    >>> opt = MKOR(model.parameters(), model, lr=0.1, stabilizer_threshold=10.0)
    >>> X, y = torch.randn(64, 4, dtype=torch.float64), torch.randn(64, 3, dtype=torch.float64)
    >>> before = torch.nn.functional.mse_loss(model(X), y).item()
    >>> for _ in range(10):
    ...     opt.zero_grad()
    ...     torch.nn.functional.mse_loss(model(X), y).backward()
    ...     opt.step()
    >>> torch.nn.functional.mse_loss(model(X), y).item() < before
    True
    """

    def __init__(self, params, modules, lr: float = 1e-2, *, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 loss_reduction: str = "mean", **mkor_settings):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        loss_reduction=loss_reduction, **mkor_settings)
        super().__init__(params, modules, defaults)

    def _make(self, group):
        settings = _settings_of(_MKOR, group)
        return lambda i, o, bias: _MKOR(i, o, bias=bias, **settings)

    def _method(self, group, objects, inputs, outputs, joined, names, loss):
        return mkor_directions(objects, inputs, outputs, joined, names,
                               None if loss is None else float(loss))
