"""Compile CUDA C++ with NVRTC through ctypes: no GPU, no CuPy needed.

NVRTC comes from the pip package ``nvidia-cuda-nvrtc-cu12`` (a ``test``
extra). It compiles to PTX for a virtual architecture, which needs no
device, so CI without a GPU still catches every syntax and type error in
the kernel sources that CuPy would otherwise report only at first launch.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache

NVRTC_SUCCESS = 0


@dataclass(frozen=True)
class CompileResult:
    """Outcome of one NVRTC compilation."""

    status: int
    log: str
    ptx: str
    lowered_names: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.status == NVRTC_SUCCESS


# the pip wheels: nvidia-cuda-nvrtc-cu12 installs nvidia/cuda_nvrtc/lib, the CUDA 13
# wheel (nvidia-cuda-nvrtc 13.x, what cupy-cuda13x pulls in) nvidia/cu13/lib
_PACKAGES = ("nvidia.cuda_nvrtc", "nvidia.cu13")


def _candidate_dirs() -> list[str]:
    dirs = []
    for package in _PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        # A namespace package has no __file__ (spec.origin None): use its path entries.
        for entry in list(spec.submodule_search_locations or []):
            dirs.append(os.path.join(entry, "lib"))
        if spec.origin and spec.origin != "namespace":
            dirs.append(os.path.join(os.path.dirname(spec.origin), "lib"))
    # a CUDA toolkit on the machine (the device machines carry one)
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    dirs += [os.path.join(home, "lib64"), os.path.join(home, "lib")]
    return dirs


@lru_cache(maxsize=None)
def find_library() -> str | None:
    """Path of ``libnvrtc.so`` (CUDA 12 or 13) from a pip wheel or a CUDA toolkit, or None."""
    for directory in _candidate_dirs():
        for pattern in ("libnvrtc.so.12", "libnvrtc.so.13", "libnvrtc.so.*", "libnvrtc.so"):
            for path in sorted(glob.glob(os.path.join(directory, pattern))):
                if "builtins" not in path and ".alt." not in path:
                    return path
    return None


@lru_cache(maxsize=None)
def load() -> ctypes.CDLL:
    """The NVRTC shared library with argument types declared; OSError if absent."""
    path = find_library()
    if path is None:
        raise OSError("libnvrtc.so not found: pip install nvidia-cuda-nvrtc-cu12")
    # libnvrtc dlopens libnvrtc-builtins by soname; load it first from the
    # same folder in case the wheel's RPATH does not cover it.
    for builtins in sorted(glob.glob(os.path.join(os.path.dirname(path),
                                                  "libnvrtc-builtins.so.*"))):
        if ".alt." not in builtins:
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
            break
    lib = ctypes.CDLL(path)
    prog_p = ctypes.POINTER(ctypes.c_void_p)
    c_str = ctypes.c_char_p
    signatures = {
        "nvrtcVersion": [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
        "nvrtcCreateProgram": [prog_p, c_str, c_str, ctypes.c_int,
                               ctypes.POINTER(c_str), ctypes.POINTER(c_str)],
        "nvrtcAddNameExpression": [ctypes.c_void_p, c_str],
        "nvrtcCompileProgram": [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(c_str)],
        "nvrtcGetProgramLogSize": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)],
        "nvrtcGetProgramLog": [ctypes.c_void_p, ctypes.c_char_p],
        "nvrtcGetPTXSize": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)],
        "nvrtcGetPTX": [ctypes.c_void_p, ctypes.c_char_p],
        "nvrtcGetLoweredName": [ctypes.c_void_p, c_str, ctypes.POINTER(c_str)],
        "nvrtcDestroyProgram": [prog_p],
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def version() -> tuple[int, int]:
    """NVRTC (CUDA) version as ``(major, minor)``."""
    lib = load()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _check(lib, status: int, what: str) -> None:
    if status != NVRTC_SUCCESS:
        raise RuntimeError(f"{what} failed: {lib.nvrtcGetErrorString(status).decode()}")


def compile_source(source: str, options=(), name_expressions=(),
                   name: str = "kernel.cu") -> CompileResult:
    """Compile ``source`` to PTX with ``options``; report status, log and lowered names.

    ``name_expressions`` are registered with ``nvrtcAddNameExpression`` as
    ``cupy.RawModule(name_expressions=...)`` does, so every template
    instantiation the runtime asks for is compiled here too.
    """
    lib = load()
    program = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(),
                                       0, None, None), "nvrtcCreateProgram")
    try:
        for expression in name_expressions:
            _check(lib, lib.nvrtcAddNameExpression(program, expression.encode()),
                   f"nvrtcAddNameExpression({expression!r})")
        encoded = [option.encode() for option in options]
        array = (ctypes.c_char_p * max(1, len(encoded)))(*encoded)
        status = lib.nvrtcCompileProgram(program, len(encoded), array)
        log_size = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetProgramLogSize(program, ctypes.byref(log_size)), "log size")
        log_buffer = ctypes.create_string_buffer(max(1, log_size.value))
        _check(lib, lib.nvrtcGetProgramLog(program, log_buffer), "log")
        log = log_buffer.value.decode(errors="replace")
        ptx, lowered = "", {}
        if status == NVRTC_SUCCESS:
            ptx_size = ctypes.c_size_t()
            _check(lib, lib.nvrtcGetPTXSize(program, ctypes.byref(ptx_size)), "PTX size")
            ptx_buffer = ctypes.create_string_buffer(ptx_size.value)
            _check(lib, lib.nvrtcGetPTX(program, ptx_buffer), "PTX")
            ptx = ptx_buffer.value.decode(errors="replace")
            for expression in name_expressions:
                mangled = ctypes.c_char_p()
                _check(lib, lib.nvrtcGetLoweredName(program, expression.encode(),
                                                    ctypes.byref(mangled)),
                       f"nvrtcGetLoweredName({expression!r})")
                lowered[expression] = mangled.value.decode()
        return CompileResult(status, log, ptx, lowered)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))
