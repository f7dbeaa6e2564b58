"""Ctrl-C stops long solves within a second and leaves the caller's inputs alone.

The solvers run their iterations in compiled (Numba, nogil) calls; Python
sees SIGINT only when such a call returns, so a solve must come back to
Python in short chunks. Each case runs in a child process: it compiles
with a tiny solve, prints ``ready``, and starts a solve that cannot finish
(``rtol=0``, ``maxiter=10**12``); the parent sends SIGINT shortly after and
reads back when the child caught ``KeyboardInterrupt`` and whether its
inputs are bit-identical to copies taken before the solve. The kernels
resumed chunk by chunk must give the bits of one uninterrupted call.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cext import numba as nbk
from cext import reference
from linsolve import SorMatrix

from .problems import poisson2d

ROOT = Path(__file__).resolve().parent.parent

# A budget, not a measurement: the solvers aim at ~0.1 s per compiled call.
LATENCY_LIMIT_S = 1.0
CHILD_TIMEOUT_S = 60.0

_CHILD = r"""
import signal, sys, time
import numpy as np
import scipy.sparse as sp

# honour Ctrl-C even when the test runner was started with SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)

from linsolve import sor
from linsolve.mpi import DistCSR, SerialComm, sor as mpi_sor
from linsolve.sketch import sketch_solve
from tests.problems import poisson2d

case = sys.argv[1]
rng = np.random.default_rng(0)
if case == "kaczmarz":
    # dense rows make one Kaczmarz step cost m * n: a block of 4096 steps
    # would run for seconds in one call; b is inconsistent, so rtol=0 never stops
    A = rng.standard_normal((2000, 300))
    b = rng.standard_normal(2000)
    x0 = rng.standard_normal(300)
else:
    A = poisson2d(150)
    b = rng.standard_normal(A.shape[0])
    x0 = rng.standard_normal(A.shape[0])

def solve(maxiter):
    if case == "kaczmarz":
        return sketch_solve(A, b, x0, sketch="rows", seed=1, rtol=0.0, maxiter=maxiter)
    if case == "mpi":
        return mpi_sor(DistCSR.from_global(A, comm=SerialComm()), b, 1.5, x0, rtol=0.0,
                       maxiter=maxiter)
    ordering = case if case in ("natural", "redblack", "multicolor") else "natural"
    return sor(A, b, 1.5, x0, rtol=0.0, maxiter=maxiter, ordering=ordering,
               symmetric=case == "symmetric")

def arrays(value):
    if sp.issparse(value):
        return [value.data, value.indices, value.indptr]
    return [value]

solve(2)  # compile before the clock starts
inputs = [a for v in (A, b, x0) for a in arrays(v)]
copies = [(a.dtype, a.shape, a.tobytes()) for a in inputs]
print("ready", flush=True)
try:
    solve(10**12)
except KeyboardInterrupt:
    caught = time.time()
    intact = all((a.dtype, a.shape, a.tobytes()) == c for a, c in zip(inputs, copies))
    print(f"interrupted {caught!r} {intact}", flush=True)
    sys.exit(0)
print("finished", flush=True)
sys.exit(1)
"""


def _reader(stream, lines):
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def _next_line(lines, deadline):
    try:
        return lines.get(timeout=max(deadline - time.monotonic(), 0.0))
    except queue.Empty:
        return None


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX signals")
@pytest.mark.parametrize("case", ["natural", "redblack", "multicolor", "symmetric", "kaczmarz",
                                  "mpi"])
def test_ctrl_c_stops_the_solve_within_a_second(case):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, case], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(child.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        ready = _next_line(lines, deadline)
        assert ready == "ready", f"child did not get ready: {ready!r}"
        time.sleep(0.3)  # let the long solve get going
        sent = time.time()
        child.send_signal(signal.SIGINT)
        report = _next_line(lines, deadline)
        child.wait(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        stderr = child.stderr.read()
        child.stdout.close()
        child.stderr.close()
    assert report is not None and report.startswith("interrupted"), \
        f"no KeyboardInterrupt reported: {report!r}; stderr:\n{stderr}"
    _, caught, intact = report.split()
    latency = float(caught) - sent
    assert latency < LATENCY_LIMIT_S, f"Ctrl-C took {latency:.2f} s to stop the {case} solve"
    assert intact == "True", "the solve modified the caller's A, b or x0"
    assert child.returncode == 0, stderr


# --- chunking changes no bit: the resumed kernels against one uninterrupted call ---

@pytest.mark.parametrize("backend", ["numba", "reference"])
@pytest.mark.parametrize("ordering, symmetric", [("natural", False), ("natural", True),
                                                 ("multicolor", False)])
def test_sor_run_in_chunks_equals_one_call(backend, ordering, symmetric):
    kernels = nbk if backend == "numba" else reference
    S = SorMatrix(poisson2d(6), ordering=ordering)
    b = S.to_sweep_order(np.random.default_rng(0).standard_normal(36))
    args = (S.off_indptr, S.mid, S.off_indices, S.off_data, S.diag, b)
    runs = []
    for chunks in ([40], [1, 2, 5, 13, 19]):
        x, work, norms, k = np.zeros(36), np.empty(36), np.full(41, np.nan), 0
        norms[0] = S.residual_norm(b, x, ordered=True)
        for size in chunks:
            k = kernels.sor_run_lagged(*args, x, work, 1.3, symmetric, S.color_ptr, 0.0, np.inf,
                                       k + size, norms, k)
        runs.append((k, x, norms))
    (k1, x1, n1), (k2, x2, n2) = runs
    assert k1 == k2 == 40
    assert x1.tobytes() == x2.tobytes() and n1.tobytes() == n2.tobytes()


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_kaczmarz_run_in_slices_equals_one_call(backend):
    kernels = nbk if backend == "numba" else reference
    rng = np.random.default_rng(0)
    A = sp.random(30, 8, density=0.5, random_state=1, format="csr") + sp.eye(30, 8, format="csr")
    A.indptr, A.indices = A.indptr.astype(np.int64), A.indices.astype(np.int64)
    C = A.tocsc()
    C.sort_indices()
    C.indptr, C.indices = C.indptr.astype(np.int64), C.indices.astype(np.int64)
    row_norms2 = np.asarray(A.multiply(A).sum(axis=1)).ravel()
    b = rng.standard_normal(30)  # inconsistent: the running norm never reaches 0
    rows = rng.integers(0, 30, size=200).astype(np.int64)
    runs = []
    for slices in ([200], [1, 7, 50, 3, 139]):
        x, r, norms = np.zeros(8), b.copy(), np.full(201, np.nan)
        running, k = np.full(1, -1.0), 0
        for size in slices:
            k += kernels.kaczmarz_run(A.indptr, A.indices, A.data, C.indptr, C.indices, C.data,
                                      row_norms2, rows[k:k + size], x, r, 0.0, 64, norms, k,
                                      running)
        runs.append((k, x, r, norms[1:]))
    (k1, *arrays1), (k2, *arrays2) = runs
    assert k1 == k2 == 200
    assert all(u.tobytes() == v.tobytes() for u, v in zip(arrays1, arrays2))
