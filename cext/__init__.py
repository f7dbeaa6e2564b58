"""Kernels only: Numba for the CPU, CuPy for the GPU, an array-API reference."""

from .layouts import DiaLayout, check_csr_structure, csr_to_dia
from .registry import KERNEL_NAMES, KernelSet, backend_name, kernels_for

__all__ = ["KERNEL_NAMES", "DiaLayout", "KernelSet", "backend_name", "check_csr_structure",
           "csr_to_dia", "kernels_for"]

from ._version import __version__  # noqa: E402  (after __all__: not part of it)
