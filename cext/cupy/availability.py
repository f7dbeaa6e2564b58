"""Whether CuPy and a CUDA device can be used here, without importing CuPy unless asked.

The GPU tests (``tests/gpu.py``) and ``python -m bench gpu`` ask the same
question; this is the one answer.
"""

from __future__ import annotations


def unavailable_reason() -> str | None:
    """None when CuPy imports and sees a CUDA device, else why not.

    Examples
    --------
    >>> reason = unavailable_reason()
    >>> reason is None or isinstance(reason, str)
    True
    """
    try:
        import cupy
    except Exception as error:  # ImportError, or a CUDA library that fails to load
        return f"cupy does not import: {type(error).__name__}: {error}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError without a driver
        return f"no CUDA runtime: {type(error).__name__}: {error}"
    return None if count > 0 else "no CUDA device"
