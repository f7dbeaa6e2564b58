"""Hand an algorithm the kernels that fit the arrays it holds.

Algorithms never import a kernel backend by name: they call
``kernels_for(xp)`` with the array namespace of their data and get an
object whose attributes are the kernels (``csr_spmv``, ``cg_update_xr``,
...). NumPy gets the Numba module, CuPy the CuPy module (imported only
here, only when a CuPy namespace arrives), anything else -- and any kernel a
backend lacks -- the array-API reference in :mod:`cext.reference`.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from types import ModuleType

from . import reference

KERNEL_NAMES = (
    "dot",
    "csr_check",
    "csr_spmv",
    "csr_spmv_dot",
    "dia_spmv",
    "dia_spmv_dot",
    "cg_update_xr",
    "cg_update_p",
    "csr_residual_norm2_split",
    "sor_run",
    "sor_sweep_forward",
    "sor_sweep_backward",
    "sor_sweep_colored",
    "sor_lagged_sweep",
    "sor_reverse_sweep",
    "sor_run_lagged",
    "sor_residual_norm2_ordered",
    "greedy_coloring",
    "two_coloring",
    "csr_triangular_solve",
    "csr_ichol0",
    "window_gemv",
    "window_axpy_gemv_t",
    "window_push_gemv",
    "spd_inverse_factor",
    "factor_apply",
    "kron_matvec",
    "kron_eigen_solve",
    "kaczmarz_run",
    "countsketch_csr",
    "countsketch_dense",
)


# Kernels compiled with parallel=True in cext.numba: handed out wrapped by
# cext.threads.managed, so a direct call on a busy machine does not collapse.
PARALLEL_KERNELS = frozenset({
    "dot", "csr_check", "csr_spmv", "csr_spmv_dot", "dia_spmv", "dia_spmv_dot",
    "cg_update_xr", "cg_update_p", "csr_residual_norm2_split", "sor_run", "sor_sweep_colored",
    "sor_lagged_sweep", "sor_reverse_sweep", "sor_run_lagged", "sor_residual_norm2_ordered",
    "window_gemv", "window_axpy_gemv_t", "window_push_gemv", "kron_matvec", "kron_eigen_solve",
})


class KernelSet:
    """The kernels of one backend, with reference fallbacks for missing ones.

    Attributes
    ----------
    backend : str
        ``"numba"``, ``"cupy"`` or ``"reference"``.
    """

    def __init__(self, backend: str, module: ModuleType | None):
        self.backend = backend
        for name in KERNEL_NAMES:
            kernel = getattr(module, name, None) if module is not None else None
            setattr(self, name, kernel if kernel is not None else getattr(reference, name))

    def __repr__(self) -> str:
        return f"KernelSet(backend={self.backend!r})"


def backend_name(xp) -> str:
    """Name of the kernel backend for namespace ``xp``."""
    name = getattr(xp, "__name__", "")
    if name in ("numpy", "array_api_compat.numpy"):
        return "numba"
    if name in ("cupy", "array_api_compat.cupy"):
        return "cupy"
    return "reference"


@lru_cache(maxsize=None)
def _load(backend: str) -> KernelSet:
    if backend == "reference":
        return KernelSet("reference", None)
    module = importlib.import_module(f"cext.{backend}")
    kernels = KernelSet(backend, module)
    if backend == "numba":
        from .threads import managed

        for name in PARALLEL_KERNELS:
            setattr(kernels, name, managed(getattr(kernels, name)))
    return kernels


def kernels_for(xp, dtype=None) -> KernelSet:
    """Return the :class:`KernelSet` for array namespace ``xp`` (and ``dtype``).

    Complex ``dtype`` gets the reference kernels on every backend: the
    compiled ones are real (their ``dot`` does not conjugate and
    accumulates in float64); the reference ``dot`` is ``Re(vdot(a, b))``.

    Examples
    --------
    >>> import numpy as np
    >>> from array_api_compat import array_namespace
    >>> from cext import kernels_for
    >>> k = kernels_for(array_namespace(np.zeros(3)))
    >>> k.backend
    'numba'
    >>> k.dot(np.arange(3.0), np.arange(3.0))
    5.0
    >>> kernels_for(array_namespace(np.zeros(3)), np.complex128).backend
    'reference'
    """
    if dtype is not None and "complex" in str(getattr(dtype, "name", dtype)):
        return _load("reference")
    return _load(backend_name(xp))
