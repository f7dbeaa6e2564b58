"""The public GPU paths: pcg, preconditioners and curvature objects on CuPy arrays.

Each result is compared with the same call on NumPy/scipy, and pcg's
iteration counts with ``cupyx.scipy.sparse.linalg.cg``. The tests at the
end each confirm or refute a defect suspected by reading the CuPy code, and
say which. Skips without CuPy and a CUDA device; fails instead under
``LINSOLVE_REQUIRE_GPU=1`` (``make gpu-check``).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from .gpu import cupy_or_skip

pytestmark = pytest.mark.gpu
cupy = cupy_or_skip()

import cupyx.scipy.sparse as cusp  # noqa: E402

import curvature  # noqa: E402
from bench.gpu import cupyx_cg  # noqa: E402
from cext import reference  # noqa: E402
from linsolve import pcg, precond  # noqa: E402

from .problems import convection_diffusion, poisson2d, random_spd  # noqa: E402

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def _operator(kind, A, dtype):
    """``A`` (scipy CSR, float64) as the GPU operator of ``kind``."""
    if kind == "cupy dense":
        return cupy.asarray(A.toarray().astype(dtype))
    if kind == "cupyx csr":
        return cusp.csr_matrix(sp.csr_matrix(A.astype(dtype)))
    if kind == "callable":
        device = cusp.csr_matrix(sp.csr_matrix(A.astype(dtype)))
        return lambda v: device @ v
    raise AssertionError(kind)


def _preconditioner(name, A_host, A_device):
    if name == "none":
        return None, None
    if name == "jacobi":
        return precond.jacobi(A_host), precond.jacobi(A_device)
    if name == "chebyshev":
        return precond.chebyshev(A_host, 4), precond.chebyshev(A_device, 4)
    raise AssertionError(name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["cupy dense", "cupyx csr", "callable"])
@pytest.mark.parametrize("name", ["none", "jacobi", "chebyshev"])
def test_pcg_on_the_gpu_equals_the_host_solve(name, kind, dtype):
    A = sp.csr_matrix(poisson2d(12))
    n = A.shape[0]
    b = np.random.default_rng(0).standard_normal(n).astype(dtype)
    A_device = _operator(kind, A, dtype)
    if name != "none" and kind == "callable":
        pytest.skip("a preconditioner is built from entries")
    M_host, M_device = _preconditioner(name, sp.csr_matrix(A.astype(dtype)),
                                       A_device if kind != "callable" else None)
    host = pcg(sp.csr_matrix(A.astype(dtype)), b, M=M_host, rtol=RTOL[dtype], maxiter=500)
    device = pcg(A_device, cupy.asarray(b), M=M_device, rtol=RTOL[dtype], maxiter=500)
    assert device.converged and host.converged
    assert isinstance(device.x, cupy.ndarray) and device.x.dtype == dtype
    assert abs(device.iterations - host.iterations) <= (0 if dtype == np.float64 else 2)
    x = cupy.asnumpy(device.x).astype(np.float64)
    assert np.linalg.norm(b - A @ x) <= 1.01 * RTOL[dtype] * np.linalg.norm(b) * (
        1 if dtype == np.float64 else 10)
    scale = np.linalg.norm(host.x)
    assert np.linalg.norm(x - host.x) <= (1e-8 if dtype == np.float64 else 1e-3) * scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["minres", "gmres", "bicgstab"])
def test_the_krylov_family_on_the_gpu_equals_the_host_solve(method, dtype):
    import linsolve

    A = poisson2d(12) - 0.5 * sp.eye(144) if method == "minres" else convection_diffusion(12, 2.0)
    A = sp.csr_matrix(A.astype(dtype))
    b = np.random.default_rng(2).standard_normal(A.shape[0]).astype(dtype)
    solver = getattr(linsolve, method)
    options = {"restart": 30} if method == "gmres" else {}
    host = solver(A, b, rtol=RTOL[dtype], maxiter=2000, **options)
    device = solver(cusp.csr_matrix(A), cupy.asarray(b), rtol=RTOL[dtype], maxiter=2000,
                    **options)
    assert host.converged and device.converged, (host.reason, device.reason)
    assert isinstance(device.x, cupy.ndarray) and device.x.dtype == dtype
    x = cupy.asnumpy(device.x).astype(np.float64)
    assert np.linalg.norm(b - A @ x) <= 1.01 * RTOL[dtype] * np.linalg.norm(b) * (
        1 if dtype == np.float64 else 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_and_block_cg_on_the_gpu_equal_the_host(dtype):
    from linsolve import block_cg

    A = sp.csr_matrix(poisson2d(12).astype(dtype))
    B = np.random.default_rng(3).standard_normal((4, A.shape[0])).astype(dtype)
    for solve in (pcg, block_cg):
        host = solve(A, B, rtol=RTOL[dtype], maxiter=500)
        device = solve(cusp.csr_matrix(A), cupy.asarray(B), rtol=RTOL[dtype], maxiter=500)
        assert device.converged.all() and host.converged.all()
        assert isinstance(device.x, cupy.ndarray) and device.x.shape == B.shape
        X = cupy.asnumpy(device.x).astype(np.float64)
        for j in range(4):
            assert np.linalg.norm(B[j] - A @ X[j]) <= 1.01 * RTOL[dtype] * np.linalg.norm(B[j]) \
                * (1 if dtype == np.float64 else 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pcg_iterations_match_cupyx_cg(dtype):
    A = sp.csr_matrix(poisson2d(40).astype(dtype))
    b = cupy.asarray(np.random.default_rng(1).standard_normal(A.shape[0]).astype(dtype))
    device = cusp.csr_matrix(A)
    ours = pcg(device, b, rtol=1e-6, maxiter=2000)
    counted = []
    _, info = cupyx_cg(device, b, 1e-6, 2000, callback=lambda xk: counted.append(1))
    assert info == 0 and ours.converged
    assert abs(ours.iterations - len(counted)) <= 2


def test_pcg_check_every_does_not_sync_inside_the_iteration(monkeypatch):
    # with check_every > 1 the iteration keeps its scalars on the device between checks:
    # count device-to-host copies of the scalar partial sums
    A = cusp.csr_matrix(sp.csr_matrix(poisson2d(30)))
    b = cupy.ones(A.shape[0])
    copies = []
    original = cupy.ndarray.get

    def get(self, *args, **kwargs):
        copies.append(self.size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cupy.ndarray, "get", get)
    result = pcg(A, b, rtol=1e-30, maxiter=40, check_every=10)
    assert result.iterations == 40
    assert len(copies) <= 40 // 10 + 8, f"{len(copies)} copies to the host in 40 iterations"


def test_inverse_root_on_the_gpu_equals_the_host():
    A = random_spd(32, cond=1e3, seed=2)
    for method in ("eigh", "newton"):
        host = curvature.inverse_root(A, 4, eps=1e-6, method=method)
        device = curvature.inverse_root(cupy.asarray(A), 4, eps=1e-6, method=method)
        assert isinstance(device, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(device), host, rtol=1e-8, atol=1e-10)


def test_mfac_on_the_gpu_equals_the_host_and_takes_strided_vectors():
    # suspected: the CuPy M-FAC kernels refuse strided vectors as "not C-contiguous" where
    # NumPy views work; a strided CuPy vector must be accepted as a NumPy view is
    rng = np.random.default_rng(3)
    G = rng.standard_normal((6, 40))
    host, device = curvature.MFAC(40, 4, 1e-3), curvature.MFAC(40, 4, 1e-3, xp=cupy)
    for g in G:
        host.update(g)
        wide = cupy.zeros((40, 2))
        wide[:, 0] = cupy.asarray(g)
        device.update(wide[:, 0])
    v = rng.standard_normal(40)
    np.testing.assert_allclose(cupy.asnumpy(device.solve(cupy.asarray(v))), host.solve(v),
                               rtol=1e-10, atol=1e-12)


def test_spd_inverse_factor_reports_failure_on_the_gpu():
    # suspected: cupy.linalg.cholesky returns a finite, wrong factor without raising unless
    # told to, so M-FAC's eigen fallback would never run
    indefinite = cupy.asarray(np.array([[1.0, 2.0], [2.0, 1.0]]))
    out = cupy.empty((2, 2))
    assert reference.spd_inverse_factor(indefinite, out) is None


# --- defects suspected by reading the CuPy code, which a device run confirms or refutes ---

def _device_csr(A, index_dtype=np.int32, dtype=np.float64):
    return (cupy.asarray(A.indptr.astype(index_dtype)), cupy.asarray(A.indices.astype(index_dtype)),
            cupy.asarray(A.data.astype(dtype)))


def test_csr_spmv_takes_non_canonical_csr():
    # suspected: cuSPARSE refuses non-canonical CSR. The Numba kernel and the reference
    # accept any CSR; cuSPARSE refuses one row
    # with reversed indices unless the kernel goes around it
    A = sp.csr_matrix(poisson2d(8))
    indices = A.indices.copy()
    first, last = A.indptr[5], A.indptr[6]
    indices[first:last] = indices[first:last][::-1]
    data = A.data.copy()
    data[first:last] = data[first:last][::-1]
    B = sp.csr_matrix((data, indices, A.indptr), shape=A.shape)  # the same matrix, unsorted row
    x = np.random.default_rng(5).standard_normal(A.shape[0])
    out = cupy.empty(A.shape[0])
    from cext import kernels_for

    kernels_for(cupy).csr_spmv(*_device_csr(B), cupy.asarray(x), out)
    np.testing.assert_allclose(cupy.asnumpy(out), A @ x, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_float32_spmv_does_not_depend_much_on_the_index_dtype(index_dtype):
    # suspected: the float32 result depends on the index dtype. cuSPARSE (int32) sums in
    # float32, the fused kernel (int64) in float64; both
    # must stay within the float32 summation bound of the float64 product
    rng = np.random.default_rng(6)
    A = sp.random(300, 300, density=0.5, random_state=rng, format="csr").astype(np.float32)
    x = rng.standard_normal(300).astype(np.float32)
    out = cupy.empty(300, dtype=cupy.float32)
    from cext import kernels_for

    kernels_for(cupy).csr_spmv(*_device_csr(A, index_dtype, np.float32), cupy.asarray(x), out)
    exact = A.astype(np.float64) @ x.astype(np.float64)
    scale = abs(A.astype(np.float64)) @ np.abs(x.astype(np.float64))
    bound = 4 * 151 * np.finfo(np.float32).eps * scale
    assert np.all(np.abs(cupy.asnumpy(out).astype(np.float64) - exact) <= bound)


def test_sor_residual_overflow_is_reported_as_the_reference_does():
    # suspected: the CuPy residual overflows to inf where the reference returns NaN; the
    # reference gives NaN/inf consistently and the CuPy residual must not differ
    from cext import cupy as cuk

    A = sp.csr_matrix(poisson2d(4))
    off = sp.csr_matrix(A - sp.diags(A.diagonal()))
    b = np.full(16, 1e200)
    x = np.zeros(16)
    expected = reference.csr_residual_norm2_split(off.indptr, off.indices, off.data,
                                                  A.diagonal(), b, x, np.zeros(0, np.int32))
    device = cuk.csr_residual_norm2_split(*_device_csr(off), cupy.asarray(A.diagonal()),
                                          cupy.asarray(b), cupy.asarray(x),
                                          cupy.zeros(0, dtype=cupy.int32))
    assert (np.isnan(expected) and np.isnan(device)) or expected == device


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ordering", ["redblack", "multicolor"])
def test_sor_on_the_gpu_equals_the_host(ordering, dtype):
    from linsolve import sor

    A = sp.csr_matrix(poisson2d(16).astype(dtype))
    b = np.random.default_rng(7).standard_normal(A.shape[0]).astype(dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    host = sor(A, b, 1.5, rtol=rtol, ordering=ordering)
    device = sor(cusp.csr_matrix(A), cupy.asarray(b), 1.5, rtol=rtol, ordering=ordering)
    assert device.converged and isinstance(device.x, cupy.ndarray)
    assert device.x.dtype == dtype
    assert abs(device.iterations - host.iterations) <= (0 if dtype == np.float64 else 2)
    x = cupy.asnumpy(device.x).astype(np.float64)
    assert np.linalg.norm(b - A.astype(np.float64) @ x) <= 2 * rtol * np.linalg.norm(b)
    with pytest.raises(ValueError, match="coloured ordering"):
        sor(cusp.csr_matrix(A), cupy.asarray(b), 1.5)


def test_spmv_of_a_rectangular_block_reads_only_its_columns():
    # suspected: the fused kernel read p[row] even without the dot: out of bounds when the
    # block has fewer columns than rows (int64 indices take the fused kernel)
    rng = np.random.default_rng(8)
    A = sp.random(1000, 10, density=0.3, random_state=rng, format="csr")
    x = rng.standard_normal(10)
    out = cupy.empty(1000)
    from cext import kernels_for

    kernels_for(cupy).csr_spmv(*_device_csr(A, np.int64), cupy.asarray(x), out)
    np.testing.assert_allclose(cupy.asnumpy(out), A @ x, rtol=1e-13, atol=1e-13)


def test_strided_index_arrays_are_refused():
    # suspected: index arrays were not checked for contiguity. The kernels read raw
    # pointers; a strided view must not be read as packed
    A = sp.csr_matrix(poisson2d(6))
    indptr, indices, data = _device_csr(A, np.int64)
    wide = cupy.zeros((indices.shape[0], 2), dtype=indices.dtype)
    wide[:, 0] = indices
    from cext import kernels_for

    with pytest.raises(ValueError, match="C-contiguous"):
        kernels_for(cupy).csr_spmv(indptr, wide[:, 0], data, cupy.ones(36), cupy.empty(36))
