"""Collect the ``bench_*.py`` files here as test modules, only when benchmarks are enabled.

The normal test run (``testpaths`` includes ``bench`` for its doctests, with
``--benchmark-disable``) must not run these: they build large matrices. So
the files are named ``bench_*.py`` (not matched by ``python_files``) and
this hook collects them only under ``--benchmark-enable``.
"""

from __future__ import annotations

import os

import pytest

from bench.bandwidth import stream_bandwidth
from bench.problems import poisson2d

# Grid size N of the 2-D Poisson matrix (n = N^2); moderate by default so the
# suite finishes in seconds, BENCH_N=1000 for the n = 1e6 case.
BENCH_N = int(os.environ.get("BENCH_N", "400"))


def pytest_collect_file(parent, file_path):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and parent.config.getoption("benchmark_enable", default=False)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def bandwidth() -> dict:
    """Copy and triad GB/s measured once per session, for extra_info."""
    return stream_bandwidth(int(os.environ.get("BENCH_STREAM_N", "10000000")))


@pytest.fixture(scope="session")
def poisson():
    """2-D Poisson CSR matrix of grid size ``BENCH_N``."""
    return poisson2d(BENCH_N)
