"""The digits MLP trains to the same loss through curvature.optim as through the objects.

The MLP of ``bench.optimizers`` (64-32-10, tanh) on scikit-learn's digits,
12 mini-batch steps (SOAP refreshes its basis at step 10) from the same
seeded start over the same batches, for every method with an interface
equivalent (``bench.optimizers.make_transform``):

* NumPy through the interface against the per-object optimisers
  (``step`` in place): the same arithmetic, so the same loss bit for bit --
  except K-FAC, whose wrapper takes ``precondition_layers``' batched kernel
  (another summation order than ``KFAC.precondition``): to rounding.
* JAX float64 (gradients by ``jax.value_and_grad``, arrays immutable)
  against NumPy through the interface: to rounding.

"To rounding" is derived from the run itself: each mini-batch gradient of
the NumPy run is perturbed by one unit in the last place (``g (1 + eps s)``,
random signs ``s``), three times; the spread of the final losses is what
rounding differences of the size of one operation do to this training run
(the product of every step's sensitivity: tiny for Shampoo, K-FAC, M-FAC;
large for SOAP, whose Adam step turns rounding noise in directions its
factors have not seen into steps of size noise / eps, and whose first
eigenbasis, of a 64 x 64 factor of rank 32, leaves the null space's basis to
the eigensolver). JAX rounds differently in every operation, a few ulps,
so the tolerance is ``10 * spread + steps * eps * loss`` (the second term:
runs where a one-ulp change of the gradient vanishes in the update).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from bench.optim_interface import DEFAULT_LRS, train_steps
from bench.optimizers import TRANSFORM_METHODS, init_params, load_digits_split, loss_and_grad

STEPS = 12
EPS = float(np.finfo(np.float64).eps)


@lru_cache(maxsize=None)
def data():
    return load_digits_split(0)


@lru_cache(maxsize=None)
def run(name: str, kind: str, perturbation: int | None = None) -> dict:
    hook = None
    if perturbation is not None:
        rng = np.random.default_rng(100 + perturbation)

        def hook(grads):
            return [g * (1.0 + EPS * rng.choice([-1.0, 1.0], g.shape)) for g in grads]

    return train_steps(name, DEFAULT_LRS[name], data(), STEPS, run=kind, grad_hook=hook)


def tolerance(name: str) -> float:
    reference = run(name, "numpy optim")["final"]
    spread = max(abs(run(name, "numpy optim", k)["final"] - reference) for k in range(3))
    return 10.0 * spread + STEPS * EPS * reference


@pytest.mark.parametrize("name", TRANSFORM_METHODS)
def test_numpy_interface_equals_objects(name):
    objects, interface = run(name, "numpy objects"), run(name, "numpy optim")
    initial = loss_and_grad(init_params((64, 32, 10), seed=0), data().X_train, data().y_train,
                            need_grad=False)
    assert interface["final"] < initial                       # it trained
    if name == "kfac":
        assert abs(interface["final"] - objects["final"]) <= tolerance(name)
        return
    assert interface["final"] == objects["final"]
    for ours, theirs in zip(interface["params"], objects["params"]):
        assert np.array_equal(ours, theirs)


@pytest.mark.slow  # JAX compiles the whole training loop per method
@pytest.mark.parametrize("name", TRANSFORM_METHODS)
def test_jax_float64_reaches_the_numpy_loss(name):
    pytest.importorskip("jax", reason="jax is not installed")
    numpy, jax = run(name, "numpy optim"), run(name, "jax optim")
    assert jax["dtype"] == "float64"
    assert abs(jax["final"] - numpy["final"]) <= tolerance(name), (jax["final"], numpy["final"])
