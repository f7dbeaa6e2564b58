"""curvature.torch: the torch.optim classes against curvature.optim on NumPy, on the digits MLP.

The MLP of ``bench.optimizers`` (64-32-10, tanh) as a ``torch.nn`` model
(``bench.optim_interface.torch_mlp``; ``nn.Linear`` stores ``W.T``), with the
settings of ``bench.optimizers`` for each method.

Bounds
------
*Same recorded gradients* (the NumPy run of the interface records each
step's gradients and layer statistics; the torch optimizer is fed the same
ones, so both follow one trajectory and only the optimizer's arithmetic
differs): the two run the same code over another BLAS/LAPACK and, for
``nn.Linear``, the transposed weight layout, so every operation may round
differently by an ulp. What makes the relative difference of an update
larger than ``eps`` is the conditioning of the method's solves: Shampoo's
``(L + 1e-6 I)^{-1/4}`` of factors whose eigenvalues span 1e-6..1
(sensitivity about 1e3), K-FAC's damped eigen-solve (damping 1e-2 against
factor norms of order 1: about 1e2), M-FAC's ``m x m`` system (damping 0.1:
about 1e1); carried for 40 steps through the statistics (Shampoo's
``L += G G'`` never forgets a rounding). Measured, float64: 2e-11 (Shampoo),
7e-14 (M-FAC), 3e-14 (K-FAC), 7e-15 (MKOR). The bound asserted is
``1e-10``, i.e. ``eps64 * 4.5e5``: the largest sensitivity above times
room for 40 steps of accumulation (Shampoo sits a factor 5 below it). In
float32 the same arithmetic with ``eps32`` gives ``eps32 * 4.5e5 = 5e-2``;
measured over 12 steps: 1e-4 (Shampoo), 4e-5 and below elsewhere.

SOAP is the exception on this model: its first eigenbasis comes from a
factor ``G G'`` of rank 10-32 in 32-64 dimensions (and the digits have
pixels that are zero in every image, so part of the null space stays), and
any basis of a null space is an eigenbasis: NumPy's and torch's
eigensolvers return different ones, and Adam scales the coordinates of the
two bases differently. SOAP is held to the tight bound on a parameter whose
factors are full rank with distinct eigenvalues (random square gradients),
and on the MLP to the rounding spread of its own NumPy run (as
``tests/curvature/test_optim_digits.py`` derives it; marked slow).

*Loss curves* (each run computes its own gradients: NumPy by hand,
torch by autograd with the K-FAC/MKOR statistics from the hooks): the
full training loss after each of 40 steps agrees to ``1e-10`` relative
(measured: 1e-13 Shampoo, 2e-14 K-FAC, 5e-16 M-FAC and MKOR).
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install -e '.[torch]')")

import curvature.torch as ct  # noqa: E402
from bench.optim_interface import (DEFAULT_LRS, batches, make_torch_optimizer,  # noqa: E402
                                   torch_mlp, train_steps, train_torch)
from bench.optimizers import (init_params, load_digits_split, loss_and_grad,  # noqa: E402
                              make_transform, needs_layers)
from curvature import optim  # noqa: E402

STEPS = 40
TIGHT = ("shampoo", "mfac", "kfac", "mkor")
METHODS = TIGHT + ("soap",)
EPS64, EPS32 = float(np.finfo(np.float64).eps), float(np.finfo(np.float32).eps)
AMPLIFICATION = 4.5e5       # see the module notes: 1e3 sensitivity times room for 40 steps
BOUND = {np.float64: EPS64 * AMPLIFICATION, np.float32: EPS32 * AMPLIFICATION}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # torch's threads and OpenBLAS's on a shared 2-core machine oversubscribe it many times
    # over on these small matrices (a 5x slower module); one thread each, as bench does
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(threads)


@lru_cache(maxsize=None)
def data():
    return load_digits_split(0)


def linear_layers(model):
    return [m for m in model if isinstance(m, torch.nn.Linear)]


@lru_cache(maxsize=None)
def numpy_record(name: str, steps: int, dtype=np.float64):
    """The NumPy interface run: per step the gradients, layer statistics and updates."""
    d = data()
    params = [p.astype(dtype) for p in init_params((64, 32, 10), seed=0)]
    opt = make_transform(name, DEFAULT_LRS[name])
    state = opt.init(params)
    record = []
    for batch in batches(d.X_train.shape[0], steps):
        _, grads, layers = loss_and_grad([p.astype(np.float64) for p in params],
                                         d.X_train[batch], d.y_train[batch], return_layers=True)
        grads = [g.astype(dtype) for g in grads]
        layers = [(a.astype(dtype), g.astype(dtype)) for a, g in layers]
        extra = ({"activations": [a for a, _ in layers], "output_grads": [g for _, g in layers]}
                 if needs_layers(name) else {})
        updates, state = opt.update(grads, state, params, **extra)
        params = optim.apply_updates(params, updates)
        record.append((grads, layers, updates))
    return record


def torch_replay(name: str, record, dtype=torch.float64):
    """Feed the recorded gradients (and layer statistics) to the torch optimizer; its updates."""
    model = torch_mlp(init_params((64, 32, 10), seed=0), dtype)
    opt = make_torch_optimizer(name, DEFAULT_LRS[name], model)
    linears = linear_layers(model)
    params = [p for m in linears for p in (m.weight, m.bias)]
    out = []
    for grads, layers, _ in record:
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(np.ascontiguousarray(g.T if g.ndim == 2 else g))
        if needs_layers(name):
            for module, (a, g) in zip(linears, layers):
                opt.observe(module, torch.from_numpy(a), torch.from_numpy(g))
        before = [p.detach().clone() for p in params]
        opt.step()
        out.append([(p.detach() - b).numpy() for p, b in zip(params, before)])
    return out


def relative_update_errors(record, replayed):
    errors = []
    for (_, _, updates), torch_updates in zip(record, replayed):
        for u, t in zip(updates, torch_updates):
            u = u.T if u.ndim == 2 else u
            errors.append(float(np.linalg.norm(t - u) / max(np.linalg.norm(u), 1e-300)))
    return errors


@pytest.mark.parametrize("name", TIGHT)
def test_same_gradients_same_updates_float64(name):
    record = numpy_record(name, STEPS)
    errors = relative_update_errors(record, torch_replay(name, record))
    assert max(errors) <= BOUND[np.float64], max(errors)


@pytest.mark.parametrize("name", TIGHT)
def test_same_gradients_same_updates_float32(name):
    record = numpy_record(name, 12, np.float32)
    errors = relative_update_errors(record, torch_replay(name, record, torch.float32))
    assert max(errors) <= BOUND[np.float32], max(errors)


def _soap_numpy(grads, hook=None):
    opt = optim.soap(0.01, precondition_frequency=3)
    w = np.ones((5, 5))
    state, out = opt.init([w]), []
    for g in grads:
        updates, state = opt.update([g if hook is None else hook(g)], state, [w])
        w = optim.apply_updates([w], updates)[0]
        out.append(w)
    return out


def test_soap_matches_numpy_to_its_rounding_spread():
    # Square random gradients: full-rank factors with distinct eigenvalues, so one eigenbasis.
    # Still not 1e-10: in the eigenbasis of G G' and G'G the rotated gradient is diagonal, its
    # off-diagonal coordinates are rounding noise (~eps |G|), and Adam's first step turns them
    # into steps of size noise / (noise + 1e-8), about 1e-8 relative. The bound is derived
    # from NumPy's own run with its gradients perturbed by one ulp (three draws).
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal((5, 5)) for _ in range(25)]
    reference = _soap_numpy(grads)
    spread = np.zeros(len(grads))
    for k in range(3):
        signs = np.random.default_rng(100 + k)
        perturbed = _soap_numpy(grads, lambda g: g * (1.0 + EPS64 * signs.choice([-1.0, 1.0],
                                                                                   g.shape)))
        spread = np.maximum(spread, [np.linalg.norm(a - b) for a, b in zip(perturbed, reference)])
    p = torch.nn.Parameter(torch.ones(5, 5, dtype=torch.float64))
    opt = ct.SOAP([p], lr=0.01, precondition_frequency=3)
    for g, w, bound in zip(grads, reference, spread):
        p.grad = torch.from_numpy(g)
        opt.step()
        assert np.linalg.norm(p.detach().numpy() - w) <= 10.0 * bound + EPS64 * np.linalg.norm(w)


@pytest.mark.parametrize("name", TIGHT)
def test_loss_curves_agree(name):
    ours = train_torch(name, DEFAULT_LRS[name], data(), STEPS, losses=True)["history"]
    theirs = numpy_losses(name, STEPS)
    assert ours[-1] < theirs[0] + 0.5      # it trained (the first loss is after one step)
    relative = np.abs(np.subtract(ours, theirs)) / np.abs(theirs)
    assert relative.max() <= BOUND[np.float64], relative.max()


def numpy_losses(name, steps):
    d = data()
    params = init_params((64, 32, 10), seed=0)
    opt = make_transform(name, DEFAULT_LRS[name])
    state = opt.init(params)
    out = []
    for grads, layers, updates in numpy_record(name, steps):
        params = optim.apply_updates(params, updates)
        out.append(loss_and_grad(params, d.X_train, d.y_train, need_grad=False))
    del opt, state
    return out


@pytest.mark.slow  # 4 extra NumPy runs for the rounding spread
def test_soap_loss_reaches_numpy_within_rounding_spread():
    steps = 12
    reference = train_steps("soap", DEFAULT_LRS["soap"], data(), steps)["final"]
    spread = 0.0
    for k in range(3):
        rng = np.random.default_rng(100 + k)

        def hook(grads):
            return [g * (1.0 + EPS64 * rng.choice([-1.0, 1.0], g.shape)) for g in grads]
        perturbed = train_steps("soap", DEFAULT_LRS["soap"], data(), steps, grad_hook=hook)
        spread = max(spread, abs(perturbed["final"] - reference))
    ours = train_torch("soap", DEFAULT_LRS["soap"], data(), steps)["final"]
    assert abs(ours - reference) <= 10.0 * spread + steps * EPS64 * reference


# ---------------------------------------------------------------- state ----

def _model_and_batches(seed=0, steps=10):
    d = data()
    chosen = batches(d.X_train.shape[0], steps)
    X, y = torch.from_numpy(d.X_train), torch.from_numpy(d.y_train)
    return torch_mlp(init_params((64, 32, 10), seed=seed)), [(X[b], y[b]) for b in chosen]


def _train(model, opt, pairs):
    for X, y in pairs:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()


@pytest.mark.parametrize("name", METHODS)
def test_state_dict_round_trip_continues_bit_identically(name):
    model, pairs = _model_and_batches()
    opt = make_torch_optimizer(name, DEFAULT_LRS[name], model)
    _train(model, opt, pairs[:5])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    twin = torch_mlp(init_params((64, 32, 10), seed=1))      # other weights, then loaded
    twin.load_state_dict(saved["model"])
    twin_opt = make_torch_optimizer(name, DEFAULT_LRS[name], twin)
    twin_opt.load_state_dict(saved["opt"])
    _train(model, opt, pairs[5:])
    _train(twin, twin_opt, pairs[5:])
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", ("shampoo", "kfac", "mfac"))
def test_state_of_another_model_is_refused_all_or_nothing(name):
    model, pairs = _model_and_batches()
    opt = make_torch_optimizer(name, DEFAULT_LRS[name], model)
    _train(model, opt, pairs[:2])
    other = torch.nn.Sequential(torch.nn.Linear(64, 16, dtype=torch.float64), torch.nn.Tanh(),
                                torch.nn.Linear(16, 10, dtype=torch.float64))
    other_opt = make_torch_optimizer(name, DEFAULT_LRS[name], other)
    _train(other, other_opt, pairs[:2])
    before = opt.state_dict()
    with pytest.raises(ValueError, match="load_state_dict"):
        opt.load_state_dict(other_opt.state_dict())
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert all(torch.equal(a, b) for a, b in zip(_tensors(after), _tensors(before)))
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for k in sorted(tree, key=str) for t in _tensors(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [t for v in tree for t in _tensors(v)]
    return []


# ------------------------------------------------- tensors stay tensors ----

@pytest.mark.parametrize("name", METHODS)
def test_step_updates_in_place_without_transfers(name, monkeypatch):
    model, pairs = _model_and_batches(steps=3)
    opt = make_torch_optimizer(name, DEFAULT_LRS[name], model)
    _train(model, opt, pairs[:1])
    pointers = [p.data_ptr() for p in model.parameters()]
    buffers = [s["momentum_buffer"].data_ptr() for s in opt.state.values()
               if "momentum_buffer" in s]
    objects = [id(obj) for obj in _live_objects(opt)]

    smallest = min(p.numel() for p in model.parameters())

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was moved or copied to the host during step()")

    def to(tensor, *args, **kwargs):       # dtype casts are the method's; devices must stay
        target = kwargs.get("device", args[0] if args and not isinstance(args[0], torch.dtype)
                            else None)
        if target is not None and torch.device(target) != tensor.device:
            refuse()
        return original_to(tensor, *args, **kwargs)

    def clone(tensor, *args, **kwargs):
        assert tensor.numel() < smallest, "a parameter-sized tensor was cloned during step()"
        return original_clone(tensor, *args, **kwargs)

    def numpy(tensor, *args, **kwargs):    # where a compiled kernel needs it: a view, on the CPU
        array = original_numpy(tensor, *args, **kwargs)
        assert tensor.device.type == "cpu" and array.ctypes.data == tensor.data_ptr()
        return array
    original_to, original_clone = torch.Tensor.to, torch.Tensor.clone
    original_numpy = torch.Tensor.numpy
    for attribute in ("cpu", "cuda", "tolist"):
        monkeypatch.setattr(torch.Tensor, attribute, refuse)
    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.Tensor, "clone", clone)
    monkeypatch.setattr(torch.Tensor, "numpy", numpy)
    _train(model, opt, pairs[1:])
    monkeypatch.undo()
    assert [p.data_ptr() for p in model.parameters()] == pointers
    assert [s["momentum_buffer"].data_ptr() for s in opt.state.values()
            if "momentum_buffer" in s] == buffers
    # the curvature objects live on between steps (not rebuilt from a state, as
    # curvature.optim's pure update must)
    assert [id(obj) for obj in _live_objects(opt)] == objects


def _live_objects(opt):
    return [obj for live in opt._live.values()
            for obj in (live if isinstance(live, list) else [live])]


def test_mfac_step_allocates_far_less_than_its_window():
    # The window (m x d) is the state that matters: curvature.optim's pure update copies it
    # in and out at every call. On the CPU the window is a NumPy array read by the compiled
    # kernels (allocations seen by tracemalloc), the rest are tensors (seen by torch's
    # profiler): together, one step must allocate well under one window.
    import tracemalloc

    model, pairs = _model_and_batches(steps=3)
    opt = ct.MFAC(model.parameters(), lr=1e-2, m=32, momentum=0.9)
    _train(model, opt, pairs[:2])
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(pairs[2][0]), pairs[2][1]).backward()
    window = opt._live[next(model.parameters())]._G
    assert tuple(window.shape) == (32, sum(p.numel() for p in model.parameters()))
    pointer, window_bytes = window.ctypes.data, window.nbytes
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    profile_memory=True) as profile:
            opt.step()
        numpy_peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    torch_total = sum(e.cpu_memory_usage for e in profile.events() if e.cpu_memory_usage > 0)
    assert numpy_peak + torch_total < window_bytes / 2, (numpy_peak, torch_total, window_bytes)
    assert opt._live[next(model.parameters())]._G.ctypes.data == pointer


# ------------------------------------------------------- torch's API ----

@pytest.mark.parametrize("name", METHODS)
def test_lr_scheduler_sets_the_rate(name):
    model, pairs = _model_and_batches(steps=3)
    opt = make_torch_optimizer(name, DEFAULT_LRS[name], model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: [1.0, 0.0, 0.5][k])
    _train(model, opt, pairs[:1])
    scheduler.step()
    assert opt.param_groups[0]["lr"] == 0.0
    frozen = [p.detach().clone() for p in model.parameters()]
    if name in ("kfac", "mkor", "shampoo", "soap", "mfac"):
        opt.param_groups[0]["momentum"] = 0.0    # a zero rate must then leave them unchanged
    _train(model, opt, pairs[1:2])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), frozen))
    scheduler.step()
    assert opt.param_groups[0]["lr"] == 0.5 * DEFAULT_LRS[name]


def test_param_groups_have_their_own_settings():
    a = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
    b = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.float64))
    opt = ct.Shampoo([{"params": [a]}, {"params": [b], "lr": 0.0, "eps": 1e-3}], lr=0.1,
                     eps=1e-6)
    grad = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]], dtype=torch.float64)
    a.grad, b.grad = grad.clone(), grad.clone()
    opt.step()
    assert torch.equal(b, torch.ones(3, 2, dtype=torch.float64))     # lr 0 in its group
    assert not torch.equal(a, torch.ones(3, 2, dtype=torch.float64))
    assert opt._live[a][0].eps == 1e-6 and opt._live[b][0].eps == 1e-3


def test_hooks_flatten_leading_dimensions_and_groups_set_any_setting():
    # a sequence model: inputs (batch, time, features); the hooks see rows batch * time, and
    # the per-example output gradients are rows times the mean loss's gradient
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2, dtype=torch.float64)
    twin = torch.nn.Linear(3, 2, dtype=torch.float64)
    twin.load_state_dict(layer.state_dict())
    hooked = ct.KFAC([{"params": layer.parameters(), "damping": 1e-3}], layer, lr=0.1)
    by_hand = ct.KFAC(twin.parameters(), twin, lr=0.1, damping=1e-3)
    by_hand.remove_hooks()
    X, T = torch.randn(4, 5, 3, dtype=torch.float64), torch.randn(4, 5, 2, dtype=torch.float64)
    torch.nn.functional.mse_loss(layer(X), T).backward()
    out = twin(X)
    (grad_out,) = torch.autograd.grad(torch.nn.functional.mse_loss(out, T), out, retain_graph=True)
    torch.nn.functional.mse_loss(out, T).backward()
    by_hand.observe(twin, X.reshape(20, 3), 20 * grad_out.reshape(20, 2))
    hooked.step()
    by_hand.step()
    assert hooked._live[layer.weight].damping == 1e-3      # a group setting without a default
    assert torch.equal(layer.weight, twin.weight) and torch.equal(layer.bias, twin.bias)


def test_closure_and_zero_grad():
    model, pairs = _model_and_batches(steps=1)
    opt = ct.MKOR(model.parameters(), model, lr=0.1, hybrid=True)
    X, y = pairs[0]

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return loss
    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.item() > 0.0
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# -------------------------------------------------------------- misuse ----

def test_bad_input_is_refused_with_the_fix():
    model, pairs = _model_and_batches(steps=1)
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        ct.Shampoo(model.parameters(), lr=-1.0)
    with pytest.raises(TypeError, match="only torch.nn.Linear"):
        ct.KFAC(model.parameters(), [model[0], model[1]])
    with pytest.raises(ValueError, match="loss_reduction"):
        ct.KFAC(model.parameters(), model, loss_reduction="none")
    opt = ct.KFAC(model.parameters(), model, lr=0.1)
    with torch.no_grad():                    # no statistics recorded
        out = model(pairs[0][0])
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    with pytest.raises(ValueError, match="no recorded forward and backward pass"):
        opt.step()
    del out
    opt = ct.MFAC(model.parameters(), lr=0.1)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(pairs[0][0]), pairs[0][1]).backward()
    model[2].bias.grad = None
    with pytest.raises(ValueError, match="group of their own"):
        opt.step()
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = ct.Shampoo([p], lr=0.1)
    p.grad = torch.tensor([1.0, float("nan")], dtype=torch.float64)
    with pytest.raises(ValueError, match="Shampoo"):
        opt.step()
    assert torch.equal(p, torch.ones(2, dtype=torch.float64))
