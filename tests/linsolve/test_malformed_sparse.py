"""Malformed and non-canonical sparse input at every public entry point.

scipy does not check column ranges or ``indptr`` monotonicity, and the
kernels read indices without bounds checks: before the structure gate
(``linsolve.validation.sparse.checked_csr``) these inputs segfaulted or came back
"converged". Each must raise ValueError naming the offence; non-canonical
input (duplicates, unsorted rows) must give the canonical answer and leave
the caller's arrays bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import linsolve
from cext import csr_to_dia
from linsolve import OmegaBandit, SorMatrix, pcg, precond, sketch_solve, sor, young_omega
from linsolve.mpi import DistCSR, SerialComm
from linsolve.mpi import block_sor_reference
from linsolve.mpi import pcg as mpi_pcg

from tests.problems import poisson2d

N_GRID = 4
N = N_GRID * N_GRID


def _base():
    return sp.csr_matrix(poisson2d(N_GRID))


def _with_index(value):
    def build():
        A = _base()
        A.indices[A.indptr[5] + 1] = value  # one entry of row 5
        return A
    return build


def _with_indptr(make):
    def build():
        A = _base()
        A.indptr = make(A.indptr.copy(), A.nnz)
        return A
    return build


def _not_monotone(indptr, nnz):
    indptr[7] = indptr[9]
    return indptr


def _not_at_zero(indptr, nnz):
    indptr[0] = 1
    return indptr


def _last_too_large(indptr, nnz):
    indptr[-1] = nnz + 3
    return indptr


MALFORMED = {
    "column n": (_with_index(N), "column index 16 in row 5"),
    "column 2n": (_with_index(2 * N), "column index 32 in row 5"),
    "column 2^31-5": (_with_index(2**31 - 5), "column index 2147483643 in row 5"),
    "column -1": (_with_index(-1), "column index -1 in row 5"),
    "indptr short": (_with_indptr(lambda p, nnz: p[:-1]), "indptr has length 16"),
    "indptr long": (_with_indptr(lambda p, nnz: np.append(p, nnz)), "indptr has length 18"),
    "indptr last too large": (_with_indptr(_last_too_large), "indptr ends at"),
    "indptr not monotone": (_with_indptr(_not_monotone), "indptr decreases at row 7"),
    "indptr not starting at 0": (_with_indptr(_not_at_zero), "indptr must start at 0"),
}


def _b():
    return np.ones(N)


ENTRY_POINTS = {
    "pcg": lambda A: pcg(A, _b()),
    "pcg M=A": lambda A: pcg(poisson2d(N_GRID), _b(), M=A),
    "as_operator": lambda A: linsolve.as_operator(A, linsolve.core.operators.array_namespace(_b()),
                                                  np.float64, N),
    "jacobi": precond.jacobi,
    "ssor": precond.ssor,
    "ichol0": precond.ichol0,
    "amg": precond.amg,
    "chebyshev": lambda A: precond.chebyshev(A, 3),
    "sor natural": lambda A: sor(A, _b()),
    "sor symmetric": lambda A: sor(A, _b(), symmetric=True),
    "sor redblack": lambda A: sor(A, _b(), ordering="redblack"),
    "sor multicolor": lambda A: sor(A, _b(), ordering="multicolor"),
    "SorMatrix multicolor": lambda A: SorMatrix(A, ordering="multicolor"),
    "sketch rows": lambda A: sketch_solve(A, _b(), seed=0, maxiter=10),
    "sketch gaussian": lambda A: sketch_solve(A, _b(), sketch="gaussian", sketch_size=4, seed=0,
                                              maxiter=10),
    "sketch countsketch": lambda A: sketch_solve(A, _b(), sketch="countsketch", sketch_size=4,
                                                 seed=0, maxiter=10),
    "young_omega": young_omega,
    "OmegaBandit.solve": lambda A: OmegaBandit(seed=0).solve(A, _b()),
    "OmegaBandit.solve ssor-pcg": lambda A: OmegaBandit(seed=0).solve(A, _b(), solver="ssor-pcg"),
    "csr_to_dia": lambda A: csr_to_dia(A.indptr, A.indices, A.data, N),
    "DistCSR.from_global": lambda A: DistCSR.from_global(A, comm=SerialComm()),
    "DistCSR.from_rows": lambda A: DistCSR.from_rows(A, comm=SerialComm()),
    "block_sor_reference": lambda A: block_sor_reference(A, _b(), [0, N], 1.0, iterations=1),
}


@pytest.mark.parametrize("defect", list(MALFORMED))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_malformed_csr_raises_value_error(entry, defect):
    build, message = MALFORMED[defect]
    A = build()
    with pytest.raises(ValueError, match=message.replace("^", r"\^")):
        ENTRY_POINTS[entry](A)


@pytest.mark.parametrize("fmt", ["csc", "coo", "bsr"])
def test_malformed_other_formats_raise_before_conversion(fmt):
    A = _base().asformat(fmt)
    if fmt == "coo":
        A.col[3] = N + 1
        message = "column index 17"
    elif fmt == "csc":
        A.indices[3] = -1
        message = "row index -1"
    else:
        A.indptr[2] = A.indptr[4] + 1
        message = "indptr decreases"
    for call in (lambda: pcg(A, _b()), lambda: sor(A, _b()), lambda: precond.ichol0(A)):
        with pytest.raises(ValueError, match=message):
            call()


def test_bad_index_dtype_is_named():
    A = _base()
    A.indices = A.indices.astype(np.int16)
    with pytest.raises(ValueError, match="int32 or int64"):
        pcg(A, _b())


def test_malformed_rhs_solver_combinations_leave_input_untouched():
    A = _with_index(-1)()
    copies = (A.data.copy(), A.indices.copy(), A.indptr.copy())
    for call in ENTRY_POINTS.values():
        with pytest.raises(ValueError):
            call(A)
    for before, after in zip(copies, (A.data, A.indices, A.indptr)):
        np.testing.assert_array_equal(before, after)


def _non_canonical():
    """poisson2d(4) stored with every row reversed and its diagonal split in two."""
    A = _base()
    rows, data, indices = [], [], []
    for i in range(N):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        cols, vals = A.indices[lo:hi][::-1].tolist(), A.data[lo:hi][::-1].tolist()
        k = cols.index(i)
        cols.insert(k, i)
        vals[k] /= 2
        vals.insert(k, vals[k])
        rows.append(len(cols))
        indices += cols
        data += vals
    indptr = np.concatenate([[0], np.cumsum(rows)]).astype(np.int32)
    B = sp.csr_matrix((np.array(data), np.array(indices, dtype=np.int32), indptr), shape=(N, N))
    assert not B.has_sorted_indices
    np.testing.assert_array_equal(B.toarray(), A.toarray())
    return B


SOLVES = {
    "pcg": lambda A: pcg(A, _b(), rtol=1e-12).x,
    "pcg jacobi": lambda A: pcg(A, _b(), M=precond.jacobi(A), rtol=1e-12).x,
    "pcg ssor": lambda A: pcg(A, _b(), M=precond.ssor(A), rtol=1e-12).x,
    "pcg ichol0": lambda A: pcg(A, _b(), M=precond.ichol0(A), rtol=1e-12).x,
    "pcg amg": lambda A: pcg(A, _b(), M=precond.amg(A), rtol=1e-12).x,
    "pcg chebyshev": lambda A: pcg(A, _b(), M=precond.chebyshev(A, 3), rtol=1e-12).x,
    "sor": lambda A: sor(A, _b(), 1.5, rtol=1e-12).x,
    "sor multicolor": lambda A: sor(A, _b(), 1.2, rtol=1e-12, ordering="multicolor").x,
    "sketch": lambda A: sketch_solve(A, _b(), seed=3, rtol=1e-10, maxiter=10**5).x,
    "young_omega": lambda A: np.array([young_omega(A)]),
    "mpi pcg": lambda A: mpi_pcg(DistCSR.from_global(A, comm=SerialComm()), _b(), rtol=1e-12).x,
}


@pytest.mark.parametrize("solve", list(SOLVES))
def test_non_canonical_input_same_answer_and_untouched(solve):
    B = _non_canonical()
    copies = (B.data.copy(), B.indices.copy(), B.indptr.copy())
    x_canonical = SOLVES[solve](_base())
    x = SOLVES[solve](B)
    for before, after in zip(copies, (B.data, B.indices, B.indptr)):
        np.testing.assert_array_equal(before, after)
    assert not B.has_sorted_indices
    # same matrix, other summation order: rounding-level differences only
    np.testing.assert_allclose(x, x_canonical, rtol=1e-9, atol=1e-12)
