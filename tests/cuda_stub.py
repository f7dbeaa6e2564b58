"""Checking the CuPy launchers without a GPU: the PTX's parameter kinds, and a stand-in for cupy.

``ptx_entries`` reads each kernel's parameter kinds from NVRTC's PTX;
``fake_cupy`` is a ``cupy`` module whose kernels record the kinds of the
arguments a launcher passes (``u64`` for arrays and int64, ``f64``, ``u32``
for int32; a Python scalar is recorded by its type name, which never
matches). A test compares the two: a launcher passing a Python int where a
kernel wants an int32 fails here, not on the device.
"""

from __future__ import annotations

import re
import types

import numpy as np

_KINDS = {np.int64: "u64", np.float64: "f64", np.int32: "u32"}


def ptx_entries(ptx: str) -> dict[str, list[str]]:
    """``{kernel name in the PTX: [parameter kinds]}``."""
    return {m.group(1): re.findall(r"\.param\s+\.(\w+)", m.group(2))
            for m in re.finditer(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S)}


class FakeKernel:
    """Records ``(name, grid, block, kinds)`` per launch (and the raw arguments in ``raw``)."""

    def __init__(self, name, calls, raw=None):
        self.name, self.calls, self.raw = name, calls, raw

    def __call__(self, grid, block, args):
        kinds = ["u64" if isinstance(arg, np.ndarray) else _KINDS.get(type(arg),
                                                                        type(arg).__name__)
                 for arg in args]
        self.calls.append((self.name, grid, block, kinds))
        if self.raw is not None:
            self.raw.append((self.name, grid, args))
        if self.name.startswith("sum_partials"):
            args[2][...] = 0.0  # the reductions' result, read back by the launcher


def fake_cupy(calls, raw=None, *, options=None) -> types.ModuleType:
    """A ``cupy`` module for the launchers: ``RawModule`` hands out :class:`FakeKernel`;
    ``options``, when given, must be what the launcher compiles with."""
    fake = types.ModuleType("cupy")

    class RawModule:
        def __init__(self, code, options=(), name_expressions=()):
            if expected is not None:
                assert options == expected
            self.name_expressions = name_expressions

        def get_function(self, name):
            assert name in self.name_expressions
            return FakeKernel(name.split("<")[0], calls, raw)

    class Device:
        id = 0

        def __init__(self, device_id=0):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    expected = options
    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(Device=Device)
    fake.empty, fake.asarray, fake.asnumpy, fake.float64 = (np.empty, np.asarray, np.asarray,
                                                            np.float64)
    return fake
