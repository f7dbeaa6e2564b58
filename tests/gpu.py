"""The one gate of the GPU tests: CuPy with a CUDA device, or a clean skip -- or a failure.

``make gpu-check`` sets ``LINSOLVE_REQUIRE_GPU=1``: on the device machine a
broken CuPy install or an unreachable device must fail the run, not turn
every GPU module into a silent skip, which would hide it. Elsewhere (CI, a
laptop) the modules skip with the reason.
"""

from __future__ import annotations

import os

import pytest

from cext.cupy.availability import unavailable_reason

REQUIRE_ENV = "LINSOLVE_REQUIRE_GPU"


def required() -> bool:
    """Whether this run must have a GPU (``LINSOLVE_REQUIRE_GPU`` set to anything but 0/empty)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def cupy_or_skip():
    """The ``cupy`` module; skips the calling module (fails it under the switch) without a GPU.

    Call at module level of a GPU test module.
    """
    reason = unavailable_reason()
    if reason is not None:
        if required():
            pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
    import cupy

    return cupy
