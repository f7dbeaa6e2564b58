"""Test problems for the benchmarks: a gallery of matrices and Matrix Market input.

Every builder returns a :class:`Problem` holding a canonical float64 CSR
matrix (sorted indices, no duplicates, int32 indices where they fit, as
scipy makes them), a seeded right-hand side, so every method of a table
sees the same system, and the matrix's ``kind`` (:data:`KINDS`), from which
a method decides whether it applies (CG needs ``"spd"``, MINRES a symmetric
matrix, GMRES and BiCGStab take any).

Gallery
-------
``poisson2d``      5-point Laplacian on an N x N interior grid (n = N^2)
``poisson3d``      7-point Laplacian on an N x N x N grid (n = N^3)
``anisotropic2d``  ``-epsilon u_xx - u_yy`` on an N x N grid (``epsilon`` option)
``elasticity``     pyamg's plane-strain linear elasticity, Q1 elements, N x N

``convdiff2d``     ``-Δu + w·∇u``, first-order upwind, N x N grid, non-symmetric
                   M-matrix (``peclet`` option: cell Peclet number)
``shifted_laplacian``  ``-Δu - k^2 u`` (Helmholtz-like), 5 points, N x N grid,
                   symmetric indefinite (``shift`` option: ``k^2``)
``stokes``         Taylor-Hood P2-P1 Stokes saddle-point system from scikit-fem
                   (:mod:`bench.stokes`); ``size`` is the mesh refinement level
``airfoil``, ``bar``, ``knot``, ``unit_cube``, ``local_disc_galerkin_diffusion``
                   pyamg's shipped examples (fixed size; ``--size`` is ignored).
                   Only the SPD ones are listed: ``unit_square`` is singular,
                   ``recirc_flow`` non-symmetric, ``helmholtz_2D`` complex.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:  # bench.stokes imports this module
    from .stokes import SaddlePointBlocks

# pyamg examples that are symmetric positive definite (checked with eigsh on
# pyamg 5.4: smallest eigenvalues 0.095, 0.067, 0.0087, 5.5, 0.021).
PYAMG_EXAMPLES = ("airfoil", "bar", "knot", "unit_cube", "local_disc_galerkin_diffusion")

STENCIL_PROBLEMS = ("poisson2d", "poisson3d", "anisotropic2d", "elasticity")
# Problems for the Krylov methods beyond CG: one non-symmetric, one symmetric
# indefinite, one saddle point (not SPD: the CG rows of their tables say SKIPPED).
KRYLOV_PROBLEMS = ("convdiff2d", "shifted_laplacian", "stokes")
PROBLEMS = STENCIL_PROBLEMS + KRYLOV_PROBLEMS + PYAMG_EXAMPLES

SPD = "spd"
SYMMETRIC_INDEFINITE = "symmetric-indefinite"
NONSYMMETRIC = "nonsymmetric"
KINDS = (SPD, SYMMETRIC_INDEFINITE, NONSYMMETRIC)
"""What a :class:`Problem`'s matrix is: symmetric positive definite, symmetric
indefinite (MINRES, not CG), or non-symmetric (GMRES, BiCGStab)."""

DEFAULT_PECLET = 1.0
"""Cell Peclet number of ``convdiff2d``: where central differences would start to oscillate."""

DEFAULT_SHIFT = 150.0
"""``k^2`` of ``shifted_laplacian``: 8 eigenvalues of ``-Δ`` lie below it (between
``13 pi^2 = 128`` and ``17 pi^2 = 168``, so fine grids keep the count)."""


@dataclass(frozen=True)
class Problem:
    """One linear system ``A x = b``.

    Attributes
    ----------
    name : str
        Label used in the tables (gallery name or file stem).
    A : scipy.sparse.csr_matrix
        Square float64 matrix.
    b : numpy.ndarray
        Right-hand side, float64.
    kind : str
        One of :data:`KINDS`; ``"spd"`` (the default) is an assumption for a
        Matrix Market file, checked by the builders of the gallery.
    blocks : bench.stokes.SaddlePointBlocks or None
        The block structure of a saddle-point matrix (``stokes``), from which
        its block-diagonal preconditioner is built; None for the others.
    """

    name: str
    A: sp.csr_matrix
    b: np.ndarray
    kind: str = SPD
    blocks: SaddlePointBlocks | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

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


def convdiff2d(N: int, peclet: float = DEFAULT_PECLET) -> sp.csr_matrix:
    """``-Δu + w·∇u`` on the unit square, N x N interior grid, first-order upwind, times h^2.

    The wind is ``w = (1, 1) * 2 peclet / h`` with ``h = 1 / (N + 1)``, so
    ``peclet`` is the cell Peclet number ``|w_i| h / 2`` of each direction
    and the entries do not depend on ``N``: diagonal ``4 + 4 peclet``, west
    and south neighbours ``-1 - 2 peclet`` (the upwind side), east and north
    ``-1``. Every row sums to zero or more and every off-diagonal entry is
    negative, for any ``peclet >= 0``: a non-singular M-matrix (irreducibly
    diagonally dominant), so ILU(0) exists and Jacobi-like splittings
    converge. ``peclet = 0`` is :func:`poisson2d`.

    Useful values: 0.1 (diffusion dominates, nearly symmetric: GMRES
    behaves like CG), 1 (the default: central differences would oscillate
    beyond it), 10 (convection dominates: far from symmetric, upwind
    ordering matters, ILU(0) nearly exact along the flow).

    Examples
    --------
    >>> A = convdiff2d(3, peclet=1.0)
    >>> float(A[4, 4]), float(A[4, 3]), float(A[4, 5]), float(A[4, 1]), float(A[4, 7])
    (8.0, -3.0, -1.0, -3.0, -1.0)
    >>> (convdiff2d(3, peclet=0.0) != poisson2d(3)).nnz
    0
    """
    if N < 1:
        raise ValueError(f"size N must be at least 1, got {N}")
    if not (np.isfinite(peclet) and peclet >= 0):
        raise ValueError(f"peclet must be a finite number >= 0 (the wind blows along (1, 1); "
                         f"upwinding from the west and south), got {peclet}")
    T = _laplacian_1d(N)
    # (u_i - u_{i-1}): the backward difference, upwind for a positive wind
    upwind = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N), format="csr", dtype=np.float64)
    identity = sp.identity(N, format="csr", dtype=np.float64)
    A = (sp.kron(identity, T) + sp.kron(T, identity)
         + 2.0 * peclet * (sp.kron(identity, upwind) + sp.kron(upwind, identity)))
    return _canonical(A)


def _shifted_spectrum(N: int, shift: float) -> np.ndarray:
    """Eigenvalues of :func:`shifted_laplacian` (N x N of them), from the 1-D sines."""
    h = 1.0 / (N + 1)
    sines = 4.0 * np.sin(np.arange(1, N + 1) * np.pi * h / 2) ** 2
    return np.add.outer(sines, sines) - shift * h * h


def shifted_laplacian(N: int, shift: float = DEFAULT_SHIFT) -> sp.csr_matrix:
    """``-Δu - k^2 u`` with 5 points on an N x N interior grid, scaled by h^2; ``shift = k^2``.

    The matrix is :func:`poisson2d` minus ``k^2 h^2`` on the diagonal, whose
    eigenvalues are ``4 sin^2(i pi h / 2) + 4 sin^2(j pi h / 2) - k^2 h^2``:
    the discrete ``-Δ`` modes below ``k^2`` turn negative. A Helmholtz-like
    model problem (real, no absorbing boundary): symmetric indefinite, so
    CG's theory fails, MINRES applies, and AMG or ILU lose their footing.
    With the default ``k^2 = 150`` (about two wavelengths across the square)
    8 eigenvalues are negative on fine grids (modes with ``i^2 + j^2 <= 13``),
    a few more on coarse ones, whose eigenvalues sit below the continuum's.

    Raises
    ------
    ValueError
        ``shift`` is not finite, or makes the matrix singular (an
        eigenvalue within ``1e-10`` of zero, relative to the largest).

    Examples
    --------
    >>> A = shifted_laplacian(16)
    >>> eigenvalues = np.linalg.eigvalsh(A.toarray())
    >>> int((eigenvalues < 0).sum()), bool(eigenvalues.max() > 0)
    (8, True)
    """
    if N < 1:
        raise ValueError(f"size N must be at least 1, got {N}")
    if not np.isfinite(shift):
        raise ValueError(f"shift must be finite, got {shift}")
    spectrum = _shifted_spectrum(N, shift)
    if np.abs(spectrum).min() <= 1e-10 * np.abs(spectrum).max():
        raise ValueError(f"shift {shift:g} is an eigenvalue of the {N} x {N} grid's Laplacian "
                         "(the matrix is singular); move it a little")
    h = 1.0 / (N + 1)
    return _canonical(poisson2d(N) - shift * h * h * sp.identity(N * N, format="csr"))


def shifted_laplacian_kind(N: int, shift: float = DEFAULT_SHIFT) -> str:
    """``"spd"`` when ``shift`` lies below every eigenvalue of the grid's ``-Δ``, else indefinite.

    Examples
    --------
    >>> shifted_laplacian_kind(16), shifted_laplacian_kind(16, shift=10.0)
    ('symmetric-indefinite', 'spd')
    """
    return SPD if _shifted_spectrum(N, shift).min() > 0 else SYMMETRIC_INDEFINITE


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


def make_problem(name: str, size: int = 64, *, seed: int = 0, epsilon: float = 1e-2,
                 peclet: float = DEFAULT_PECLET, shift: float = DEFAULT_SHIFT) -> Problem:
    """Build gallery problem ``name`` of grid size ``size``.

    Parameters
    ----------
    name : str
        One of :data:`PROBLEMS`.
    size : int
        Grid points per dimension (ignored by the pyamg examples); the mesh
        refinement level for ``stokes``.
    seed : int
        Seed of the right-hand side.
    epsilon : float
        Anisotropy of ``anisotropic2d``.
    peclet : float
        Cell Peclet number of ``convdiff2d`` (:func:`convdiff2d`).
    shift : float
        ``k^2`` of ``shifted_laplacian`` (:func:`shifted_laplacian`).

    Examples
    --------
    >>> p = make_problem("poisson2d", 4)
    >>> p.n, p.nnz, p.b.shape, p.kind
    (16, 64, (16,), 'spd')
    >>> make_problem("convdiff2d", 4, peclet=10).name, make_problem("convdiff2d", 4).kind
    ('convdiff2d(Pe=10)', 'nonsymmetric')
    >>> make_problem("shifted_laplacian", 8).kind
    'symmetric-indefinite'
    """
    if name == "convdiff2d":
        A = convdiff2d(size, peclet)
        # peclet = 0 is Poisson: kind follows the matrix, not the name
        kind = NONSYMMETRIC if peclet > 0 else SPD
        return Problem(f"convdiff2d(Pe={peclet:g})", A, rhs(A.shape[0], seed), kind)
    if name == "shifted_laplacian":
        A = shifted_laplacian(size, shift)
        return Problem(f"shifted_laplacian(k2={shift:g})", A, rhs(A.shape[0], seed),
                       shifted_laplacian_kind(size, shift))
    if name == "stokes":
        from .stokes import stokes_problem  # scikit-fem: the [bench] extra, imported on use

        return stokes_problem(size, seed=seed)
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
