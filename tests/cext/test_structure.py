"""The compiled structure check against its reference twin and scipy's full check."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cext import check_csr_structure, reference
from cext.numba import csr_check


def _scipy_says_valid(indptr, indices, n_rows, n_cols) -> bool:
    """scipy's own O(nnz) ``check_format(full_check=True)`` (numpy passes), as the oracle.

    scipy skips its monotonicity test when ``indptr[-1] <= 0`` (it accepts
    ``indptr = [0, -2]``), so that test is repeated here.
    """
    if np.any(np.diff(indptr.astype(np.int64)) < 0):
        return False
    try:
        A = sp.csr_matrix((np.ones(indices.shape[0]), indices, indptr), shape=(n_rows, n_cols),
                          copy=True)
        A.check_format(full_check=True)
    except ValueError:
        return False
    return True


@st.composite
def structures(draw):
    """A random valid CSR structure, then (often) one corruption of it."""
    n_rows = draw(st.integers(0, 12))
    n_cols = draw(st.integers(1, 12))
    counts = draw(st.lists(st.integers(0, 5), min_size=n_rows, max_size=n_rows))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    nnz = int(indptr[-1])
    indices = np.array(draw(st.lists(st.integers(0, n_cols - 1), min_size=nnz, max_size=nnz)),
                       dtype=np.int64)
    kind = draw(st.sampled_from(["none", "index", "indptr"]))
    if kind == "index" and nnz:
        position = draw(st.integers(0, nnz - 1))
        indices[position] = draw(st.sampled_from([-1, n_cols, 2 * n_cols, 2**31 - 5, -(2**40)]))
    elif kind == "indptr" and n_rows:
        position = draw(st.integers(0, n_rows))
        indptr[position] += draw(st.sampled_from([-2, -1, 1, 3]))
    index_dtype = draw(st.sampled_from([np.int32, np.int64]))
    if index_dtype == np.int32:
        indices = np.clip(indices, -(2**31), 2**31 - 1)
    return indptr.astype(index_dtype), indices.astype(index_dtype), n_rows, n_cols


@settings(max_examples=300, deadline=None, derandomize=True)  # CI sees fixed cases
@given(structures())
def test_numba_check_agrees_with_reference_and_scipy(structure):
    indptr, indices, n_rows, n_cols = structure
    got = csr_check(indptr, indices, n_cols)
    assert got == reference.csr_check(indptr, indices, n_cols)
    # without the order the verdict is the same; canonical is then not examined
    unordered = csr_check(indptr, indices, n_cols, False)
    assert unordered[:3] == got[:3] == reference.csr_check(indptr, indices, n_cols, False)[:3]
    assert unordered[3] is (n_rows == 0)
    code, _, _, canonical = got
    # scipy allows a stored array longer than indptr[-1]; so do we
    assert (code == 0) == _scipy_says_valid(indptr, indices, n_rows, n_cols)
    if code == 0:
        A = sp.csr_matrix((np.ones(indices.shape[0]), indices, indptr), shape=(n_rows, n_cols))
        assert canonical == bool(A.has_canonical_format)


def test_first_offence_is_reported_with_row_and_value():
    indptr = np.array([0, 2, 4, 6], dtype=np.int32)
    indices = np.array([0, 1, 7, 1, -3, 2], dtype=np.int32)
    assert csr_check(indptr, indices, 3) == (4, 1, 7, False)
    with pytest.raises(ValueError, match=r"column index 7 in row 1 is outside \[0, 3\)"):
        check_csr_structure(indptr, indices, np.ones(6), (3, 3))


def test_large_structure_crosses_task_blocks():
    # offences in late row blocks of the parallel pass are still found first-in-order
    n = 50_000
    rng = np.random.default_rng(1)
    rows = np.repeat(np.arange(n), 10)
    A = sp.csr_matrix((np.ones(10 * n), (rows, rng.integers(0, n, 10 * n))), shape=(n, n))
    assert csr_check(A.indptr, A.indices, A.shape[1]) == (0, -1, 0, True)
    indices = A.indices.copy()
    late, early = A.indptr[40_000], A.indptr[30_000]
    indices[late] = 50_000
    assert csr_check(A.indptr, indices, A.shape[1])[:2] == (4, 40_000)
    indices[early] = -1
    assert csr_check(A.indptr, indices, A.shape[1])[:3] == (4, 30_000, -1)
    indptr = A.indptr.copy()
    indptr[45_001] = indptr[45_000] - 1
    assert csr_check(indptr, A.indices, A.shape[1])[:2] == (2, 45_000)
