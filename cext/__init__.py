"""Kernels only: Numba for the CPU, CuPy for the GPU, an array-API reference."""

from .layouts import DiaLayout, csr_to_dia
from .registry import KERNEL_NAMES, KernelSet, backend_name, kernels_for

__all__ = ["KERNEL_NAMES", "DiaLayout", "KernelSet", "backend_name", "csr_to_dia", "kernels_for"]
