"""Launching ``mpiexec`` jobs from the tests: the command, its environment, and a skip gate.

Every rank runs Numba and BLAS single-threaded: the ranks are the
parallelism (and the machine may have fewer cores than ranks).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "mpi_scripts"
MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"
TIMEOUT_S = 120


def mpi_env():
    env = dict(os.environ)
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def launch(n: int, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """``mpiexec -n n python args...`` from the repository root (no hang: killed at ``timeout``)."""
    # MPICH's hydra runs more ranks than cores without a flag (oversubscription).
    command = [str(MPIEXEC), "-n", str(n), sys.executable, *args]
    return subprocess.run(command, cwd=ROOT, env=mpi_env(), capture_output=True, text=True,
                          timeout=timeout)


@functools.lru_cache(maxsize=1)
def mpi_unavailable() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if not MPIEXEC.exists():
        return f"no mpiexec next to {sys.executable} (the mpich wheel provides it)"
    try:
        probe = launch(2, "-m", "mpi4py", "-c",
                       "from mpi4py import MPI; c = MPI.COMM_WORLD; "
                       "assert c.allreduce(1) == 2; c.rank or print('MPI-UP', c.size)", timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"MPI cannot start: {error}"
    if probe.returncode != 0 or "MPI-UP 2" not in probe.stdout:
        return (f"MPI cannot start (status {probe.returncode}): stdout {probe.stdout.strip()[-300:]!r}"
                f", stderr {probe.stderr.strip()[-500:]!r}")
    return None
