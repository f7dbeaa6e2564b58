"""Test problems for the benchmarks: a gallery of SPD matrices and Matrix Market input.

Every builder returns a :class:`Problem` holding a canonical float64 CSR
matrix (sorted indices, no duplicates, int32 indices where they fit, as
scipy makes them) and a seeded right-hand side, so every method of a table
sees the same system.

Gallery
-------
``poisson2d``      5-point Laplacian on an N x N interior grid (n = N^2)
``poisson3d``      7-point Laplacian on an N x N x N grid (n = N^3)
``anisotropic2d``  ``-epsilon u_xx - u_yy`` on an N x N grid (``epsilon`` option)
``elasticity``     pyamg's plane-strain linear elasticity, Q1 elements, N x N
``airfoil``, ``bar``, ``knot``, ``unit_cube``, ``local_disc_galerkin_diffusion``
                   pyamg's shipped examples (fixed size; ``--size`` is ignored).
                   Only the SPD ones are listed: ``unit_square`` is singular,
                   ``recirc_flow`` non-symmetric, ``helmholtz_2D`` complex.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# pyamg examples that are symmetric positive definite (checked with eigsh on
# pyamg 5.4: smallest eigenvalues 0.095, 0.067, 0.0087, 5.5, 0.021).
PYAMG_EXAMPLES = ("airfoil", "bar", "knot", "unit_cube", "local_disc_galerkin_diffusion")

STENCIL_PROBLEMS = ("poisson2d", "poisson3d", "anisotropic2d", "elasticity")
PROBLEMS = STENCIL_PROBLEMS + PYAMG_EXAMPLES


@dataclass(frozen=True)
class Problem:
    """One linear system ``A x = b``.

    Attributes
    ----------
    name : str
        Label used in the tables (gallery name or file stem).
    A : scipy.sparse.csr_matrix
        Square float64 matrix, assumed symmetric positive definite.
    b : numpy.ndarray
        Right-hand side, float64.
    """

    name: str
    A: sp.csr_matrix
    b: np.ndarray

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def nnz(self) -> int:
        return self.A.nnz


def _laplacian_1d(N: int) -> sp.csr_matrix:
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N), format="csr", dtype=np.float64)


def poisson2d(N: int) -> sp.csr_matrix:
    """5-point Laplacian (Dirichlet) on an N x N interior grid, unscaled (diagonal 4).

    Examples
    --------
    >>> A = poisson2d(3)
    >>> A.shape, A.nnz, float(A[4, 4])
    ((9, 9), 33, 4.0)
    """
    return anisotropic2d(N, epsilon=1.0)


def anisotropic2d(N: int, epsilon: float = 1e-2) -> sp.csr_matrix:
    """``-epsilon u_xx - u_yy`` with 5 points on an N x N grid (diagonal ``2 + 2 epsilon``).

    Small ``epsilon`` couples the unknowns strongly along y only: pointwise
    smoothers and Jacobi degrade, which is what the problem is for.
    """
    if N < 1:
        raise ValueError(f"size N must be at least 1, got {N}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    T = _laplacian_1d(N)
    identity = sp.identity(N, format="csr", dtype=np.float64)
    A = epsilon * sp.kron(identity, T) + sp.kron(T, identity)
    return _canonical(A)


def poisson3d(N: int) -> sp.csr_matrix:
    """7-point Laplacian on an N x N x N grid (diagonal 6).

    Examples
    --------
    >>> poisson3d(2).diagonal().tolist()
    [6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]
    """
    if N < 1:
        raise ValueError(f"size N must be at least 1, got {N}")
    T = _laplacian_1d(N)
    identity = sp.identity(N, format="csr", dtype=np.float64)
    A = (sp.kron(sp.kron(T, identity), identity) + sp.kron(sp.kron(identity, T), identity)
         + sp.kron(sp.kron(identity, identity), T))
    return _canonical(A)


def elasticity(N: int) -> sp.csr_matrix:
    """pyamg's 2-D linear elasticity on an N x N grid of Q1 elements (n = 2 N^2)."""
    from pyamg.gallery import linear_elasticity  # optional dependency: import on use

    A, _ = linear_elasticity((N, N))
    return _canonical(A)


def pyamg_example(name: str) -> sp.csr_matrix:
    """A matrix shipped with pyamg (``pyamg.gallery.load_example``); works offline."""
    from pyamg.gallery import load_example

    A = sp.csr_matrix(load_example(name)["A"])
    # local_disc_galerkin_diffusion is symmetric only to 1e-12; CG's theory
    # wants exact symmetry, so take the symmetric part.
    return _canonical((A + A.T) * 0.5)


def _canonical(A) -> sp.csr_matrix:
    A = sp.csr_matrix(A, dtype=np.float64)
    A.sum_duplicates()
    A.sort_indices()
    A.eliminate_zeros()
    return A


def rhs(n: int, seed: int = 0) -> np.ndarray:
    """Seeded standard-normal right-hand side (random, so no method is lucky on a smooth b)."""
    return np.random.default_rng(seed).standard_normal(n)


def make_problem(name: str, size: int = 64, *, seed: int = 0, epsilon: float = 1e-2) -> Problem:
    """Build gallery problem ``name`` of grid size ``size``.

    Parameters
    ----------
    name : str
        One of :data:`PROBLEMS`.
    size : int
        Grid points per dimension (ignored by the pyamg examples).
    seed : int
        Seed of the right-hand side.
    epsilon : float
        Anisotropy of ``anisotropic2d``.

    Examples
    --------
    >>> p = make_problem("poisson2d", 4)
    >>> p.n, p.nnz, p.b.shape
    (16, 64, (16,))
    """
    if name == "poisson2d":
        A = poisson2d(size)
    elif name == "poisson3d":
        A = poisson3d(size)
    elif name == "anisotropic2d":
        A = anisotropic2d(size, epsilon)
        name = f"anisotropic2d(eps={epsilon:g})"
    elif name == "elasticity":
        A = elasticity(size)
    elif name in PYAMG_EXAMPLES:
        A = pyamg_example(name)
    else:
        raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS)} "
                         "or pass --matrix FILE.mtx")
    return Problem(name, A, rhs(A.shape[0], seed))


def load_matrix(path: str | os.PathLike, *, seed: int = 0, max_nnz: int | None = None) -> Problem:
    """Read a Matrix Market file into a :class:`Problem` with a seeded right-hand side.

    ``max_nnz`` (default: no limit) bounds the entries the matrix will hold,
    read from the file's header before the entries are: a symmetric file's
    stored triangle counts twice, an ``array`` file all ``rows * cols``.

    Raises
    ------
    ValueError
        The file is missing, not Matrix Market, not square, complex, empty,
        or over ``max_nnz``. The message names the file and what is wrong
        with it.
    """
    import scipy.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"matrix file {path!r} does not exist")
    if max_nnz is not None:
        try:
            rows, cols, entries, _, _, symmetry = scipy.io.mminfo(path)
        except Exception as error:  # junk headers raise ValueError, IndexError, ...
            raise ValueError(f"could not read {path!r} as a Matrix Market file: {error}") from error
        nnz = entries if symmetry == "general" else 2 * entries
        if nnz > max_nnz:
            raise ValueError(f"{path!r} declares a {rows} x {cols} matrix with up to {nnz} "
                             f"entries, over --max-nnz {max_nnz}; raise --max-nnz to read it")
    try:
        A = scipy.io.mmread(path)
    except Exception as error:  # scipy raises ValueError, IndexError, ... on junk
        raise ValueError(f"could not read {path!r} as a Matrix Market file: {error}") from error
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{path!r} holds a {A.shape[0]} x {A.shape[1]} matrix; CG needs a "
                         "square symmetric positive definite one")
    if A.shape[0] == 0:
        raise ValueError(f"{path!r} holds an empty matrix")
    if np.iscomplexobj(A):
        raise ValueError(f"{path!r} holds a complex matrix; the benchmarks solve real SPD systems")
    A = _canonical(sp.csr_matrix(A))
    name = os.path.splitext(os.path.basename(path))[0]
    return Problem(name, A, rhs(A.shape[0], seed))


def asymmetry(A: sp.csr_matrix) -> float:
    """``max|A - A^T| / max|A|``: zero for a symmetric matrix (CG assumes one)."""
    scale = abs(A).max()
    return float(abs(A - A.T).max() / scale) if scale > 0 else 0.0
