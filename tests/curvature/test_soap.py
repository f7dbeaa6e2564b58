"""SOAP: Adam in Shampoo's eigenbasis; identity basis is Adam; refresh keeps v consistent."""

import numpy as np
import pytest
from array_api_compat import array_namespace

from curvature.shampoo.soap import SOAP
from tests.problems import to_numpy

U64 = np.finfo(np.float64).eps


def adam_directions(gs, beta1=0.9, beta2=0.999, eps=1e-8):
    m = v = 0.0
    out = []
    for t, g in enumerate(gs, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * (g * g)
        out.append((m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps))
    return out


def grads(shape, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(steps)]


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4)])
def test_identity_basis_is_adam(backend, shape):
    gs = grads(shape, 25, seed=1)
    opt = SOAP(shape, rotate=False, precondition_frequency=3)
    for g, ref in zip(gs, adam_directions(gs)):
        D = to_numpy(opt.update(backend.asarray(g)))
        assert np.max(np.abs(D - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_vector_parameter_is_adam_by_default():
    gs = grads((7,), 12, seed=2)
    opt = SOAP((7,), beta1=0.8, beta2=0.99, eps=1e-6)
    for g, ref in zip(gs, adam_directions(gs, 0.8, 0.99, 1e-6)):
        np.testing.assert_allclose(opt.update(g), ref, rtol=1e-12, atol=0)


def test_fixed_basis_is_adam_on_rotated_gradients(backend):
    # Refresh never happens: the basis from step 1's eigh stays; SOAP must be
    # Adam on QL' G QR, rotated back. On every backend.
    # eps = 1e-3: coordinates where the rotated gradient is rounding noise
    # (G1 G1' has a null space) amplify differences of order u by 1/eps.
    gs = grads((4, 3), 10, seed=3)
    opt = SOAP((4, 3), eps=1e-3, precondition_frequency=10_000)
    directions = [opt.update(backend.asarray(g)) for g in gs]
    assert all(array_namespace(D) is backend.xp for D in directions)
    directions = [to_numpy(D) for D in directions]
    QL, QR = (to_numpy(Q) for Q in opt.bases)
    np.testing.assert_allclose(QL.T @ QL, np.eye(4), atol=1e-14)
    refs = adam_directions([QL.T @ g @ QR for g in gs], eps=1e-3)
    for D, ref in zip(directions, refs):
        np.testing.assert_allclose(D, QL @ ref @ QR.T, rtol=1e-11, atol=1e-12)
    # The first basis diagonalises G1 G1' (descending eigenvalues).
    L1 = gs[0] @ gs[0].T
    est = np.diag(QL.T @ L1 @ QL)
    assert np.all(np.diff(est) <= 1e-12)


def test_refresh_permutes_second_moment_with_the_basis():
    # Diagonal gradients: every basis is a signed permutation. The dominant
    # direction changes over time, so the refresh reorders the basis; SOAP
    # equals coordinate Adam only if the second moment is permuted with it.
    rng = np.random.default_rng(4)
    gs = []
    for t in range(30):
        scale = np.array([1.0, 2.0, 3.0]) if t < 5 else np.array([5.0, 0.5, 0.1])
        gs.append(np.diag(scale * (1 + 0.1 * rng.random(3))))
    opt = SOAP((3, 3), precondition_frequency=4, shampoo_beta=0.5)
    directions = [opt.update(g) for g in gs]
    assert not np.allclose(np.abs(opt.bases[0]), np.eye(3)[:, ::-1])  # order did change
    for D, ref in zip(directions, adam_directions(gs)):
        # Off-diagonal zeros carry rounding noise amplified by 1/eps (u / 1e-8).
        np.testing.assert_allclose(D, ref, rtol=1e-10, atol=1e-6)


def test_first_call_convention_as_documented():
    # The docstring's account of the departure from the reference code: after
    # call t the factors are the code's EMA of g_1 .. g_t (lerp from zero), the
    # moments hold g_1 .. g_t with corrections 1 - beta^t, and the basis is
    # first refreshed at call t = f (the code: f + 1).
    f, sb, b1, b2, eps = 3, 0.7, 0.9, 0.95, 1e-3
    gs = grads((4, 3), 5, seed=6)
    opt = SOAP((4, 3), beta1=b1, beta2=b2, eps=eps, precondition_frequency=f, shampoo_beta=sb)
    first = None
    for t, g in enumerate(gs, start=1):
        bases = [Q.copy() for Q in opt.bases] if opt.bases is not None else None
        D = opt.update(g)
        L = sum((1 - sb) * sb ** (t - s) * h @ h.T for s, h in enumerate(gs[:t], start=1))
        # sums of t outer products: t u relative to the largest entry
        np.testing.assert_allclose(opt.factors[0], L, rtol=0, atol=10 * t * U64 * np.abs(L).max())
        if t == 1:
            first = [Q.copy() for Q in opt.bases]
            continue
        QL, QR = bases                         # the basis this call projected with
        rotated = [QL.T @ h @ QR for h in gs[:t]]
        m = sum((1 - b1) * b1 ** (t - s) * QL.T @ h @ QR for s, h in enumerate(gs[:t], start=1))
        m_hat = m / (1 - b1 ** t)
        if t <= f:                             # no refresh yet: v in one basis throughout
            v = sum((1 - b2) * b2 ** (t - s) * r * r for s, r in enumerate(rotated, start=1))
            ref = QL @ (m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)) @ QR.T
            # rounding of the rotations (n u per product) on O(1) entries; where the
            # rotated gradient is rounding noise (G1 G1' has a null space) the
            # direction is that noise over eps
            scale = max(np.abs(h).max() for h in gs[:t])
            np.testing.assert_allclose(D, ref, rtol=10 * 4 * U64,
                                       atol=10 * 4 * U64 * scale / eps)
        refreshed = not all(np.array_equal(a, b) for a, b in zip(opt.bases, first))
        assert refreshed == (t >= f)


def test_state_dict_restores_bit_identically(backend):
    gs = [backend.asarray(g) for g in grads((4, 3), 12, seed=5)]
    a = SOAP((4, 3), precondition_frequency=3)
    for g in gs[:5]:
        a.update(g)
    b = SOAP((4, 3), precondition_frequency=3)
    b.load_state_dict(a.state_dict())
    for g in gs[5:]:
        np.testing.assert_array_equal(to_numpy(a.update(g)), to_numpy(b.update(g)))


def test_solve_matvec():
    opt = SOAP((3, 2))
    v = np.arange(6.0)
    np.testing.assert_array_equal(opt.solve(v), v)
    for g in grads((3, 2), 4, seed=6):
        opt.update(g)
    np.testing.assert_allclose(opt.matvec(opt.solve(v)), v, rtol=1e-12, atol=1e-12)
    P = np.stack([opt.solve(e) for e in np.eye(6)], axis=1)
    np.testing.assert_allclose(P, P.T, atol=1e-10)


def test_bad_input():
    with pytest.raises(ValueError):
        SOAP((2, 2), beta1=1.0)
    with pytest.raises(ValueError):
        SOAP((2, 2), precondition_frequency=0)
    opt = SOAP((2, 2))
    with pytest.raises(ValueError, match="NaN"):
        opt.update(np.array([[np.inf, 0.0], [0.0, 1.0]]))
