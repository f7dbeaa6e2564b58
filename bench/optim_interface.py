"""The digits MLP trained through :mod:`curvature.optim` on NumPy and on JAX arrays.

Part of ``python -m bench curvature``: for each method of
:data:`bench.optimizers.TRANSFORM_METHODS`, three runs from the same
initial weights over the same mini-batches (the order of
:func:`bench.curvature_bench._train`):

``numpy objects``
    the per-object optimiser of :mod:`bench.optimizers` (``step`` updates
    the arrays in place): the reference.
``numpy optim``
    :func:`bench.optimizers.make_transform`, the same method through
    ``init`` / ``update`` / ``apply_updates`` on NumPy arrays, gradients by
    the hand-written backpropagation.
``jax optim``
    the same transformation on ``jax.numpy`` float64 arrays (immutable),
    gradients and layer statistics by ``jax.value_and_grad`` of the same
    network (:func:`bench.optimizers.jax_loss_and_grad`, jitted).

Columns: the full training loss after the steps, its difference from the
reference run, time per step (gradient, optimizer update and, for the
interface, ``apply_updates``; JAX's is taken after ``block_until_ready``)
averaged over the steps after the first, and the first step on its own
(JAX compiles every new operation and shape there, Numba its kernels).
A run that raises is kept as a row with the error.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

__all__ = ["COLUMNS", "RUNS", "DEFAULT_LRS", "batches", "train_steps", "run_interface"]

COLUMNS = ("method", "run", "dtype", "lr", "steps", "train_loss", "loss_vs_objects",
           "time_per_step_ms", "first_step_ms", "error")
RUNS = ("numpy objects", "numpy optim", "jax optim")
DEFAULT_LRS = {"sgd": 0.1, "shampoo": 3e-3, "soap": 3e-3, "mfac": 1e-2, "kfac": 1e-2,
               "mkor": 0.1}
"""Rates when the optimiser table did not choose one (middle of each grid)."""


def batches(n: int, steps: int, batch_size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """The first ``steps`` mini-batches of the training loop of ``bench curvature``
    (a permutation per epoch from ``default_rng(seed + 1)``, the last partial batch
    dropped)."""
    order = np.random.default_rng(seed + 1)
    out: list[np.ndarray] = []
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch size {batch_size} exceeds the {n} training examples")
    while len(out) < steps:
        perm = order.permutation(n)
        out += [perm[s:s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]
    return out[:steps]


def _layer_kwargs(name, layers):
    from .optimizers import needs_layers

    if not needs_layers(name):
        return {}
    return {"activations": [a for a, _ in layers], "output_grads": [g for _, g in layers]}


@contextlib.contextmanager
def _jax_float64():
    import jax

    with jax.enable_x64(True):
        yield jax


def train_steps(name: str, lr: float, data, steps: int, *, run: str = "numpy optim",
                batch_size: int = 32, seed: int = 0, grad_hook=None) -> dict:
    """Train the 64-32-10 MLP ``steps`` steps; returns ``final`` (full training loss),
    ``params`` (NumPy copies), ``time_per_step`` (s, steps after the first),
    ``first_step`` (s) and ``dtype``.

    ``run`` is one of :data:`RUNS`; ``grad_hook(grads) -> grads`` (NumPy runs)
    may change each mini-batch gradient before the optimizer sees it (the
    tests perturb them to measure how rounding propagates).
    """
    from curvature import optim

    from .optimizers import (init_params, jax_loss_and_grad, loss_and_grad, make_optimizer,
                             make_transform, needs_layers)

    if run not in RUNS:
        raise ValueError(f"run must be one of {RUNS}, got {run!r}")
    params = init_params((data.X_train.shape[1], 32, 10), seed=seed)
    chosen = batches(data.X_train.shape[0], steps, batch_size, seed)
    times = []
    with (_jax_float64() if run == "jax optim" else contextlib.nullcontext()) as jax:
        if run == "numpy objects":
            optimizer = make_optimizer(name, params)
        else:
            optimizer = make_transform(name, lr, n_layers=len(params) // 2)
        if run == "jax optim":
            import jax.numpy as jnp

            grad_fn = jax_loss_and_grad()
            params = [jnp.asarray(p) for p in params]
            X, y = jnp.asarray(data.X_train), jnp.asarray(data.y_train)
        if run != "numpy objects":
            state = optimizer.init(params)
        for batch in chosen:
            tick = time.perf_counter()
            if run == "jax optim":
                _, grads, layers = grad_fn(params, X[batch], y[batch])
            else:
                _, grads, layers = loss_and_grad(params, data.X_train[batch],
                                                 data.y_train[batch], return_layers=True)
                if grad_hook is not None:
                    grads = grad_hook(grads)
            if run == "numpy objects":
                if needs_layers(name):
                    optimizer.step(params, grads, lr, layers)
                else:
                    optimizer.step(params, grads, lr)
            else:
                updates, state = optimizer.update(grads, state, params,
                                                  **_layer_kwargs(name, layers))
                params = optim.apply_updates(params, updates)
                if run == "jax optim":
                    jax.block_until_ready(params)
            times.append(time.perf_counter() - tick)
        dtype = str(params[0].dtype)
        params = [np.asarray(p) for p in params]
    final = loss_and_grad(params, data.X_train, data.y_train, need_grad=False)
    return {"final": final, "params": params, "dtype": dtype.rsplit(".", 1)[-1],
            "first_step": times[0] if times else math.nan,
            "time_per_step": float(np.mean(times[1:])) if len(times) > 1 else math.nan}


def run_interface(methods=None, lrs=None, steps: int = 42, batch_size: int = 32, seed: int = 0,
                  progress=None) -> tuple[list[dict], str | None, bool]:
    """Rows with :data:`COLUMNS` for every method and run; ``(rows, note, interrupted)``.

    ``lrs`` maps a method to its rate (default :data:`DEFAULT_LRS`); ``note``
    says why JAX rows are missing (jax not installed), else None.
    """
    from ._progress import progress_bar

    from .optimizers import TRANSFORM_METHODS, load_digits_split

    methods = tuple(methods or TRANSFORM_METHODS)
    lrs = {**DEFAULT_LRS, **(lrs or {})}
    data = load_digits_split(seed)
    try:
        import jax  # noqa: F401
        runs, note = RUNS, None
    except ImportError:
        runs, note = RUNS[:2], "jax is not installed: the JAX rows are skipped"
    rows: list[dict] = []
    try:
        with progress_bar(total=len(methods) * len(runs), desc="optim interface",
                          disable=True if progress is False else None) as bar:
            for name in methods:
                reference = None
                for run in runs:
                    bar.set_postfix_str(f"{name} {run}")
                    row = {"method": name, "run": run, "lr": lrs[name], "steps": steps}
                    try:
                        with np.errstate(all="ignore"):
                            result = train_steps(name, lrs[name], data, steps, run=run,
                                                 batch_size=batch_size, seed=seed)
                    except Exception as error:   # keep the other rows (a backend may lack a kernel)
                        row.update(dtype="", train_loss=math.nan, loss_vs_objects=math.nan,
                                   time_per_step_ms=math.nan, first_step_ms=math.nan,
                                   error=f"{type(error).__name__}: {error}"[:200])
                    else:
                        if run == "numpy objects":
                            reference = result["final"]
                        row.update(dtype=result["dtype"], train_loss=result["final"],
                                   loss_vs_objects=(result["final"] - reference
                                                    if reference is not None else math.nan),
                                   time_per_step_ms=1e3 * result["time_per_step"],
                                   first_step_ms=1e3 * result["first_step"], error="")
                    rows.append(row)
                    bar.update(1)
    except KeyboardInterrupt:
        return rows, note, True
    return rows, note, False
