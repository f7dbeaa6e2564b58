"""pcg's compiled chunks against its Python loop: one stopping rule, the same bits.

With a callback pcg iterates in Python, one iteration a call (as scipy);
without one, real CSR/DIA systems run in compiled chunks
(:mod:`cext.numba.cg_loop`) that hand every stopping decision back to the
solver core. The two must agree to the bit: iterates, histories, counts,
reasons, on converging, stagnating, failing and interrupted problems.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import scipy.sparse as sp

import linsolve
from cext import csr_to_dia, kernels_for, reference
from linsolve import pcg, precond
from tests.problems import indefinite, poisson2d, random_sparse_spd, random_spd

pcg_module = importlib.import_module("linsolve.krylov.pcg")  # the module, not the function


def _python_loop(A, b, **kwargs):
    """pcg kept in its Python loop: a callback sees every iterate."""
    return pcg(A, b, callback=lambda x: None, **kwargs)


def _same(compiled, python):
    assert compiled.reason == python.reason
    assert compiled.iterations == python.iterations
    assert compiled.x.dtype == python.x.dtype
    np.testing.assert_array_equal(compiled.x, python.x)
    np.testing.assert_array_equal(compiled.residual_norms, python.residual_norms)
    assert compiled.true_residual_norm == python.true_residual_norm or (
        np.isnan(compiled.true_residual_norm) and np.isnan(python.true_residual_norm))
    assert (compiled.matvecs, compiled.psolves) == (python.matvecs, python.psolves)
    assert compiled.message == python.message
    assert (compiled.extra["residual_replacements"]
            == python.extra["residual_replacements"])


def _ill_conditioned_float32():
    A = sp.csr_matrix(random_spd(60, cond=1e5, seed=7, dtype=np.float32))
    return A, np.random.default_rng(7).standard_normal(60).astype(np.float32)


def _nan_matrix():
    A = poisson2d(6).tolil()
    A[20, 21] = A[21, 20] = np.nan
    return A.tocsr(), np.ones(36)


def _jacobi_indefinite():
    # diag(A) of both signs: r'z changes sign once the iteration reaches the
    # negative part (A itself is SPD, so p'Ap stays positive)
    A = sp.diags(np.r_[np.linspace(1.0, 2.0, 30), np.linspace(3.0, 4.0, 10)]).tocsr()
    A = A + sp.diags(np.full(39, 0.1), 1) + sp.diags(np.full(39, 0.1), -1)
    M = precond.jacobi(sp.diags(np.r_[np.ones(30), -np.ones(10)]).tocsr())
    return A.tocsr(), np.ones(40), M


CASES = {
    # (A, b, keywords, reason expected)
    "dia-converged": lambda: (poisson2d(12), np.linspace(-1, 1, 144), {"rtol": 1e-10},
                              "CONVERGED_RTOL"),
    "csr-converged": lambda: (random_sparse_spd(200, density=0.03, seed=3),
                              np.random.default_rng(1).standard_normal(200), {"rtol": 1e-10},
                              "CONVERGED_RTOL"),
    "atol": lambda: (poisson2d(12), np.ones(144), {"rtol": 0.0, "atol": 1e-6},
                     "CONVERGED_ATOL"),
    "maxiter": lambda: (poisson2d(12), np.ones(144), {"rtol": 1e-12, "maxiter": 7},
                        "DIVERGED_ITS"),
    "check_every": lambda: (random_sparse_spd(200, density=0.03, seed=3), np.ones(200),
                            {"rtol": 1e-10, "check_every": 4}, "CONVERGED_RTOL"),
    "replaced-then-stagnated": lambda: (*_ill_conditioned_float32(),
                                        {"rtol": 1e-9, "maxiter": 5000},
                                        "DIVERGED_BREAKDOWN"),
    # the periodic check keeps replacing the drifted float32 residual
    "drift-replaced": lambda: (*_ill_conditioned_float32(),
                               {"rtol": 1e-9, "maxiter": 1000, "check_every": 3},
                               "DIVERGED_ITS"),
    "indefinite": lambda: (indefinite(20), np.ones(20), {}, "DIVERGED_INDEFINITE_MAT"),
    "nan": lambda: (*_nan_matrix(), {}, "DIVERGED_NANORINF"),
    "jacobi": lambda: (poisson2d(12) + sp.diags(np.linspace(0, 3, 144)), np.ones(144),
                       {"rtol": 1e-10, "M": precond.jacobi(poisson2d(12)
                                                           + sp.diags(np.linspace(0, 3, 144)))},
                       "CONVERGED_RTOL"),
    "jacobi-indefinite": lambda: (*_jacobi_indefinite()[:2], {"M": _jacobi_indefinite()[2]},
                                  "DIVERGED_INDEFINITE_PC"),
}


@pytest.mark.parametrize("budget", [None, 1, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_chunks_equal_the_python_loop(name, budget, monkeypatch):
    if budget is not None:  # chunk ends at every iteration, or every third
        monkeypatch.setattr(pcg_module._Chunks, "MAX_BUDGET", budget)
    A, b, keywords, reason = CASES[name]()
    with linsolve.num_threads(1):
        compiled = pcg(A, b, **keywords)
        python = _python_loop(A, b, **keywords)
    assert compiled.reason == reason
    _same(compiled, python)
    if name.startswith(("replaced", "drift")):
        assert compiled.extra["residual_replacements"] >= 1


def test_compiled_iterates_equal_the_python_loops_at_every_step():
    A, b = random_sparse_spd(120, density=0.05, seed=2), np.linspace(1, 2, 120)
    with linsolve.num_threads(1):
        for maxiter in range(1, 15):
            compiled = pcg(A, b, rtol=1e-14, maxiter=maxiter)
            python = _python_loop(A, b, rtol=1e-14, maxiter=maxiter)
            assert compiled.iterations == maxiter
            _same(compiled, python)


def test_compiled_loop_runs_without_a_callback_and_not_with_one(monkeypatch):
    compiled = kernels_for(np)
    calls = []
    kernel = compiled.cg_run_dia
    monkeypatch.setattr(compiled, "cg_run_dia", lambda *args: calls.append(1) or kernel(*args))
    A, b = poisson2d(12), np.ones(144)
    pcg(A, b, rtol=1e-8)
    assert calls == [1]  # a small system: one compiled call
    pcg(A, b, rtol=1e-8, callback=lambda x: None)
    pcg(A, b, rtol=1e-8, monitor=lambda k, rnorm: None)
    assert calls == [1]


def test_logger_sees_every_line_of_a_compiled_chunk(caplog):
    A, b = poisson2d(12), np.ones(144)
    with caplog.at_level("DEBUG", logger="linsolve"):
        result = pcg(A, b, rtol=1e-8)
    lines = [r.getMessage() for r in caplog.records if "KSP Residual norm" in r.getMessage()]
    assert len(lines) == result.iterations + 1
    assert lines[-1] == "%3d KSP Residual norm %14.12e" % (result.iterations,
                                                            result.residual_norms[-1])


@pytest.mark.parametrize("layout", ["csr", "dia"])
def test_reference_twin_runs_the_same_iterations(layout):
    A, b = poisson2d(8), np.linspace(-1, 1, 64)
    n = 64
    outputs = []
    for kernels in (kernels_for(np), reference):
        x, r, p, q = np.zeros(n), b.copy(), np.empty(n), np.empty(n)
        rr = float(b @ b)
        scalars = np.array([np.sqrt(rr), rr, 1.0, 0.0, 0.0])
        counters = np.array([0, 1, 0], dtype=np.int64)
        norms = np.empty(200)
        empty = np.empty(0)
        if layout == "csr":
            matrix, run = (A.indptr, A.indices, A.data), kernels.cg_run_csr
        else:
            dia = csr_to_dia(A.indptr, A.indices, A.data, n)
            matrix, run = (dia.offsets, dia.values), kernels.cg_run_dia
        run(*matrix, x, r, p, q, empty, empty, scalars, counters, norms, 1e-10, 200, 200, 0)
        outputs.append((x, int(counters[0]), int(counters[2])))
    (x1, k1, s1), (x2, k2, s2) = outputs
    assert s1 == s2 == 0 and abs(k1 - k2) <= 1
    # the reference sums in another order: equal to rounding (cond(A) ~ 50 here)
    np.testing.assert_allclose(x1, x2, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(x1, np.linalg.solve(A.toarray(), b), rtol=1e-8, atol=1e-9)


_CHILD = """
import signal, sys, time
import numpy as np, scipy.sparse as sp
from linsolve import pcg

# honour Ctrl-C even when the test runner was started with SIGINT ignored
signal.signal(signal.SIGINT, signal.default_int_handler)

def system(n):  # condition 1e12: CG is nowhere near rtol = 0 for a long time
    return sp.diags(np.geomspace(1.0, 1e12, n), format="csr"), np.ones(n)

pcg(*system(50), rtol=0.0, maxiter=100)  # compiled before the clock starts
print("ready", flush=True)
try:
    pcg(*system(20_000), rtol=0.0, maxiter=10**12)
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.time(), flush=True)
"""


@pytest.mark.slow  # a child process: imports and cache loads take seconds
def test_ctrl_c_stops_a_compiled_pcg_solve_within_a_second():
    import os
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    child = subprocess.Popen([sys.executable, "-c", _CHILD], cwd=root, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # into the long solve
        sent = time.time()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=30)
        report = out.split()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert report and report[0] == "interrupted", report
    assert float(report[1]) - sent < 1.0  # chunks return to Python about every 0.1 s


# slow: forced onto two threads beside busy processes, each parallel region waits for a
# descheduled thread (about a second here on a loaded 2-core machine, milliseconds quiet)
@pytest.mark.slow
def test_two_threads_run_with_the_python_loops_bits(monkeypatch):
    # two threads whatever the machine's load: the compiled loop's products and dots
    # keep the bits of the Python loop's kernels on two threads too
    import numba

    import cext.threads

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba's pool has one thread")
    monkeypatch.setattr(cext.threads, "threads_for", lambda work: 2)
    A, b = random_sparse_spd(300, density=0.03, seed=5), np.linspace(-1.0, 1.0, 300)
    with linsolve.num_threads(2):
        compiled = pcg(A, b, rtol=1e-6)
        python = _python_loop(A, b, rtol=1e-6)
    assert compiled.extra["threads"] == 2 and compiled.converged
    _same(compiled, python)
    np.testing.assert_allclose(A @ compiled.x, b, atol=1e-6 * np.linalg.norm(b))
