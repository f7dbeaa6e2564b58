"""Stokes flow as a symmetric saddle-point system, and its block-diagonal MINRES preconditioner.

The problem: ``-Δu + ∇p = f``, ``div u = 0`` on the unit square, ``u = 0``
on the boundary, discretised with Taylor-Hood elements (continuous P2
velocity, P1 pressure) by scikit-fem. With ``a(u, v) = (∇u, ∇v)`` and
``b(v, q) = -(div v, q)`` the system is ::

    [[A, B^T],  [u,   [f,
     [B,  0 ]]   p] =  0]

``A`` is the vector Laplacian of the interior velocity unknowns (the
Dirichlet ones are eliminated), interleaved x, y per node as scikit-fem
numbers them; ``B`` is the negative divergence. The pressure is defined up
to a constant (``B^T 1 = 0``); one pressure unknown, at the centre of the
square, is pinned to zero and removed, which keeps the matrix square,
symmetric and non-singular. The right-hand side is a seeded random body
force with zero divergence data (random data in the continuity rows would
not be compatible with the pin: the removed row would have to absorb their
sum).

The mesh is ``MeshTri.init_sqsymmetric()`` refined ``level`` times (the
square cut into 8 triangles around its centre), not ``MeshTri()``: there
the two corner triangles have all three vertices on the boundary, which
Taylor-Hood's inf-sup stability wants to avoid (Boffi, SIAM J. Numer. Anal.
34, 1997). Unknowns: ``2 (2^(level+2) - 1)^2`` velocity and
``(2^(level+1) + 1)^2 - 1`` pressure.

The preconditioner (Silvester and Wathen, SIAM J. Numer. Anal. 31, 1994;
Elman, Silvester and Wathen, *Finite Elements and Fast Iterative Solvers*,
2nd ed., 2014, ch. 4) is block-diagonal and SPD: one AMG V-cycle for ``A``
and the inverse diagonal of the pressure mass matrix ``Q`` for the Schur
complement ``B A^{-1} B^T``, which is spectrally equivalent to ``Q``
(inf-sup), as ``diag(Q)`` is to ``Q`` (Wathen, IMA J. Numer. Anal. 7,
1987). MINRES's iteration count is then bounded independently of the mesh.
Two departures from the textbook, both measured:

- the V-cycle is pyamg's smoothed aggregation with strength threshold 0.1
  and degree-2 Jacobi prolongation smoothing: pyamg's defaults aggregate
  the P2 stiffness matrix (weak and positive couplings) so aggressively
  (operator complexity 1.04) that the V-cycle degrades with refinement;
- the pressure block adds ``1 1^T / q_pin`` (``q_pin`` the removed
  diagonal entry of ``Q``). Pinning turns the constant pressure mode,
  which ``B^T`` annihilates, into an eigenvalue of order ``h^2`` of the
  Schur complement that ``diag(Q)^{-1}`` leaves in place: MINRES paid
  for it with counts growing with the level. The rank-one term is the
  Sherman-Morrison inverse of the model ``D - D 1 1^T D / (1^T D 1)``
  (``D = diag(Q)``, the constant projected out) restricted to the
  unpinned unknowns, and brings the counts back to those of the
  unpinned, singular system.

scikit-fem is imported on first use (the ``[bench]`` extra); the
preconditioner needs pyamg.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .fem import _on_unit_box, _skfem
from .problems import SYMMETRIC_INDEFINITE, Problem, _canonical, rhs

MIN_LEVEL, MAX_LEVEL = 1, 7
"""Refinement levels accepted: n = 122 at level 1, 146 690 at 6, 588 290 at 7."""

VELOCITY_AMG = {"strength": ("symmetric", {"theta": 0.1}), "smooth": ("jacobi", {"degree": 2})}
"""pyamg options of the velocity V-cycle. Condition number of the V-cycle-
preconditioned ``A`` (Lanczos), levels 1 to 6 (n_u = 98 ... 130 050):
defaults 1.6, 2.4, 4.4, 5.6, 10.3, -; these 1.1, 1.4, 1.4, 1.6, 1.6, 1.6
(operator complexity 1.5 to 1.7 against 1.04)."""


@dataclass(frozen=True)
class SaddlePointBlocks:
    """Block structure of a Stokes :class:`~bench.problems.Problem`'s matrix.

    Attributes
    ----------
    n_velocity : int
        The first ``n_velocity`` unknowns are velocity, the rest pressure.
    pressure_mass_diagonal : numpy.ndarray
        Diagonal of the P1 pressure mass matrix, pinned unknown removed.
    pinned_pressure_mass : float
        The removed unknown's diagonal mass entry.
    level : int
        Mesh refinement level.
    """

    n_velocity: int
    pressure_mass_diagonal: np.ndarray
    pinned_pressure_mass: float
    level: int


def _check_level(level) -> int:
    if int(level) != level or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"the size of stokes is its mesh refinement level, an integer from "
                         f"{MIN_LEVEL} to {MAX_LEVEL} (n = 122 to 588 290), got {level!r}")
    return int(level)


def stokes_system(level: int) -> tuple[sp.csr_matrix, SaddlePointBlocks]:
    """The pinned Taylor-Hood saddle-point matrix ``[[A, B^T], [B, 0]]`` and its blocks.

    Examples
    --------
    >>> K, blocks = stokes_system(1)
    >>> K.shape, blocks.n_velocity, len(blocks.pressure_mass_diagonal)
    ((122, 122), 98, 24)
    >>> float(abs(K - K.T).max()), float(abs(K[98:, 98:]).max())
    (0.0, 0.0)
    """
    level = _check_level(level)
    skfem = _skfem()
    from skfem.models.general import divergence
    from skfem.models.poisson import mass, vector_laplace

    mesh = skfem.MeshTri.init_sqsymmetric().refined(level)
    # products of P2 gradients, of P2 divergences with P1, of P1 with P1:
    # all quadratic, integrated exactly at order 2
    velocity = skfem.Basis(mesh, skfem.ElementVector(skfem.ElementTriP2()), intorder=2)
    pressure = velocity.with_element(skfem.ElementTriP1())
    free = np.flatnonzero(~_on_unit_box(velocity.doflocs))
    # refinement keeps the centre (0.5, 0.5) a vertex, at dyadic coordinates
    pin = int(np.flatnonzero((pressure.doflocs == 0.5).all(axis=0))[0])
    kept = np.delete(np.arange(pressure.N), pin)

    A = vector_laplace.assemble(velocity)[free][:, free]
    # assembly order leaves A asymmetric by ~1e-17; MINRES wants it exact
    A = (A + A.T) * 0.5
    B = -divergence.assemble(velocity, pressure)[kept][:, free]
    K = _canonical(sp.bmat([[A, B.T], [B, None]], format="csr"))
    if K.nnz < 2**31 - 1:  # int32 indices, as scipy makes them when they fit
        K.indices = K.indices.astype(np.int32, copy=False)
        K.indptr = K.indptr.astype(np.int32, copy=False)
    mass_diagonal = mass.assemble(pressure).diagonal()
    blocks = SaddlePointBlocks(len(free), mass_diagonal[kept].copy(), float(mass_diagonal[pin]),
                               level)
    return K, blocks


def stokes_problem(level: int, *, seed: int = 0) -> Problem:
    """The Stokes :class:`~bench.problems.Problem`: random body force, zero divergence data.

    Examples
    --------
    >>> p = stokes_problem(2)
    >>> p.name, p.n, p.kind, p.blocks.n_velocity, float(abs(p.b[450:]).max())
    ('stokes', 530, 'symmetric-indefinite', 450, 0.0)
    """
    K, blocks = stokes_system(level)
    b = np.zeros(K.shape[0])
    b[:blocks.n_velocity] = rhs(blocks.n_velocity, seed)
    return Problem("stokes", K, b, SYMMETRIC_INDEFINITE, blocks)


class BlockDiagonalPreconditioner:
    """``diag(V-cycle of A, diag(Q)^{-1} [+ 1 1^T / q_pin])``: SPD, for MINRES on Stokes.

    Applied as ``M @ r`` or ``M.matvec(r)``; ``shape``, ``dtype`` and
    ``rmatvec`` (the same: it is symmetric) make it a scipy
    ``aslinearoperator`` and a ``linsolve`` preconditioner alike.

    Attributes
    ----------
    hierarchy : pyamg.multilevel.MultilevelSolver
        The velocity block's AMG hierarchy.
    """

    def __init__(self, hierarchy, blocks: SaddlePointBlocks, pin_correction: bool):
        self.hierarchy = hierarchy
        self._cycle = hierarchy.aspreconditioner(cycle="V")
        self._n_velocity = blocks.n_velocity
        self._inverse_mass = 1.0 / blocks.pressure_mass_diagonal
        self._pin_weight = 1.0 / blocks.pinned_pressure_mass if pin_correction else 0.0
        n = blocks.n_velocity + len(blocks.pressure_mass_diagonal)
        self.shape = (n, n)
        self.dtype = np.dtype(np.float64)

    def matvec(self, r):
        r = np.asarray(r)
        flat = r.reshape(-1)
        nv = self._n_velocity
        out = np.empty(flat.shape, dtype=np.float64)
        out[:nv] = self._cycle.matvec(flat[:nv])
        pressure = flat[nv:]
        out[nv:] = self._inverse_mass * pressure
        if self._pin_weight:
            out[nv:] += self._pin_weight * pressure.sum()
        return out.reshape(r.shape)

    rmatvec = matvec
    __matmul__ = matvec

    def aslinearoperator(self):
        """This operator as a ``scipy.sparse.linalg.LinearOperator``."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator(self.shape, matvec=self.matvec, rmatvec=self.matvec,
                              dtype=self.dtype)


def block_preconditioner(A: sp.csr_matrix, blocks: SaddlePointBlocks, *,
                         pin_correction: bool = True) -> BlockDiagonalPreconditioner:
    """The block-diagonal preconditioner of the saddle-point matrix ``A`` (see the module notes).

    Parameters
    ----------
    A : scipy.sparse.csr_matrix
        The matrix of :func:`stokes_system`; its leading ``n_velocity``
        block is the one the V-cycle is built for.
    blocks : SaddlePointBlocks
    pin_correction : bool
        Add the rank-one term for the pinned pressure unknown (default);
        False gives the textbook ``diag(Q)^{-1}``.

    Examples
    --------
    >>> from scipy.sparse.linalg import minres
    >>> p = stokes_problem(2)
    >>> M = block_preconditioner(p.A, p.blocks)
    >>> x, info = minres(p.A, p.b, M=M, rtol=1e-10)
    >>> info, bool(np.linalg.norm(p.b - p.A @ x) < 1e-7 * np.linalg.norm(p.b))
    (0, True)
    """
    import pyamg

    nv = blocks.n_velocity
    velocity_block = sp.csr_matrix(A[:nv, :nv])
    hierarchy = pyamg.smoothed_aggregation_solver(velocity_block, **VELOCITY_AMG)
    return BlockDiagonalPreconditioner(hierarchy, blocks, pin_correction)
