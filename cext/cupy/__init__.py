"""CuPy GPU kernels; the registry hands this module out for CuPy arrays.

Importing it does not import CuPy: each kernel imports CuPy when first
called, and the CUDA sources are plain strings (``SOURCE`` in each module)
that the test suite compile-checks with NVRTC on machines without a GPU.
Kernels without a CuPy version here (the lexicographic SOR sweeps, the
colourings, the triangular solves) fall back to :mod:`cext.reference`
through the registry.
"""

from .bicgstab import (bicgstab_csr_spmv_dots, bicgstab_dia_spmv_dots, bicgstab_update_p,
                       bicgstab_update_s, bicgstab_update_xr, bicgstab_update_xr_scaled)
from .blas1 import cg_update_p, cg_update_xr, dot
from .block import block_cg_update, block_dots, block_update_p, csr_spmm_dot
from .dia import dia_spmv, dia_spmv_dot
from .gmres import gmres_combine, gmres_project
from .kron import kron_eigen_solve, kron_matvec
from .mfac import window_axpy_gemv_t, window_gemv, window_push_gemv
from .minres import (minres_lanczos, minres_orthogonalize, minres_update,
                     minres_update_residual)
from .sketch import countsketch_dense
from .sor import csr_residual_norm2_split, sor_run, sor_sweep_colored
from .spmv import csr_spmv, csr_spmv_dot

__all__ = [
    "bicgstab_csr_spmv_dots",
    "bicgstab_dia_spmv_dots",
    "bicgstab_update_p",
    "bicgstab_update_s",
    "bicgstab_update_xr",
    "bicgstab_update_xr_scaled",
    "block_cg_update",
    "block_dots",
    "block_update_p",
    "countsketch_dense",
    "cg_update_p",
    "cg_update_xr",
    "csr_residual_norm2_split",
    "csr_spmm_dot",
    "csr_spmv",
    "csr_spmv_dot",
    "dia_spmv",
    "dia_spmv_dot",
    "dot",
    "gmres_combine",
    "gmres_project",
    "kron_eigen_solve",
    "kron_matvec",
    "minres_lanczos",
    "minres_orthogonalize",
    "minres_update",
    "minres_update_residual",
    "sor_run",
    "sor_sweep_colored",
    "window_axpy_gemv_t",
    "window_gemv",
    "window_push_gemv",
]
