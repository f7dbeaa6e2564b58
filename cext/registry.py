"""Hand an algorithm the kernels that fit the arrays it holds.

Algorithms never import a kernel backend by name: they call
``kernels_for(xp)`` with the array namespace of their data and get an
object whose attributes are the kernels (``csr_spmv``, ``cg_update_xr``,
...). NumPy gets the Numba module, CuPy the CuPy module (imported only
here, only when a CuPy namespace arrives), anything else -- and any kernel a
backend lacks -- the array-API reference in :mod:`cext.reference`.

Every kernel is declared once, in :data:`KERNELS`: its name, the module
that holds it in each backend, the arguments it writes, and whether the
Numba version runs a parallel region. The registry builds everything else
from that table.

Kernels that produce arrays return them, on every backend (see
:attr:`Kernel.writes`): the compiled ones write into their arguments and
are handed out returning them; the reference ones return new arrays where
the namespace cannot write in place (JAX, :func:`writes_in_place`). So an
algorithm writes ``out = kernels.window_gemv(G, v, offsets, out)`` once and
runs on mutable and immutable arrays alike, keeping the compiled in-place
kernels (and their speed) for NumPy and CuPy.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Callable

from . import reference
from .reference import writes_in_place

__all__ = ["KERNELS", "KERNEL_NAMES", "PARALLEL_KERNELS", "RESULT_ARGUMENTS", "Kernel",
           "KernelSet", "backend_name", "kernels_for", "writes_in_place"]


@dataclass(frozen=True)
class Kernel:
    """What the registry needs to know about one kernel.

    Attributes
    ----------
    name : str
        The kernel's name in every backend (:mod:`cext.numba`,
        :mod:`cext.cupy`, :mod:`cext.reference`).
    module : str
        The module that holds it in each backend, e.g. ``"spmv"`` for
        ``cext.numba.spmv``, ``cext.cupy.spmv`` and ``cext.reference.spmv``.
    writes : tuple of str
        The arguments it writes and returns, named as in its signature. The
        compiled versions write in place and return None (a flag where
        ``flag``); the registry hands them out returning these -- one array,
        or a tuple where there are several -- like the reference versions,
        which return new arrays on immutable namespaces.
    parallel : bool
        The Numba version runs a parallel region: handed out wrapped by
        :func:`cext.threads.managed`, so a direct call on a busy machine does
        not collapse.
    flag : bool
        The compiled version returns whether it succeeded; the kernel handed
        out returns its written argument, or None where it failed.
    """

    name: str
    module: str
    writes: tuple[str, ...] = ()
    parallel: bool = False
    flag: bool = False

    @property
    def positions(self) -> tuple[int, ...]:
        """Positions of :attr:`writes` in the signature (every caller passes them positionally)."""
        parameters = list(inspect.signature(getattr(reference, self.name)).parameters)
        return tuple(parameters.index(argument) for argument in self.writes)


# Not parallel: the M-FAC window passes (window_*), which run serial kernels on
# Python threads under the library's ceiling (cext/numba/mfac.py): a thread
# that loses its core delays one chunk, so the load probe would buy nothing.
KERNELS: tuple[Kernel, ...] = (
    Kernel("dot", "blas1", parallel=True),
    Kernel("cg_update_xr", "blas1", parallel=True),
    Kernel("cg_update_xrz", "blas1", parallel=True),
    Kernel("cg_update_p", "blas1", writes=("p",), parallel=True),
    Kernel("cg_run_csr", "cg_loop", parallel=True),
    Kernel("cg_run_dia", "cg_loop", parallel=True),
    Kernel("bicgstab_csr_spmv_dots", "bicgstab", parallel=True),
    Kernel("bicgstab_dia_spmv_dots", "bicgstab", parallel=True),
    Kernel("bicgstab_update_p", "bicgstab", writes=("p",), parallel=True),
    Kernel("bicgstab_update_s", "bicgstab", parallel=True),
    Kernel("bicgstab_update_xr", "bicgstab", parallel=True),
    Kernel("bicgstab_update_xr_scaled", "bicgstab", parallel=True),
    Kernel("csr_spmm_dot", "block", writes=("Q", "dots"), parallel=True),
    Kernel("block_cg_update", "block", writes=("X", "R", "rr"), parallel=True),
    Kernel("block_update_p", "block", writes=("P",), parallel=True),
    Kernel("block_dots", "block", writes=("out",), parallel=True),
    Kernel("gmres_project", "gmres", writes=("w", "h"), parallel=True),
    Kernel("gmres_combine", "gmres", writes=("out",), parallel=True),
    Kernel("csr_check", "structure", parallel=True),
    Kernel("csr_spmv", "spmv", writes=("out",), parallel=True),
    Kernel("csr_spmv_dot", "spmv", parallel=True),
    Kernel("dia_spmv", "dia", writes=("out",), parallel=True),
    Kernel("dia_spmv_dot", "dia", parallel=True),
    Kernel("dia_spmm_dot", "dia", writes=("Q", "dots"), parallel=True),
    Kernel("csr_symmetry_probe", "spmv", parallel=True),
    Kernel("dia_symmetry_probe", "dia", parallel=True),
    Kernel("csr_minres_lanczos", "minres", parallel=True),
    Kernel("dia_minres_lanczos", "minres", parallel=True),
    Kernel("minres_lanczos", "minres", parallel=True),
    Kernel("minres_orthogonalize", "minres", parallel=True),
    Kernel("minres_update", "minres", parallel=True),
    Kernel("minres_update_residual", "minres", parallel=True),
    Kernel("csr_chebyshev_step", "chebyshev", parallel=True),
    Kernel("dia_chebyshev_step", "chebyshev", parallel=True),
    Kernel("sor_run", "sor", parallel=True),
    Kernel("sor_sweep_forward", "sor"),
    Kernel("sor_sweep_backward", "sor"),
    Kernel("sor_sweep_colored", "sor", parallel=True),
    Kernel("csr_residual_norm2_split", "sor", parallel=True),
    Kernel("sor_split", "sor", parallel=True),
    Kernel("sor_diagonal", "sor", parallel=True),
    Kernel("sor_split_full", "sor", parallel=True),
    Kernel("sor_gather_values", "sor", parallel=True),
    Kernel("sor_run_lagged", "sor_lagged", parallel=True),
    Kernel("sor_lagged_sweep", "sor_lagged", parallel=True),
    Kernel("sor_reverse_sweep", "sor_lagged", parallel=True),
    Kernel("sor_residual_norm2_ordered", "sor_lagged", parallel=True),
    Kernel("greedy_coloring", "coloring"),
    Kernel("two_coloring", "coloring"),
    Kernel("sweep_order", "coloring", parallel=True),
    Kernel("arrays_equal", "structure"),
    Kernel("graph_bfs_levels", "ordering"),
    Kernel("graph_cuthill_mckee", "ordering"),
    Kernel("graph_bisect", "ordering"),
    Kernel("segment_order", "ordering"),
    Kernel("csr_pattern_mirror", "pattern", parallel=True),
    Kernel("csr_lower_counts", "pattern", parallel=True),
    Kernel("csr_lower_fill", "pattern", parallel=True),
    Kernel("csr_triangular_solve", "triangular"),
    Kernel("csr_ichol0", "triangular"),
    Kernel("csr_ichol0_domains", "triangular", parallel=True),
    Kernel("csr_permuted_lower", "triangular"),
    Kernel("csr_mirror", "triangular"),
    Kernel("csr_strict_padded", "triangular"),
    Kernel("csr_scaled_gather", "triangular", parallel=True),
    Kernel("csr_symmetric_scaled_gather", "triangular", parallel=True),
    Kernel("ssor_symmetric_numeric", "triangular", parallel=True),
    Kernel("ssor_symmetric_equal", "triangular", parallel=True),
    Kernel("csr_ichol0_numeric", "triangular", parallel=True),
    Kernel("csr_ilu0", "ilu"),
    Kernel("csr_triangular_pair_solve", "triangular", parallel=True),
    Kernel("csr_triangular_pair_solve_block", "triangular", parallel=True),
    Kernel("eisenstat_start", "eisenstat", parallel=True),
    Kernel("eisenstat_backward", "eisenstat", parallel=True),
    Kernel("eisenstat_forward", "eisenstat", parallel=True),
    Kernel("eisenstat_update", "eisenstat", parallel=True),
    Kernel("eisenstat_run", "eisenstat", parallel=True),
    Kernel("eisenstat_into_permuted", "eisenstat", parallel=True),
    Kernel("eisenstat_from_permuted", "eisenstat", parallel=True),
    Kernel("window_gemv", "mfac", writes=("out",)),
    Kernel("window_axpy_gemv_t", "mfac", writes=("out",)),
    Kernel("window_push_gemv", "mfac", writes=("G", "out")),
    Kernel("spd_inverse_factor", "mfac", writes=("out",), flag=True),
    Kernel("factor_apply", "mfac", writes=("out",)),
    Kernel("kron_matvec", "kron", writes=("out",), parallel=True),
    Kernel("kron_eigen_solve", "kron", writes=("out",), parallel=True),
    Kernel("kaczmarz_run", "sketch"),
    Kernel("countsketch_csr", "sketch"),
    Kernel("countsketch_dense", "sketch"),
)
"""Every kernel, once: the table the registry (and the tests) read."""

KERNEL_NAMES = tuple(kernel.name for kernel in KERNELS)
PARALLEL_KERNELS = frozenset(kernel.name for kernel in KERNELS if kernel.parallel)
RESULT_ARGUMENTS = {kernel.name: kernel.positions for kernel in KERNELS if kernel.writes}


def _returning(spec: Kernel, kernel: Callable) -> Callable:
    """``kernel`` (compiled, writing in place) returning what it wrote, as the reference does.

    ``__wrapped__`` is the compiled kernel itself.
    """
    positions = spec.positions
    if spec.flag:
        (position,) = positions

        def call(*args):
            return args[position] if kernel(*args) else None
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

    Every kernel whose :attr:`Kernel.writes` names arguments returns the
    arrays it writes, whichever backend supplies it (see the module notes).

    Attributes
    ----------
    backend : str
        ``"numba"``, ``"cupy"`` or ``"reference"``.
    """

    def __init__(self, backend: str, module: ModuleType | None):
        self.backend = backend
        for spec in KERNELS:
            kernel = getattr(module, spec.name, None) if module is not None else None
            if kernel is None or kernel is getattr(reference, spec.name, None):
                kernel = getattr(reference, spec.name)
            elif spec.writes:
                kernel = _returning(spec, kernel)
            setattr(self, spec.name, kernel)

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

        for spec in KERNELS:
            if not spec.parallel:
                continue
            kernel = getattr(kernels, spec.name)
            wrapped = managed(kernel)
            if spec.writes:
                # __wrapped__ names the Numba kernel itself, not the returning
                # wrapper between the two
                wrapped.__wrapped__ = kernel.__wrapped__
            setattr(kernels, spec.name, wrapped)
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
