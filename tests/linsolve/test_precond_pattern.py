"""IC(0) and SSOR built from a remembered sparsity pattern: bit-identical to the scipy build.

The reference is the construction the preconditioners used before the
pattern layout (scipy's permutation, ``tril``, products with diagonal
matrices, :class:`TriangularPair` from CSR factors, the reference IC(0)):
the application must agree bit for bit, because only where the numbers come
from changed, not the arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from cext import numba as nbk
from cext import reference
from linsolve.precond import ichol0, ssor
from linsolve.precond._pattern import clear_pattern_cache, pattern_of
from linsolve.precond._triangular import TriangularPair, choose_ordering, permuted
from tests.problems import convection_diffusion, poisson2d, random_sparse_spd


def _mesh_like(n=150, seed=2):
    """SPD, rows of varying length (so the factor rows are padded to four)."""
    return sp.csr_array(random_sparse_spd(n, density=0.06, seed=seed))


def _reference_ichol0(A, shift, ordering, num_domains):
    csr = sp.csr_array(A, copy=True)
    csr.sort_indices()
    name, domains = choose_ordering(csr, ordering, num_domains)
    B = permuted(csr, domains.perm, name == "natural")
    lower = sp.csr_array(sp.tril(B, format="csr"))
    lower.sort_indices()
    data = lower.data.copy()
    if shift:
        last = lower.indptr[1:] - 1
        data[last] += np.asarray(shift, dtype=data.dtype) * data[last]
    # the reference loop sums float32 data in Python floats: the compiled kernel there
    factor = reference.csr_ichol0 if data.dtype == np.float64 else nbk.csr_ichol0
    assert factor(lower.indptr, lower.indices, data) == -1
    L = sp.csr_array((data, lower.indices, lower.indptr), shape=A.shape)
    inverse_diagonal = np.ascontiguousarray(1 / L.diagonal(), dtype=L.dtype)
    strict = sp.csr_array(sp.diags_array(inverse_diagonal) @ sp.tril(L, -1, format="csr"))
    strict.sort_indices()
    return TriangularPair(strict, None, inverse_diagonal, inverse_diagonal, name, domains)


def _reference_ssor(A, omega, ordering, num_domains):
    csr = sp.csr_array(A, copy=True)
    csr.sort_indices()
    name, domains = choose_ordering(csr, ordering, num_domains)
    B = permuted(csr, domains.perm, name == "natural")
    dtype, diagonal = B.dtype, B.diagonal()
    strict_lower = sp.tril(B, -1, format="csr")
    factor = np.asarray(omega * (2.0 - omega), dtype=dtype)
    root = np.sqrt(diagonal.astype(np.float64))
    scale = (1 / root).astype(dtype)
    lower = sp.csr_array(sp.diags_array(omega * scale) @ strict_lower @ sp.diags_array(scale))
    lower.sort_indices()
    return TriangularPair(lower, None, scale, factor * scale, name, domains)


CASES = [("poisson", lambda: sp.csr_array(poisson2d(9))), ("mesh", _mesh_like)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ordering,num_domains", [("natural", 2), ("domains", 1),
                                                  ("domains", 2), ("domains", 4)])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_application_bit_identical_to_scipy_build(case, ordering, num_domains, dtype):
    A = case[1]().astype(dtype)
    r = np.random.default_rng(0).standard_normal(A.shape[0]).astype(dtype)
    for shift in (0.0, 0.1):
        M = ichol0(A, shift, ordering=ordering, num_domains=num_domains)
        expected = _reference_ichol0(A, shift, ordering, num_domains)
        assert (M @ r).tobytes() == (expected @ r).tobytes()
    for omega in (1.0, 1.4):
        M = ssor(A, omega, ordering=ordering, num_domains=num_domains)
        assert M.symmetric
        assert (M @ r).tobytes() == (_reference_ssor(A, omega, ordering, num_domains)
                                     @ r).tobytes()


def test_second_call_reuses_the_pattern_and_refactor_equals_a_fresh_build():
    clear_pattern_cache()
    A = _mesh_like()
    M = ichol0(A, ordering="domains")
    shifted = sp.csr_array(A + 3.0 * sp.eye(A.shape[0]))  # same pattern: A has a full diagonal
    fresh = ichol0(shifted, ordering="domains")
    assert fresh.pattern is M.pattern
    again = M.refactor(shifted)
    assert again.pattern is M.pattern
    r = np.random.default_rng(1).standard_normal(A.shape[0])
    clear_pattern_cache()
    scratch = ichol0(shifted, ordering="domains")
    assert scratch.pattern is not M.pattern
    assert (again @ r).tobytes() == (scratch @ r).tobytes() == (fresh @ r).tobytes()
    S = ssor(A, 1.3, ordering="domains")
    assert S.pattern is scratch.pattern  # one symbolic part for IC(0) and SSOR
    assert (S.refactor(shifted) @ r).tobytes() == (ssor(shifted, 1.3, ordering="domains")
                                                  @ r).tobytes()


def test_refactor_refuses_another_pattern():
    A = _mesh_like()
    M = ichol0(A)
    B = sp.csr_array(A + sp.eye(A.shape[0], k=3))
    with pytest.raises(ValueError, match="sparsity pattern"):
        M.refactor(B)
    with pytest.raises(ValueError, match="sparsity pattern"):
        ssor(A).refactor(B)


def test_cache_sees_indices_rewritten_in_place():
    clear_pattern_cache()
    A = sp.csr_array(poisson2d(6))
    first = pattern_of(A, "natural", 2)
    assert pattern_of(A, "natural", 2) is first
    assert A.indices[A.indptr[0]:A.indptr[1]].tolist() == [0, 1, 6]
    A.indices[A.indptr[0] + 2] = 7  # the same arrays, another pattern
    second = pattern_of(A, "natural", 2)
    assert second is not first
    assert 7 in second.indices[:3]


def test_caller_arrays_untouched_and_nonsymmetric_falls_back():
    A = sp.csr_array(convection_diffusion(8, 5.0))
    before = (A.indptr.copy(), A.indices.copy(), A.data.copy())
    M = ssor(A, 1.2)
    assert not M.symmetric and M.pattern is None
    for a, b in zip(before, (A.indptr, A.indices, A.data)):
        assert np.array_equal(a, b)
    # the general split applies (D/w + L) D^{-1} (D/w + U) w/(2-w) inverted
    dense = A.toarray()
    D = np.diag(np.diag(dense))
    L, U = np.tril(dense, -1), np.triu(dense, 1)
    w = 1.2
    expected_M = (D / w + L) @ np.linalg.inv(D) @ (D / w + U) * w / (2 - w)
    r = np.random.default_rng(0).standard_normal(A.shape[0])
    np.testing.assert_allclose(M @ r, np.linalg.solve(expected_M, r), rtol=1e-10)


LAYOUT_FIELDS = ("diagonal_source", "lower_indptr", "lower_indices", "lower_source",
                 "strict_indptr", "strict_indices", "strict_from_lower", "strict_source",
                 "mirror", "orphans")


@pytest.mark.parametrize("ordering,num_domains", [("natural", 2), ("domains", 2)])
@pytest.mark.parametrize("kind", ["mesh", "unsymmetric", "no diagonal"])
def test_layout_equals_the_reference_kernels_and_scipys_tril(kind, ordering, num_domains,
                                                             monkeypatch):
    from cext.registry import KernelSet
    from linsolve.precond import _ordering, _pattern

    A = {"mesh": _mesh_like(),
         "unsymmetric": sp.csr_array(sp.tril(_mesh_like(), format="csr") + sp.eye(150)),
         "no diagonal": sp.csr_array(_mesh_like() - sp.diags(_mesh_like().diagonal()))}[kind]
    A.eliminate_zeros()
    A.sort_indices()
    clear_pattern_cache()
    compiled = pattern_of(A, ordering, num_domains)
    clear_pattern_cache()
    monkeypatch.setattr(_pattern, "kernels_for", lambda *_: KernelSet("reference", None))
    monkeypatch.setattr(_ordering, "_kernels", lambda: KernelSet("reference", None))
    planned = pattern_of(A, ordering, num_domains)
    clear_pattern_cache()
    for name in LAYOUT_FIELDS:
        got, want = getattr(compiled, name), getattr(planned, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    # against scipy: tril of the permuted matrix, its diagonal, and the orphans
    perm = compiled.domains.perm
    B = sp.csr_array(sp.tril(A[perm][:, perm], format="csr"))
    B.sort_indices()
    np.testing.assert_array_equal(compiled.lower_indptr, B.indptr)
    np.testing.assert_array_equal(compiled.lower_indices, B.indices)
    np.testing.assert_array_equal(A.data[compiled.lower_source], B.data)
    stored = compiled.diagonal_source >= 0
    np.testing.assert_array_equal(A.data[compiled.diagonal_source[stored]],
                                  A.diagonal()[stored])
    assert np.count_nonzero(A.diagonal()) == stored.sum()
    # orphans: strictly upper entries of the permuted pattern whose transpose is not stored
    pattern = sp.csr_array(A[perm][:, perm] != 0).astype(np.int8)
    upper, upper_of_transpose = sp.triu(pattern, 1), sp.triu(pattern.T, 1)
    alone = (upper - upper.multiply(upper_of_transpose)).nnz
    assert compiled.orphans.size == alone
    assert alone > 0 or kind != "unsymmetric" or ordering == "natural"
