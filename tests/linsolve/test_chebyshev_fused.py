"""The fused Chebyshev step kernels against the recurrence they replace.

``chebyshev(A, degree)`` on a NumPy CSR or DIA matrix runs one compiled pass
over ``A`` per degree step (:mod:`cext.numba.chebyshev`); everything else
runs the same three-term form on arrays (:mod:`cext.reference.chebyshev`).
The polynomial is the one Saad's Algorithm 12.1 applies, which is what
:func:`unfused` below implements, plainly, as the preconditioner did before.
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
import scipy.sparse as sp

from cext import kernels_for
from cext.reference import chebyshev as reference_chebyshev
from cext.numba import chebyshev as numba_chebyshev
from cext.numba.spmv import unsigned_view
from linsolve import pcg
from linsolve.precond import chebyshev
from linsolve.precond.chebyshev import chebyshev_steps

from tests.problems import poisson2d, random_sparse_spd, random_spd

EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}


def unfused(A, r, degree, bounds):
    """Saad, Algorithm 12.1 from x_0 = 0, as ``Chebyshev._apply`` was before the fused kernels."""
    lo, hi = bounds
    theta, delta = (hi + lo) / 2.0, (hi - lo) / 2.0
    sigma = theta / delta
    rho = 1.0 / sigma
    residual = r
    d = r / theta
    z = d
    for _ in range(degree):
        residual = residual - A @ d
        rho_next = 1.0 / (2.0 * sigma - rho)
        d = (rho_next * rho) * d + (2.0 * rho_next / delta) * residual
        z = z + d
        rho = rho_next
    return z


def csr_with_empty_rows(n=203, seed=5):
    """SPD CSR with odd n (the row-pair loop's tail), rows of varying length, one 1x1 row."""
    A = random_sparse_spd(n, density=0.03, seed=seed).tolil()
    A[7, :] = 0.0
    A[:, 7] = 0.0
    A[7, 7] = 3.0  # a row with one entry
    return sp.csr_matrix(A)


MATRICES = {
    "csr": lambda: random_sparse_spd(300, density=0.02, seed=1),
    "csr odd n": csr_with_empty_rows,
    "dia": lambda: poisson2d(17) + sp.diags(np.linspace(0.0, 1.0, 289)),
}


def layout_of(M):
    return M._operator.layout


# --- the polynomial is the one applied before ---------------------------------------

@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5, 8])
def test_fused_equals_the_unfused_recurrence_float64(matrix, degree):
    A = MATRICES[matrix]()
    M = chebyshev(A, degree)
    assert M._fused is not None and layout_of(M) == matrix.split()[0]
    r = np.random.default_rng(degree).standard_normal(A.shape[0])
    expected = unfused(A.tocsr(), r, degree, M.bounds)
    np.testing.assert_allclose(np.linalg.norm(M.matvec(r) - expected), 0.0,
                               atol=1e-13 * np.linalg.norm(expected))


@pytest.mark.parametrize("degree", [1, 2, 4, 7])
def test_generic_path_matches_fused_and_unfused(degree):
    # dense, matrix-free and array_api_strict operators take the array path
    A = random_sparse_spd(120, density=0.05, seed=3)
    r = np.random.default_rng(0).standard_normal(120)
    fused = chebyshev(A, degree)
    bounds = fused.bounds
    expected = unfused(A, r, degree, bounds)
    dense = chebyshev(A.toarray(), degree, bounds=bounds)
    assert dense._fused is None
    for z in (fused.matvec(r), dense.matvec(r)):
        assert np.linalg.norm(z - expected) <= 1e-13 * np.linalg.norm(expected)
    xp = pytest.importorskip("array_api_strict")
    strict = chebyshev(xp.asarray(A.toarray()), degree, bounds=bounds).matvec(xp.asarray(r))
    assert np.linalg.norm(np.asarray(strict) - expected) <= 1e-13 * np.linalg.norm(expected)


@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("degree", [1, 4, 8])
def test_float32_runs_in_float32_within_the_derived_bound(matrix, degree):
    A64 = MATRICES[matrix]()
    A32 = A64.astype(np.float32)
    M = chebyshev(A32, degree)
    assert M._fused is not None and M.dtype == np.float32
    r32 = np.random.default_rng(1).standard_normal(A64.shape[0]).astype(np.float32)
    z = M.matvec(r32)
    assert z.dtype == np.float32
    # exact value of the same polynomial of the same (float32) matrix, in float64
    lo, hi = M.bounds
    exact = unfused(A32.astype(np.float64).tocsr(), r32.astype(np.float64), degree, M.bounds)
    # as test_precond's: the recurrence is stable, error ~ degree * eps * ||A|| * ||p||,
    # ||A|| ||p|| <= hi / lo (relative to ||p(A) r||); the unfused recurrence meets the same
    tol = 50 * degree * EPS[np.float32] * hi / lo
    assert np.linalg.norm(z - exact) <= tol * np.linalg.norm(exact)
    before = unfused(A32.tocsr(), r32, degree, M.bounds)
    assert before.dtype == np.float32
    assert np.linalg.norm(z - before) <= 2 * tol * np.linalg.norm(exact)
    # the step kernels compiled for float32 only: float32 arrays and float32 scalars
    kernels = [numba_chebyshev._csr_step, numba_chebyshev._csr_step_serial,
               numba_chebyshev._dia_step, numba_chebyshev._dia_step_serial]
    for kernel in kernels:
        for signature in kernel.nopython_signatures:
            if "float32" in str(signature.args[-5]):
                assert all(str(arg) == "float32" for arg in signature.args[-4:]), signature


# --- kernels against their reference twins ------------------------------------------

def step_bound(absA, r, y, w, sy, sw, a, b, row_length, eps):
    """Componentwise rounding bound of one step: (row length + 6) eps times the magnitudes."""
    cur = abs(sy) * np.abs(y)
    magnitude = cur + abs(a) * (cur + abs(sw) * np.abs(w)) + \
        abs(b) * (np.abs(r) + abs(sy) * (absA @ np.abs(y)))
    return (row_length + 6) * eps * magnitude


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["csr", "dia"])
@pytest.mark.parametrize("in_place", [False, True])
def test_step_kernel_matches_reference(dtype, layout, in_place):
    A = (csr_with_empty_rows() if layout == "csr" else MATRICES["dia"]()).astype(dtype)
    A = sp.csr_matrix(A)
    n = A.shape[0]
    rng = np.random.default_rng(2)
    r, y, w = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    scalars = tuple(dtype(v) for v in (1.0 / 3.0, 0.7, 0.45, 0.6))
    if layout == "csr":
        matrix = (A.indptr, A.indices, A.data)
    else:
        from cext import csr_to_dia
        dia = csr_to_dia(A.indptr, A.indices, A.data, n)
        assert dia is not None
        matrix = (dia.offsets, dia.values)
    name = f"{layout}_chebyshev_step"
    results = []
    registry = kernels_for(np)
    for kernel in (getattr(numba_chebyshev, name), getattr(reference_chebyshev, name),
                   getattr(registry, name)):
        w_copy = w.copy()
        out = w_copy if in_place else np.full(n, np.nan, dtype=dtype)
        assert kernel(*matrix, r, y, w_copy, out, *scalars) is out  # returns what it wrote
        assert out.dtype == dtype
        results.append(out)
    row_length = int(np.diff(A.indptr).max())
    bound = step_bound(abs(A).astype(np.float64), r, y, w, *(float(s) for s in scalars),
                       row_length, EPS[dtype])
    for out in results[1:]:
        assert np.all(np.abs(out.astype(np.float64) - results[0]) <= bound)
    np.testing.assert_array_equal(results[2], results[0])  # the registry's: the same kernel


def test_numba_step_kernels_are_handed_out_under_the_thread_policy():
    # as cext.registry does for PARALLEL_KERNELS: wrapped by cext.threads.managed
    registry = kernels_for(np)
    for name in ("csr_chebyshev_step", "dia_chebyshev_step"):
        kernel = getattr(registry, name)
        assert kernel is not getattr(numba_chebyshev, name)
        assert kernel.__wrapped__ is getattr(numba_chebyshev, name)
        assert getattr(kernels_for(array_api_strict), name) is getattr(reference_chebyshev, name)
    M = chebyshev(random_sparse_spd(40, density=0.1, seed=0), 3)
    assert M._fused[0] is registry.csr_chebyshev_step


@pytest.mark.parametrize("layout", ["csr", "dia"])
def test_parallel_and_serial_kernels_agree_bitwise(layout):
    # no reduction across rows: each out[i] is summed in CSR (diagonal) order either way
    A = sp.csr_matrix(random_sparse_spd(5000, density=0.002, seed=4) if layout == "csr"
                      else poisson2d(70))
    n = A.shape[0]
    rng = np.random.default_rng(3)
    r, y, w = (rng.standard_normal(n) for _ in range(3))
    if layout == "csr":
        matrix = (unsigned_view(A.indptr), unsigned_view(A.indices), A.data)
        kernels = (numba_chebyshev._csr_step, numba_chebyshev._csr_step_serial)
    else:
        from cext import csr_to_dia
        dia = csr_to_dia(A.indptr, A.indices, A.data, n)
        matrix = (dia.offsets, dia.values)
        kernels = (numba_chebyshev._dia_step, numba_chebyshev._dia_step_serial)
    outs = []
    for kernel in kernels:
        out = np.empty(n)
        kernel(*matrix, r, y, w, out, 0.5, 1.0, 0.25, 0.125)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_reference_twin_runs_on_array_api_strict():
    xp = pytest.importorskip("array_api_strict")
    A = csr_with_empty_rows()
    n = A.shape[0]
    rng = np.random.default_rng(6)
    r, y, w = (rng.standard_normal(n) for _ in range(3))
    expected = np.empty(n)
    numba_chebyshev.csr_chebyshev_step(A.indptr, A.indices, A.data, r, y, w, expected,
                                       0.5, 1.0, 0.25, 0.125)
    out = xp.zeros(n, dtype=xp.float64)
    reference_chebyshev.csr_chebyshev_step(
        xp.asarray(A.indptr), xp.asarray(A.indices), xp.asarray(A.data), xp.asarray(r),
        xp.asarray(y), xp.asarray(w), out, 0.5, 1.0, 0.25, 0.125)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-13, atol=1e-13)


def test_reference_twin_returns_new_arrays_on_jax():
    jnp = pytest.importorskip("jax.numpy")
    import jax

    jax.config.update("jax_enable_x64", True)
    layout = poisson2d(6)
    from cext import csr_to_dia
    dia = csr_to_dia(layout.indptr, layout.indices, layout.data, 36)
    rng = np.random.default_rng(7)
    r, y, w = (rng.standard_normal(36) for _ in range(3))
    for name, matrix, jax_matrix in (
            ("csr", (layout.indptr, layout.indices, layout.data),
             (jnp.asarray(layout.indptr), jnp.asarray(layout.indices), jnp.asarray(layout.data))),
            ("dia", (dia.offsets, dia.values), (dia.offsets, jnp.asarray(dia.values)))):
        expected = getattr(numba_chebyshev, f"{name}_chebyshev_step")(
            *matrix, r, y, w, np.empty(36), 0.5, 1.0, 0.25, 0.125)
        out = jnp.zeros(36)
        result = getattr(reference_chebyshev, f"{name}_chebyshev_step")(
            *jax_matrix, jnp.asarray(r), jnp.asarray(y), jnp.asarray(w), out,
            0.5, 1.0, 0.25, 0.125)
        np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-13, atol=1e-13)
        assert not np.asarray(out).any()  # immutable: out untouched, the result is new


# --- the step plan ------------------------------------------------------------------

@pytest.mark.parametrize("degree", [1, 2, 3, 6])
def test_one_pass_over_A_per_degree_and_no_product_of_z0(degree, monkeypatch):
    A = random_sparse_spd(100, density=0.05, seed=7)
    M = chebyshev(A, degree)
    kernel, matrix = M._fused
    calls = []

    def counting(*args):
        calls.append(args)
        return kernel(*args)

    monkeypatch.setattr(M, "_fused", (counting, matrix))
    forbidden = M._operator.matvec
    monkeypatch.setattr(M._operator, "matvec", lambda v: pytest.fail(f"extra product {forbidden}"))
    r = np.random.default_rng(0).standard_normal(100)
    z = M.matvec(r)
    assert len(calls) == degree  # degree passes over A; z_0 = 0 costs none
    np.testing.assert_allclose(z, unfused(A, r, degree, M.bounds), rtol=1e-12)
    # the output of one step is never the vector it reads (y), only, from step 3, w
    for args in calls:
        r_arg, y, w, out = args[len(matrix):len(matrix) + 4]
        assert out is not y and out is not r_arg
    for args in calls[2:]:
        y, w, out = args[len(matrix) + 1:len(matrix) + 4]
        assert out is w


def test_step_coefficients_are_saads():
    lo, hi = 0.5, 4.0
    theta, delta = (hi + lo) / 2, (hi - lo) / 2
    sigma = theta / delta
    rho = 1 / sigma
    for k, (sy, sw, a, b) in enumerate(chebyshev_steps(5, (lo, hi))):
        rho_next = 1 / (2 * sigma - rho)
        assert (a, b) == (rho_next * rho, 2 * rho_next / delta)
        expected_scales = [(1 / theta, 0.0), (1.0, 1 / theta)][k] if k < 2 else (1.0, 1.0)
        assert (sy, sw) == expected_scales
        rho = rho_next


# --- inputs, properties -------------------------------------------------------------

def test_strided_readonly_and_integer_input():
    A = random_sparse_spd(64, density=0.08, seed=8)
    M = chebyshev(A, 4)
    r = np.random.default_rng(0).standard_normal(128)
    expected = M.matvec(np.ascontiguousarray(r[::2]))
    np.testing.assert_array_equal(M.matvec(r[::2]), expected)
    frozen = r[::2].copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(M.matvec(frozen), expected)
    ints = np.arange(64)
    np.testing.assert_array_equal(M.matvec(ints), M.matvec(ints.astype(np.float64)))
    np.testing.assert_array_equal(ints, np.arange(64))


def test_nan_in_r_reaches_the_result():
    for matrix in (random_sparse_spd(50, density=0.1, seed=9), poisson2d(7) + sp.eye(49)):
        M = chebyshev(matrix, 3)
        r = np.ones(matrix.shape[0])
        r[3] = np.nan
        assert np.isnan(M.matvec(r)).any()


@pytest.mark.parametrize("matrix", ["csr", "dia"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_preconditioner_is_spd_and_pcg_converges(matrix, dtype):
    A = MATRICES[matrix]().astype(dtype)
    n = A.shape[0]
    M = chebyshev(A, 4)
    assert M._fused is not None
    identity = np.eye(n, dtype=dtype)
    dense = np.column_stack([M.matvec(identity[:, j]) for j in range(n)]).astype(np.float64)
    scale = np.abs(dense).max()
    assert np.abs(dense - dense.T).max() <= 100 * EPS[dtype] * scale * M.bounds[1] / M.bounds[0]
    assert np.linalg.eigvalsh((dense + dense.T) / 2).min() > 0
    b = np.random.default_rng(5).standard_normal(n).astype(dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    plain = pcg(A, b, rtol=rtol)
    result = pcg(A, b, M=M, rtol=rtol)
    assert result.converged and result.x.dtype == dtype
    assert result.iterations < plain.iterations


def test_random_spd_dense_keeps_the_polynomial():
    # a dense SPD matrix stored as CSR (full rows): the fused path on long rows
    A = random_spd(40, cond=30.0, seed=2)
    M = chebyshev(sp.csr_matrix(A), 6, bounds=(0.9, 31.0))
    r = np.random.default_rng(1).standard_normal(40)
    expected = unfused(A, r, 6, (0.9, 31.0))
    assert np.linalg.norm(M.matvec(r) - expected) <= 1e-13 * np.linalg.norm(expected)
