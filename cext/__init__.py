"""Kernels only: Numba for the CPU, CuPy for the GPU, an array-API reference."""

from .layouts import DiaLayout, check_csr_structure, csr_to_dia
from .registry import KERNEL_NAMES, KernelSet, backend_name, kernels_for

__all__ = ["KERNEL_NAMES", "DiaLayout", "KernelSet", "backend_name", "check_csr_structure",
           "csr_to_dia", "kernels_for"]


def _installed_version() -> str:
    """The installed distribution's version; "0+unknown" in a tree never installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("curvature-linsolve")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()
