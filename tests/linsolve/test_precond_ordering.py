"""The domain ordering of the triangular-solve preconditioners."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csgraph

from cext.registry import KernelSet
from cext.threads import num_threads
from linsolve.precond import _ordering
from linsolve.precond._ordering import (DomainOrdering, check_independent, domain_ordering,
                                         natural_ordering, pattern_graph, symmetric_pattern)
from linsolve.precond._triangular import pad_rows, row_width

from tests.problems import anisotropic2d, poisson1d, poisson2d, random_sparse_spd


def _layout_ok(ordering, n, num_domains):
    perm, segment_ptr, stage_ptr = ordering
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    assert segment_ptr[0] == 0 and segment_ptr[-1] == n and np.all(np.diff(segment_ptr) >= 0)
    depth = num_domains.bit_length() - 1
    assert list(np.diff(stage_ptr)) == [num_domains >> s for s in range(depth + 1)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("num_domains", [1, 2, 4, 8])
def test_random_sparse_no_coupling_between_domains(seed, num_domains):
    n = 300
    A = random_sparse_spd(n, density=0.01 + 0.004 * seed, seed=seed)
    if seed % 2:  # a pattern that is not symmetric: A + A^T's graph must be used
        A = sp.csr_array(sp.tril(A) + sp.diags(np.ones(n)))
    ordering = domain_ordering(A, num_domains)
    _layout_ok(ordering, n, num_domains)
    check_independent(A, ordering)


def test_check_independent_catches_a_coupling():
    A = poisson1d(9)
    good = domain_ordering(A, 2)
    check_independent(A, good)
    # merging the separator into a domain couples the two domains
    bad = good._replace(segment_ptr=np.array([0, 4, 8, 9]))
    with pytest.raises(AssertionError, match="couplings"):
        check_independent(A, bad._replace(perm=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8])))


def test_check_independent_catches_a_row_coupled_to_two_later_segments():
    # a star: the centre first, each leaf a segment of the next stage. The leaves are not
    # coupled to each other, but the column sweep of L^T would update the centre from two
    # threads at once
    A = sp.csr_array(sp.eye(4) * 4.0)
    A = sp.csr_array(A + sp.csr_array(([1.0] * 6, ([0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0])),
                                      shape=(4, 4)))
    star = DomainOrdering(np.arange(4), np.array([0, 1, 2, 3, 4]), np.array([0, 1, 4]))
    with pytest.raises(AssertionError, match="two segments of one later stage"):
        check_independent(A, star)


@pytest.mark.parametrize("kind", ["p1tri", "p1tet", "p2tet", "elasticity3d"])
@pytest.mark.parametrize("num_domains", [2, 4])
def test_fem_matrices_no_coupling_and_balanced(kind, num_domains):
    pytest.importorskip("skfem")
    from bench.fem import fem_matrix

    refine = {"p1tri": 6, "p1tet": 4, "p2tet": 3, "elasticity3d": 3}[kind]
    A = sp.csr_array(fem_matrix(kind, refine))
    n = A.shape[0]
    ordering = domain_ordering(A, num_domains)
    _layout_ok(ordering, n, num_domains)
    check_independent(A, ordering)
    sizes = np.diff(ordering.segment_ptr)
    domains, separators = sizes[:num_domains], sizes[num_domains:]
    # level-set separators of a mesh are thin (on these small meshes up to 30 % of
    # the rows in 3-D at four domains; 0.2-5 % at the benchmark sizes with two) and
    # the domains comparable (the split also weighs the separator's cost)
    assert separators.sum() <= (0.05 if kind == "p1tri" else 0.35) * n
    assert domains.min() >= 0.3 * domains.max()


def test_grid_separator_is_one_level_and_domains_move_towards_it():
    N = 20
    A = poisson2d(N)
    perm, segment_ptr, _ = domain_ordering(A, 2)
    sizes = np.diff(segment_ptr)
    assert sizes[2] <= N + 1 and abs(sizes[0] - sizes[1]) <= N
    # twisted: each domain's last row touches the separator, its first row does not
    separator = set(perm[segment_ptr[2]:].tolist())
    for g in (0, 1):
        first, last = perm[segment_ptr[g]], perm[segment_ptr[g + 1] - 1]
        assert set(A[[last]].indices.tolist()) & separator
        assert not set(A[[first]].indices.tolist()) & separator


def test_disconnected_graph_needs_no_separator():
    A = sp.block_diag([poisson2d(6), poisson2d(6)], format="csr")
    ordering = domain_ordering(A, 2)
    check_independent(A, ordering)
    assert np.diff(ordering.segment_ptr).tolist() == [36, 36, 0]
    diagonal = sp.diags(np.arange(1.0, 11.0), format="csr")
    ordering = domain_ordering(diagonal, 4)
    check_independent(diagonal, ordering)
    assert np.diff(ordering.segment_ptr)[4:].sum() == 0  # no separators at all


def test_tiny_and_degenerate_sizes():
    for n in (1, 2, 3):
        for P in (1, 2, 4):
            A = poisson1d(n)
            ordering = domain_ordering(A, P)
            _layout_ok(ordering, n, P)
            check_independent(A, ordering)
    assert natural_ordering(5).perm.tolist() == list(range(5))
    empty = domain_ordering(sp.csr_array((0, 0)), 4)
    _layout_ok(empty, 0, 4)


def test_ordering_is_deterministic_and_thread_independent():
    A = anisotropic2d(40)
    with num_threads(1):
        one = domain_ordering(A, 4)
    two = domain_ordering(A, 4)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def _orderings_to_compare():
    unsymmetric = sp.csr_array(sp.tril(random_sparse_spd(60, 0.08, seed=3)) + sp.eye(60))
    no_diagonal = sp.csr_array(poisson2d(7) - sp.diags(poisson2d(7).diagonal()))
    no_diagonal.eliminate_zeros()
    return {"grid": poisson2d(9), "anisotropic": anisotropic2d(8),
            "random": random_sparse_spd(80, 0.04, seed=1), "unsymmetric": unsymmetric,
            "no diagonal": no_diagonal,
            "disconnected": sp.block_diag([poisson2d(5), poisson1d(7), sp.eye(3)], format="csr")}


@pytest.mark.parametrize("num_domains", [1, 2, 4])
@pytest.mark.parametrize("name", sorted(_orderings_to_compare()))
def test_compiled_ordering_equals_the_reference_search(name, num_domains, monkeypatch):
    A = _orderings_to_compare()[name]
    compiled = domain_ordering(A, num_domains)
    monkeypatch.setattr(_ordering, "_kernels", lambda: KernelSet("reference", None))
    searched = domain_ordering(A, num_domains)
    for a, b in zip(compiled, searched):
        np.testing.assert_array_equal(a, b)
    check_independent(A, compiled)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 50), density=st.floats(0.0, 0.2), seed=st.integers(0, 10**6),
       kind=st.sampled_from(["symmetric", "no diagonal", "unsymmetric"]))
def test_one_domain_is_scipys_reverse_cuthill_mckee(n, density, seed, kind):
    R = sp.random(n, n, density=density, random_state=seed, format="csr")
    A = sp.csr_array({"symmetric": R + R.T + sp.eye(n), "no diagonal": R + R.T,
                      "unsymmetric": R + sp.eye(n)}[kind])
    A.sort_indices()
    expected = csgraph.reverse_cuthill_mckee(symmetric_pattern(A), symmetric_mode=True)
    np.testing.assert_array_equal(domain_ordering(A, 1).perm, expected)


@pytest.mark.slow  # compiles the searches for int64 indices
def test_int64_indices_order_as_int32_and_the_pattern_is_not_copied():
    A = sp.csr_array(anisotropic2d(12))
    wide = sp.csr_array((A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64)),
                        shape=A.shape)
    for a, b in zip(domain_ordering(A, 4), domain_ordering(wide, 4)):
        np.testing.assert_array_equal(a, b)
    graph = pattern_graph(A)
    assert graph.indices is A.indices and graph.degree.dtype == A.indices.dtype
    np.testing.assert_array_equal(graph.degree, np.diff(symmetric_pattern(A).indptr))


@pytest.mark.parametrize("bad", [0, 3, 6, -1])
def test_num_domains_must_be_a_power_of_two(bad):
    with pytest.raises(ValueError, match="power of two"):
        domain_ordering(poisson1d(8), bad)


# --- rows padded for the sweeps (linsolve.precond._triangular.pad_rows) ---------------

@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 30), density=st.floats(0.0, 0.6), width=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2**16))
def test_pad_rows_keeps_the_matrix(n, density, width, seed):
    A = sp.csr_array(sp.random(n, n, density=density, random_state=seed, format="csr"))
    A.sort_indices()
    indptr, indices, data = pad_rows(A, width)
    assert np.all(np.diff(indptr) % width == 0)
    assert np.all(np.diff(indptr) - np.diff(A.indptr) < width)
    padded = sp.csr_array((data, indices, indptr), shape=(n, n))
    np.testing.assert_array_equal(padded.toarray(), A.toarray())
    for i in range(n):
        row = slice(indptr[i], indptr[i + 1])
        lead = (indptr[i + 1] - indptr[i]) - (A.indptr[i + 1] - A.indptr[i])
        # zeros first, naming the row's first stored column; the stored entries in order
        assert np.all(data[row][:lead] == 0)
        assert np.all(indices[row][:lead] == A.indices[A.indptr[i]] if lead else True)
        np.testing.assert_array_equal(indices[row][lead:], A.indices[A.indptr[i]:A.indptr[i + 1]])
        np.testing.assert_array_equal(data[row][lead:], A.data[A.indptr[i]:A.indptr[i + 1]])


def test_row_width_pads_only_rows_of_varying_length():
    grid = sp.csr_array(sp.tril(poisson2d(20), -1))  # rows of length 2 (and a few 1 and 0)
    assert row_width(grid) == 1
    mesh = sp.csr_array(sp.tril(random_sparse_spd(200, density=0.05, seed=1), -1))
    assert row_width(mesh) == 4
    assert row_width(sp.csr_array((5, 5))) == 1
