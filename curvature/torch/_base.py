"""What every ``curvature.torch`` optimizer shares: the step around the method, and its state.

A method (Shampoo, SOAP, K-FAC, MKOR, M-FAC) keeps *live* curvature
objects -- the same classes :mod:`curvature.optim` rebuilds from plain data
at every ``update`` -- and asks them for a direction per parameter, through
the functions :mod:`curvature.optim` itself calls (one implementation of each
method). This module then applies what :func:`curvature.optim.trace`,
:func:`curvature.optim.add_decayed_weights` and
:func:`curvature.optim.scale_by_learning_rate` apply, in the same arithmetic
order (so a torch run and a NumPy run of the interface round alike), but in
place on the parameters and the momentum buffers:

    b <- momentum * b + D                  (torch.optim.SGD's buffer, from zero)
    u <- b, or D + momentum * b (Nesterov)
    u <- u + weight_decay * p              (decoupled, AdamW's form)
    p <- p + (-lr * u)

``Tensor.add_(x, alpha=...)`` is avoided on purpose: on the CPU it is a
fused multiply-add, which rounds differently from NumPy's ``p + (-lr * u)``.

State follows ``torch.optim``'s conventions: ``state_dict()`` is
``{"state": {index: {...}}, "param_groups": [...]}`` with tensors in it. The
curvature objects' own ``state_dict()`` (copies) sit under one key of the
state of the parameter that owns them. ``load_state_dict`` checks the whole
dict against the parameters -- groups, shapes, every curvature entry
through the objects' own ``load_state_dict``, the one state gate -- before
anything is assigned, and never casts the curvature entries (statistics that
a method keeps in float64 for float32 parameters stay float64).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any

import torch
from array_api_compat import array_namespace

__all__ = ["CurvatureOptimizer", "rate", "xp_of"]

_STEP_SETTINGS = ("lr", "momentum", "weight_decay")


def rate(owner: str, name: str, value) -> float:
    """A finite real >= 0 (learning rate, momentum, weight decay), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{owner}: {name} must be a number or a one-element tensor, got "
                             f"shape {tuple(value.shape)}")
        value = value.item()
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{owner}: {name} must be finite and >= 0, got {value!r}")
    return value


def xp_of(tensor: torch.Tensor):
    """The array-API namespace the curvature objects use for ``tensor`` (array_api_compat's
    torch)."""
    return array_namespace(tensor)


def on_device(device):
    """A context where tensor factories (``xp.zeros``, ``xp.eye`` in the curvature objects)
    create on ``device``: ``torch.device(device)``, or nothing where that is the default
    already (the context intercepts every torch call: a tenth of a small step's time)."""
    if torch.device(device) == torch.get_default_device():
        return contextlib.nullcontext()
    return torch.device(device)


def _to_device(value, device):
    """``value`` with every tensor moved to ``device`` (no dtype change; no copy if there)."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


class CurvatureOptimizer(torch.optim.Optimizer):
    """Base of the ``curvature.torch`` optimizers (see the module notes).

    Subclasses set ``_KEY`` (the state entry holding the curvature state) and
    implement:

    - ``_owners(group)``: the parameters of ``group`` that own curvature
      objects, in a fixed order;
    - ``_build(group, owner)``: fresh live objects for one owner;
    - ``_dump(live)`` / ``_load(group, owner, data, where)``: the objects'
      state as plain data, and live objects rebuilt from it (errors name
      ``where``);
    - ``_directions(group, loss)``: ``{param: direction}`` for this step,
      built from ``self._live[owner]`` (which the base class fills on demand).
    """

    _KEY = "curvature"

    def __init__(self, params, defaults: dict[str, Any]):
        owner = type(self).__name__
        for name in _STEP_SETTINGS:
            rate(owner, name, defaults[name])
        super().__init__(params, defaults)
        self._live: dict[torch.Tensor, Any] = {}

    # ---------------------------------------------------------------- hooks --
    def _owners(self, group) -> list:
        return [p for p in group["params"]]

    def _build(self, group, owner):
        raise NotImplementedError

    def _dump(self, live):
        raise NotImplementedError

    def _load(self, group, owner, data, where: str):
        raise NotImplementedError

    def _directions(self, group, loss) -> dict:
        raise NotImplementedError

    # ----------------------------------------------------------- the step ----
    def live(self, group, owner):
        """The live curvature objects of ``owner`` (built at first use)."""
        live = self._live.get(owner)
        if live is None:
            with on_device(owner.device):
                live = self._live[owner] = self._build(group, owner)
        return live

    @torch.no_grad()
    def step(self, closure=None):
        """One optimisation step; ``closure`` (re-evaluates the model, returns the loss) optional.

        Returns the closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            self._check_group(index, group)
            devices = {p.device for p in group["params"]}
            device = devices.pop() if len(devices) == 1 else None
            if device is None:
                raise ValueError(f"{type(self).__name__}: param_groups[{index}] holds tensors "
                                 f"on several devices ({sorted(map(str, devices))}): keep one "
                                 "group per device")
            with on_device(device):
                directions = self._directions(group, loss)
            self._apply(group, directions)
        return loss

    def _check_group(self, index, group):
        owner = type(self).__name__
        for name in _STEP_SETTINGS:
            rate(owner, f"param_groups[{index}]['{name}']", group[name])

    def _apply(self, group, directions: dict) -> None:
        """Momentum, decoupled weight decay and the rate, in place (see the module notes)."""
        lr, momentum = float(group["lr"]), float(group["momentum"])
        weight_decay, nesterov = float(group["weight_decay"]), bool(group["nesterov"])
        for p in group["params"]:
            direction = directions.get(p)
            if direction is None:
                continue
            update = direction
            if momentum > 0.0:
                state = self.state[p]
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = state["momentum_buffer"] = torch.zeros_like(p)
                buffer.mul_(momentum).add_(direction)
                update = torch.mul(buffer, momentum).add_(direction) if nesterov else buffer
            if weight_decay > 0.0:
                update = torch.mul(p, weight_decay).add_(update)
            p.add_(torch.mul(update, -lr))

    # --------------------------------------------------------------- state ---
    def _indexed(self):
        """``(index, group, param)`` in ``state_dict``'s numbering."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield index, group, p
                index += 1

    def state_dict(self) -> dict[str, Any]:
        """torch's ``{"state", "param_groups"}``; each curvature owner's entry also holds
        its objects' ``state_dict()`` (copies) under ``_KEY``."""
        packed = super().state_dict()
        for index, _, p in self._indexed():
            live = self._live.get(p)
            if live is not None:
                entry = dict(packed["state"].get(index, {}))   # not self.state[p] itself
                entry[self._KEY] = self._dump(live)
                packed["state"][index] = entry
        return packed

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``, all or nothing; ValueError naming the entry that does not
        fit these parameters (number, shapes, the curvature objects' own checks)."""
        owner = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict)
            raise ValueError(f"{owner}.load_state_dict: expected a dict with keys ['param_groups', "
                             f"'state'] (what state_dict() returns), got {keys}")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, list) or len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{owner}.load_state_dict: the state has "
                             f"{len(saved_groups) if isinstance(saved_groups, list) else '?'} "
                             f"parameter groups, this optimizer {len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved.get("params", ())) != len(group["params"]):
                raise ValueError(f"{owner}.load_state_dict: param_groups[{i}] of the state holds "
                                 f"{len(saved.get('params', ()))} parameters, this optimizer's "
                                 f"{len(group['params'])}")
        saved_keys = [key for g in saved_groups for key in g["params"]]
        id_map = {key: (index, group, p) for key, (index, group, p)
                  in zip(saved_keys, self._indexed())}
        key_of = {p: key for key, (_, _, p) in id_map.items()}
        unknown = sorted(set(saved_state) - set(id_map), key=str)
        if unknown:
            raise ValueError(f"{owner}.load_state_dict: state holds entries {unknown} that name "
                             "no parameter of the state's param_groups")
        # every check before any assignment: shapes of the per-parameter tensors, then the
        # curvature objects rebuilt from their entries (their load_state_dict checks the rest)
        live, plain = {}, {}
        for key, entry in saved_state.items():
            index, _, p = id_map[key]
            if not isinstance(entry, dict):
                raise ValueError(f"{owner}.load_state_dict: state[{key!r}] must be a dict, got "
                                 f"{type(entry).__name__}")
            buffer = entry.get("momentum_buffer")
            if buffer is not None and (not isinstance(buffer, torch.Tensor)
                                       or tuple(buffer.shape) != tuple(p.shape)):
                got = (tuple(buffer.shape) if isinstance(buffer, torch.Tensor)
                       else type(buffer).__name__)
                raise ValueError(f"{owner}.load_state_dict: state[{key!r}]['momentum_buffer'] "
                                 f"has shape {got}, parameter {index} has shape "
                                 f"{tuple(p.shape)}: the state belongs to another model")
            plain[key] = {k: v for k, v in entry.items() if k != self._KEY}
        new_groups = [dict(group, **{k: v for k, v in saved.items() if k != "params"})
                      for group, saved in zip(self.param_groups, saved_groups)]
        for group, new in zip(self.param_groups, new_groups):
            new["params"] = group["params"]
        for new in new_groups:
            for p in self._owners(new):
                key = key_of[p]
                data = saved_state.get(key, {}).get(self._KEY)
                if data is None:
                    continue
                where = f"{owner}.load_state_dict: state[{key!r}][{self._KEY!r}]"
                with on_device(p.device):
                    live[p] = self._load(new, p, _to_device(data, p.device), where)
        # a saved group without some setting (another optimizer's) keeps this one's
        merged = [dict({k: v for k, v in group.items() if k != "params"}, **saved)
                  for group, saved in zip(self.param_groups, saved_groups)]
        super().load_state_dict({"state": plain, "param_groups": merged})
        for p, entry in self.state.items():    # torch shares the loaded tensors: own them
            for k, v in list(entry.items()):
                if isinstance(v, torch.Tensor):
                    entry[k] = v.clone()
        self._live = live

    # ----------------------------------------------------------- helpers ----
    @staticmethod
    def _grad(owner: str, p, where: str):
        """``p.grad`` as a dense tensor (None without one); sparse gradients are refused."""
        g = p.grad
        if g is not None and g.is_sparse:
            raise TypeError(f"{owner}: {where} has a sparse gradient; the curvature methods "
                            "take dense gradients")
        return g

