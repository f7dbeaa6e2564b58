"""CuPy GPU kernels; the registry hands this module out for CuPy arrays.

Importing it does not import CuPy: each kernel imports CuPy when first
called, and the CUDA sources are plain strings (``SOURCE`` in each module)
that the test suite compile-checks with NVRTC on machines without a GPU.
Kernels without a CuPy version here (the SOR sweeps) fall back to
:mod:`cext.reference` through the registry.
"""

from .blas1 import cg_update_p, cg_update_xr, dot
from .dia import dia_spmv, dia_spmv_dot
from .spmv import csr_spmv, csr_spmv_dot

__all__ = [
    "cg_update_p",
    "cg_update_xr",
    "csr_spmv",
    "csr_spmv_dot",
    "dia_spmv",
    "dia_spmv_dot",
    "dot",
]
