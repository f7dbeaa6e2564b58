"""The curvature optimizers as ``torch.optim.Optimizer`` subclasses (needs PyTorch).

``Shampoo``, ``SOAP``, ``KFAC``, ``MKOR`` and ``MFAC`` run the same code as
:mod:`curvature.optim` -- the curvature objects, and the functions that
turn their output into a direction -- on tensors, keeping the objects alive
between steps instead of rebuilding them from a state: parameter groups
with per-group settings, ``step(closure=None)``, ``zero_grad``,
``state_dict()`` / ``load_state_dict()`` in torch's layout, any
``torch.optim.lr_scheduler``. Parameters are updated in place, the step
runs under ``torch.no_grad()``, on the parameters' device (CPU; CUDA through
the same array-API code), float32 or float64. K-FAC and MKOR collect their
layer statistics with hooks on ``torch.nn.Linear`` modules. Importing
:mod:`curvature` does not import this module or PyTorch. See
``docs/optimizers.md``.

Examples
--------
>>> import torch
>>> from curvature.torch import Shampoo
>>> model = torch.nn.Linear(3, 2)
>>> opt = Shampoo(model.parameters(), lr=1e-2, momentum=0.9, eps=1e-4)
>>> scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
>>> model(torch.ones(4, 3)).sum().backward()
>>> opt.step(); scheduler.step()
>>> sorted(opt.state_dict()["state"][0])
['blocks', 'momentum_buffer']
"""

import importlib

__all__ = ["KFAC", "MFAC", "MKOR", "SOAP", "Shampoo"]

# Loaded on first use rather than re-exported here: PyTorch is optional, and this package
# must import without it (pytest collects its doctests through it; the error then says
# what to install instead of failing inside a submodule).
_MODULES = {"KFAC": "._layers", "MKOR": "._layers", "MFAC": "._mfac", "SOAP": "._per_parameter",
            "Shampoo": "._per_parameter"}


def __getattr__(name):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(_MODULES[name], __name__)
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        raise ImportError(f"curvature.torch.{name} needs PyTorch, which is not installed: "
                          "pip install 'curvature-linsolve[torch]' (or torch itself)") from error
    value = globals()[name] = getattr(module, name)
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
