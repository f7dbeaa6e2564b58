"""Fixtures shared by the test modules.

``backend``: one array library per parameter -- NumPy, ``array_api_strict``
(the standard and nothing more) and JAX (immutable arrays) -- so that a
curvature test written once runs on all three. A library that is not
installed skips its parameter; JAX runs with ``jax_enable_x64`` so that
float64 means float64 (set once, on first use: without it ``jax.numpy``
silently computes float64 requests in float32).

``eager_backends``: a mark that narrows ``backend`` to NumPy and
``array_api_strict`` for a test whose JAX run would mostly measure
compilation (JAX compiles every operation once per shape and dtype, ~35 ms
each); each curvature module runs its dense-reference test on all three.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pytest

BACKENDS = ("numpy", "array_api_strict", "jax")
EAGER_BACKENDS = ("numpy", "array_api_strict")


@dataclass(frozen=True)
class Backend:
    """An array library under test.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"array_api_strict"`` or ``"jax"``.
    xp : namespace
        The namespace ``array_api_compat.array_namespace`` returns for its
        arrays (what the library's own code sees).
    mutable : bool
        Whether its arrays support item assignment (JAX's do not).
    """

    name: str
    xp: Any
    mutable: bool

    def dtype(self, name: str):
        """The namespace's dtype called ``name`` (``"float32"``, ``"float64"``)."""
        return getattr(self.xp, name)

    def asarray(self, array, dtype: str | None = None):
        """A NumPy array (or nested list) as an array of this library, optionally cast."""
        array = np.asarray(array)
        if dtype is not None:
            array = array.astype(dtype)
        return self.xp.asarray(array)

    @staticmethod
    def to_numpy(x) -> np.ndarray:
        """Any library's array (or a Python scalar) as a NumPy array, through DLPack."""
        if isinstance(x, (int, float, np.ndarray, np.generic)):
            return np.asarray(x)
        return np.from_dlpack(x)


@lru_cache(maxsize=None)
def load_backend(name: str) -> Backend:
    """The :class:`Backend` called ``name``; ``pytest.skip`` when the library is missing."""
    from array_api_compat import array_namespace

    if name == "numpy":
        return Backend(name, array_namespace(np.empty(0)), True)
    if name == "array_api_strict":
        module = pytest.importorskip("array_api_strict")
        return Backend(name, array_namespace(module.empty(0)), True)
    if name == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        jnp = importlib.import_module("jax.numpy")
        return Backend(name, array_namespace(jnp.empty(0)), False)
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    """Each array library in turn (skipped when not installed); see :class:`Backend`."""
    return load_backend(request.param)


eager_backends = pytest.mark.parametrize("backend", EAGER_BACKENDS, indirect=True)


@pytest.fixture(scope="module")
def mpi():
    """Skips, with the reason, where no ``mpiexec`` sits next to this Python or MPI cannot start."""
    from tests.mpi_support import mpi_unavailable

    reason = mpi_unavailable()
    if reason is not None:
        pytest.skip(reason)
