"""Numba CPU kernels; the registry hands this module out for NumPy arrays."""

from .bicgstab import (bicgstab_csr_spmv_dots, bicgstab_dia_spmv_dots, bicgstab_update_p,
                       bicgstab_update_s, bicgstab_update_xr, bicgstab_update_xr_scaled)
from .blas1 import cg_update_p, cg_update_xr, cg_update_xrz, dot
from .cg_loop import cg_run_csr, cg_run_dia
from .block import block_cg_update, block_dots, block_update_p, csr_spmm_dot
from .chebyshev import csr_chebyshev_step, dia_chebyshev_step
from .coloring import greedy_coloring, sweep_order, two_coloring
from .dia import dia_spmm_dot, dia_spmv, dia_spmv_dot, dia_symmetry_probe
from .eisenstat import (eisenstat_backward, eisenstat_forward, eisenstat_from_permuted,
                        eisenstat_into_permuted, eisenstat_run, eisenstat_start,
                        eisenstat_update)
from .gmres import gmres_combine, gmres_project
from .ilu import csr_ilu0
from .kron import kron_eigen_solve, kron_matvec
from .mfac import (factor_apply, spd_inverse_factor, window_axpy_gemv_t, window_gemv,
                   window_push_gemv)
from .minres import (csr_minres_lanczos, dia_minres_lanczos, minres_lanczos,
                     minres_orthogonalize, minres_update, minres_update_residual)
from .ordering import graph_bfs_levels, graph_bisect, graph_cuthill_mckee, segment_order
from .pattern import csr_lower_counts, csr_lower_fill, csr_pattern_mirror
from .sketch import countsketch_csr, countsketch_dense, kaczmarz_run
from .sor import (csr_residual_norm2_split, sor_diagonal, sor_gather_values, sor_run, sor_split,
                  sor_split_full, sor_sweep_backward, sor_sweep_colored, sor_sweep_forward)
from .sor_lagged import (sor_lagged_sweep, sor_residual_norm2_ordered, sor_reverse_sweep,
                         sor_run_lagged)
from .spmv import csr_spmv, csr_spmv_dot, csr_symmetry_probe
from .structure import arrays_equal, csr_check
from .triangular import (csr_ichol0, csr_ichol0_domains, csr_ichol0_numeric, csr_mirror,
                         csr_permuted_lower, ssor_symmetric_equal, ssor_symmetric_numeric,
                         csr_scaled_gather, csr_strict_padded, csr_symmetric_scaled_gather,
                         csr_triangular_pair_solve, csr_triangular_pair_solve_block,
                         csr_triangular_solve)

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
    "csr_spmm_dot",
    "countsketch_csr",
    "csr_chebyshev_step",
    "arrays_equal",
    "csr_check",
    "sor_diagonal",
    "sor_gather_values",
    "sor_split",
    "sor_split_full",
    "sweep_order",
    "countsketch_dense",
    "kaczmarz_run",
    "cg_run_csr",
    "cg_run_dia",
    "cg_update_p",
    "cg_update_xr",
    "cg_update_xrz",
    "csr_ichol0",
    "csr_ichol0_domains",
    "eisenstat_backward",
    "eisenstat_forward",
    "eisenstat_from_permuted",
    "eisenstat_into_permuted",
    "eisenstat_run",
    "eisenstat_start",
    "eisenstat_update",
    "csr_lower_counts",
    "csr_lower_fill",
    "csr_mirror",
    "csr_pattern_mirror",
    "csr_permuted_lower",
    "csr_scaled_gather",
    "csr_strict_padded",
    "csr_symmetric_scaled_gather",
    "csr_ichol0_numeric",
    "ssor_symmetric_numeric",
    "ssor_symmetric_equal",
    "csr_ilu0",
    "csr_residual_norm2_split",
    "csr_spmv",
    "csr_spmv_dot",
    "csr_symmetry_probe",
    "csr_triangular_pair_solve",
    "csr_triangular_pair_solve_block",
    "csr_triangular_solve",
    "dia_chebyshev_step",
    "dia_spmm_dot",
    "dia_spmv",
    "dia_spmv_dot",
    "dia_symmetry_probe",
    "dot",
    "gmres_combine",
    "graph_bfs_levels",
    "graph_bisect",
    "graph_cuthill_mckee",
    "segment_order",
    "gmres_project",
    "factor_apply",
    "kron_eigen_solve",
    "kron_matvec",
    "csr_minres_lanczos",
    "dia_minres_lanczos",
    "minres_lanczos",
    "minres_orthogonalize",
    "minres_update",
    "minres_update_residual",
    "greedy_coloring",
    "sor_lagged_sweep",
    "sor_residual_norm2_ordered",
    "sor_reverse_sweep",
    "sor_run",
    "sor_run_lagged",
    "sor_sweep_backward",
    "sor_sweep_colored",
    "sor_sweep_forward",
    "spd_inverse_factor",
    "two_coloring",
    "window_axpy_gemv_t",
    "window_gemv",
    "window_push_gemv",
]
