"""Shampoo: dense references (full-matrix AdaGrad, Kronecker form), grafting, state."""

import warnings

import numpy as np
import pytest
from array_api_compat import array_namespace

import curvature.shampoo.shampoo as shampoo_module
from curvature.shampoo.roots import RootError, RootInfo
from curvature.shampoo.shampoo import Shampoo
from tests.problems import to_numpy


def power_psd(S, a):
    lam, Q = np.linalg.eigh(S)
    return (Q * lam ** a) @ Q.T


def grads(shape, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


def test_vector_with_beta2_one_is_full_matrix_adagrad(backend):
    eps, d = 1e-3, 6
    opt = Shampoo((d,), eps=eps, grafting=None)
    S = np.zeros((d, d))
    for g in grads((d,), 10):          # passes rank d: both regimes
        S += np.outer(g, g)
        ref = power_psd(eps * np.eye(d) + S, -0.5) @ g
        D = to_numpy(opt.update(backend.asarray(g)))
        assert np.linalg.norm(D - ref) <= 1e-10 * np.linalg.norm(ref)


def test_matrix_equals_dense_kronecker_form(backend):
    """The dense reference on every backend."""
    eps, (m, n) = 1e-3, (4, 3)
    opt = Shampoo((m, n), eps=eps, grafting=None)
    L, R = np.zeros((m, m)), np.zeros((n, n))
    for G in grads((m, n), 5, seed=1):
        L += G @ G.T
        R += G.T @ G
        K = np.kron(power_psd(R + eps * np.eye(n), -0.25), power_psd(L + eps * np.eye(m), -0.25))
        ref = (K @ G.flatten(order="F")).reshape((m, n), order="F")
        D = opt.update(backend.asarray(G))
        assert array_namespace(D) is backend.xp
        D = to_numpy(D)
        assert np.linalg.norm(D - ref) <= 1e-10 * np.linalg.norm(ref)


def test_order3_tensor_uses_exponent_minus_one_sixth_per_mode():
    eps, shape = 1e-2, (2, 3, 4)
    opt = Shampoo(shape, eps=eps, grafting=None)
    F = [np.zeros((k, k)) for k in shape]
    for G in grads(shape, 3, seed=2):
        for i in range(3):
            U = np.moveaxis(G, i, 0).reshape(shape[i], -1)
            F[i] += U @ U.T
        roots = [power_psd(Fi + eps * np.eye(len(Fi)), -1 / 6) for Fi in F]
        K = np.kron(roots[2], np.kron(roots[1], roots[0]))   # column-major vec
        ref = (K @ G.flatten(order="F")).reshape(shape, order="F")
        D = opt.update(G)
        assert np.linalg.norm(D - ref) <= 1e-10 * np.linalg.norm(ref)


U64 = np.finfo(np.float64).eps
NEWTON_TOL = 1000 * U64      # inverse_root's default Newton tolerance in float64


def dense_reference(gs, beta2, eps, bias_correction=True):
    """Float64 reference directions for matrix gradients, with error bounds.

    L and R by hand (sums for beta2 = 1, else EMAs divided by 1 - beta2^t), the
    ridge eps I added once, roots by numpy's eigh. Each root is off by at most
    n tol / p (Newton's stop, max|M - I| <= tol) plus 10 n u cond (rounding,
    either method); a root's relative error e passes to X G Y as
    e cond(X) cond(Y), with cond(X) = cond(F + eps I)^(1/4).
    """
    m, n = gs[0].shape
    L, R = np.zeros((m, m)), np.zeros((n, n))
    out = []
    for t, G in enumerate(gs, start=1):
        if beta2 == 1.0:
            L, R, c = L + G @ G.T, R + G.T @ G, 1.0
        else:
            L = beta2 * L + (1 - beta2) * G @ G.T
            R = beta2 * R + (1 - beta2) * G.T @ G
            c = 1 / (1 - beta2 ** t) if bias_correction else 1.0
        Lr, Rr = c * L + eps * np.eye(m), c * R + eps * np.eye(n)
        direction = power_psd(Lr, -0.25) @ G @ power_psd(Rr, -0.25)
        cond_L, cond_R = np.linalg.cond(Lr), np.linalg.cond(Rr)
        root_error = sum(k * NEWTON_TOL / 4 + 10 * k * U64 * cond
                         for k, cond in ((m, cond_L), (n, cond_R)))
        out.append((direction, root_error * (cond_L * cond_R) ** 0.25))
    return out


@pytest.mark.parametrize("method", ["auto", "eigh", "newton"])
def test_every_root_method_applies_the_ridge_once(method):
    # Shampoo once passed F + eps I and eps, and Newton added eps I again: the ridge must be
    # applied once.
    eps = 0.1                              # near the factors' eigenvalues: 2 eps shows
    gs = grads((3, 2), 4, seed=3)
    opt = Shampoo((3, 2), eps=eps, grafting=None, root_method=method)
    for G, (ref, bound) in zip(gs, dense_reference(gs, 1.0, eps)):
        assert np.linalg.norm(opt.update(G) - ref) <= bound * np.linalg.norm(ref)


@pytest.mark.parametrize("method", ["auto", "eigh", "newton"])
def test_ema_factors_are_bias_corrected(method):
    # Without the correction the first direction was
    # (1 - beta2)^(-1/2) = 3.2x the corrected one here.
    eps, beta2 = 0.1, 0.9
    gs = grads((3, 2), 6, seed=3)
    opt = Shampoo((3, 2), beta2=beta2, eps=eps, grafting=None, root_method=method)
    for G, (ref, bound) in zip(gs, dense_reference(gs, beta2, eps)):
        assert np.linalg.norm(opt.update(G) - ref) <= bound * np.linalg.norm(ref)


def test_newton_and_eigh_roots_give_the_same_directions():
    eps, beta2 = 1e-2, 0.95
    gs = grads((4, 3), 5, seed=10)
    eigh = Shampoo((4, 3), beta2=beta2, eps=eps, grafting=None, root_method="eigh")
    newton = Shampoo((4, 3), beta2=beta2, eps=eps, grafting=None, root_method="newton")
    for G, (_, bound) in zip(gs, dense_reference(gs, beta2, eps)):
        De, Dn = eigh.update(G), newton.update(G)
        assert np.linalg.norm(De - Dn) <= 2 * bound * np.linalg.norm(De)


def test_bias_correction_can_be_turned_off():
    eps, beta2 = 1e-3, 0.9
    gs = grads((3, 2), 4, seed=3)
    opt = Shampoo((3, 2), beta2=beta2, eps=eps, grafting=None, bias_correction=False)
    for G, (ref, bound) in zip(gs, dense_reference(gs, beta2, eps, bias_correction=False)):
        assert np.linalg.norm(opt.update(G) - ref) <= bound * np.linalg.norm(ref)


def test_bias_correction_leaves_beta2_one_unchanged():
    gs = grads((4, 3), 4, seed=11)
    on = Shampoo((4, 3), eps=1e-3, grafting="adam")
    off = Shampoo((4, 3), eps=1e-3, grafting="adam", bias_correction=False)
    for G in gs:
        np.testing.assert_array_equal(on.update(G), off.update(G))


def test_bias_correction_counts_steps_across_a_checkpoint():
    # The correction's t is the saved step counter: a restored object continues
    # with the same factor 1 / (1 - beta2^t), also with update_freq > 1 and a
    # diagonal mode.
    gs = grads((3, 12), 7, seed=12)
    kw = dict(beta2=0.8, eps=1e-3, grafting=None, update_freq=2, max_dim=8)
    a = Shampoo((3, 12), **kw)
    for G in gs[:3]:
        a.update(G)
    b = Shampoo((3, 12), **kw)
    b.load_state_dict(a.state_dict())
    for G in gs[3:]:
        np.testing.assert_array_equal(a.update(G), b.update(G))
    L = sum(0.2 * 0.8 ** (7 - t) * G @ G.T for t, G in enumerate(gs, start=1))
    r = sum(0.2 * 0.8 ** (7 - t) * np.sum(G * G, axis=0) for t, G in enumerate(gs, start=1))
    c = 1 / (1 - 0.8 ** 7)                # step 7 refreshed the roots (update_freq 2)
    Lr = c * L + 1e-3 * np.eye(3)
    ref = power_psd(Lr, -0.25)
    np.testing.assert_allclose(a.roots[0], ref, rtol=0,
                               atol=30 * U64 * np.linalg.cond(Lr) * np.abs(ref).max())
    np.testing.assert_allclose(a.roots[1], (c * r + 1e-3) ** -0.25, rtol=10 * U64)


def test_long_mode_uses_diagonal_fallback():
    eps = 1e-3
    opt = Shampoo((3, 40), eps=eps, max_dim=10, grafting=None)
    L, r = np.zeros((3, 3)), np.zeros(40)
    for G in grads((3, 40), 3, seed=4):
        L += G @ G.T
        r += np.sum(G * G, axis=0)
        ref = power_psd(L + eps * np.eye(3), -0.25) @ G * (r + eps) ** -0.25
        assert np.linalg.norm(opt.update(G) - ref) <= 1e-10 * np.linalg.norm(ref)


def reference_graft(kind, gs, beta2=0.999, eps=1e-8):
    acc, out = 0.0, []
    for t, g in enumerate(gs, start=1):
        if kind == "sgd":
            out.append(g)
        elif kind == "adagrad":
            acc = acc + g * g
            out.append(g / (np.sqrt(acc) + eps))
        else:
            acc = beta2 * acc + (1 - beta2) * (g * g)   # torch: addcmul(g, g, 1 - beta2)
            out.append(g / (np.sqrt(acc / (1 - beta2 ** t)) + eps))
    return out


@pytest.mark.parametrize("kind", ["sgd", "adagrad", "adam"])
def test_identity_preconditioner_with_grafting_is_the_grafted_method(kind):
    gs = grads((4, 3), 6, seed=5)
    opt = Shampoo((4, 3), grafting=kind, start=100)    # never preconditions
    for D, ref in zip([opt.update(g) for g in gs], reference_graft(kind, gs)):
        np.testing.assert_array_equal(D, ref)


@pytest.mark.parametrize("kind", ["sgd", "adagrad", "adam"])
def test_frozen_preconditioner_with_grafting_has_grafted_norm(kind):
    gs = grads((4, 3), 6, seed=6)
    opt = Shampoo((4, 3), eps=1e-3, grafting=kind, update_freq=1000)   # root at step 1 only
    refs = reference_graft(kind, gs)
    opt.update(gs[0])
    frozen = [r.copy() for r in opt.roots]
    for g, ref in zip(gs[1:], refs[1:]):
        D = opt.update(g)
        P = frozen[0] @ g @ frozen[1]
        expected = P * (np.linalg.norm(ref) / np.linalg.norm(P))
        np.testing.assert_allclose(D, expected, rtol=1e-13, atol=0)
        np.testing.assert_allclose(opt.solve(g.ravel()).reshape(g.shape), P, rtol=1e-13)
        assert np.linalg.norm(D) == pytest.approx(np.linalg.norm(ref), rel=1e-14)


def test_failed_root_keeps_previous_then_raises(monkeypatch):
    gs = grads((3, 3), 5, seed=7)
    opt = Shampoo((3, 3), eps=1e-3, grafting=None, max_failures=3)
    opt.update(gs[0])
    kept = [r.copy() for r in opt.roots]

    def failing(A, p, **kw):
        return np.full(A.shape, np.nan), RootInfo(np.inf, 0, "eigh", False)

    monkeypatch.setattr(shampoo_module, "inverse_root", failing)
    for g in gs[1:3]:
        D = opt.update(g)
        np.testing.assert_array_equal(D, kept[0] @ g @ kept[1])
    assert opt.failures == 2
    with pytest.raises(RootError, match="consecutive"):
        opt.update(gs[3])


def test_singular_factor_falls_back_with_a_warning_then_raises():
    opt = Shampoo((4, 4), eps=0.0, grafting="sgd", max_failures=2)
    G = np.zeros((4, 4))
    with pytest.warns(RuntimeWarning, match="grafted direction is used until"):
        for _ in range(4):  # the factors may still be singular: not a failure streak
            np.testing.assert_array_equal(opt.update(G), G)   # no root: grafted direction
    assert opt.roots is None and opt.failures == 0
    np.testing.assert_array_equal(opt.update(G), G)  # past max(shape) steps: counted
    assert opt.failures == 1
    with pytest.raises(RootError, match="consecutive"):
        opt.update(G)


def test_the_early_failure_warning_is_shown_once_per_place():
    opt = Shampoo((3,), eps=0.0, grafting="sgd")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            opt.update(np.zeros(3))
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1


def test_rank_deficient_early_factors_precondition_once_full_rank():
    """The ridge 1e-12 cannot root a rank-t factor of norm 1e4 in float64 (residual
    ~ u ||F|| / eps ~ 1): the gradient goes unpreconditioned until t = d."""
    rng = np.random.default_rng(3)
    opt = Shampoo((6,), grafting=None)
    with pytest.warns(RuntimeWarning):
        for step in range(1, 7):
            g = 100.0 * rng.standard_normal(6)
            D = opt.update(g)
            if opt.roots is None:
                np.testing.assert_array_equal(D, g)
    assert opt.roots is not None and opt.failures == 0


def test_state_dict_restores_bit_identically(backend):
    gs = [backend.asarray(g) for g in grads((5, 3), 8, seed=8)]
    a = Shampoo((5, 3), update_freq=2, grafting="adam")
    for g in gs[:4]:
        a.update(g)
    b = Shampoo((5, 3), update_freq=2, grafting="adam")
    b.load_state_dict(a.state_dict())
    for g in gs[4:]:
        np.testing.assert_array_equal(to_numpy(a.update(g)), to_numpy(b.update(g)))


def test_solve_and_matvec_are_inverse_spd_operators():
    opt = Shampoo((4, 3), eps=1e-2, grafting=None)
    v = np.arange(12.0)
    np.testing.assert_array_equal(opt.solve(v), v)      # identity before any root
    for g in grads((4, 3), 3, seed=9):
        opt.update(g)
    assert opt.shape == (12, 12)
    P = np.stack([opt.solve(e) for e in np.eye(12)], axis=1)
    np.testing.assert_allclose(P, P.T, atol=1e-12)
    assert np.linalg.eigvalsh(P).min() > 0
    np.testing.assert_allclose(opt.matvec(opt.solve(v)), v, rtol=1e-12, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError):
        Shampoo((3,), grafting="lion")
    opt = Shampoo((2, 2))
    with pytest.raises(ValueError, match="shape"):
        opt.update(np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        opt.update(np.array([[1.0, np.nan], [0.0, 1.0]]))
    assert opt.step == 0
