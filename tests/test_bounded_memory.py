"""Histories grow with the iterations run, never with ``maxiter``.

``maxiter=10**12`` used to size a residual history of 7.28 TiB up front
(MemoryError); 10**7 sized 80 MB that a solve of a few dozen iterations
never touched. NumPy reports its allocations to :mod:`tracemalloc`, which
measures the peak here.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from linsolve import pcg, sor
from linsolve.mpi import DistCSR, SerialComm
from linsolve.mpi import sor as mpi_sor
from linsolve.sketch import sketch_solve

from .problems import poisson2d

PEAK_LIMIT = 50 * 2**20  # bytes; the problems below need well under 1 MB
MAXITERS = [10**7, 10**12]


def _peak_allocation(solve):
    """``(result, peak bytes)`` of ``solve()``, run once before to compile and fill caches."""
    solve()
    tracemalloc.start()
    try:
        result = solve()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture(scope="module")
def system():
    A = poisson2d(12)
    return A, np.random.default_rng(0).standard_normal(A.shape[0])


def _check(result, peak):
    assert result.converged, result.message
    assert result.residual_norms.shape == (result.iterations + 1,)
    assert peak < PEAK_LIMIT, f"peak allocation {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("maxiter", MAXITERS)
@pytest.mark.parametrize("ordering", ["natural", "redblack", "multicolor"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_sor_history_is_sized_by_the_iterations_run(system, maxiter, ordering, symmetric):
    A, b = system
    _check(*_peak_allocation(lambda: sor(A, b, 1.5, rtol=1e-10, maxiter=maxiter,
                                         ordering=ordering, symmetric=symmetric)))


@pytest.mark.parametrize("maxiter", MAXITERS)
def test_sor_watched_history_is_sized_by_the_iterations_run(system, maxiter):
    A, b = system
    seen = []
    result, peak = _peak_allocation(lambda: sor(A, b, 1.5, rtol=1e-10, maxiter=maxiter,
                                                callback=lambda x: seen.append(None)))
    _check(result, peak)


@pytest.mark.parametrize("maxiter", MAXITERS)
@pytest.mark.parametrize("sketch, sketch_size", [("rows", 1), ("rows", 3), ("gaussian", 4)])
def test_sketch_solve_history_is_sized_by_the_iterations_run(maxiter, sketch, sketch_size):
    # well conditioned and consistent: a few hundred steps (Kaczmarz on Poisson takes 1e5)
    rng = np.random.default_rng(0)
    A = sp.csr_matrix(rng.standard_normal((80, 10)))
    b = A @ rng.standard_normal(10)
    _check(*_peak_allocation(lambda: sketch_solve(A, b, sketch=sketch, sketch_size=sketch_size,
                                                  seed=0, rtol=1e-8, maxiter=maxiter)))


@pytest.mark.parametrize("maxiter", MAXITERS)
def test_pcg_and_mpi_sor_histories_are_sized_by_the_iterations_run(system, maxiter):
    A, b = system
    _check(*_peak_allocation(lambda: pcg(A, b, rtol=1e-10, maxiter=maxiter)))
    D = DistCSR.from_global(A, comm=SerialComm())
    _check(*_peak_allocation(lambda: mpi_sor(D, b, 1.5, rtol=1e-10, maxiter=maxiter)))


def test_long_histories_keep_every_iteration(system):
    # past several doublings of the buffer: every entry is the one the iteration wrote
    A, b = system
    long = sor(A, b, 1.0, rtol=0.0, maxiter=70_000, check_every=1)
    assert long.iterations == 70_000 and long.residual_norms.shape == (70_001,)
    short = sor(A, b, 1.0, rtol=0.0, maxiter=300, check_every=1)
    assert np.array_equal(long.residual_norms[:301], short.residual_norms)
    steps = sketch_solve(A, A @ b, seed=0, rtol=0.0, maxiter=20_000, check_every=4_999)
    assert steps.iterations == 20_000 and steps.residual_norms.shape == (20_001,)
    first = sketch_solve(A, A @ b, seed=0, rtol=0.0, maxiter=300, check_every=4_999)
    assert np.array_equal(steps.residual_norms[:301], first.residual_norms)
