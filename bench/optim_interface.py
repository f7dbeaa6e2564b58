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
``torch optim``
    the same method as a ``torch.optim`` optimizer (:mod:`curvature.torch`,
    :func:`make_torch_optimizer`) on the same network as a float64
    ``torch.nn`` model (:func:`torch_mlp`), in a standard loop:
    ``zero_grad``, forward, ``backward`` (K-FAC and MKOR read their layer
    statistics from the hooks), ``step``. Torch runs on
    ``torch.get_num_threads()`` threads, given in the ``threads`` column
    (``bench curvature`` sets 1, as for BLAS).

:func:`compare_step_times` times the torch optimizers against the NumPy
interface and against ``torch.optim.Adam`` (the reference a PyTorch user
compares against), interleaved, best of several repeats.

Columns: the full training loss after the steps, its difference from the
reference run, time per step (gradient, optimizer update and, for the
interface, ``apply_updates``; JAX's is taken after ``block_until_ready``)
averaged over the steps after the first, and the first step on its own
(JAX compiles every new operation and shape there, Numba its kernels).
A run that raises is kept as a row with the error.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time

import numpy as np

__all__ = ["COLUMNS", "RUNS", "DEFAULT_LRS", "SPEED_COLUMNS", "batches", "compare_step_times",
           "make_torch_optimizer", "run_interface",
           "torch_mlp", "train_steps", "train_torch"]

COLUMNS = ("method", "run", "dtype", "lr", "steps", "train_loss", "loss_vs_objects",
           "time_per_step_ms", "first_step_ms", "threads", "error")
RUNS = ("numpy objects", "numpy optim", "jax optim", "torch optim")
DEFAULT_LRS = {"sgd": 0.1, "adam": 1e-2, "shampoo": 3e-3, "soap": 3e-3, "mfac": 1e-2,
               "kfac": 1e-2, "mkor": 0.1}
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


def torch_mlp(params, dtype=None):
    """The MLP of :mod:`bench.optimizers` as ``torch.nn.Sequential(Linear, Tanh, ..., Linear)``
    with the weights of ``params`` (``[W1, b1, ...]``, ``W`` of shape ``(fan_in, fan_out)``;
    ``nn.Linear`` keeps ``W.T``), in ``dtype`` (default float64)."""
    import torch

    dtype = dtype or torch.float64
    layers = []
    n_layers = len(params) // 2
    for i in range(n_layers):
        W, b = params[2 * i], params[2 * i + 1]
        linear = torch.nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(np.ascontiguousarray(W.T), dtype=dtype))
            linear.bias.copy_(torch.as_tensor(b, dtype=dtype))
        layers.append(linear)
        if i < n_layers - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def make_torch_optimizer(name: str, lr: float, model):
    """The ``torch.optim`` optimizer equal to ``make_transform(name, lr)`` for ``model``
    (:func:`torch_mlp`): :mod:`curvature.torch` with the settings of
    :mod:`bench.optimizers`; ``sgd`` and ``adam`` are ``torch.optim``'s own."""
    import torch

    import curvature.torch as ct

    from .optimizers import (KFAC_DAMPING, KFAC_INVERSE_FREQ, KFAC_KL_CLIP, MFAC_DAMPING,
                             MFAC_WINDOW, MKOR_DECAY, MKOR_FORM, MKOR_STABILIZER)

    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "shampoo":
        return ct.Shampoo(params, lr=lr, momentum=0.9, grafting="adam", update_freq=1, eps=1e-6)
    if name == "soap":
        return ct.SOAP(params, lr=lr, precondition_frequency=10)
    if name == "mfac":
        return ct.MFAC(params, lr=lr, m=MFAC_WINDOW, damping=MFAC_DAMPING, momentum=0.9)
    if name == "kfac":
        return ct.KFAC(params, model, lr=lr, momentum=0.9, kl_clip=KFAC_KL_CLIP,
                       damping=KFAC_DAMPING, decay=0.95, inverse_update_freq=KFAC_INVERSE_FREQ)
    if name == "mkor":
        return ct.MKOR(params, model, lr=lr, momentum=0.9, decay=MKOR_DECAY, form=MKOR_FORM,
                       stabilizer_threshold=MKOR_STABILIZER)
    raise ValueError(f"no torch optimizer for {name!r}")


def train_torch(name: str, lr: float, data, steps: int, *, batch_size: int = 32, seed: int = 0,
                dtype=None, losses: bool = False) -> dict:
    """:func:`train_steps` for the ``torch optim`` run: a standard PyTorch loop (``zero_grad``,
    forward, ``backward``, ``step``) on :func:`torch_mlp` with :func:`make_torch_optimizer`.

    ``losses=True`` also returns ``history``, the full training loss after every step
    (computed outside the timer).
    """
    import torch

    from .optimizers import init_params, loss_and_grad

    dtype = dtype or torch.float64
    params = init_params((data.X_train.shape[1], 32, 10), seed=seed)
    model = torch_mlp(params, dtype)
    optimizer = make_torch_optimizer(name, lr, model)
    X = torch.as_tensor(data.X_train, dtype=dtype)
    y = torch.as_tensor(data.y_train)
    loss_fn = torch.nn.CrossEntropyLoss()
    times, history = [], []

    def numpy_params():
        out = []
        for module in model:
            if isinstance(module, torch.nn.Linear):
                out += [module.weight.detach().numpy().T.astype(np.float64),
                        module.bias.detach().numpy().astype(np.float64)]
        return out

    for batch in batches(data.X_train.shape[0], steps, batch_size, seed):
        index = torch.as_tensor(batch)
        tick = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(model(X[index]), y[index]).backward()
        optimizer.step()
        times.append(time.perf_counter() - tick)
        if losses:
            history.append(loss_and_grad(numpy_params(), data.X_train, data.y_train,
                                         need_grad=False))
    final_params = numpy_params()
    final = loss_and_grad(final_params, data.X_train, data.y_train, need_grad=False)
    out = {"final": final, "params": final_params, "dtype": str(dtype).rsplit(".", 1)[-1],
           "first_step": times[0] if times else math.nan,
           "time_per_step": float(np.mean(times[1:])) if len(times) > 1 else math.nan,
           "threads": torch.get_num_threads()}
    if losses:
        out["history"] = history
    return out


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
    if run == "torch optim":
        return train_torch(name, lr, data, steps, batch_size=batch_size, seed=seed)
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
    says why JAX or torch rows are missing (not installed), else None.
    """
    from ._progress import progress_bar

    from .optimizers import TRANSFORM_METHODS, load_digits_split

    methods = tuple(methods or TRANSFORM_METHODS)
    lrs = {**DEFAULT_LRS, **(lrs or {})}
    data = load_digits_split(seed)
    runs, notes = list(RUNS), []
    for library, run in (("jax", "jax optim"), ("torch", "torch optim")):
        try:
            importlib.import_module(library)
        except ImportError:
            runs.remove(run)
            notes.append(f"{library} is not installed: the {run} rows are skipped")
    note = "; ".join(notes) or None
    plan = [(name, run) for name in methods for run in runs]
    rows: list[dict] = []
    try:
        with progress_bar(total=len(plan), desc="optim interface",
                          disable=True if progress is False else None) as bar:
            references: dict[str, float] = {}
            for name, run in plan:
                bar.set_postfix_str(f"{name} {run}")
                row = {"method": name, "run": run, "lr": lrs[name], "steps": steps,
                       "threads": ""}
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
                        references[name] = result["final"]
                    row.update(dtype=result["dtype"], train_loss=result["final"],
                               loss_vs_objects=result["final"] - references.get(name, math.nan),
                               time_per_step_ms=1e3 * result["time_per_step"],
                               first_step_ms=1e3 * result["first_step"],
                               threads=result.get("threads", ""), error="")
                rows.append(row)
                bar.update(1)
    except KeyboardInterrupt:
        return rows, note, True
    return rows, note, False


SPEED_COLUMNS = ("method", "steps", "repeats", "threads", "numpy_optim_ms", "torch_ms",
                 "torch_adam_ms", "torch_vs_numpy", "torch_vs_adam", "error")


def compare_step_times(methods=None, lrs=None, steps: int = 42, repeats: int = 5,
                       batch_size: int = 32, seed: int = 0) -> list[dict]:
    """Time per step of each :mod:`curvature.torch` optimizer against the NumPy interface and
    against ``torch.optim.Adam``, on the same MLP and batches; rows with :data:`SPEED_COLUMNS`.

    The three runs are interleaved (NumPy interface, torch method, torch Adam, then again)
    ``repeats`` times and each keeps its best time per step (gradient, optimizer, update;
    steps after the first), so that a busy machine slows all three alike. Threads are the
    caller's: ``bench curvature`` holds BLAS, Numba and torch to one (``threads`` column:
    ``torch.get_num_threads()``).
    """
    import torch

    from .optimizers import TRANSFORM_METHODS, load_digits_split

    methods = tuple(methods or [m for m in TRANSFORM_METHODS if m != "sgd"])
    lrs = {**DEFAULT_LRS, **(lrs or {})}
    data = load_digits_split(seed)
    rows = []
    for name in methods:
        row = {"method": name, "steps": steps, "repeats": repeats,
               "threads": torch.get_num_threads(), "error": ""}
        best = {"numpy": math.inf, "torch": math.inf, "adam": math.inf}
        try:
            with np.errstate(all="ignore"):
                for _ in range(repeats):
                    best["numpy"] = min(best["numpy"], train_steps(
                        name, lrs[name], data, steps, run="numpy optim", batch_size=batch_size,
                        seed=seed)["time_per_step"])
                    best["torch"] = min(best["torch"], train_torch(
                        name, lrs[name], data, steps, batch_size=batch_size,
                        seed=seed)["time_per_step"])
                    best["adam"] = min(best["adam"], train_torch(
                        "adam", lrs["adam"], data, steps, batch_size=batch_size,
                        seed=seed)["time_per_step"])
        except Exception as error:     # keep the other methods' rows
            row["error"] = f"{type(error).__name__}: {error}"[:200]
        row.update(numpy_optim_ms=1e3 * best["numpy"], torch_ms=1e3 * best["torch"],
                   torch_adam_ms=1e3 * best["adam"],
                   torch_vs_numpy=best["torch"] / best["numpy"],
                   torch_vs_adam=best["torch"] / best["adam"])
        rows.append(row)
    return rows
