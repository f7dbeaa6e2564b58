"""The import paths of modules that moved when linsolve was laid out by method family.

``from linsolve.omega import OmegaBandit`` and the like keep working: each
old path names the module at its new place (the CHANGELOG lists them).
"""

from __future__ import annotations

import importlib
import sys

MOVED = {
    "constrained": "sketch.constrained",
    "omega": "tuning.omega",
    "omega_bandits": "tuning.tsallis",
    "omega_contextual": "tuning.contextual",
    "operators": "core.operators",
    "pcg": "krylov.pcg",
    "sketched_newton": "sketch.newton",
    "sor": "stationary.sor",
}
"""Old module (under ``linsolve``) -> its new place."""

for _old, _new in MOVED.items():
    sys.modules.setdefault(f"linsolve.{_old}",
                           importlib.import_module(f"linsolve.{_new}"))
