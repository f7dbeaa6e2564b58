"""The symbolic kernels of IC(0)/SSOR: orderings (cext.*.ordering) and layout (cext.*.pattern).

Each compiled kernel against its plain reference twin, and the reference
against an independent one (scipy's reverse Cuthill-McKee, scipy's
permuted ``tril``, a dense transpose).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from array_api_compat import array_namespace
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csgraph

from cext import kernels_for, reference
from cext import numba as nbk
from cext.registry import PARALLEL_KERNELS

ORDERING_KERNELS = ("graph_cuthill_mckee", "graph_bisect", "segment_order")
PATTERN_KERNELS = ("csr_pattern_mirror", "csr_lower_counts", "csr_lower_fill")


def _graph(n, density, seed, kind="symmetric"):
    """Canonical CSR (int32) of a random pattern: symmetric with a diagonal, symmetric
    without one, or not symmetric."""
    R = sp.random(n, n, density=density, random_state=seed, format="csr")
    A = {"symmetric": R + R.T + sp.eye(n), "no diagonal": R + R.T,
         "unsymmetric": R + sp.eye(n)}[kind]
    A = sp.csr_array(A)
    A.sort_indices()
    return A


def test_registry_hands_out_the_numba_symbolic_kernels():
    kernels = kernels_for(array_namespace(np.zeros(1)))
    for name in ORDERING_KERNELS:
        assert getattr(kernels, name) is getattr(nbk, name)
    for name in PATTERN_KERNELS:  # parallel: under the thread policy
        assert name in PARALLEL_KERNELS
        assert getattr(kernels, name).__wrapped__ is getattr(nbk, name)
    for name in ORDERING_KERNELS + PATTERN_KERNELS:
        assert getattr(reference, name) is not getattr(nbk, name)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), density=st.floats(0.0, 0.3), seed=st.integers(0, 10**6),
       diagonal=st.booleans())
def test_cuthill_mckee_is_scipys_reverse_cuthill_mckee(n, density, seed, diagonal):
    A = _graph(n, density, seed, "symmetric" if diagonal else "no diagonal")
    graph = sp.csr_array(A - sp.diags(A.diagonal()))
    graph.eliminate_zeros()
    degree = np.diff(graph.indptr).astype(graph.indices.dtype)
    expected = csgraph.reverse_cuthill_mckee(graph, symmetric_mode=True)[::-1]
    for module in (nbk, reference):
        order = np.empty(n, np.int64)
        # A's own arrays, its diagonal included: a vertex is visited before its row is read
        module.graph_cuthill_mckee(A.indptr, A.indices, degree, np.argsort(degree), order)
        np.testing.assert_array_equal(order, expected)


@pytest.mark.parametrize("kind", ["symmetric", "no diagonal"])
@pytest.mark.parametrize("seed", range(8))
def test_bisect_matches_the_reference(kind, seed):
    n = 30 + 5 * seed
    A = _graph(n, 0.02 + 0.02 * (seed % 4), seed, kind)
    weight = np.diff(A.indptr).astype(np.int64) + 2  # the dtypes the ordering passes
    part_of = np.where(np.arange(n) % 5 == 4, 1, 0).astype(np.int32)  # two parts, interleaved
    out = {}
    for name, module in (("numba", nbk), ("reference", reference)):
        next_part = np.full(n, 99, np.int32)
        distance = np.full(n, 99, np.int32)
        for part in (0, 1):
            module.graph_bisect(A.indptr, A.indices, weight, part_of, part, 10 * part,
                                10 * part + 1, -1 - part, next_part, distance)
        out[name] = next_part, distance
    for got, want in zip(out["numba"], out["reference"]):
        np.testing.assert_array_equal(got, want)
    next_part, distance = out["numba"]
    # a separator cuts: no edge of A joins the two sides of one part
    rows = np.repeat(np.arange(n), np.diff(A.indptr))
    left, right = next_part[rows], next_part[A.indices]
    same_part = part_of[rows] == part_of[A.indices]
    assert not np.any(same_part & (left >= 0) & (right >= 0) & (left != right))


def test_bisect_of_a_path_cuts_in_the_middle_with_distances():
    n = 9
    A = sp.csr_array(sp.diags([1.0, 2.0, 1.0], [-1, 0, 1], shape=(n, n)))
    next_part, distance = np.zeros(n, np.int32), np.zeros(n, np.int32)
    nbk.graph_bisect(A.indptr, A.indices, np.full(n, 5, np.int64), np.zeros(n, np.int32), 0, 0,
                     1, -1, next_part, distance)
    assert next_part.tolist() == [0] * 4 + [-1] + [1] * 4
    assert distance.tolist() == [4, 3, 2, 1, 0, 1, 2, 3, 4]


@pytest.mark.parametrize("seed", range(4))
def test_segment_order_is_a_lexsort(seed):
    rng = np.random.default_rng(seed)
    n, segments = 50, 5
    segment = rng.integers(0, segments, n)
    distance = rng.integers(0, 4, n)
    cuthill_mckee = rng.permutation(n)
    rank = np.empty(n, np.int64)
    rank[cuthill_mckee[::-1]] = np.arange(n)
    expected = np.lexsort((rank, -distance, segment))
    for module in (nbk, reference):
        perm, ptr = np.empty(n, np.int64), np.empty(segments + 1, np.int64)
        module.segment_order(cuthill_mckee, segment, distance, perm, ptr)
        np.testing.assert_array_equal(perm, expected)
        np.testing.assert_array_equal(ptr, np.concatenate(([0], np.cumsum(
            np.bincount(segment, minlength=segments)))))


@pytest.mark.parametrize("kind", ["symmetric", "no diagonal", "unsymmetric"])
def test_pattern_mirror_against_the_dense_transpose(kind):
    A = _graph(40, 0.1, 3, kind)
    n, nnz = A.shape[0], A.nnz
    symmetric = (abs(A) != abs(A.T)).nnz == 0
    rows = np.repeat(np.arange(n), np.diff(A.indptr))
    for module in (nbk, reference):
        mirror, diagonal = np.full(nnz, -7, np.int64), np.full(n, -7, np.int64)
        assert module.csr_pattern_mirror(A.indptr, A.indices, mirror, diagonal) == symmetric
        if symmetric:
            np.testing.assert_array_equal(rows[mirror], A.indices)
            np.testing.assert_array_equal(A.indices[mirror], rows)
            where = {(int(r), int(c)): p for p, (r, c) in enumerate(zip(rows, A.indices))}
            assert diagonal.tolist() == [where.get((i, i), -1) for i in range(n)]


def test_pattern_mirror_refuses_unsorted_rows_and_duplicates():
    indptr = np.array([0, 2, 4])
    for indices in (np.array([1, 0, 0, 1]), np.array([0, 0, 0, 1])):
        for module in (nbk, reference):
            assert not module.csr_pattern_mirror(indptr, indices, np.empty(4, np.int64),
                                                 np.empty(2, np.int64))


@pytest.mark.parametrize("kind", ["symmetric", "no diagonal", "unsymmetric"])
def test_lower_layout_matches_reference_and_scipy(kind):
    A = _graph(50, 0.08, 5, kind)
    n, nnz = A.shape[0], A.nnz
    perm = np.random.default_rng(1).permutation(n)
    inverse = np.argsort(perm)
    out = {}
    for name, module in (("numba", nbk), ("reference", reference)):
        counts, diagonal = np.empty(n, np.int64), np.empty(n, np.int64)
        module.csr_lower_counts(A.indptr, A.indices, inverse, counts, diagonal)
        lower_indptr = np.concatenate(([0], np.cumsum(counts + (diagonal >= 0))))
        padded = -(-counts // 4) * 4
        strict_indptr = np.concatenate(([0], np.cumsum(padded))).astype(np.int32)
        mirror = np.empty(nnz, np.int64)
        reference.csr_mirror(A.indptr, A.indices, mirror)
        lower = [np.full(lower_indptr[-1], -7, np.int64) for _ in range(2)]
        strict = [np.full(strict_indptr[-1], -7, np.int32)] + \
            [np.full(strict_indptr[-1], -7, np.int64) for _ in range(3)]
        module.csr_lower_fill(A.indptr, A.indices, perm, inverse, mirror, lower_indptr,
                              strict_indptr, *lower, *strict)
        out[name] = (counts, diagonal, *lower, *strict, mirror, lower_indptr, strict_indptr)
    for got, want in zip(out["numba"], out["reference"]):
        np.testing.assert_array_equal(got, want)
    counts, diagonal, indices, source, s_indices, s_from, s_source, s_mirror, mirror, \
        lower_indptr, strict_indptr = out["numba"]
    expected = sp.csr_array(sp.tril(A[perm][:, perm], format="csr"))
    expected.sort_indices()
    np.testing.assert_array_equal(lower_indptr, expected.indptr)
    np.testing.assert_array_equal(indices, expected.indices)
    np.testing.assert_array_equal(A.data[source], expected.data)
    # the strict layout: the lower entries left of the diagonal, padding first in a row
    stored = s_from >= 0
    np.testing.assert_array_equal(s_indices[stored], indices[s_from[stored]])
    np.testing.assert_array_equal(s_source[stored], source[s_from[stored]])
    np.testing.assert_array_equal(s_mirror[stored], mirror[s_source[stored]])
    assert np.all(s_source[~stored] == -1) and np.all(s_mirror[~stored] == -1)
    strict = sp.csr_array(sp.tril(A[perm][:, perm], -1, format="csr"))
    assert int(stored.sum()) == strict.nnz


def test_threads_split_the_rows_without_changing_a_bit():
    import numba

    A = _graph(300, 0.03, 7, "symmetric")
    n, nnz = A.shape[0], A.nnz
    perm = np.random.default_rng(2).permutation(n)
    inverse = np.argsort(perm)
    lower_indptr = np.concatenate(([0], np.cumsum(np.diff(sp.tril(A[perm][:, perm], format="csr").indptr))))
    counts = np.diff(sp.tril(A[perm][:, perm], -1, format="csr").indptr)
    strict_indptr = np.concatenate(([0], np.cumsum(-(-counts // 4) * 4))).astype(np.int32)
    out = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            mirror, diagonal = np.empty(nnz, np.int32), np.empty(n, np.int64)
            assert nbk.csr_pattern_mirror(A.indptr, A.indices, mirror, diagonal)
            arrays = [np.empty(lower_indptr[-1], np.int64) for _ in range(2)] + \
                [np.empty(strict_indptr[-1], np.int32)] + \
                [np.empty(strict_indptr[-1], np.int64) for _ in range(3)]
            nbk.csr_lower_fill(A.indptr, A.indices, perm, inverse, mirror, lower_indptr,
                               strict_indptr, *arrays)
            next_part, distance = np.zeros(n, np.int32), np.zeros(n, np.int32)
            nbk.graph_bisect(A.indptr, A.indices, np.diff(A.indptr).astype(np.int64) + 2,
                             np.zeros(n, np.int32), 0, 0, 1, -1, next_part, distance)
            out.append([mirror, diagonal, *arrays, next_part, distance])
    finally:
        numba.set_num_threads(before)
    for got, want in zip(*out):
        np.testing.assert_array_equal(got, want)
