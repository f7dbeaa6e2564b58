"""Finite-element stiffness matrices from scikit-fem: the systems FEM codes hand to CG.

The 2-D Poisson stencil is banded and regular; the matrices here come from
unstructured meshes (red-refined simplices, numbered as scikit-fem numbers
them), so rows have varying lengths, the column pattern is scattered, and
DIA layouts are refused. Each builder assembles the stiffness matrix on the
unit square or cube and removes the Dirichlet rows and columns
(``skfem.condense``), which leaves a symmetric positive definite matrix.

================  =================================================  =========
name              problem                                            default n
================  =================================================  =========
``p1tri``         Laplacian, P1 triangles, ``refine=9``, jittered     261 121
``p1tet``         Laplacian, P1 tetrahedra, ``refine=6``              206 367
``p2tet``         Laplacian, P2 tetrahedra, ``refine=5``              206 367
``elasticity3d``  linear elasticity, vector P1 tetrahedra,            88 176
                  face ``x = 0`` clamped, ``refine=5``
================  =================================================  =========

The tetrahedral meshes are ``MeshTet().refined(refine)``, not the tensor
mesh ``MeshTet.init_tensor``: on the tensor (Kuhn) mesh the P1 Laplacian is
exactly the 7-point finite-difference stencil (the other couplings are zero),
which would measure a stencil again. The refined mesh gives about 14 entries
a row, as unstructured tetrahedral meshes do. For the same reason the
triangle mesh's interior nodes are moved a little (:func:`p1_triangles`).

scikit-fem is imported on first use (the ``[bench]`` extra).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .problems import _canonical

FEM_MATRICES = ("p1tri", "p1tet", "p2tet", "elasticity3d")
"""Names of the finite-element matrices, in the order the speed table shows them."""

DEFAULT_REFINE = {"p1tri": 9, "p1tet": 6, "p2tet": 5, "elasticity3d": 5}
"""Refinement levels of the benchmark-size matrices (sizes in the module table)."""

MIN_REFINE = {"p1tri": 1, "p1tet": 2, "p2tet": 1, "elasticity3d": 1}
"""Smallest refinement levels that leave interior unknowns (``p1tet``: 1 leaves none)."""

POISSON_RATIO = 0.3  # a generic metal; Young's modulus 1 (it only scales A)


def _skfem():
    try:
        import skfem
    except ImportError as error:  # the [bench] extra is optional
        raise ImportError("the finite-element matrices need scikit-fem: pip install "
                          "'scikit-fem>=10' (or the [bench] extra)") from error
    return skfem


def _check_refine(name: str, refine: int) -> None:
    if int(refine) != refine or refine < MIN_REFINE[name]:
        raise ValueError(f"refine of {name} must be an integer >= {MIN_REFINE[name]}, "
                         f"got {refine!r}")


def _on_unit_box(points: np.ndarray) -> np.ndarray:
    """Mask of the points on the boundary of the unit square or cube.

    Refinement puts nodes and edge midpoints at dyadic coordinates, which
    are exact in binary, so the comparison with 0 and 1 is exact. It replaces
    ``basis.get_dofs()``, whose boundary-facet search (a sort of all facets)
    took 11 of the 16 seconds of the default ``p1tet``.
    """
    return np.any((points == 0.0) | (points == 1.0), axis=0)


def _condensed(basis, A, eliminated: np.ndarray) -> sp.csr_matrix:
    """``A`` without the ``eliminated`` rows and columns, as canonical symmetric CSR."""
    skfem = _skfem()
    A = skfem.condense(A, D=np.flatnonzero(eliminated), expand=False)
    # Assembly sums element contributions in an order that leaves A
    # asymmetric by about 1e-17; CG's theory wants exact symmetry.
    A = _canonical((A + A.T) * 0.5)
    if A.nnz < 2**31 - 1:  # int32 indices, as scipy makes them when they fit
        A.indices = A.indices.astype(np.int32, copy=False)
        A.indptr = A.indptr.astype(np.int32, copy=False)
    return A


def _laplacian(mesh, element, intorder: int) -> sp.csr_matrix:
    skfem = _skfem()
    from skfem.models.poisson import laplace

    basis = skfem.Basis(mesh, element, intorder=intorder)
    return _condensed(basis, laplace.assemble(basis), _on_unit_box(basis.doflocs))


def p1_triangles(refine: int = 9, jitter: float = 0.1, seed: int = 0) -> sp.csr_matrix:
    """Laplacian stiffness matrix, P1 triangles on the unit square refined ``refine`` times.

    ``n = (2**refine - 1)**2`` interior nodes (Dirichlet on the whole
    boundary), 7 entries a row.

    ``MeshTri().refined`` is made of right isosceles triangles, on which the
    P1 Laplacian's diagonal couplings are exactly zero: the matrix would be
    the 5-point stencil, renumbered. Moving each interior node by up to
    ``jitter`` times the leg length ``h = 2**-refine`` (seeded) keeps the
    mesh and its numbering but makes the couplings nonzero, as on a mesh
    from a mesh generator. Below 0.25 no triangle can fold: a vertex and its
    opposite edge approach each other by at most ``2 sqrt(2) jitter h``,
    less than the smallest height ``h / sqrt(2)``.

    Examples
    --------
    >>> A = p1_triangles(2)
    >>> A.shape, A.nnz  # 9 nodes; without jitter, the 5-point stencil's 33
    ((9, 9), 41)
    >>> p1_triangles(2, jitter=0.0).nnz
    33
    """
    _check_refine("p1tri", refine)
    if not 0 <= jitter < 0.25:
        raise ValueError(f"jitter must be in [0, 0.25), got {jitter}")
    skfem = _skfem()
    mesh = skfem.MeshTri().refined(refine)
    points = mesh.p.copy()
    interior = ~_on_unit_box(points)
    points[:, interior] += (jitter * 2.0**-refine
                            * np.random.default_rng(seed).uniform(-1, 1, (2, interior.sum())))
    mesh = skfem.MeshTri(points, mesh.t)
    # P1 gradients are constant: one quadrature point integrates them exactly
    return _laplacian(mesh, skfem.ElementTriP1(), intorder=1)


def p1_tetrahedra(refine: int = 6) -> sp.csr_matrix:
    """Laplacian stiffness matrix, P1 tetrahedra on the unit cube refined ``refine`` times.

    ``refine=6``: 1.3 million tetrahedra, n = 206 367, about 14 entries a row.

    Examples
    --------
    >>> p1_tetrahedra(2).shape
    (17, 17)
    """
    _check_refine("p1tet", refine)
    skfem = _skfem()
    return _laplacian(skfem.MeshTet().refined(refine), skfem.ElementTetP1(), intorder=1)


def p2_tetrahedra(refine: int = 5) -> sp.csr_matrix:
    """Laplacian stiffness matrix, P2 (quadratic) tetrahedra on the refined unit cube.

    Unknowns at the interior nodes and edge midpoints (as many as P1 on one
    more refinement: ``refine=5`` gives n = 206 367), about 26 entries a
    row, so an SpMV does twice the work per unknown of P1.

    Examples
    --------
    >>> p2_tetrahedra(2).shape
    (259, 259)
    """
    _check_refine("p2tet", refine)
    skfem = _skfem()
    # products of P2 gradients are quadratic: order-2 quadrature is exact
    return _laplacian(skfem.MeshTet().refined(refine), skfem.ElementTetP2(), intorder=2)


def elasticity_tetrahedra(refine: int = 5,
                          poisson_ratio: float = POISSON_RATIO) -> sp.csr_matrix:
    """3-D linear elasticity, vector P1 tetrahedra on the refined unit cube, face x = 0 clamped.

    Three unknowns per free node, interleaved (node by node) as scikit-fem
    numbers them; about 38 entries a row. Young's modulus 1.

    Examples
    --------
    >>> A = elasticity_tetrahedra(1)
    >>> A.shape  # 26 nodes, 9 of them on the face x = 0
    (51, 51)
    """
    _check_refine("elasticity3d", refine)
    if not 0 <= poisson_ratio < 0.5:
        raise ValueError(f"poisson_ratio must be in [0, 0.5), got {poisson_ratio}")
    skfem = _skfem()
    from skfem.helpers import ddot, div, sym_grad
    from skfem.models.elasticity import lame_parameters

    lam, mu = lame_parameters(1.0, poisson_ratio)

    # The same bilinear form as skfem.models.elasticity.linear_elasticity,
    # lambda div u div v + 2 mu eps(u):eps(v), written out: the library's
    # version builds the stress tensor with eye() per basis pair and took
    # 4x longer to assemble.
    @skfem.BilinearForm
    def stiffness(u, v, w):
        return lam * div(u) * div(v) + 2.0 * mu * ddot(sym_grad(u), sym_grad(v))

    basis = skfem.Basis(skfem.MeshTet().refined(refine),
                        skfem.ElementVector(skfem.ElementTetP1()), intorder=1)
    return _condensed(basis, stiffness.assemble(basis), basis.doflocs[0] == 0.0)


_BUILDERS = {"p1tri": p1_triangles, "p1tet": p1_tetrahedra, "p2tet": p2_tetrahedra,
             "elasticity3d": elasticity_tetrahedra}


def fem_matrix(name: str, refine: int | None = None) -> sp.csr_matrix:
    """The finite-element matrix ``name`` (one of :data:`FEM_MATRICES`).

    Parameters
    ----------
    name : str
        ``p1tri``, ``p1tet``, ``p2tet`` or ``elasticity3d``.
    refine : int, optional
        Refinement level; default :data:`DEFAULT_REFINE` (the benchmark size).

    Examples
    --------
    >>> A = fem_matrix("p1tet", 3)
    >>> A.shape, A.has_canonical_format, A.indices.dtype.name
    ((259, 259), True, 'int32')
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown finite-element matrix {name!r}; choose one of "
                         f"{', '.join(FEM_MATRICES)}")
    return _BUILDERS[name](DEFAULT_REFINE[name] if refine is None else refine)
