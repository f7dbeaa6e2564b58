"""The numeric set-up of IC(0), SSOR and Chebyshev: one compiled pass each, checked against
the reference twins, dense algebra and the separate passes they replace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from array_api_compat import array_namespace

from cext import numba as nbk
from cext import reference
from linsolve import as_operator
from linsolve.precond import chebyshev, ichol0, lanczos_bounds, ssor
from linsolve.precond._triangular import compact_index
from tests.problems import poisson2d, random_sparse_spd

NP = array_namespace(np.ones(1))


def _mesh_like(n=120, seed=3):
    """SPD with rows of varying length (padded factor rows)."""
    return sp.csr_array(random_sparse_spd(n, density=0.06, seed=seed))


def _ssor_arguments(A, omega, dtype):
    M = ssor(A.astype(dtype), omega, ordering="domains", num_domains=2)
    P = M.pattern
    from linsolve.precond.ssor import _split_layout

    first, source, mirror, diagonal, inverse = _split_layout(P)
    n = A.shape[0]
    return M, (P.strict_indptr, first, P.strict_indices, source, mirror, P.orphans, diagonal,
               inverse), n, P.strict_source.shape[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ssor_kernel_matches_twin_and_dense_split(dtype):
    A = _mesh_like().astype(dtype)
    M, layout, n, m = _ssor_arguments(A, 1.3, dtype)
    out = {}
    for name, module in (("numba", nbk), ("reference", reference)):
        scale, lower = np.empty(n, dtype), np.empty(m, dtype)
        assert module.ssor_symmetric_numeric(*layout, A.data, dtype(1.3), scale, lower) == 0
        out[name] = scale, lower
    # the dense split: 1.3 D^{-1/2} tril(B, -1) D^{-1/2} in the permuted numbering
    perm = M.perm
    B = A.toarray().astype(np.float64)[np.ix_(perm, perm)]
    s = 1 / np.sqrt(np.diag(B))
    expected = 1.3 * s[:, None] * np.tril(B, -1) * s[None, :]
    scale, lower = out["numba"]
    C = sp.csr_array((lower, M.pattern.strict_indices, M.pattern.strict_indptr),
                     shape=A.shape).toarray()
    tolerance = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(scale, s, rtol=tolerance)
    np.testing.assert_allclose(C, expected, rtol=tolerance, atol=tolerance * np.abs(expected).max())
    if dtype == np.float64:  # the twin's Python floats are the kernel's float64
        assert all(np.array_equal(a, b) for a, b in zip(out["numba"], out["reference"]))
    # the comparing pass: true on the split it would write, false one ulp away
    nudged = lower.copy()
    nudged[np.flatnonzero(nudged)[4]] = np.nextafter(nudged[np.flatnonzero(nudged)[4]],
                                                     dtype(0))
    for module in (nbk, reference):
        assert module.ssor_symmetric_equal(*layout, A.data, dtype(1.3), scale, lower)
        assert not module.ssor_symmetric_equal(*layout, A.data, dtype(1.3), scale, nudged)
        assert not module.ssor_symmetric_equal(*layout, A.data, dtype(1.2), scale, lower)


def test_ssor_kernel_reports_a_bad_diagonal_and_asymmetry():
    A = _mesh_like()
    _, layout, n, m = _ssor_arguments(A, 1.0, np.float64)
    P = ssor(A, ordering="domains", num_domains=2).pattern
    for module in (nbk, reference):
        data = A.data.copy()
        data[P.diagonal_source[5]] = -1.0
        assert module.ssor_symmetric_numeric(*layout, data, 1.0, np.empty(n), np.empty(m)) == 1
        data = A.data.copy()
        data[P.strict_source[P.strict_source >= 0][7]] += 1.0  # its transpose unchanged
        assert module.ssor_symmetric_numeric(*layout, data, 1.0, np.empty(n), np.empty(m)) == 2


@pytest.mark.parametrize("shift", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ichol0_kernel_equals_the_separate_passes_bit_for_bit(dtype, shift):
    A = _mesh_like().astype(dtype)
    P = ichol0(A, ordering="domains", num_domains=2).pattern
    n = A.shape[0]
    # before: gather, shift, factor, then 1/diag(L) and the strict part's gather
    values = A.data[P.lower_source].copy()
    last = P.lower_indptr[1:] - 1
    values[last] += np.asarray(shift, dtype=dtype) * values[last]
    assert nbk.csr_ichol0_domains(P.lower_indptr, P.lower_indices, values,
                                  P.domains.segment_ptr, P.domains.stage_ptr) == -1
    inverse = np.ascontiguousarray(1 / values[last], dtype=dtype)
    strict = np.empty(P.strict_indices.shape[0], dtype)
    nbk.csr_scaled_gather(P.strict_indptr, P.strict_indices, P.strict_from_lower, values,
                          inverse, np.ones_like(inverse), strict)
    for module in (nbk, reference):
        got = (np.empty_like(values), np.empty(n, dtype), np.empty_like(strict))
        failed = module.csr_ichol0_numeric(
            P.lower_indptr, P.lower_indices, compact_index(P, "lower_source"), A.data,
            dtype(shift), P.domains.segment_ptr, P.domains.stage_ptr, got[0], P.strict_indptr,
            got[1], got[2])
        assert failed == -1
        if module is nbk or dtype == np.float64:
            for a, b in zip(got, (values, inverse, strict)):
                assert a.tobytes() == b.tobytes()
        else:  # the twin sums float32 data in Python floats
            for a, b in zip(got, (values, inverse, strict)):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ichol0_kernel_names_the_failed_row():
    A = _mesh_like().toarray()
    A[40, 40] = -1.0
    A = sp.csr_array(A)
    P = ichol0(_mesh_like(), ordering="natural").pattern  # the same pattern
    n = A.shape[0]
    for module in (nbk, reference):
        values = np.empty(P.lower_source.shape[0])
        failed = module.csr_ichol0_numeric(
            P.lower_indptr, P.lower_indices, P.lower_source, A.data, 0.0,
            P.domains.segment_ptr, P.domains.stage_ptr, values, P.strict_indptr,
            np.empty(n), np.empty(P.strict_indices.shape[0]))
        assert failed == 40
    with pytest.raises(ValueError, match="row 40"):
        ichol0(A, ordering="natural")


def test_ssor_built_from_is_a_bitwise_rebuild():
    A = sp.csr_array(poisson2d(12))
    M = ssor(A, 1.3)
    assert M.built_from(A) and M.built_from(sp.csr_matrix(A.copy()))
    wide = sp.csr_array((A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64)),
                        shape=A.shape)
    assert M.built_from(wide)
    assert not M.built_from(A.astype(np.float32)) and not M.built_from(2.0 * A)
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))
    i, j = rows[5], A.indices[5]
    assert i != j
    one_sided = A.copy()
    one_sided.data[5] = -0.5  # A[i, j] only: no longer A, nor symmetric
    assert not M.built_from(one_sided)
    both = sp.csr_array(A.toarray())
    both[i, j] = both[j, i] = -0.5  # symmetric, other values
    assert not M.built_from(both) and ssor(both, 1.3).built_from(both)
    assert not ssor(both, 1.2).built_from(A)


def test_refactor_takes_a_non_canonical_matrix_of_the_same_pattern():
    A = _mesh_like()
    M = ichol0(A)
    S = ssor(A, 1.2)
    coo = sp.coo_array(A + sp.eye(A.shape[0]))
    # the same pattern stored unsorted: the structure check runs and canonicalises a copy
    order = np.random.default_rng(0).permutation(coo.nnz)
    unsorted = sp.csr_array((coo.data[order], (coo.row[order], coo.col[order])),
                            shape=A.shape)
    unsorted.has_sorted_indices = False
    canonical = sp.csr_array(A + sp.eye(A.shape[0]))
    canonical.sort_indices()
    r = np.random.default_rng(1).standard_normal(A.shape[0])
    assert (M.refactor(unsorted) @ r).tobytes() == (ichol0(canonical) @ r).tobytes()
    assert (S.refactor(unsorted) @ r).tobytes() == (ssor(canonical, 1.2) @ r).tobytes()


@pytest.mark.parametrize("make", [lambda: sp.csr_array(poisson2d(15)), _mesh_like],
                         ids=["poisson", "mesh"])
def test_lanczos_fused_and_generic_paths_agree_and_bound_the_top(make):
    A = make()
    eigenvalues = np.linalg.eigvalsh(A.toarray())
    fused = as_operator(A, NP, np.float64, A.shape[0], allow_dia=False)
    generic = as_operator(spla.aslinearoperator(A), NP, np.float64, A.shape[0])
    assert fused.layout == "csr" and generic.layout == "function"
    lo, hi = lanczos_bounds(fused)
    assert lanczos_bounds(generic) == pytest.approx((lo, hi), rel=1e-10)
    assert eigenvalues[0] * (1 - 1e-10) <= lo < eigenvalues[-1] <= hi
    # the preconditioner built on them is SPD
    M = chebyshev(A)
    dense = np.column_stack([M @ e for e in np.eye(A.shape[0])])
    assert np.linalg.eigvalsh((dense + dense.T) / 2).min() > 0
