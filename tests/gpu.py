"""The one gate of the GPU tests: CuPy with a CUDA device, or a clean skip -- or a failure.

``make gpu-check`` sets ``LINSOLVE_REQUIRE_GPU=1``: on the device machine a
broken CuPy install or an unreachable device must fail the run, not turn
every GPU module into a silent skip (GPU_REVIEW item 14). Elsewhere (CI, a
laptop) the modules skip with the reason.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ENV = "LINSOLVE_REQUIRE_GPU"


def required() -> bool:
    """Whether this run must have a GPU (``LINSOLVE_REQUIRE_GPU`` set to anything but 0/empty)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def unavailable_reason() -> str | None:
    """None when CuPy imports and sees a CUDA device, else why not."""
    try:
        import cupy
    except Exception as error:  # ImportError, or a CUDA library that fails to load
        return f"cupy does not import: {type(error).__name__}: {error}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError without a driver
        return f"no CUDA runtime: {type(error).__name__}: {error}"
    return None if count > 0 else "no CUDA device"


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
