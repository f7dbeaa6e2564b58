"""The problems beyond SPD (convection-diffusion, shifted Laplacian, Stokes) and their methods."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from scipy.sparse.linalg import minres

from bench.__main__ import main
from bench.methods import METHODS, default_methods, method_kinds
from bench.problems import (KINDS, _shifted_spectrum, convdiff2d, make_problem, poisson2d,
                            shifted_laplacian)

EPS = np.finfo(np.float64).eps
RTOL = 1e-8


# --- convection-diffusion ----------------------------------------------------------------------

@pytest.mark.parametrize("peclet", [0.1, 1.0, 10.0])
def test_convdiff_is_a_nonsymmetric_m_matrix_scaled_by_the_cell_peclet_number(peclet):
    N = 6
    A = convdiff2d(N, peclet)
    assert A.dtype == np.float64 and A.has_canonical_format
    dense = A.toarray()
    # entries are sums of a few exact terms with 2 Pe: within a few ulps of their values
    tol = 4 * EPS * (1 + peclet)
    assert np.abs(np.diag(dense) - (4.0 + 4.0 * peclet)).max() <= 4 * tol
    off = dense - np.diag(np.diag(dense))
    assert off.max() <= 0.0                         # Z-matrix
    assert dense.sum(axis=1).min() >= -4 * tol      # weakly diagonally dominant rows
    # upwind (west, south) neighbours carry the wind: -1 - 2 Pe; downwind ones -1
    for i in range(N * N):
        for step, neighbour in ((1, i % N), (N, i >= N)):  # west, south
            if neighbour:
                assert abs(dense[i, i - step] + 1.0 + 2.0 * peclet) <= tol
                assert dense[i - step, i] == -1.0
    # the skew part is the wind alone: (A - A^T) / 2 = Pe on the upwind couplings
    skew = (dense - dense.T) / 2
    assert np.abs(np.abs(skew[skew != 0]) - peclet).max() <= tol
    assert np.count_nonzero(skew) == 2 * 2 * N * (N - 1)
    # non-singular M-matrix: the inverse is non-negative (to rounding: eps * cond * |inv|)
    inverse = np.linalg.inv(dense)
    assert inverse.min() >= -10 * EPS * np.linalg.cond(dense) * np.abs(inverse).max()


def test_convdiff_entries_do_not_depend_on_the_grid_and_peclet_zero_is_poisson():
    coarse, fine = convdiff2d(4, 2.5), convdiff2d(9, 2.5)
    assert set(coarse.data) == set(fine.data) == {-6.0, -1.0, 14.0}
    assert (convdiff2d(5, 0.0) != poisson2d(5)).nnz == 0
    assert make_problem("convdiff2d", 5, peclet=0.0).kind == "spd"
    problem = make_problem("convdiff2d", 5, peclet=3.0, seed=4)
    assert problem.kind == "nonsymmetric" and problem.name == "convdiff2d(Pe=3)"
    assert np.array_equal(problem.b, make_problem("convdiff2d", 5, seed=4).b)
    for bad in (-1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="peclet"):
            convdiff2d(4, bad)


# --- shifted Laplacian -------------------------------------------------------------------------

def test_shifted_laplacian_is_symmetric_with_eigenvalues_of_both_signs():
    N, shift = 14, 150.0
    A = shifted_laplacian(N, shift)
    assert (A != A.T).nnz == 0
    eigenvalues = np.linalg.eigvalsh(A.toarray())
    expected = np.sort(_shifted_spectrum(N, shift).ravel())
    # eigvalsh is backward stable: errors of a few eps * ||A||
    assert np.abs(eigenvalues - expected).max() <= 100 * EPS * np.abs(expected).max()
    negative = int((eigenvalues < 0).sum())
    assert 8 <= negative <= 12 and eigenvalues.max() > 0
    # non-singular with room to spare: no eigenvalue near the shift
    assert np.abs(eigenvalues).min() > 1e-3 * np.abs(eigenvalues).max()
    problem = make_problem("shifted_laplacian", N)
    assert problem.kind == "symmetric-indefinite" and problem.name == "shifted_laplacian(k2=150)"
    # a shift below the smallest eigenvalue of -Δ leaves it positive definite
    assert make_problem("shifted_laplacian", N, shift=10.0).kind == "spd"


def test_shifted_laplacian_refuses_a_shift_on_an_eigenvalue():
    N = 7
    h = 1.0 / (N + 1)
    smallest = 8.0 * np.sin(np.pi * h / 2) ** 2 / h**2
    with pytest.raises(ValueError, match="singular"):
        shifted_laplacian(N, smallest)
    with pytest.raises(ValueError, match="finite"):
        shifted_laplacian(N, np.nan)


def test_problem_kind_is_checked():
    A = poisson2d(2)
    with pytest.raises(ValueError, match="kind"):
        type(make_problem("poisson2d", 2))("p", A, np.ones(4), kind="hermitian")
    assert set(KINDS) == {"spd", "symmetric-indefinite", "nonsymmetric"}


# --- Stokes ------------------------------------------------------------------------------------

def test_stokes_is_a_nonsingular_symmetric_saddle_point():
    from bench.stokes import stokes_problem

    problem = stokes_problem(1)
    A, blocks = problem.A, problem.blocks
    nv, n = blocks.n_velocity, problem.n
    assert problem.kind == "symmetric-indefinite"
    assert A.has_canonical_format and A.indices.dtype == np.int32
    assert (A != A.T).nnz == 0
    dense = A.toarray()
    assert not dense[nv:, nv:].any()               # zero pressure block
    assert np.linalg.eigvalsh(dense[:nv, :nv]).min() > 0
    # pinning one pressure leaves B full rank: rank n, and by Sylvester's law of
    # inertia nv positive and n - nv negative eigenvalues
    assert np.linalg.matrix_rank(dense) == n
    eigenvalues = np.linalg.eigvalsh(dense)
    assert (eigenvalues > 0).sum() == nv and (eigenvalues < 0).sum() == n - nv
    assert not problem.b[nv:].any() and np.abs(problem.b[:nv]).min() > 0


@pytest.mark.parametrize("pin_correction", [True, False])
def test_stokes_block_preconditioner_is_spd(pin_correction):
    from bench.stokes import block_preconditioner, stokes_problem

    problem = stokes_problem(1)
    M = block_preconditioner(problem.A, problem.blocks, pin_correction=pin_correction)
    assert M.shape == problem.A.shape and M.dtype == np.float64
    dense = np.column_stack([M.matvec(column) for column in np.eye(problem.n)])
    scale = np.abs(dense).max()
    # a V-cycle with symmetric smoothing is symmetric to rounding
    assert np.abs(dense - dense.T).max() <= 1e3 * EPS * scale
    assert np.linalg.eigvalsh((dense + dense.T) / 2).min() > 1e-6 * scale
    x = np.random.default_rng(0).standard_normal(problem.n)
    assert np.array_equal(M @ x, M.matvec(x))
    assert np.array_equal(M.matvec(x[:, None])[:, 0], M.matvec(x))


def _minres_counts(problem, M, tolerances):
    """Iterations scipy's minres needs until ||b - A x_k|| / ||b|| first meets each tolerance.

    scipy's own stop, ``||r||_M / (||A|| ||x||) <= rtol``, comes early on
    this system (2 to 4 digits short), so it runs with rtol=1e-14 and the
    true residual of every iterate is checked.
    """
    norm_b = np.linalg.norm(problem.b)
    history = []
    minres(problem.A, problem.b, M=M, rtol=1e-14, maxiter=200,
           callback=lambda xk: history.append(np.linalg.norm(problem.b - problem.A @ xk) / norm_b))
    return [next(k + 1 for k, r in enumerate(history) if r <= tol) for tol in tolerances]


def test_stokes_minres_iterations_are_mesh_independent():
    from bench.stokes import block_preconditioner, stokes_problem

    counts = []
    for level in (2, 3, 4):  # n = 530, 2210, 9026
        problem = stokes_problem(level)
        counts.append(_minres_counts(problem, block_preconditioner(problem.A, problem.blocks),
                                     [RTOL])[0])
    # measured 54, 61, 64 (the increments shrink); the textbook diag(Q)^-1 with
    # the pinned unknown gives 63, 79, 88 and keeps growing
    assert counts[-1] <= 1.3 * counts[0] and counts[-1] < 80, counts
    uncorrected = block_preconditioner(problem.A, problem.blocks, pin_correction=False)
    assert _minres_counts(problem, uncorrected, [RTOL])[0] > counts[-1]


@pytest.mark.slow  # compiles and runs a whole bench job: make test-slow
def test_stokes_sweep_in_the_convergence_table(tmp_path, capsys):
    pytest.importorskip("linsolve.krylov.minres")
    status = main(["linear", "--problem", "stokes", "--sizes", "2,3,4", "--methods",
                   "minres+blockdiag", "--out", str(tmp_path), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "iterations by size" in printed and "n=9026" in printed
    payload = json.loads((tmp_path / "stokes_n530-2210-9026.json").read_text())
    counts = [row["iterations"] for row in payload["rows"]]
    assert [row["n"] for row in payload["rows"]] == [530, 2210, 9026]
    assert all(row["converged"] for row in payload["rows"])
    # the reference: scipy's minres iterates with the same preconditioner, the
    # count at which the true residual first meets rtol (the smallest level;
    # test_stokes_minres_iterations_are_mesh_independent follows scipy's up)
    from bench.stokes import block_preconditioner

    problem = make_problem("stokes", 2)
    expected = _minres_counts(problem, block_preconditioner(problem.A, problem.blocks), [RTOL])
    assert abs(counts[0] - expected[0]) <= 2, (counts, expected)
    (sweep,) = payload["sweep"]["rows"]
    assert sweep["n=530"] == counts[0] and sweep["spread"] == pytest.approx(
        max(counts) / min(counts) - 1, abs=1e-4)
    # textbook mesh independence: within 20% of each other (measured 54, 61, 64)
    assert sweep["mesh_independent"] is True and max(counts) <= 1.2 * min(counts), counts


def test_stokes_size_is_a_refinement_level():
    with pytest.raises(ValueError, match="refinement level"):
        make_problem("stokes", 256)


# --- the methods' applicability and the command line ---------------------------------------------

def test_methods_skip_a_problem_of_another_kind_with_the_reason():
    problem = make_problem("convdiff2d", 6)
    for name in ("scipy-cg", "pcg", "pcg-amg", "scipy-minres", "minres", "minres+blockdiag",
                 "scipy-minres+blockdiag"):
        run = METHODS[name](problem, RTOL, 100)
        assert run.reason == "SKIPPED" and "nonsymmetric" in run.note, (name, run.note)
    shifted = make_problem("shifted_laplacian", 6)
    assert "saddle-point" in METHODS["scipy-minres+blockdiag"](shifted, RTOL, 100).note
    assert "no pyamg.krylov.minres" in METHODS["pyamg-minres"](shifted, RTOL, 100).note
    assert default_methods("spd") == [m for m in METHODS if method_kinds(m) == ("spd",)]
    assert not set(default_methods("nonsymmetric")) & {"scipy-cg", "minres", "scipy-minres"}


@pytest.mark.parametrize("name", ["scipy-gmres", "scipy-bicgstab", "pyamg-gmres",
                                  "pyamg-bicgstab", "scipy-gmres+spilu"])
def test_peer_methods_converge_on_convdiff(name):
    problem = make_problem("convdiff2d", 12, peclet=10.0)
    run = METHODS[name](problem, RTOL, 2000)
    residual = np.linalg.norm(problem.b - problem.A @ run.x) / np.linalg.norm(problem.b)
    assert run.reason == "CONVERGED_RTOL" and residual <= RTOL, (name, run.note)
    assert len(run.residual_history) == run.iterations + 1 and run.residual_history[0] == 1.0
    assert len(run.trace_residual) == len(run.trace_time_s)
    # scipy's and pyamg's bicgstab may stop at a half step; the last point is still x's
    if "bicgstab" in name:
        assert run.trace_residual[-1] == pytest.approx(residual, rel=1e-12)


def test_scipy_minres_on_the_shifted_laplacian():
    problem = make_problem("shifted_laplacian", 12)
    run = METHODS["scipy-minres"](problem, RTOL, 2000)
    residual = np.linalg.norm(problem.b - problem.A @ run.x) / np.linalg.norm(problem.b)
    # scipy's backward-error stop: a few digits short of rtol, never far
    assert run.reason == "CONVERGED_RTOL" and residual < 1e-4, run.note
    assert "backward error" in run.note


def test_linear_command_on_convdiff(tmp_path, capsys):
    status = main(["linear", "--problem", "convdiff2d", "--size", "16", "--methods",
                   "scipy-gmres,scipy-bicgstab,scipy-cg", "--out", str(tmp_path),
                   "--name", "convdiff", "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "convdiff2d(Pe=1)" in printed and "scipy-bicgstab" in printed
    assert "scipy-cg: skipped: scipy cg needs a spd matrix" in printed
    with open(tmp_path / "convdiff.csv", newline="") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert rows["scipy-gmres"]["n"] == "256" and rows["scipy-cg"]["reason"] == "SKIPPED"
    payload = json.loads((tmp_path / "convdiff.json").read_text())
    for row in payload["rows"]:
        if row["method"] != "scipy-cg":
            assert row["converged"] and row["true_relative_residual"] <= RTOL, row
    assert os.path.getsize(tmp_path / "convdiff.png") > 0


# --- our Krylov methods (skipped while their modules are missing) -------------------------------

# slow: scipy's gmres and ours on every convection-diffusion case (~12 s of a fresh clone's
# make test); tests/linsolve/test_gmres.py checks ours against dense solves on every commit
@pytest.mark.slow
def test_our_gmres_against_scipy_on_convdiff():
    pytest.importorskip("linsolve.krylov.gmres")
    problem = make_problem("convdiff2d", 16)
    runs = {name: METHODS[name](problem, RTOL, 3000)
            for name in ("gmres", "scipy-gmres", "gmres+ilu0", "fgmres+amg")}
    for name, run in runs.items():
        residual = np.linalg.norm(problem.b - problem.A @ run.x) / np.linalg.norm(problem.b)
        assert run.reason == "CONVERGED_RTOL" and residual <= RTOL, (name, run.note)
    # no preconditioner: the same Krylov spaces and minimisers, so the same
    # count up to the rounding of the last step
    assert abs(runs["gmres"].iterations - runs["scipy-gmres"].iterations) <= 1
    assert runs["gmres+ilu0"].iterations < runs["gmres"].iterations / 2
    assert runs["fgmres+amg"].iterations < runs["gmres"].iterations / 2
    assert runs["gmres"].residual_history[0] == 1.0


def test_our_bicgstab_against_scipy_on_convdiff():
    pytest.importorskip("linsolve.krylov.bicgstab")
    problem = make_problem("convdiff2d", 16, peclet=10.0)
    ours, theirs = (METHODS[name](problem, RTOL, 3000) for name in ("bicgstab", "scipy-bicgstab"))
    assert ours.reason == theirs.reason == "CONVERGED_RTOL", (ours.note, theirs.note)
    assert abs(ours.iterations - theirs.iterations) <= 1
    assert METHODS["bicgstab+ilu0"](problem, RTOL, 3000).iterations < ours.iterations


def test_our_minres_on_the_indefinite_problems():
    pytest.importorskip("linsolve.krylov.minres")
    from bench.stokes import block_preconditioner

    shifted = make_problem("shifted_laplacian", 16)
    run = METHODS["minres"](shifted, RTOL, 3000)
    assert run.reason == "CONVERGED_RTOL", run.note
    assert np.linalg.norm(shifted.b - shifted.A @ run.x) <= RTOL * np.linalg.norm(shifted.b)
    assert METHODS["minres+blockdiag"](shifted, RTOL, 100).reason == "SKIPPED"

    stokes = make_problem("stokes", 2)
    run = METHODS["minres+blockdiag"](stokes, RTOL, 1000)
    assert run.reason == "CONVERGED_RTOL", run.note
    assert np.linalg.norm(stokes.b - stokes.A @ run.x) <= RTOL * np.linalg.norm(stokes.b)
    # our minres checks the true residual: the count scipy's iterates need for it
    expected = _minres_counts(stokes, block_preconditioner(stokes.A, stokes.blocks), [RTOL])[0]
    assert abs(run.iterations - expected) <= 2, (run.iterations, expected)
    for name in ("gmres+ilu0", "fgmres+amg"):
        skipped = METHODS[name](stokes, RTOL, 100)
        assert skipped.reason == "SKIPPED" and skipped.note, name


def test_a_missing_solver_module_is_a_skipped_row(monkeypatch):
    import importlib

    real = importlib.import_module

    def refuse(name, *args):
        if name == "linsolve.krylov.gmres":
            raise ImportError("No module named 'linsolve.krylov.gmres'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", refuse)
    run = METHODS["gmres"](make_problem("convdiff2d", 4), RTOL, 10)
    assert run.reason == "SKIPPED" and "No module named" in run.note
