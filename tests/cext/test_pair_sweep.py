"""The unpadded pair sweeps, which keep the row just solved in a register.

On a mesh a row's sum mostly needs the row solved just before it; the
compiled sweeps take that value from a register instead of reloading it
(:mod:`cext.numba.triangular`). These tests pin the result to the plain
loops of :mod:`cext.reference.triangular` bit for bit (the same operations
in the same order), to a dense solve, and to the padded kernel, on factors
where the register is used almost every row, where it is not, and where a
row's entries are not sorted (the chained column then not at the row's end).
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

from cext.numba.triangular import csr_triangular_pair_solve as pair_numba
from cext.reference.triangular import csr_triangular_pair_solve as pair_reference
from linsolve.precond._ordering import domain_ordering, natural_ordering
from linsolve.precond._triangular import pad_rows

THREAD_COUNTS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})


@contextlib.contextmanager
def numba_threads(count):
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def triangle_grid(m: int):
    """The pattern of P1 triangles on an ``m x m`` grid: six neighbours, three below the
    diagonal in lexicographic order, the last of them the row before."""
    n = m * m
    k = np.arange(n).reshape(m, m)
    rows, cols = [k.ravel()], [k.ravel()]
    for a, b in ((k[:, 1:], k[:, :-1]), (k[1:, :], k[:-1, :]), (k[1:, 1:], k[:-1, :-1])):
        rows += [a.ravel(), b.ravel()]
        cols += [b.ravel(), a.ravel()]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    A = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n, n))
    A.sort_indices()
    return A


def mixed_pattern(n: int, seed: int):
    """Rows of 0 to 6 entries below the diagonal, some with the row before, some without."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(1, n):
        picked = rng.choice(i, size=int(rng.integers(0, min(i, 6) + 1)), replace=False)
        rows.append(np.full(picked.size, i))
        cols.append(picked)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    lower = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n, n))
    A = sp.csr_array(lower + lower.T + sp.eye_array(n))
    A.sort_indices()
    return A


def factors(A, num_domains: int, seed: int, shuffle: bool = False):
    """``(args, b, ordering)`` for the pair solve: unit-scaled strictly lower and upper parts
    of the permuted ``A`` with random values; ``shuffle`` permutes each row's entries."""
    n = A.shape[0]
    ordering = domain_ordering(A, num_domains) if num_domains else natural_ordering(n)
    B = sp.csr_array(A[ordering.perm][:, ordering.perm])
    B.sort_indices()
    rng = np.random.default_rng(seed)
    parts = []
    for part in (sp.tril(B, -1, format="csr"), sp.triu(B, 1, format="csr")):
        part = sp.csr_array(part)
        part.data = 0.3 * rng.uniform(-1, 1, part.nnz)
        indices, data = part.indices.copy(), part.data.copy()
        if shuffle:
            for i in range(n):
                lo, hi = part.indptr[i], part.indptr[i + 1]
                order = lo + rng.permutation(hi - lo)
                indices[lo:hi], data[lo:hi] = indices[order], data[order]
        parts.append((part.indptr.astype(np.int32), indices.astype(np.int32), data))
    scale_in, scale_out = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 2.0, n)
    args = (*parts[0], *parts[1], scale_in, scale_out, ordering.perm.astype(np.int32),
            ordering.segment_ptr.astype(np.int32), ordering.stage_ptr.astype(np.int32))
    return args, rng.standard_normal(n), ordering


def transposed(args):
    """The same ``args`` with ``U = L^T`` (read from ``L``), as IC(0) stores it."""
    return (*args[:3], None, None, None, *args[6:])


def solve(kernel, args, b, quad=False):
    out, work = np.full_like(b, np.nan), np.empty_like(b)
    kernel(*args, b, work, out, quad)
    return out


def dense(args, b, ordering):
    n = b.shape[0]
    lower = sp.csr_array((args[2], args[1], args[0]), shape=(n, n)).toarray()
    upper = lower.T if args[3] is None else \
        sp.csr_array((args[5], args[4], args[3]), shape=(n, n)).toarray()
    y = sla.solve_triangular(np.eye(n) + lower, args[6] * b[ordering.perm], lower=True)
    out = np.empty(n)
    out[ordering.perm] = args[7] * sla.solve_triangular(np.eye(n) + upper, y, lower=False)
    return out


def padded(args):
    n = args[6].shape[0]
    out = list(args)
    for at in (0, 3):
        if args[at] is not None:
            csr = sp.csr_array((args[at + 2], args[at + 1], args[at]), shape=(n, n))
            p, i, d = pad_rows(csr, 4)
            out[at:at + 3] = [p.astype(np.int32), i.astype(np.int32), d]
    return tuple(out)


CASES = [("triangles", lambda: triangle_grid(12)), ("mixed", lambda: mixed_pattern(150, 3))]


@pytest.mark.parametrize("threads", THREAD_COUNTS)
@pytest.mark.parametrize("num_domains", [0, 2])
@pytest.mark.parametrize("upper", ["stored", "transposed"])
@pytest.mark.parametrize("name,build", CASES)
def test_sweep_is_the_plain_loops_bit_for_bit(name, build, upper, num_domains, threads):
    args, b, ordering = factors(build(), num_domains, seed=1)
    if upper == "transposed":
        args = transposed(args)
    expected = solve(pair_reference, args, b)
    with numba_threads(threads):
        got = solve(pair_numba, args, b)
    assert np.array_equal(got, expected)
    np.testing.assert_allclose(got, dense(args, b, ordering), rtol=1e-10, atol=1e-12)
    # the padded kernel (explicit zeros first in each row) gives the same finite sums
    with numba_threads(threads):
        assert np.array_equal(solve(pair_numba, padded(args), b, quad=True), got)


@pytest.mark.parametrize("upper", ["stored", "transposed"])
def test_unsorted_rows_use_the_register_only_where_it_holds_the_value(upper):
    # the row before is then anywhere in the row, or the same column is read twice
    args, b, ordering = factors(triangle_grid(10), 0, seed=2, shuffle=True)
    if upper == "transposed":
        args = transposed(args)
    got = solve(pair_numba, args, b)
    assert np.array_equal(got, solve(pair_reference, args, b))
    np.testing.assert_allclose(got, dense(args, b, ordering), rtol=1e-10, atol=1e-12)


def test_a_nan_in_the_row_before_reaches_every_later_row():
    args, b, _ = factors(triangle_grid(8), 0, seed=3)
    b = b.copy()
    b[5] = np.nan  # natural ordering: row 5 of the permuted system
    got = solve(pair_numba, args, b)
    assert np.isnan(got).any()
    assert np.array_equal(np.isnan(got), np.isnan(solve(pair_reference, args, b)))
