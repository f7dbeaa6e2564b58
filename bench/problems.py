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


# Bytes a read-and-convert of a Matrix Market file holds at its peak, per stored
# entry (the reader's row, column and value arrays, 8 bytes each at most) and per
# entry of the CSR matrix (column index and value), and per row: the CSR row
# pointer and the benchmark's vectors (right-hand side, solution and a Krylov
# method's work vectors: 8 of 8 bytes).
_READ_BYTES_PER_ENTRY = 24
_CSR_BYTES_PER_ENTRY = 16
_BYTES_PER_ROW = 8 + 8 * 8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's ``MemAvailable``), else
    the physical memory, else None when neither can be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _entry_lines(path: str, *, blank: bool = True) -> int:
    """Lines after the size line of a Matrix Market file (the last one even without a
    newline): the entries it can hold, counted without parsing (about 1 GB/s), or with
    ``blank=False`` the non-blank ones, line by line (slower: only for a suspect file)."""
    with open(path, "rb") as handle:
        for line in handle:   # banner, comments and blank lines, then the size line
            stripped = line.strip()
            if stripped and not stripped.startswith(b"%"):
                break
        if not blank:
            return sum(1 for line in handle if line.strip())
        count, last = 0, b"\n"
        while chunk := handle.read(1 << 22):
            count += chunk.count(b"\n")
            last = chunk[-1:]
        return count + (last != b"\n")


def _bytes(count: float) -> str:
    """``count`` bytes in binary units: ``'16 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} TiB"


def _matrix_bytes(rows: int, entries: int, fmt: str, symmetry: str) -> int:
    """Peak bytes of reading a file with this header and building its CSR system."""
    stored = rows * rows if fmt == "array" else entries
    held = stored if symmetry == "general" else 2 * stored
    read = stored * (8 if fmt == "array" else _READ_BYTES_PER_ENTRY)
    return read + held * _CSR_BYTES_PER_ENTRY + (rows + 1) * _BYTES_PER_ROW


def _check_header(path: str, rows: int, cols: int, entries: int, fmt: str, field_: str,
                  symmetry: str, max_nnz: int | None, max_bytes: int | None) -> None:
    """Refuse a header before anything sized by it is allocated.

    A header is a claim: ``1000000000 1000000000 3`` costs 60 bytes on disk
    and, read, a 1e9-long row pointer and right-hand side (16 GB). It is
    checked against the file's own lines and against the memory the read
    and the conversion would hold.
    """
    if rows != cols:
        raise ValueError(f"{path!r} holds a {rows} x {cols} matrix; CG needs a square symmetric "
                         "positive definite one")
    if rows == 0:
        raise ValueError(f"{path!r} holds an empty matrix")
    if field_ == "complex":
        raise ValueError(f"{path!r} holds a complex matrix; the benchmarks solve real SPD systems")
    if fmt == "coordinate" and entries < rows:
        # every row of an SPD matrix holds its positive diagonal entry
        raise ValueError(f"{path!r} declares a {rows} x {cols} matrix with {entries} entries; a "
                         f"symmetric positive definite matrix stores at least its {rows} diagonal "
                         "entries, so the header's size or its entry count is wrong")
    if max_nnz is not None:
        nnz = (rows * cols if fmt == "array" else entries) * (1 if symmetry == "general" else 2)
        if nnz > max_nnz:
            raise ValueError(f"{path!r} declares a {rows} x {cols} matrix with up to {nnz} "
                             f"entries, over --max-nnz {max_nnz}; raise --max-nnz to read it")
    if fmt != "array":
        claimed = entries
    elif symmetry == "general":
        claimed = rows * cols
    else:   # one triangle, with the diagonal unless skew-symmetric
        claimed = rows * (rows + 1) // 2 if symmetry != "skew-symmetric" else rows * (rows - 1) // 2
    lines = _entry_lines(path)
    if lines < claimed:
        raise ValueError(f"{path!r} declares {claimed} entries in its header but has only {lines} "
                         "lines after it: the file is truncated or its header is wrong")
    if lines > claimed and (lines := _entry_lines(path, blank=False)) > claimed:
        raise ValueError(f"{path!r} declares {claimed} entries in its header but has {lines} "
                         "entry lines after it: the header's count is wrong, or the file holds "
                         "more than one matrix; fix the count in the header")
    needed = _matrix_bytes(rows, entries, fmt, symmetry)
    limit = available_memory() if max_bytes is None else max_bytes
    if limit is not None and needed > limit:
        raise ValueError(f"{path!r} declares a {rows} x {cols} matrix with {entries} entries: "
                         f"reading it and building the system needs about {_bytes(needed)}, "
                         f"over the {_bytes(limit)} "
                         f"{'of memory available' if max_bytes is None else 'limit (max_bytes)'}"
                         "; use a smaller matrix or a machine with more memory")


def load_matrix(path: str | os.PathLike, *, seed: int = 0, max_nnz: int | None = None,
                max_bytes: int | None = None) -> Problem:
    """Read a Matrix Market file into a :class:`Problem` with a seeded right-hand side.

    The header is checked before anything sized by it is allocated: the
    file must hold as many entry lines as the header claims (a file that
    holds more is refused by the reader), an ``n x n`` coordinate matrix at
    least ``n`` entries (the diagonal of an SPD matrix), and the read plus
    the conversion to CSR with the benchmark's vectors must fit in
    ``max_bytes`` (default: the memory available now).

    ``max_nnz`` (default: no limit) bounds the entries the matrix will hold,
    read from the file's header before the entries are: a symmetric file's
    stored triangle counts twice, an ``array`` file all ``rows * cols``.

    Raises
    ------
    ValueError
        The file is missing, not Matrix Market, not square, complex, empty,
        truncated, longer than its header says, or over ``max_nnz`` or
        ``max_bytes``. The message names the file and what is wrong with it.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "huge.mtx")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write("%%MatrixMarket matrix coordinate real general\\n"
    ...                      "1000000000 1000000000 3\\n1 1 1.0\\n2 2 1.0\\n3 3 1.0\\n")
    >>> load_matrix(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: '...huge.mtx' declares a 1000000000 x 1000000000 matrix with 3 entries; a symmetric positive definite matrix stores at least its 1000000000 diagonal entries, so the header's size or its entry count is wrong
    """
    import scipy.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"matrix file {path!r} does not exist")
    try:
        rows, cols, entries, fmt, field_, symmetry = scipy.io.mminfo(path)
    except Exception as error:  # junk headers raise ValueError, IndexError, ...
        raise ValueError(f"could not read {path!r} as a Matrix Market file: {error}") from error
    _check_header(path, int(rows), int(cols), int(entries), fmt, field_, symmetry, max_nnz,
                  max_bytes)
    try:
        A = scipy.io.mmread(path)
    except Exception as error:  # scipy raises ValueError, IndexError, ... on junk
        raise ValueError(f"could not read {path!r} as a Matrix Market file: {error}") from error
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{path!r} holds a {A.shape[0]} x {A.shape[1]} matrix; CG needs a "
                         "square symmetric positive definite one")
    if np.iscomplexobj(A):
        raise ValueError(f"{path!r} holds a complex matrix; the benchmarks solve real SPD systems")
    A = _canonical(sp.csr_matrix(A))
    name = os.path.splitext(os.path.basename(path))[0]
    return Problem(name, A, rhs(A.shape[0], seed))


def asymmetry(A: sp.csr_matrix) -> float:
    """``max|A - A^T| / max|A|``: zero for a symmetric matrix (CG assumes one)."""
    scale = abs(A).max()
    return float(abs(A - A.T).max() / scale) if scale > 0 else 0.0
