"""linsolve.mpi and curvature.shampoo.distributed under ``mpiexec -n 2`` and ``-n 3``.

Each test launches one small job (``python -m mpi4py tests/mpi_scripts/...``)
inside a timeout; the scripts assert and print a marker on rank 0. Skipped,
with the reason, only when no ``mpiexec`` sits next to this Python or MPI
cannot start. Every rank runs Numba and BLAS single-threaded: the ranks are
the parallelism (and the machine may have fewer cores than ranks).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.mpi_support import MPIEXEC, ROOT, SCRIPTS, TIMEOUT_S, launch, mpi_env


@pytest.mark.parametrize("ranks", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_distributed_solvers_match_serial(mpi, ranks):
    """pcg iterates and counts = serial; block SOR = block reference; tuner; Shampoo."""
    completed = launch(ranks, "-m", "mpi4py", str(SCRIPTS / "solvers.py"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"MPI-SOLVERS-OK {ranks}" in completed.stdout, completed.stdout + completed.stderr


def test_batched_pcg_over_two_ranks_matches_the_serial_batch(mpi):
    completed = launch(2, "-m", "mpi4py", str(SCRIPTS / "batched.py"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "MPI-BATCHED-OK 2" in completed.stdout, completed.stdout + completed.stderr


@pytest.mark.parametrize("ranks", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_krylov_methods_over_ranks_match_serial(mpi, ranks):
    """MINRES, BiCGStab, GMRES and FGMRES: first 20 iterates = serial, same solution."""
    completed = launch(ranks, "-m", "mpi4py", str(SCRIPTS / "krylov.py"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert f"MPI-KRYLOV-OK {ranks}" in completed.stdout, completed.stdout + completed.stderr


@pytest.mark.parametrize("mode", ["-m mpi4py", "abort_on_error"])
def test_error_on_one_rank_ends_the_job(mpi, mode):
    args = (["-m", "mpi4py", str(SCRIPTS / "raise_on_rank1.py")] if mode == "-m mpi4py"
            else [str(SCRIPTS / "raise_on_rank1.py"), "--plain"])
    message = "RuntimeError: deliberate failure on rank 1"
    outputs = []
    for _ in range(2):  # a second launch only if the launcher dropped the message
        start = time.perf_counter()
        completed = launch(2, *args, timeout=60)
        elapsed = time.perf_counter() - start
        output = completed.stdout + completed.stderr
        assert completed.returncode != 0, output
        assert elapsed < 30, f"the job took {elapsed:.1f} s to end"
        outputs.append(output)
        if message in output:
            break
    # MPICH's launcher stops forwarding output when MPI_Abort kills the job; once,
    # under load, it lost everything (abort_on_error now pauses 0.5 s before the
    # abort). Its own "application called MPI_Abort" line is not asserted either.
    assert message in outputs[-1], outputs


def test_one_kernel_thread_per_rank_by_default(mpi):
    # each rank would otherwise start a team of all cores: oversubscription
    env = mpi_env()
    del env["NUMBA_NUM_THREADS"]
    script = ("import linsolve, numba; from mpi4py import MPI; "
              "counts = MPI.COMM_WORLD.gather((linsolve.get_num_threads(), "
              "numba.config.NUMBA_NUM_THREADS)); "
              "MPI.COMM_WORLD.rank == 0 and print('THREADS', counts)")
    completed = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", "-c",
                                script], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=TIMEOUT_S)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # (policy ceiling, Numba's pool): the pool is whatever the launcher's binding allows
    assert re.search(r"THREADS \[\(1, \d+\), \(1, \d+\)\]", completed.stdout), completed.stdout


def test_mismatched_settings_raise_on_every_rank(mpi):
    """Ranks passing different rtol, omega, variant, ... each raise ValueError; none hangs."""
    completed = launch(2, "-m", "mpi4py", str(SCRIPTS / "mismatched_settings.py"), timeout=60)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    # the launcher may run the two ranks' lines together: match, do not split lines
    seconds = dict(re.findall(r"MISMATCH-OK (\d) (\d+\.\d{3})", completed.stdout))
    assert sorted(seconds) == ["0", "1"], output
    # each mismatch raised at once (the script's slowest case), not after a timeout
    assert all(float(value) < 10.0 for value in seconds.values()), seconds
