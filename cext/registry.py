"""Hand an algorithm the kernels that fit the arrays it holds.

Algorithms never import a kernel backend by name: they call
``kernels_for(xp)`` with the array namespace of their data and get an
object whose attributes are the kernels (``csr_spmv``, ``cg_update_xr``,
...). NumPy gets the Numba module, CuPy the CuPy module (imported only
here, only when a CuPy namespace arrives), anything else -- and any kernel a
backend lacks -- the array-API reference in :mod:`cext.reference`.

Kernels that produce arrays return them, on every backend (see
:data:`RESULT_ARGUMENTS`): the compiled ones write into their arguments and
are handed out returning them; the reference ones return new arrays where
the namespace cannot write in place (JAX, :func:`writes_in_place`). So an
algorithm writes ``out = kernels.window_gemv(G, v, offsets, out)`` once and
runs on mutable and immutable arrays alike, keeping the compiled in-place
kernels (and their speed) for NumPy and CuPy.
"""

from __future__ import annotations

import functools
import importlib
from functools import lru_cache
from types import ModuleType
from typing import Callable

from . import reference
from .reference import writes_in_place

__all__ = ["KERNEL_NAMES", "PARALLEL_KERNELS", "RESULT_ARGUMENTS", "KernelSet", "backend_name",
           "kernels_for", "writes_in_place"]

KERNEL_NAMES = (
    "dot",
    "csr_check",
    "csr_spmv",
    "csr_spmv_dot",
    "dia_spmv",
    "dia_spmv_dot",
    "cg_update_xr",
    "cg_update_xrz",
    "cg_update_p",
    "csr_chebyshev_step",
    "dia_chebyshev_step",
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
    "csr_triangular_pair_solve",
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
    "cg_update_xr", "cg_update_xrz", "cg_update_p", "csr_chebyshev_step", "dia_chebyshev_step",
    "csr_triangular_pair_solve", "csr_residual_norm2_split", "sor_run", "sor_sweep_colored",
    "sor_lagged_sweep", "sor_reverse_sweep", "sor_run_lagged", "sor_residual_norm2_ordered",
    "kron_matvec", "kron_eigen_solve",
})
# Not here: the M-FAC window passes (window_*), which run serial kernels on
# Python threads under the library's ceiling (cext/numba/mfac.py): a thread
# that loses its core delays one chunk, so the load probe would buy nothing.


# Kernels that write arrays, and which arguments they write (positions): the
# compiled versions return None (a flag for spd_inverse_factor) and are handed
# out returning these -- one array, or a tuple for window_push_gemv -- like the
# reference versions, which return new arrays on immutable namespaces. Called
# positionally, as every caller does.
RESULT_ARGUMENTS: dict[str, tuple[int, ...]] = {
    "csr_spmv": (4,),
    "dia_spmv": (3,),
    "cg_update_p": (0,),
    "window_gemv": (3,),
    "window_axpy_gemv_t": (6,),
    "window_push_gemv": (0, 4),
    "spd_inverse_factor": (1,),
    "factor_apply": (2,),
    "kron_matvec": (3,),
    "kron_eigen_solve": (6,),
}


def _returning(name: str, kernel: Callable) -> Callable:
    """``kernel`` (compiled, writing in place) returning what it wrote, as the reference does.

    ``spd_inverse_factor`` returns its flag: the wrapper gives ``out`` or None.
    ``__wrapped__`` is the compiled kernel itself.
    """
    positions = RESULT_ARGUMENTS[name]
    if name == "spd_inverse_factor":
        def call(*args):
            return args[1] if kernel(*args) else None
    elif len(positions) == 1:
        (position,) = positions

        def call(*args):
            kernel(*args)
            return args[position]
    else:
        def call(*args):
            kernel(*args)
            return tuple(args[position] for position in positions)
    functools.update_wrapper(call, kernel)
    return call


class KernelSet:
    """The kernels of one backend, with reference fallbacks for missing ones.

    Every kernel named in :data:`RESULT_ARGUMENTS` returns the arrays it
    writes, whichever backend supplies it (see the module notes).

    Attributes
    ----------
    backend : str
        ``"numba"``, ``"cupy"`` or ``"reference"``.
    """

    def __init__(self, backend: str, module: ModuleType | None):
        self.backend = backend
        for name in KERNEL_NAMES:
            kernel = getattr(module, name, None) if module is not None else None
            if kernel is None or kernel is getattr(reference, name, None):
                kernel = getattr(reference, name)
            elif name in RESULT_ARGUMENTS:
                kernel = _returning(name, kernel)
            setattr(self, name, kernel)

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
            kernel = getattr(kernels, name)
            wrapped = managed(kernel)
            if name in RESULT_ARGUMENTS:
                # __wrapped__ names the Numba kernel itself, not the returning
                # wrapper between the two
                wrapped.__wrapped__ = kernel.__wrapped__
            setattr(kernels, name, wrapped)
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
