"""Without PyTorch this package cannot be imported: its doctests are not collected then
(``tests/curvature/test_torch_optim.py`` reports the skip, with the reason)."""

import importlib

try:
    importlib.import_module("torch")
    collect_ignore_glob: list[str] = []
except ImportError:
    collect_ignore_glob = ["*.py"]
