"""CuPy kernels against float64 oracles and cext.reference; PCG end to end on the GPU.

Skips where CuPy or a CUDA device is missing (the CUDA sources are still
compile-checked by ``test_cuda_sources.py`` there); fails instead under
``LINSOLVE_REQUIRE_GPU=1`` (``make gpu-check``). Tolerances are derived
from the dtype's eps and the number of terms summed, as in ``test_cext.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.gpu import cupy_or_skip

pytestmark = pytest.mark.gpu
cupy = cupy_or_skip()

import cupyx.scipy.sparse as cusp  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from array_api_compat import array_namespace  # noqa: E402

import linsolve  # noqa: E402
from cext import csr_to_dia, kernels_for, reference  # noqa: E402
from cext import cupy as cuk  # noqa: E402

from tests.problems import poisson2d, random_sparse_spd, random_spd  # noqa: E402

DTYPES = [np.float32, np.float64]


def _tolerance(dtype, terms: int) -> float:
    # Summation error bound ~ terms * eps relative to sum |a_i b_i| (as in test_cext.py).
    return 4 * terms * np.finfo(dtype).eps


def _vector(n, dtype, seed):
    return np.random.default_rng(seed).standard_normal(n).astype(dtype)


def _matrices():
    """CSR test matrices covering every lanes-per-row choice (1 .. 32) and empty rows."""
    rng = np.random.default_rng(0)
    tridiagonal = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(300, 300), format="csr")
    sparse = sp.random(500, 500, density=0.02, random_state=rng, format="csr") + sp.eye(500)
    wide = sp.random(200, 200, density=0.3, random_state=rng, format="csr")  # ~60 per row
    empty_rows = sp.random(257, 257, density=0.01, random_state=rng, format="csr")
    empty_rows = sp.csr_matrix(empty_rows.multiply(np.arange(257)[:, None] % 3 != 0))
    return {"tridiagonal": tridiagonal, "sparse": sparse.tocsr(), "wide": wide,
            "empty_rows": empty_rows, "poisson": poisson2d(20)}


MATRICES = _matrices()


def _csr_device(A, dtype, index_dtype):
    return (cupy.asarray(A.indptr.astype(index_dtype)), cupy.asarray(A.indices.astype(index_dtype)),
            cupy.asarray(A.data.astype(dtype)))


def _row_width(A) -> int:
    return max(1, int(np.diff(A.indptr).max(initial=0)))


def _check_product(q_device, A, x, dtype):
    """Entrywise bound |q - A x| <= tol * (|A| |x|), against a float64 product."""
    q = cupy.asnumpy(q_device).astype(np.float64)
    A64 = A.astype(np.float64)
    exact = A64 @ x.astype(np.float64)
    scale = abs(A64) @ np.abs(x.astype(np.float64))
    assert np.all(np.abs(q - exact) <= _tolerance(dtype, _row_width(A) + 1) * scale + 1e-300)
    return exact, scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", sorted(MATRICES))
def test_csr_spmv_matches_float64_product(name, index_dtype, dtype):
    A = MATRICES[name]
    indptr, indices, data = _csr_device(A, dtype, index_dtype)
    x = _vector(A.shape[0], dtype, 1)
    out = cupy.full(A.shape[0], np.nan, dtype=dtype)
    cuk.csr_spmv(indptr, indices, data, cupy.asarray(x), out)
    _check_product(out, A, x, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", sorted(MATRICES))
def test_csr_spmv_dot_matches_reference(name, index_dtype, dtype):
    A = MATRICES[name]
    indptr, indices, data = _csr_device(A, dtype, index_dtype)
    p_host = _vector(A.shape[0], dtype, 2)
    p = cupy.asarray(p_host)
    q = cupy.full(A.shape[0], np.nan, dtype=dtype)
    pq = cuk.csr_spmv_dot(indptr, indices, data, p, q)
    assert isinstance(pq, float)
    exact, scale = _check_product(q, A, p_host, dtype)
    q_ref = cupy.empty_like(p)
    pq_ref = reference.csr_spmv_dot(indptr, indices, data, p, q_ref)
    np.testing.assert_allclose(cupy.asnumpy(q), cupy.asnumpy(q_ref),
                               rtol=_tolerance(dtype, _row_width(A) + 1),
                               atol=_tolerance(dtype, _row_width(A) + 1) * float(scale.max()))
    magnitude = float(np.abs(p_host.astype(np.float64)) @ scale)
    bound = _tolerance(dtype, _row_width(A) + 2) * magnitude
    assert abs(pq - float(p_host.astype(np.float64) @ exact)) <= bound
    assert abs(pq - pq_ref) <= bound + _tolerance(dtype, A.shape[0]) * magnitude
    p_unchanged = cupy.asnumpy(p)
    np.testing.assert_array_equal(p_unchanged, p_host)


@pytest.mark.parametrize("dtype", DTYPES)
def test_csr_spmv_dot_is_deterministic_and_propagates_nan(dtype):
    A = MATRICES["sparse"]
    indptr, indices, data = _csr_device(A, dtype, np.int32)
    p = cupy.asarray(_vector(A.shape[0], dtype, 3))
    q = cupy.empty_like(p)
    first = cuk.csr_spmv_dot(indptr, indices, data, p, q)
    assert all(cuk.csr_spmv_dot(indptr, indices, data, p, q) == first for _ in range(5))
    p[7] = np.nan
    assert math.isnan(cuk.csr_spmv_dot(indptr, indices, data, p, q))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dia_kernels_match_reference(dtype):
    A = poisson2d(17, dtype=dtype)
    layout = csr_to_dia(A.indptr, A.indices, A.data, A.shape[0])
    assert layout is not None
    values = cupy.asarray(layout.values)
    x_host = _vector(A.shape[0], dtype, 4)
    x = cupy.asarray(x_host)
    out = cupy.full_like(x, np.nan)
    cuk.dia_spmv(layout.offsets, values, x, out)
    exact, scale = _check_product(out, A, x_host, dtype)
    out_ref = cupy.empty_like(x)
    reference.dia_spmv(layout.offsets, values, x, out_ref)
    # Same diagonal order as the reference, but NVRTC contracts a*b + c into an
    # FMA (more accurate, not bit-identical): compare with the rounding bound.
    np.testing.assert_allclose(cupy.asnumpy(out), cupy.asnumpy(out_ref), rtol=0,
                               atol=_tolerance(dtype, 7) * float(scale.max()))
    q = cupy.full_like(x, np.nan)
    pq = cuk.dia_spmv_dot(layout.offsets, values, x, q)
    np.testing.assert_array_equal(cupy.asnumpy(q), cupy.asnumpy(out))
    magnitude = float(np.abs(x_host.astype(np.float64)) @ scale)
    assert abs(pq - float(x_host.astype(np.float64) @ exact)) <= _tolerance(dtype, 7) * magnitude
    assert cuk.dia_spmv_dot(layout.offsets, values, x, q) == pq  # deterministic
    x[0] = np.inf
    assert not math.isfinite(cuk.dia_spmv_dot(layout.offsets, values, x, q))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dia_offsets_beyond_the_matrix_and_empty(dtype):
    n = 50
    offsets = (-60, -3, 0, 5)  # the first diagonal lies wholly outside
    values_host = np.random.default_rng(5).standard_normal((len(offsets), n)).astype(dtype)
    dense = np.zeros((n, n))
    for d, off in enumerate(offsets):
        for i in range(n):
            if 0 <= i + off < n:
                dense[i, i + off] = values_host[d, i]
    x_host = _vector(n, dtype, 6)
    out = cupy.empty(n, dtype=dtype)
    cuk.dia_spmv(offsets, cupy.asarray(values_host), cupy.asarray(x_host), out)
    _check_product(out, sp.csr_matrix(dense), x_host, dtype)
    assert cuk.dia_spmv_dot((), cupy.empty((0, 0), dtype=dtype), cupy.empty(0, dtype=dtype),
                            cupy.empty(0, dtype=dtype)) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 255, 256, 1000, 300_001])
def test_dot_matches_float64(n, dtype):
    a_host, b_host = _vector(n, dtype, 7), _vector(n, dtype, 8)
    value = cuk.dot(cupy.asarray(a_host), cupy.asarray(b_host))
    assert isinstance(value, float)
    exact = float(a_host.astype(np.float64) @ b_host.astype(np.float64))
    magnitude = float(np.abs(a_host.astype(np.float64)) @ np.abs(b_host.astype(np.float64)))
    # Products of float32 are exact in float64; only the float64 sum rounds.
    assert abs(value - exact) <= _tolerance(np.float64, n) * magnitude
    ref = reference.dot(cupy.asarray(a_host), cupy.asarray(b_host))
    assert abs(value - ref) <= _tolerance(dtype, n) * magnitude


def _assert_rounded_once(device, exact64, magnitude, dtype):
    # |computed - exact| <= eps |exact| (one rounding to dtype) plus a few
    # float64 roundings of the terms (the float64 oracle rounds too).
    computed = cupy.asnumpy(device).astype(np.float64)
    bound = (np.finfo(dtype).eps * np.abs(exact64)
             + 4 * np.finfo(np.float64).eps * magnitude.astype(np.float64))
    assert np.all(np.abs(computed - exact64) <= bound)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cg_updates_match_reference(dtype):
    n = 10_007
    x_host, r_host, p_host, q_host, z_host = (_vector(n, dtype, s) for s in range(10, 15))
    alpha, beta = 0.37, 1.9
    x, r, p, q = (cupy.asarray(v) for v in (x_host, r_host, p_host, q_host))
    rr = cuk.cg_update_xr(x, r, p, q, alpha)
    x64 = x_host.astype(np.float64) + alpha * p_host.astype(np.float64)
    r64 = r_host.astype(np.float64) - alpha * q_host.astype(np.float64)
    eps = np.finfo(dtype).eps
    # Computed in float64 (possibly as one FMA) and rounded once to dtype.
    _assert_rounded_once(x, x64, np.abs(x_host) + abs(alpha) * np.abs(p_host), dtype)
    _assert_rounded_once(r, r64, np.abs(r_host) + abs(alpha) * np.abs(q_host), dtype)
    r_dev = cupy.asnumpy(r).astype(np.float64)
    assert abs(rr - float(r_dev @ r_dev)) <= _tolerance(np.float64, n) * float(r_dev @ r_dev)
    assert abs(rr - float(r64 @ r64)) <= 4 * eps * float(r64 @ r64)

    xr, rref, pr, qr = (cupy.asarray(v) for v in (x_host, r_host, p_host, q_host))
    rr_ref = reference.cg_update_xr(xr, rref, pr, qr, alpha)
    assert abs(rr - rr_ref) <= _tolerance(dtype, n) * float(r64 @ r64)

    p2, z = cupy.asarray(p_host), cupy.asarray(z_host)
    cuk.cg_update_p(p2, z, beta)
    p64 = z_host.astype(np.float64) + beta * p_host.astype(np.float64)
    _assert_rounded_once(p2, p64, np.abs(z_host) + abs(beta) * np.abs(p_host), dtype)
    p_ref = cupy.asarray(p_host)
    reference.cg_update_p(p_ref, z, beta)
    np.testing.assert_allclose(cupy.asnumpy(p2), cupy.asnumpy(p_ref), rtol=4 * eps,
                               atol=4 * eps * float(np.abs(p64).max()))

    r[3] = np.nan
    assert math.isnan(cuk.cg_update_xr(x, r, p, q, alpha))


def test_kernels_refuse_mixed_dtypes_and_strided_views():
    a = cupy.ones(10, dtype=cupy.float32)
    with pytest.raises(TypeError):
        cuk.dot(a, cupy.ones(10, dtype=cupy.float64))
    with pytest.raises(ValueError):
        cuk.dot(cupy.ones(20)[::2], cupy.ones(10))
    assert cuk.dot(cupy.ones(0), cupy.ones(0)) == 0.0


def test_registry_hands_out_the_cupy_kernels():
    kernels = kernels_for(array_namespace(cupy.ones(3)))
    assert kernels.backend == "cupy"
    assert kernels.csr_spmv_dot is cuk.csr_spmv_dot
    assert kernels.cg_update_xr is cuk.cg_update_xr
    assert kernels.dot is cuk.dot


def _pcg_tolerance(A, rtol):
    # ||x - x*|| / ||x*|| <= cond(A) * rtol for each solve; two solves compared.
    eigenvalues = np.linalg.eigvalsh(np.asarray(A.toarray() if sp.issparse(A) else A,
                                                dtype=np.float64))
    return 2 * eigenvalues[-1] / eigenvalues[0] * rtol


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_pcg_on_cupyx_csr_poisson_matches_numpy(dtype, rtol):
    A = poisson2d(16, dtype=dtype)
    b_host = _vector(A.shape[0], dtype, 20)
    cpu = linsolve.pcg(A, b_host, rtol=rtol)
    gpu = linsolve.pcg(cusp.csr_matrix(A), cupy.asarray(b_host), rtol=rtol)
    assert cpu.converged and gpu.converged, (cpu.reason, gpu.reason)
    assert isinstance(gpu.x, cupy.ndarray) and gpu.x.dtype == dtype
    x_gpu = cupy.asnumpy(gpu.x).astype(np.float64)
    x_cpu = cpu.x.astype(np.float64)
    assert np.linalg.norm(x_gpu - x_cpu) <= _pcg_tolerance(A, rtol) * np.linalg.norm(x_cpu)
    assert abs(gpu.iterations - cpu.iterations) <= max(2, cpu.iterations // 10)
    # pcg certified its true residual in working precision; recomputed in
    # float64 it may differ by the rounding of that product, ~eps ||A|| ||x||.
    A64 = A.astype(np.float64)
    residual = b_host.astype(np.float64) - A64 @ x_gpu
    rounding = 10 * np.finfo(dtype).eps * np.linalg.norm(abs(A64) @ np.abs(x_gpu))
    assert np.linalg.norm(residual) <= rtol * np.linalg.norm(b_host.astype(np.float64)) + rounding


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_pcg_on_dense_cupy_matches_numpy(dtype, rtol):
    A = random_spd(60, cond=50.0, seed=3, dtype=dtype)
    b_host = _vector(60, dtype, 21)
    cpu = linsolve.pcg(A, b_host, rtol=rtol)
    gpu = linsolve.pcg(cupy.asarray(A), cupy.asarray(b_host), rtol=rtol)
    assert cpu.converged and gpu.converged, (cpu.reason, gpu.reason)
    assert isinstance(gpu.x, cupy.ndarray) and gpu.x.dtype == dtype
    x_gpu = cupy.asnumpy(gpu.x).astype(np.float64)
    x_cpu = cpu.x.astype(np.float64)
    assert np.linalg.norm(x_gpu - x_cpu) <= _pcg_tolerance(A, rtol) * np.linalg.norm(x_cpu)


# --- coloured SOR sweeps (cext.cupy.sor) against cext.reference ---

def _sor_arrays(dtype, index_dtype, ordering, N=16):
    """2-D Poisson prepared for coloured sweeps (rows stored by colour), host arrays."""
    from linsolve.stationary.sor import SorMatrix

    from tests.problems import rows_by_colour

    indptr, indices, data, diag, color_ptr, rows = rows_by_colour(
        SorMatrix(poisson2d(N), dtype=dtype, ordering=ordering))
    return (indptr.astype(index_dtype), indices.astype(index_dtype), data, diag, color_ptr,
            rows.astype(index_dtype))


def _sor_scale(*vectors) -> float:
    # Poisson rows: diag 4, off-diagonal |row sum| <= 4, omega <= 2, so every
    # update is bounded by a few times the largest |x| and |b|.
    return max(float(np.abs(v.astype(np.float64)).max()) for v in vectors)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ordering", ["redblack", "multicolor"])
def test_sor_sweep_colored_matches_reference(ordering, index_dtype, dtype):
    indptr, indices, data, diag, color_ptr, rows = _sor_arrays(dtype, index_dtype, ordering)
    n = diag.shape[0]
    b_host, x_host = _vector(n, dtype, 30), _vector(n, dtype, 31)
    device = [cupy.asarray(a) for a in (indptr, indices, data, diag, b_host)]
    x = cupy.array(x_host)  # a copy (x_host is the starting point below)
    x_ref = x_host.copy()
    for reverse, omega, ptr in ((False, 1.5, color_ptr), (True, 0.8, cupy.asarray(color_ptr)),
                                (False, 1.0, color_ptr)):
        cuk.sor_sweep_colored(*device, x, omega, ptr, cupy.asarray(rows), reverse)
        reference.sor_sweep_colored(indptr, indices, data, diag, b_host, x_ref, omega, color_ptr,
                                    rows, reverse)
        tol = 32 * np.finfo(dtype).eps * (_sor_scale(x_ref, b_host) + _sor_scale(x_host))
        np.testing.assert_allclose(cupy.asnumpy(x), x_ref, rtol=0, atol=tol)
    assert x.dtype == dtype
    assert not np.allclose(x_ref, x_host)  # the sweeps did something


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ordering", ["natural", "redblack"])
def test_sor_residual_norm2_split_matches_reference(ordering, index_dtype, dtype):
    indptr, indices, data, diag, _, rows = _sor_arrays(dtype, index_dtype, ordering)
    n = diag.shape[0]
    assert (rows.shape[0] == 0) == (ordering == "natural")
    b_host, x_host = _vector(n, dtype, 32), _vector(n, dtype, 33)
    device = [cupy.asarray(a) for a in (indptr, indices, data, diag, b_host, x_host, rows)]
    value = cuk.csr_residual_norm2_split(*device)
    assert isinstance(value, float)
    expected = reference.csr_residual_norm2_split(indptr, indices, data, diag, b_host, x_host,
                                                  rows)
    A = poisson2d(16)
    magnitude = float(np.sum((np.abs(b_host.astype(np.float64))
                              + abs(A) @ np.abs(x_host.astype(np.float64))) ** 2))
    # Products of float32 are exact in float64: only float64 roundings remain.
    assert abs(value - expected) <= _tolerance(np.float64, n + 8) * magnitude
    b64, x64 = b_host.astype(np.float64), x_host.astype(np.float64)
    bound = _tolerance(np.float64, n + 8) * magnitude
    assert abs(value - float(np.sum((b64 - A @ x64) ** 2))) <= bound
    assert all(cuk.csr_residual_norm2_split(*device) == value for _ in range(5))  # deterministic
    device[5][3] = np.nan
    assert math.isnan(cuk.csr_residual_norm2_split(*device))
    empty = [cupy.zeros(1, dtype=index_dtype)] + [cupy.empty(0, dtype=t) for t in
                                                  (index_dtype, dtype, dtype, dtype, dtype,
                                                   index_dtype)]
    assert cuk.csr_residual_norm2_split(*empty) == 0.0


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-4)])
@pytest.mark.parametrize("symmetric,omega", [(False, 1.5), (True, 1.0)])
def test_sor_run_matches_reference(symmetric, omega, dtype, rtol):
    # (red-black SSOR converges slowly for large omega: ~900 sweeps at 1.5, 520 at 1.0)
    indptr, indices, data, diag, color_ptr, rows = _sor_arrays(dtype, np.int32, "redblack")
    n = diag.shape[0]
    b_host = _vector(n, dtype, 34)
    tol = rtol * float(np.linalg.norm(b_host.astype(np.float64)))
    x_ref = np.zeros(n, dtype=dtype)
    norms_ref = np.full(1000, np.nan)
    norms_ref[0] = float(np.linalg.norm(b_host.astype(np.float64)))
    k_ref = reference.sor_run(indptr, indices, data, diag, b_host, x_ref, omega, symmetric,
                              color_ptr, rows, tol, 1e5 * norms_ref[0], 999, norms_ref, 0)
    device = [cupy.asarray(a) for a in (indptr, indices, data, diag, b_host)]
    x = cupy.zeros(n, dtype=dtype)
    norms = np.full(1000, np.nan)
    norms[0] = norms_ref[0]
    k = cuk.sor_run(*device, x, omega, symmetric, color_ptr, cupy.asarray(rows), tol,
                    1e5 * norms[0], 999, norms, 0)
    assert norms_ref[k_ref] <= tol and norms[k] <= tol  # both converged
    assert abs(k - k_ref) <= 1
    assert np.isnan(norms[k + 1:]).all()
    x_dev = cupy.asnumpy(x).astype(np.float64)
    # The rounding differences stay bounded (SOR contracts); 8 = ||A||_inf of Poisson.
    slack = 1e3 * np.finfo(dtype).eps * (8 * float(np.linalg.norm(x_dev)) + norms_ref[0])
    common = min(k, k_ref)
    np.testing.assert_allclose(norms[:common + 1], norms_ref[:common + 1], rtol=0, atol=slack)
    np.testing.assert_allclose(x_dev, x_ref.astype(np.float64), rtol=0,
                               atol=_pcg_tolerance(poisson2d(16), rtol) * float(np.abs(x_ref).max())
                               + slack)
    # the norms it reported are the true residual of the x it returns
    true = float(np.linalg.norm(b_host.astype(np.float64) - poisson2d(16) @ x_dev))
    assert abs(norms[k] - true) <= slack


def test_sor_run_refuses_lexicographic_and_stops_on_nan():
    indptr, indices, data, diag, color_ptr, rows = _sor_arrays(np.float64, np.int32, "natural")
    device = [cupy.asarray(a) for a in (indptr, indices, data, diag)]
    b = cupy.ones(diag.shape[0])
    with pytest.raises(NotImplementedError, match="redblack"):
        cuk.sor_run(*device, b, cupy.zeros_like(b), 1.0, False, color_ptr, cupy.asarray(rows),
                    1e-8, 1e5, 10, np.zeros(11), 0)
    indptr, indices, data, diag, color_ptr, rows = _sor_arrays(np.float64, np.int32, "redblack")
    device = [cupy.asarray(a) for a in (indptr, indices, data, diag)]
    b[5] = np.nan
    norms = np.zeros(11)
    k = cuk.sor_run(*device, b, cupy.zeros_like(b), 1.0, False, color_ptr, cupy.asarray(rows),
                    1e-8, 1e5, 10, norms, 0)
    assert k == 1 and math.isnan(norms[1])


def test_registry_hands_out_the_cupy_sor_kernels_and_reference_for_the_rest():
    kernels = kernels_for(array_namespace(cupy.ones(3)))
    assert kernels.sor_sweep_colored is cuk.sor_sweep_colored
    assert kernels.sor_run is cuk.sor_run
    assert kernels.csr_residual_norm2_split is cuk.csr_residual_norm2_split
    assert kernels.sor_sweep_forward is reference.sor_sweep_forward
    assert kernels.greedy_coloring is reference.greedy_coloring


# --- the block kernels of the batched iterations (cext.cupy.block) ---

@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 5, 8])
def test_block_kernels_match_reference(k, dtype, index_dtype):
    from cext.cupy import block as cublock
    from cext.numba import block as nbblock

    A = MATRICES["sparse"].astype(dtype)
    n = A.shape[0]
    rng = np.random.default_rng(k)
    X, R, P = (rng.standard_normal((n, k)).astype(dtype) for _ in range(3))
    alpha, beta = rng.standard_normal(k), rng.standard_normal(k)
    indptr, indices, data = _csr_device(A, dtype, index_dtype)
    Q_d, dots_d = cupy.empty((n, k), dtype=dtype), cupy.empty(k)
    cublock.csr_spmm_dot(indptr, indices, data, cupy.asarray(P), Q_d, dots_d)
    Q64 = A.astype(np.float64) @ P.astype(np.float64)
    terms = int(np.diff(A.indptr).max())
    scale = abs(A.astype(np.float64)) @ abs(P.astype(np.float64))
    assert np.all(abs(cupy.asnumpy(Q_d) - Q64) <= _tolerance(dtype, terms) * scale + 1e-300)
    if dtype == np.float64:
        # CSR order, no FMA: the Numba kernel's (and the serial loop's) bits
        Q_cpu, dots_cpu = np.empty_like(P), np.empty(k)
        nbblock.csr_spmm_dot(A.indptr, A.indices, A.data, P, Q_cpu, dots_cpu)
        np.testing.assert_array_equal(cupy.asarray(Q_d).get(), Q_cpu)
    Q = cupy.asnumpy(Q_d)
    exact = np.einsum("ij,ij->j", P.astype(np.float64), Q.astype(np.float64))
    bound = _tolerance(np.float64, n) * np.einsum("ij,ij->j", abs(P), abs(Q))
    assert np.all(abs(cupy.asnumpy(dots_d) - exact) <= bound + 1e-300)
    X_d, R_d, rr_d = cupy.asarray(X), cupy.asarray(R), cupy.empty(k)
    cublock.block_cg_update(X_d, R_d, cupy.asarray(P), Q_d, cupy.asarray(alpha), rr_d)
    X_ref, R_ref, _ = reference.block_cg_update(X.astype(np.float64), R.astype(np.float64),
                                                P.astype(np.float64), Q.astype(np.float64),
                                                alpha, np.empty(k))
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(cupy.asnumpy(X_d), X_ref, rtol=2 * eps, atol=eps)
    np.testing.assert_allclose(cupy.asnumpy(R_d), R_ref, rtol=2 * eps, atol=eps)
    R_new = cupy.asnumpy(R_d).astype(np.float64)
    np.testing.assert_allclose(cupy.asnumpy(rr_d), (R_new * R_new).sum(axis=0),
                               rtol=_tolerance(np.float64, n))
    P_d = cupy.asarray(P)
    cublock.block_update_p(P_d, R_d, beta)  # beta from the host
    np.testing.assert_allclose(cupy.asnumpy(P_d), R_new + beta * P.astype(np.float64),
                               rtol=2 * eps, atol=eps)
    out = cupy.full(k, np.nan)
    cublock.block_dots(P_d, R_d, out)
    U = cupy.asnumpy(P_d).astype(np.float64)
    np.testing.assert_allclose(cupy.asnumpy(out), (U * R_new).sum(axis=0),
                               rtol=_tolerance(np.float64, n), atol=1e-12)


def test_block_kernels_are_deterministic_and_keep_nan_in_its_column():
    from cext.cupy import block as cublock

    A = MATRICES["poisson"]
    n = A.shape[0]
    P = cupy.asarray(np.random.default_rng(3).standard_normal((n, 8)))
    P[7, 2] = cupy.nan
    indptr, indices, data = _csr_device(A, np.float64, np.int32)
    runs = []
    for _ in range(2):
        Q, dots = cupy.empty_like(P), cupy.empty(8)
        cublock.csr_spmm_dot(indptr, indices, data, P, Q, dots)
        runs.append((cupy.asnumpy(Q), cupy.asnumpy(dots)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    dots = runs[0][1]
    assert np.isnan(dots[2]) and np.isfinite(np.delete(dots, 2)).all()


def test_registry_hands_out_the_cupy_block_kernels():
    from cext.cupy import block as cublock

    kernels = kernels_for(array_namespace(cupy.ones(3)))
    assert kernels.csr_spmm_dot.__wrapped__ is cublock.csr_spmm_dot
    assert kernels.block_cg_update.__wrapped__ is cublock.block_cg_update
    assert kernels.block_update_p.__wrapped__ is cublock.block_update_p
    assert kernels.block_dots.__wrapped__ is cublock.block_dots


@pytest.mark.parametrize("k", [3, 8])
def test_batched_pcg_on_cupyx_csr_matches_numpy(k):
    A = random_sparse_spd(300, seed=k)  # not a stencil: the CSR block kernels
    B = np.random.default_rng(k).standard_normal((k, A.shape[0]))
    cpu = linsolve.pcg(A, B, rtol=1e-9)
    gpu = linsolve.pcg(cusp.csr_matrix(A), cupy.asarray(B), rtol=1e-9)
    assert isinstance(gpu.x, cupy.ndarray) and gpu.x.shape == (k, A.shape[0])
    assert gpu.converged.all() and cpu.converged.all()
    tolerance = _pcg_tolerance(A, 1e-9)
    for j in range(k):
        assert abs(int(gpu.iterations[j]) - int(cpu.iterations[j])) <= 2
        x_gpu = cupy.asnumpy(gpu.x[j])
        assert np.linalg.norm(x_gpu - cpu.x[j]) <= tolerance * np.linalg.norm(cpu.x[j])
