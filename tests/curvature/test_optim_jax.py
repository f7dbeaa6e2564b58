"""curvature.optim on jax.numpy: immutable arrays, float64 against NumPy, float32, purity.

Every wrapper of ``test_optim.METHODS`` runs the same nested model on JAX
arrays. In float64 (``jax.enable_x64``, as a context: the process-wide
setting is left alone) the updates must match the NumPy run to rounding,
``10 n eps kappa`` as in ``test_optim.test_array_api_strict_equals_numpy``
(``n`` entries, ``kappa`` the condition of the operator the method solves
with, measured on the NumPy run). In JAX's default float32 every method
must run and keep float32. Skipped cleanly without jax.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from curvature import optim
from curvature.optim._tree import flatten
from tests.curvature.test_optim import (METHODS, assert_same, check_plain, layer_data, model, run_method,
                              to_np)

jax = pytest.importorskip("jax", reason="jax is not installed")
jnp = pytest.importorskip("jax.numpy")

# JAX compiles every operation once per shape and dtype: these runs take tens of seconds.
# `make test` leaves them to `.ci/run` (pytest -m slow); the NumPy runs are in test_optim.
pytestmark = pytest.mark.slow


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


def condition(name, state):
    """kappa of what the method inverts, from the NumPy state (see test_optim.condition);
    Shampoo: ``((lambda_max + eps) / eps)^(1/2)`` of its factors, an inverse square root at
    most (a matrix's -1/4 power on each side, full-matrix AdaGrad's -1/2 on vectors);
    SOAP: its Adam step divides by ``sqrt(v) + eps`` (see below). The model's factors have
    at most a one-dimensional null space at the first step (gradients 5 x 4, 4 x 3), so
    the eigenbasis SOAP rotates into is unique up to signs, to which it is invariant;
    larger, rank-deficient factors leave the basis of their null space to the
    eigensolver (``test_optim_digits.py``)."""
    from tests.curvature.test_optim import condition as base

    if name.startswith("shampoo"):
        worst = 1.0
        for tiles in state[0]["blocks"]:
            for block in tiles:
                for F in block["factors"]:
                    top = float(np.max(F)) if F.ndim == 1 else np.linalg.eigvalsh(F)[-1]
                    worst = max(worst, np.sqrt((top + 1e-6) / 1e-6))
        return worst
    if name == "soap":
        # Adam divides by sqrt(v) + eps: in a rotated coordinate the factors have not seen
        # (v at rounding level) a rounding error of the first moment m becomes a step of
        # size error / eps, against steps of size ~1: kappa = max|m| / eps (eps = 1e-8).
        worst = max(float(np.max(np.abs(tiles[0]["exp_avg"])))
                    for tiles in state[0]["blocks"])
        return max(1.0, worst / 1e-8)
    return base(name, state)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_float64_equals_numpy(name, float64):
    ours, history = run_method(name, 3, xp=jnp)
    reference, expected = run_method(name, 3)
    assert all(isinstance(leaf, jax.Array) for leaf in flatten(ours)[0])
    n = sum(leaf.size for leaf in flatten(reference)[0])
    tolerance = 10 * n * np.finfo(np.float64).eps * condition(name, expected[-1][1])
    for (u, state), (e, _) in zip(history, expected):
        assert all(leaf.dtype == jnp.float64 for leaf in flatten(u)[0])
        for x, y in zip(flatten(to_np(u))[0], flatten(e)[0]):
            assert np.linalg.norm(x - y) <= tolerance * max(np.linalg.norm(y), 1e-300), name
    check_plain(history[-1][1])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_update_is_pure_on_jax(name, float64):
    params, history = run_method(name, 2, xp=jnp)
    opt = METHODS[name]()
    _, state = history[-1]
    saved = copy.deepcopy(state)
    grads, acts, outs = layer_data(params, 7, xp=jnp)
    extra = {"activations": acts, "output_grads": outs} if name in ("kfac", "mkor") else {}
    first = opt.update(grads, state, params, **extra)
    assert_same(state, saved)
    assert_same(first, opt.update(grads, state, params, **extra))


FLOAT32 = ["shampoo", "soap", "kfac", "mkor", "mfac", "mfac_blocked"]


# Shampoo's eps = 1e-6 is below float32's rounding of its factors: the roots fail their
# residual check and Shampoo says so, using the grafted direction (docs/optimizers.md).
# The components' float64 internals (inverse_root's eigh, K-FAC's batched solve, M-FAC's
# Gram matrix and passes) are float32 without x64, and JAX warns about each request.
@pytest.mark.filterwarnings("ignore:Shampoo. the inverse roots:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64:UserWarning")
@pytest.mark.parametrize("name", FLOAT32)
def test_float32_runs_and_keeps_float32(name):
    with jax.enable_x64(False):
        params = model(0, jnp)
        assert flatten(params)[0][0].dtype == jnp.float32
        ours, history = run_method(name, 3, xp=jnp)
    for leaf in flatten(ours)[0]:
        assert leaf.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(leaf)))
    for leaf in flatten(history[-1][0])[0]:
        assert leaf.dtype == jnp.float32


def test_mixed_numpy_and_jax_is_refused(float64):
    opt = optim.shampoo(0.1)
    params = model(0, jnp)
    state = opt.init(params)
    grads = model(1)                       # NumPy gradients for JAX parameters
    with pytest.raises(TypeError, match=r"params\['dense'\]\[0\] is a jax.numpy array, "
                                        r"grads\['dense'\]\[0\] a numpy one"):
        opt.update(grads, state, params)
    numpy_state = opt.init(model(0))       # a NumPy state for JAX gradients: caught at update
    optim.apply_updates(params, opt.update(model(1, jnp), numpy_state)[0])  # no arrays yet
    _, numpy_state = opt.update(model(1), numpy_state)
    with pytest.raises(TypeError, match=r"scale_by_shampoo: state\['blocks'\]\[0\]\[0\]"
                                        r"\['factors'\]\[0\] is a numpy array"):
        opt.update(model(1, jnp), numpy_state)
