"""The kernels' thread policy: ceiling, small work, other processes' load, MPI default."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numba
import numpy as np
import pytest

import linsolve
from cext import threads
from linsolve import pcg, sor

from tests.problems import poisson2d


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", numba.config.NUMBA_NUM_THREADS + 1])
def test_bad_thread_counts_raise(bad):
    with pytest.raises(ValueError, match="threads"):
        linsolve.set_num_threads(bad)
    with pytest.raises(ValueError, match="threads"):
        with linsolve.num_threads(bad):
            pass


def test_set_num_threads_and_context_restore():
    default = linsolve.get_num_threads()
    try:
        linsolve.set_num_threads(1)
        assert linsolve.get_num_threads() == 1
        with linsolve.num_threads(numba.config.NUMBA_NUM_THREADS):
            assert linsolve.get_num_threads() == numba.config.NUMBA_NUM_THREADS
        assert linsolve.get_num_threads() == 1
    finally:
        linsolve.set_num_threads(None)
    assert linsolve.get_num_threads() == default


def test_context_is_local_to_its_thread():
    seen = []
    with linsolve.num_threads(1):
        worker = threading.Thread(target=lambda: seen.append(linsolve.get_num_threads()))
        worker.start()
        worker.join()
    assert seen == [threads.default_num_threads()]


def test_small_work_runs_on_one_thread_and_numba_count_is_restored():
    before = numba.get_num_threads()
    with threads.kernel_threads(threads.MIN_WORK_PER_THREAD - 1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before


def test_busy_cores_are_not_counted(monkeypatch):
    big = 100 * threads.MIN_WORK_PER_THREAD
    ceiling = linsolve.get_num_threads()
    monkeypatch.setattr(threads._probe, "others", lambda: 0.0)
    assert threads.threads_for(big) == min(ceiling, threads.available_cores())
    monkeypatch.setattr(threads._probe, "others", lambda: float(threads.available_cores()))
    assert threads.threads_for(big) == 1
    monkeypatch.setattr(threads._probe, "others", lambda: 0.9)
    assert threads.threads_for(big) == max(1, min(ceiling, threads.available_cores() - 1))


@pytest.mark.parametrize("variable", ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_SIZE"])
def test_one_thread_per_rank_under_mpiexec(monkeypatch, variable):
    for name in threads._MPI_LOCAL_SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "2")
    assert threads.default_num_threads() == 1
    with linsolve.num_threads(numba.config.NUMBA_NUM_THREADS):  # unless asked otherwise
        assert linsolve.get_num_threads() == numba.config.NUMBA_NUM_THREADS


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_probe_sees_a_busy_process():
    probe = threads._LoadProbe()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        probe.others()  # first window
        time.sleep(3 * threads.PROBE_INTERVAL)
        assert probe.others() >= 0.5
    finally:
        busy.kill()
        busy.wait()


def test_results_agree_across_thread_counts(monkeypatch):
    A = poisson2d(250)  # n + nnz = 375k: several threads' worth of work
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    with linsolve.num_threads(1):
        serial = pcg(A, b, rtol=1e-10)
        sor_serial = sor(A, b, 1.8, rtol=1e-6, ordering="multicolor")
    monkeypatch.setattr(threads._probe, "others", lambda: 0.0)  # a quiet machine, as seen
    parallel = pcg(A, b, rtol=1e-10)
    sor_parallel = sor(A, b, 1.8, rtol=1e-6, ordering="multicolor")
    assert serial.extra["threads"] == 1
    assert parallel.extra["threads"] == min(linsolve.get_num_threads(), threads.available_cores())
    # parallel reductions may differ from serial ones in the last bits
    assert abs(serial.iterations - parallel.iterations) <= 2
    np.testing.assert_allclose(parallel.x, serial.x, rtol=1e-8, atol=1e-10)
    # colour sweeps and residual norms: sums per row are in CSR order either way
    np.testing.assert_allclose(sor_parallel.x, sor_serial.x, rtol=1e-12)
