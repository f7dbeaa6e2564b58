"""pcg: the property matrix (operator kinds x preconditioners x dtypes) and scipy parity."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from linsolve import SolveResult, pcg

from tests.problems import indefinite, poisson2d, random_sparse_spd, random_spd

DTYPES = [np.float32, np.float64]


# --- operator kinds --------------------------------------------------------

class _MatvecObject:
    """A user's operator: only ``matvec`` and ``shape``."""

    def __init__(self, A):
        self._A = A
        self.shape = A.shape

    def matvec(self, v):
        return self._A @ v


class _CurvatureLike:
    """Stands in for a curvature object: ``solve`` applies the inverse."""

    def __init__(self, A):
        self._inverse = np.linalg.inv(A)
        self.shape = A.shape

    def matvec(self, v):  # pragma: no cover - must not be used as M
        raise AssertionError("pcg must use .solve of a curvature object")

    def solve(self, v):
        return self._inverse @ v


def _operator(kind: str, A: sp.csr_matrix):
    dense = A.toarray()
    return {
        "dense": lambda: dense,
        "csr": lambda: A,
        "csc": lambda: A.tocsc(),
        "linear_operator": lambda: sla.aslinearoperator(A),
        "matvec_object": lambda: _MatvecObject(A),
        "callable": lambda: (lambda v: A @ v),
    }[kind]()


KINDS = ["dense", "csr", "csc", "linear_operator", "matvec_object", "callable"]
MATRICES = {
    "poisson2d": lambda dtype: poisson2d(7, dtype),            # stencil: DIA kernels
    "random_sparse": lambda dtype: random_sparse_spd(49, 0.1, seed=3, dtype=dtype),  # CSR kernels
}


def _preconditioner(name: str, A):
    dense = A.toarray().astype(np.float64)
    if name == "none":
        return None
    if name == "identity":
        return lambda v: v.copy()
    if name == "diag":
        return sp.diags(1.0 / dense.diagonal()).tocsr()
    if name == "exact":
        return np.linalg.inv(dense).astype(A.dtype)
    raise KeyError(name)


def _rtol(dtype):
    return 1e-10 if dtype == np.float64 else 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("precond", ["none", "identity", "diag", "exact"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("matrix", sorted(MATRICES))
def test_property_matrix(matrix, kind, precond, dtype):
    A = MATRICES[matrix](dtype)
    n = A.shape[0]
    A64 = A.astype(np.float64).toarray()
    rng = np.random.default_rng(0)
    b = rng.standard_normal(n).astype(dtype)
    rtol = _rtol(dtype)
    op = _operator(kind, A)
    M = _preconditioner(precond, A)

    result = pcg(op, b, rtol=rtol, M=M)
    assert isinstance(result, SolveResult)
    # converged, and the guarantee: the true residual meets the tolerance
    assert result.converged and result.reason == "CONVERGED_RTOL", result.message
    b64 = b.astype(np.float64)
    true_residual = np.linalg.norm(b64 - A64 @ result.x.astype(np.float64))
    assert true_residual <= rtol * np.linalg.norm(b64) * (1 + 1e-6)
    # matches the dense solve within the conditioning bound
    x_dense = np.linalg.solve(A64, b64)
    cond = np.linalg.cond(A64)
    error = np.linalg.norm(result.x - x_dense) / np.linalg.norm(x_dense)
    assert error <= 2 * cond * (rtol + 10 * np.finfo(dtype).eps)
    # dtype preserved, shape, bookkeeping
    assert result.x.dtype == dtype and result.x.shape == (n,)
    assert result.residual_norms.dtype == np.float64
    assert result.residual_norms.shape == (result.iterations + 1,)
    assert result.matvecs >= result.iterations
    x, info = result
    assert info == 0 and x is result.x

    if precond == "exact":
        assert result.iterations == 1

    # b = 0: zeros, converged at once
    zero = pcg(op, np.zeros(n, dtype=dtype), M=M)
    assert zero.converged and zero.iterations == 0
    assert np.all(zero.x == 0) and zero.x.dtype == dtype

    # exact x0 stops at once (float64: the dense solution meets 1e-10)
    if dtype == np.float64:
        at_solution = pcg(op, b, x0=x_dense, rtol=1e-8, M=M)
        assert at_solution.converged and at_solution.iterations == 0

    # maxiter respected
    capped = pcg(op, b, rtol=1e-30, maxiter=2, M=M)
    if capped.iterations == 2:
        assert not capped.converged and capped.reason == "DIVERGED_ITS"
        assert capped.info == 2 and len(capped.residual_norms) == 3
    else:  # only the exact inverse can finish in fewer steps
        assert precond == "exact" and capped.converged


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_preconditioner_equals_none(dtype):
    A = poisson2d(8, dtype)
    b = np.random.default_rng(1).standard_normal(64).astype(dtype)
    plain, with_identity = [], []
    r1 = pcg(A, b, rtol=1e-6, callback=lambda x: plain.append(x.copy()))
    r2 = pcg(A, b, rtol=1e-6, M=lambda v: v, callback=lambda x: with_identity.append(x.copy()))
    assert r1.iterations == r2.iterations
    # r'z is a separate dot with M, fused into the update without: same
    # value up to summation order.
    scale = max(np.abs(xk).max() for xk in plain)
    np.testing.assert_allclose(plain, with_identity, rtol=0,
                               atol=100 * np.finfo(dtype).eps * scale)


@pytest.mark.parametrize("kind", ["csr", "dense", "linear_operator"])
def test_iterates_equal_scipy_cg(kind):
    """Same recurrence as scipy's cg: iterate k equals scipy's iterate k."""
    A = poisson2d(15)
    op = _operator(kind, A)
    b = np.random.default_rng(2).standard_normal(A.shape[0])
    ours, theirs = [], []
    result = pcg(op, b, rtol=1e-10, callback=lambda x: ours.append(x.copy()))
    _, info = sla.cg(A, b, rtol=1e-10, callback=lambda x: theirs.append(x.copy()))
    assert info == 0 and result.converged
    assert len(ours) == len(theirs) == result.iterations
    # parallel reductions differ from BLAS in the last bits; CG amplifies
    # that slowly, so compare relative to the iterate's size
    for k, (xo, xs) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(xo, xs, rtol=0, atol=1e-9 * np.linalg.norm(xs), err_msg=f"iterate {k}")


def test_iterates_equal_scipy_cg_with_jacobi():
    A = random_sparse_spd(300, 0.02, seed=5) + sp.diags(np.linspace(1, 100, 300))
    A = A.tocsr()
    b = np.random.default_rng(3).standard_normal(300)
    d = A.diagonal()
    M_scipy = sla.LinearOperator(A.shape, matvec=lambda v: v / d)
    ours, theirs = [], []
    result = pcg(A, b, M=lambda v: v / d, rtol=1e-10, callback=lambda x: ours.append(x.copy()))
    sla.cg(A, b, M=M_scipy, rtol=1e-10, callback=lambda x: theirs.append(x.copy()))
    assert result.iterations == len(theirs)
    for xo, xs in zip(ours, theirs):
        np.testing.assert_allclose(xo, xs, rtol=0, atol=1e-10 * np.linalg.norm(xs))


# --- misuse raises ---------------------------------------------------------

def test_tol_keyword_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="rtol"):
        pcg(np.eye(2), np.ones(2), tol=1e-5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        pcg(np.eye(2), np.ones(2), tolerance=1e-5)


@pytest.mark.parametrize("bad", [-1.0, "1e-5", None, float("nan"), [1e-5], True])
def test_bad_atol_rtol_raise_value_error(bad):
    with pytest.raises(ValueError, match="atol"):
        pcg(np.eye(2), np.ones(2), atol=bad)
    with pytest.raises(ValueError, match="rtol"):
        pcg(np.eye(2), np.ones(2), rtol=bad)


@pytest.mark.parametrize("bad", [-1, 2.5, "3"])
def test_bad_maxiter_raises(bad):
    with pytest.raises(ValueError, match="maxiter"):
        pcg(np.eye(2), np.ones(2), maxiter=bad)


def test_shape_errors():
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        pcg(np.eye(2), np.ones(3))
    with pytest.raises(ValueError, match="square"):
        pcg(np.ones((2, 3)), np.ones(2))
    # (k, n) is a batch of k systems (tests/linsolve/test_batched.py): its n must fit A
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        pcg(np.eye(2), np.ones((2, 3)))
    with pytest.raises(ValueError, match="x0"):
        pcg(np.eye(2), np.ones(2), x0=np.ones(3))
    with pytest.raises(ValueError, match="returned shape"):
        pcg(lambda v: np.ones(5), np.ones(2))


def test_unsupported_types_raise():
    # complex systems are solved, as scipy's cg solves them
    # (tests/linsolve/test_pcg_scipy_contract.py)
    with pytest.raises(TypeError, match="must be an array"):
        pcg("not an operator", np.ones(2))


def test_mixed_backends_raise_type_error():
    xp = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="same|one array library"):
        pcg(xp.eye(3), np.ones(3))
    with pytest.raises(TypeError, match="scipy.sparse"):
        pcg(sp.eye(3, format="csr"), xp.ones(3))
    with pytest.raises(TypeError, match="namespace"):
        pcg(np.eye(3), np.ones(3), x0=xp.zeros(3))


# --- input conventions -----------------------------------------------------

def test_x0_is_not_mutated_and_column_b_gives_flat_x():
    A = poisson2d(5)
    x0 = np.full(25, 0.5)
    keep = x0.copy()
    result = pcg(A, np.ones((25, 1)), x0=x0, rtol=1e-10)
    np.testing.assert_array_equal(x0, keep)
    assert result.x.shape == (25,) and result.x is not x0


def test_integer_b_upcasts_to_float64():
    result = pcg(poisson2d(4), np.arange(16), rtol=1e-12)
    assert result.x.dtype == np.float64 and result.converged


def test_float32_operator_with_float64_b_runs_in_float64():
    result = pcg(poisson2d(4, np.float32), np.ones(16), rtol=1e-12)
    assert result.x.dtype == np.float64 and result.converged


def test_default_maxiter_is_ten_n():
    # Indefinite-looking stall is impossible for SPD; use a tolerance that
    # cannot be met to see the cap.
    A = np.diag(np.logspace(0, 12, 6))
    result = pcg(A, np.ones(6), rtol=0.0, atol=0.0)
    assert result.iterations <= 60


def test_atol_decides_when_larger():
    A = poisson2d(6)
    b = np.ones(36)
    result = pcg(A, b, rtol=1e-12, atol=1e-3)
    assert result.reason == "CONVERGED_ATOL" and result.true_residual_norm <= 1e-3


def test_curvature_object_is_applied_through_solve():
    A = random_spd(10, cond=50.0)
    result = pcg(A, np.ones(10), M=_CurvatureLike(A), rtol=1e-12)
    assert result.converged and result.iterations == 1 and result.psolves == 1


# --- failures are values ---------------------------------------------------

def test_nan_in_b_is_reported_at_once():
    b = np.ones(25)
    b[3] = np.nan
    result = pcg(poisson2d(5), b)
    assert result.reason == "DIVERGED_NANORINF" and not result.converged
    assert result.iterations == 0 and result.info < 0


@pytest.mark.parametrize("kind", ["csr", "dense", "callable"])
def test_nan_in_a_is_reported_within_one_iteration(kind):
    A = poisson2d(5).tolil()
    A[7, 7] = np.nan
    A = A.tocsr()
    result = pcg(_operator(kind, A), np.ones(25))
    assert result.reason == "DIVERGED_NANORINF"
    assert result.iterations <= 1
    assert np.all(np.isfinite(result.x))  # the last finite iterate is kept


def test_inf_in_x0_is_reported():
    x0 = np.zeros(25)
    x0[0] = np.inf
    assert pcg(poisson2d(5), np.ones(25), x0=x0).reason == "DIVERGED_NANORINF"


@pytest.mark.parametrize("kind", ["csr", "dense"])
def test_indefinite_matrix_is_detected(kind):
    A = indefinite(20)
    b = np.ones(20)
    result = pcg(_operator(kind, A), b)
    assert result.reason == "DIVERGED_INDEFINITE_MAT" and result.info == -1
    assert "not positive definite" in result.message


def test_indefinite_preconditioner_is_detected():
    A = poisson2d(4)
    M = -sp.eye(16, format="csr")
    result = pcg(A, np.ones(16), M=M)
    assert result.reason == "DIVERGED_INDEFINITE_PC" and not result.converged


def test_float32_true_residual_guarantee():
    """scipy's cg reports success in float32 while ||b - Ax|| misses the target.

    Ours either reaches the target in the true residual (after residual
    replacement) or says it did not.
    """
    A = random_spd(60, cond=1e5, seed=7, dtype=np.float32)
    b = np.random.default_rng(7).standard_normal(60).astype(np.float32)
    rtol = 3e-7
    b64, A64 = b.astype(np.float64), A.astype(np.float64)

    x_scipy, info = sla.cg(A, b, rtol=rtol, maxiter=2000)
    scipy_true = np.linalg.norm(b64 - A64 @ x_scipy) / np.linalg.norm(b64)
    assert info == 0 and scipy_true > rtol  # the failure being guarded against

    result = pcg(A, b, rtol=rtol, maxiter=2000)
    true = np.linalg.norm(b64 - A64 @ result.x.astype(np.float64)) / np.linalg.norm(b64)
    if result.converged:
        assert true <= rtol * 1.01
    else:
        assert result.reason in ("DIVERGED_BREAKDOWN", "DIVERGED_ITS")
        assert "attainable accuracy" in result.message or result.reason == "DIVERGED_ITS"


def test_periodic_check_leaves_a_healthy_recursion_alone():
    A = poisson2d(10)
    b = np.random.default_rng(9).standard_normal(100)
    plain = pcg(A, b, rtol=1e-10)
    checked = pcg(A, b, rtol=1e-10, check_every=5)
    assert checked.iterations == plain.iterations
    np.testing.assert_array_equal(checked.x, plain.x)
    assert checked.matvecs > plain.matvecs  # the checks did run
    with pytest.raises(ValueError, match="check_every"):
        pcg(A, b, check_every=0)


def test_periodic_check_repairs_a_drifted_residual():
    """An operator that is wrong for a few products makes r drift from b - Ax."""
    A = poisson2d(8)
    b = np.ones(64)
    calls = {"n": 0}

    def faulty(v):
        calls["n"] += 1
        y = A @ v
        return y * 1.5 if calls["n"] in (3, 4) else y

    unchecked = pcg(faulty, b, rtol=1e-8, maxiter=500)
    calls["n"] = 0
    checked = pcg(faulty, b, rtol=1e-8, maxiter=500, check_every=5)
    assert checked.converged
    assert np.linalg.norm(b - A @ checked.x) <= 1e-8 * np.linalg.norm(b)
    # the periodic check repaired it before exit; without it, only the exit
    # check can (one replacement at the end)
    assert checked.extra["residual_replacements"] >= 1
    first_check = checked.residual_norms[5]
    assert first_check > 2 * unchecked.residual_norms[5]  # the true norm was recorded at k=5
    assert unchecked.extra["residual_replacements"] <= 1


# --- monitor and callback --------------------------------------------------

def test_monitor_prints_petsc_lines(capsys):
    result = pcg(poisson2d(4), np.ones(16), rtol=1e-8, monitor=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == result.iterations + 1
    assert lines[0] == "%3d KSP Residual norm %14.12e" % (0, result.residual_norms[0])
    assert lines[-1].startswith("%3d KSP Residual norm " % result.iterations)


def test_callback_sees_every_iterate():
    seen = []
    result = pcg(poisson2d(6), np.ones(36), rtol=1e-8, callback=lambda x: seen.append(x.copy()))
    assert len(seen) == result.iterations
    np.testing.assert_array_equal(seen[-1], result.x)


# --- pyamg interoperability ------------------------------------------------

def test_pyamg_preconditioner_and_pcg_as_pyamg_accel():
    pyamg = pytest.importorskip("pyamg")
    A = poisson2d(20)
    b = np.random.default_rng(4).standard_normal(400)
    ml = pyamg.smoothed_aggregation_solver(A)
    with_amg = pcg(A, b, M=ml.aspreconditioner(cycle="V"), rtol=1e-10)
    plain = pcg(A, b, rtol=1e-10)
    assert with_amg.converged and with_amg.iterations < plain.iterations / 2
    x = ml.solve(b, tol=1e-10, accel=pcg)
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b) * 1.01


# --- array API -------------------------------------------------------------

@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_dense_path_under_array_api_strict(dtype_name):
    xp = pytest.importorskip("array_api_strict")
    A_np = random_spd(12, cond=30.0, seed=2)
    b_np = np.random.default_rng(5).standard_normal(12)
    dtype = getattr(xp, dtype_name)
    A = xp.asarray(A_np, dtype=dtype)
    b = xp.asarray(b_np, dtype=dtype)
    rtol = 1e-10 if dtype_name == "float64" else 1e-5
    result = pcg(A, b, rtol=rtol, M=xp.eye(12, dtype=dtype))
    assert result.converged and result.x.dtype == dtype
    x = np.asarray(result.x)
    expected = np.linalg.solve(A_np, b_np)
    np.testing.assert_allclose(x, expected, rtol=0, atol=40 * 30.0 * rtol * np.abs(expected).max())
    ours_np = pcg(A_np.astype(dtype_name), b_np.astype(dtype_name), rtol=rtol)
    assert result.iterations == ours_np.iterations
    zero = pcg(A, xp.zeros(12, dtype=dtype))
    assert zero.converged and zero.x.dtype == dtype


class _Opaque:
    """The same diagonal scaling, but not a Jacobi object: pcg applies it unfused."""

    def __init__(self, M):
        self.M, self.shape, self.dtype = M, M.shape, M.dtype

    def matvec(self, r):
        return self.M.matvec(r)


@pytest.mark.parametrize("check_every", [None, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_jacobi_fused_into_the_update_equals_the_separate_passes(dtype, check_every,
                                                                 monkeypatch):
    """pcg scales r by 1/diag(A) and forms r'z in the pass that updates r (cg_update_xrz)."""
    from cext import kernels_for
    from linsolve import precond

    compiled = kernels_for(np)
    calls = []
    fused_kernel = compiled.cg_update_xrz
    monkeypatch.setattr(compiled, "cg_update_xrz",
                        lambda *args: calls.append(1) or fused_kernel(*args))
    chunk_kernel = compiled.cg_run_csr

    def chunk(*args):  # the compiled loop's iterations, each one fused update
        counters = args[10]
        began = int(counters[0])
        chunk_kernel(*args)
        calls.extend([1] * (int(counters[0]) - began))

    monkeypatch.setattr(compiled, "cg_run_csr", chunk)

    # large enough for both threads (the policy runs small work on one)
    A = (random_sparse_spd(120_000, 3e-5, seed=3) + sp.diags(np.linspace(1.0, 50.0, 120_000)))
    A = A.astype(dtype).tocsr()
    b = np.random.default_rng(4).standard_normal(A.shape[0]).astype(dtype)
    M = precond.jacobi(A)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    fused = pcg(A, b, M=M, rtol=rtol, check_every=check_every)
    plain = pcg(A, b, M=_Opaque(M), rtol=rtol, check_every=check_every)
    assert fused.converged and plain.converged and fused.x.dtype == dtype
    # same iteration; r'z summed in another order (parallel partial sums)
    assert abs(fused.iterations - plain.iterations) <= 1
    assert len(calls) == fused.iterations  # every update fused; none for the opaque M
    assert fused.psolves == plain.psolves - (plain.iterations - fused.iterations)
    x = np.linalg.norm(plain.x.astype(np.float64))
    eps = float(np.finfo(dtype).eps)
    cond = float(np.max(A.diagonal()) / np.min(A.diagonal())) * 10
    assert np.linalg.norm((fused.x - plain.x).astype(np.float64)) <= 100 * cond * rtol * x + eps * x
    # the kernel itself against the reference twin
    n = A.shape[0]
    rng = np.random.default_rng(5)
    vectors = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
    results = []
    for kernels in (kernels_for(np), kernels_for(__import__("array_api_strict"))):
        x, r, p, q = (v.copy() for v in vectors)
        z = np.empty_like(r)
        if kernels.backend == "reference":
            import array_api_strict as xs
            x, r, p, q, z = (xs.asarray(v) for v in (x, r, p, q, z))
        rr, rz = kernels.cg_update_xrz(x, r, p, q, 0.3, xp_scale(kernels, M.inverse_diagonal,
                                                                  dtype), z)
        results.append((rr, rz, np.asarray(x), np.asarray(r), np.asarray(z)))
    (rr1, rz1, *arrays1), (rr2, rz2, *arrays2) = results
    assert rr1 == pytest.approx(rr2, rel=n * eps) and rz1 == pytest.approx(rz2, rel=n * eps)
    for u, v in zip(arrays1, arrays2):
        np.testing.assert_allclose(u, v, rtol=4 * eps, atol=4 * eps * np.abs(v).max())


def xp_scale(kernels, scale, dtype):
    scale = np.asarray(scale, dtype=dtype)
    if kernels.backend == "reference":
        import array_api_strict as xs
        return xs.asarray(scale)
    return scale


@pytest.mark.parametrize("allow_dia", [False, True], ids=["csr", "dia"])
def test_sparse_operator_product_computes_no_dot(allow_dia, monkeypatch):
    # a plain product (Chebyshev's, the true residual's) must not run the fused
    # product-and-dot kernel: on the GPU its dot is read back, a sync per product
    import array_api_compat.numpy as xp

    from linsolve.core.operators import as_operator

    A = poisson2d(8)
    op = as_operator(A, xp, np.float64, 64, allow_dia=allow_dia)
    assert op.layout == ("dia" if allow_dia else "csr")

    def fused(*args):
        raise AssertionError("the fused product-and-dot kernel ran for a plain product")

    monkeypatch.setattr(op.kernels, "csr_spmv_dot", fused)
    monkeypatch.setattr(op.kernels, "dia_spmv_dot", fused)
    v = np.arange(64.0)
    np.testing.assert_allclose(op.matvec(v), A @ v, rtol=1e-15)
