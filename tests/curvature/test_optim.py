"""curvature.optim: trees, purity, plain-data state, errors, and each wrapper against its objects.

Each method's wrapper must give what its curvature objects give when driven
by hand (one Shampoo/SOAP per parameter, one KFAC/MKOR per declared layer,
one MFAC over the concatenated gradient): bit for bit where the arithmetic
is the same, to rounding where the wrapper takes the batched path
(``precondition_layers``). The digits training comparison lives in
``test_optim_digits.py``, the JAX runs in ``test_optim_jax.py``.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
from collections import OrderedDict, namedtuple

import array_api_strict
import numpy as np
import pytest

from curvature import KFAC, MFAC, MKOR, SOAP, BlockedMFAC, Shampoo, optim
from curvature.shampoo.distributed import DistributedShampoo
from curvature.kronecker.kfac import kl_clip_scale
from curvature.optim._tree import flatten, flatten_as, unflatten
from linsolve.mpi import SerialComm
from tests.problems import to_numpy

Layer = namedtuple("Layer", ["w", "b"])


def model(seed=0, xp=np, sizes=(5, 4, 3)):
    """A nested tree: a dict holding a list, a named tuple and a 0-d scale; two dense
    layers ``sizes[0] -> sizes[1] -> sizes[2]`` (weights ``(in, out)``)."""
    rng = np.random.default_rng(seed)
    n_in, hidden, n_out = sizes
    tree = {"dense": [rng.standard_normal((n_in, hidden)), rng.standard_normal(hidden)],
            "head": Layer(rng.standard_normal((hidden, n_out)), rng.standard_normal(n_out)),
            "scale": np.asarray(rng.standard_normal())}
    return to_xp(tree, xp)


def to_xp(tree, xp):
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [xp.asarray(leaf) for leaf in leaves])


def to_np(tree):
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [to_numpy(leaf) for leaf in leaves])


def assert_same(a, b, path="tree"):
    """Same plain-data structure, same scalars, bitwise equal arrays."""
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif hasattr(a, "shape") and hasattr(a, "dtype"):
        x, y = to_numpy(a), to_numpy(b)
        assert x.shape == y.shape and x.dtype == y.dtype, path
        assert np.array_equal(x, y), path
    else:
        assert a == b, (path, a, b)


def check_plain(state, path="state"):
    """Only dicts, lists, Python scalars, strings, None and arrays."""
    if isinstance(state, dict):
        for k, v in state.items():
            check_plain(v, f"{path}[{k!r}]")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            check_plain(v, f"{path}[{i}]")
    else:
        assert state is None or isinstance(state, (bool, int, float, str)) or \
            hasattr(state, "__array_namespace__") or isinstance(state, np.ndarray), \
            (path, type(state))


DENSE_LAYERS = [optim.DenseLayer(("dense", 0), ("dense", 1)),
                optim.DenseLayer(("head", 0), ("head", 1))]


def layer_data(params, seed, xp=np, n=8):
    """Gradients, inputs and per-example output gradients for the two dense layers of
    :func:`model` (random, of the right shapes)."""
    rng = np.random.default_rng(seed)
    n_in, hidden = params["dense"][0].shape
    n_out = params["head"].w.shape[1]
    a1, g1 = rng.standard_normal((n, n_in)), rng.standard_normal((n, hidden))
    a2, g2 = rng.standard_normal((n, hidden)), rng.standard_normal((n, n_out))
    grads = {"dense": [a1.T @ g1 / n, g1.mean(axis=0)],
             "head": Layer(a2.T @ g2 / n, g2.mean(axis=0)),
             "scale": np.asarray(rng.standard_normal())}
    return (to_xp(grads, xp), [xp.asarray(a1), xp.asarray(a2)],
            [xp.asarray(g1), xp.asarray(g2)])


METHODS = {
    "shampoo": lambda: optim.shampoo(0.1, momentum=0.9, eps=1e-6),
    "shampoo_tiles": lambda: optim.shampoo(0.1, block_size=3, eps=1e-6),
    "soap": lambda: optim.soap(0.01, precondition_frequency=2, weight_decay=1e-2),
    "mfac": lambda: optim.mfac(0.1, m=3, damping=0.1, momentum=0.9),
    "mfac_blocked": lambda: optim.mfac(0.1, m=3, damping=0.1, per_parameter=True),
    "kfac": lambda: optim.kfac(0.1, DENSE_LAYERS, momentum=0.9, kl_clip=1e-2, damping=1e-2),
    "mkor": lambda: optim.mkor(0.1, DENSE_LAYERS, momentum=0.9, stabilizer_threshold=10.0),
}


def run_method(name, steps, xp=np, seed=0, sizes=(5, 4, 3)):
    """``steps`` updates of method ``name``; every (updates, state) and the params."""
    opt = METHODS[name]()
    params = model(seed, xp, sizes)
    state = opt.init(params)
    history = []
    for step in range(steps):
        grads, acts, outs = layer_data(params, seed + 1 + step, xp)
        extra = ({"activations": acts, "output_grads": outs}
                 if name in ("kfac", "mkor") else {})
        updates, state = opt.update(grads, state, params, **extra)
        params = optim.apply_updates(params, updates)
        history.append((updates, state))
    return params, history


# --- trees ---------------------------------------------------------------------------

def test_tree_flatten_order_and_rebuild():
    tree = OrderedDict([("z", np.ones(1)), ("a", [np.zeros(2), None, (np.ones(3),)]),
                        ("l", Layer(np.ones(4), np.zeros(5)))])
    leaves, treedef = flatten(tree)
    assert [leaf.shape for leaf in leaves] == [(2,), (3,), (4,), (5,), (1,)]  # sorted keys
    assert treedef.paths("p") == ["p['a'][0]", "p['a'][2][0]", "p['l'][0]", "p['l'][1]",
                                  "p['z']"]
    rebuilt = unflatten(treedef, leaves)
    assert type(rebuilt) is OrderedDict and list(rebuilt) == ["z", "a", "l"]
    assert type(rebuilt["l"]) is Layer and rebuilt["a"][1] is None
    assert type(rebuilt["a"][2]) is tuple
    # a dict with the same keys in another insertion order flattens alike
    same = {"l": Layer(np.ones(4), np.zeros(5)), "a": [np.zeros(2), None, (np.ones(3),)],
            "z": np.ones(1)}
    assert flatten(same)[1] == treedef
    assert [x.shape for x in flatten_as(treedef, same, "g", "p")] == [x.shape for x in leaves]


# --- errors name the path ----------------------------------------------------------

@pytest.mark.parametrize("name", sorted(METHODS))
def test_mismatched_trees_name_the_path(name):
    opt = METHODS[name]()
    params = model()
    state = opt.init(params)
    grads, acts, outs = layer_data(params, 1)
    extra = {"activations": acts, "output_grads": outs} if name in ("kfac", "mkor") else {}
    bad = dict(grads, dense=[grads["dense"][0]])                 # one array missing
    with pytest.raises(ValueError, match=r"params\['dense'\] is a list of 2, but "
                                         r"grads\['dense'\] is a list of 1"):
        opt.update(bad, state, params, **extra)
    wrong = dict(grads, head=Layer(grads["head"].w, np.ones(5)))   # wrong shape
    with pytest.raises(ValueError, match=r"grads\['head'\]\[1\] has shape \(5,\)"):
        opt.update(wrong, state, params, **extra)
    # without params, the state catches the shape, naming the gradient's path
    with pytest.raises(ValueError, match=r"grads\['head'\]\[1\]|grads|layer"):
        opt.update(wrong, state, **extra)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_mixed_libraries_name_the_path(name):
    opt = METHODS[name]()
    params = model()
    state = opt.init(params)
    grads, acts, outs = layer_data(params, 1)
    extra = {"activations": acts, "output_grads": outs} if name in ("kfac", "mkor") else {}
    mixed = dict(grads, scale=array_api_strict.asarray(1.0, dtype=array_api_strict.float64))
    with pytest.raises(TypeError, match=r"grads\['scale'\] is a array_api_strict array, "
                                        r"grads\['dense'\]\[0\] a numpy one"):
        opt.update(mixed, state, params, **extra)
    strict = to_xp(grads, array_api_strict)             # gradients of another library
    with pytest.raises(TypeError, match="one array library per call"):
        opt.update(strict, state, params, **extra)


def test_leaf_that_is_not_an_array():
    opt = optim.trace(0.9)
    with pytest.raises(TypeError, match=r"params\['b'\] is a float, not an array"):
        opt.init({"w": np.ones(2), "b": 1.0})
    with pytest.raises(TypeError, match=r"params\[0\] has dtype int64"):
        opt.init([np.arange(3)])


def test_apply_updates_checks():
    with pytest.raises(ValueError, match=r"updates\['w'\] has shape \(3,\), but params\['w'\]"):
        optim.apply_updates({"w": np.ones(2)}, {"w": np.ones(3)})
    with pytest.raises(ValueError, match=r"updates is a list of 1, but params is a dict"):
        optim.apply_updates({"w": np.ones(2)}, [np.ones(2)])
    out = optim.apply_updates([np.ones(2, dtype=np.float32)], [np.ones(2)])
    assert out[0].dtype == np.float32                        # the parameter's dtype


def test_layer_declaration_errors():
    params = model()
    with pytest.raises(ValueError, match=r"params\['dense'\]\[5\], which is not an array"):
        optim.scale_by_kfac([optim.DenseLayer(("dense", 5))]).init(params)
    with pytest.raises(ValueError, match=r"params\['dense'\]\[1\] \(layers\[0\].weight\) must "
                                         r"be a matrix"):
        optim.scale_by_kfac([optim.DenseLayer(("dense", 1))]).init(params)
    with pytest.raises(ValueError, match=r"params\['head'\]\[1\] \(layers\[0\].bias\) must "
                                         r"have shape \(4,\)"):
        optim.scale_by_kfac([optim.DenseLayer(("dense", 0), ("head", 1))]).init(params)
    with pytest.raises(ValueError, match="belongs to two declarations"):
        optim.scale_by_mkor([optim.DenseLayer(("dense", 0)),
                             optim.DenseLayer(("dense", 0))]).init(params)
    with pytest.raises(ValueError, match="layout must be one of"):
        optim.scale_by_kfac([optim.DenseLayer("w", layout="oi")])
    opt = optim.kfac(0.1, DENSE_LAYERS)
    grads, acts, outs = layer_data(params, 1)
    state = opt.init(params)
    with pytest.raises(ValueError, match="needs activations="):
        opt.update(grads, state, params)
    with pytest.raises(ValueError, match="activations holds 1 arrays, but 2 layers"):
        opt.update(grads, state, params, activations=acts[:1], output_grads=outs)
    with pytest.raises(ValueError, match=r"scale_by_kfac: layer 1 \(grads\['head'\]\[0\]\): a must "
                                         r"have shape \(batch, 4\)"):
        opt.update(grads, state, params, activations=[acts[0], acts[0]], output_grads=outs)
    with pytest.raises(TypeError, match=r"activations\[1\] is a array_api_strict array"):
        opt.update(grads, state, params, activations=[acts[0], array_api_strict.asarray(acts[1])],
                   output_grads=outs)
    with pytest.raises(TypeError, match=r"no member takes the keyword\(s\) \['loss'\]"):
        opt.update(grads, state, params, activations=acts, output_grads=outs, loss=1.0)


def test_bad_state_is_named():
    params = model()
    opt = optim.shampoo(0.1, momentum=0.9)
    state = opt.init(params)
    with pytest.raises(ValueError, match="chain state must be a list of 3 states"):
        opt.update(model(1), state[:2], params)
    broken = copy.deepcopy(state)
    broken[0]["blocks"][1][0]["step"] = -1
    with pytest.raises(ValueError, match=r"state\['blocks'\]\[1\]\[0\] \(for grads\['dense'\]"
                                         r"\[1\]\): Shampoo state: state\['step'\] must be an "
                                         r"int >= 0"):
        opt.update(model(1), broken, params)
    broken = copy.deepcopy(state)
    broken[1]["momentum"]["head"] = [np.ones((4, 3)), np.ones(3)]
    with pytest.raises(ValueError, match=r"state\['momentum'\]\['head'\] is a list of 2, but "
                                         r"grads\['head'\] is a Layer of 2"):
        opt.update(model(1), broken, params)
    with pytest.raises(ValueError, match="trace state has|trace state: state is missing"):
        opt.update(model(1), [state[0], {}, state[2]], params)


# --- purity and plain-data state ---------------------------------------------------

@pytest.mark.parametrize("name", sorted(METHODS))
def test_update_is_pure_and_state_plain(name):
    params, history = run_method(name, 3)
    opt = METHODS[name]()
    _, state = history[-1]
    check_plain(state)
    saved_state, saved_params = copy.deepcopy(state), copy.deepcopy(params)
    grads, acts, outs = layer_data(params, 9)
    saved_grads = copy.deepcopy(grads)
    extra = {"activations": acts, "output_grads": outs} if name in ("kfac", "mkor") else {}
    first = opt.update(grads, state, params, **extra)
    assert_same(state, saved_state)                      # nothing written into the inputs
    assert_same(params, saved_params)
    assert_same(grads, saved_grads)
    second = opt.update(grads, state, params, **extra)   # so the same call repeats exactly
    assert_same(first, second)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_state_round_trips_through_pickle(name):
    params, history = run_method(name, 3)
    opt = METHODS[name]()
    _, state = history[-1]
    restored = pickle.loads(pickle.dumps(state))
    assert_same(restored, state)
    grads, acts, outs = layer_data(params, 9)
    extra = {"activations": acts, "output_grads": outs} if name in ("kfac", "mkor") else {}
    assert_same(opt.update(grads, restored, params, **extra),
                opt.update(grads, state, params, **extra))


# --- the wrappers against their objects --------------------------------------------

def test_shampoo_equals_one_object_per_parameter():
    params = model()
    leaves, treedef = flatten(params)
    blocks = [Shampoo(p.shape if p.ndim else (1,), eps=1e-6) for p in leaves]
    buffers = [np.zeros_like(p) for p in leaves]
    ours, history = run_method("shampoo", 4)
    for step in range(4):
        grads = flatten(layer_data(params, 1 + step)[0])[0]
        for i, (g, block) in enumerate(zip(grads, blocks)):
            direction = block.update(g.reshape(block.param_shape)).reshape(g.shape)
            buffers[i] = 0.9 * buffers[i] + direction
            leaves[i] = np.asarray(leaves[i] - 0.1 * buffers[i])
        params = unflatten(treedef, leaves)
        updates = flatten(history[step][0])[0]
        assert all(np.array_equal(u, -0.1 * b) for u, b in zip(updates, buffers))
    assert_same(ours, params)


def test_shampoo_tiles_equal_distributed_shampoo():
    params = model()
    leaves, _ = flatten(params)
    shapes = [p.shape if p.ndim else (1,) for p in leaves]
    reference = DistributedShampoo(shapes, comm=SerialComm(), block_size=3, eps=1e-6)
    opt = optim.scale_by_shampoo(block_size=3, eps=1e-6)
    state = opt.init(params)
    for step in range(3):
        grads = layer_data(params, 1 + step)[0]
        directions, state = opt.update(grads, state)
        expected = reference.update([g.reshape(s) for g, s in zip(flatten(grads)[0], shapes)])
        for d, e in zip(flatten(directions)[0], expected):
            assert np.array_equal(d.reshape(e.shape), e)
    assert [len(tiles) for tiles in state["blocks"]] == [4, 2, 2, 1, 1]


def test_soap_equals_one_object_per_parameter():
    params = model()
    leaves, _ = flatten(params)
    blocks = [SOAP(p.shape if p.ndim else (1,), precondition_frequency=2) for p in leaves]
    opt = optim.scale_by_soap(precondition_frequency=2)
    state = opt.init(params)
    for step in range(5):
        grads = layer_data(params, 1 + step)[0]
        directions, state = opt.update(grads, state)
        for d, g, block in zip(flatten(directions)[0], flatten(grads)[0], blocks):
            assert np.array_equal(d, block.update(g.reshape(block.param_shape)).reshape(g.shape))


@pytest.mark.parametrize("per_parameter", [False, True])
def test_mfac_equals_one_window_over_the_flattened_gradient(per_parameter):
    params = model()
    sizes = [p.size for p in flatten(params)[0]]
    window = BlockedMFAC(sizes, 3, 0.1) if per_parameter else MFAC(sum(sizes), 3, 0.1)
    opt = optim.scale_by_mfac(3, 0.1, per_parameter=per_parameter)
    state = opt.init(params)
    for step in range(5):
        grads = layer_data(params, 1 + step)[0]
        directions, state = opt.update(grads, state)
        g = np.concatenate([x.ravel() for x in flatten(grads)[0]])
        window.update(g)
        expected = window.solve(g)
        assert np.array_equal(np.concatenate([d.ravel() for d in flatten(directions)[0]]),
                              expected)
    assert state["mfac"]["count"] == 5


def _joined(W, b, layout):
    W = W.T if layout == "in_out" else W
    return np.concatenate([W, b[:, None]], axis=1)


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_kfac_equals_one_object_per_layer(layout):
    rng = np.random.default_rng(3)
    shape = (5, 4) if layout == "in_out" else (4, 5)
    params = {"w": rng.standard_normal(shape), "b": np.zeros(4), "other": np.ones(2)}
    layer = KFAC(5, 4, damping=1e-2, decay=0.9)
    opt = optim.scale_by_kfac({"fc": optim.DenseLayer("w", "b", layout)}, damping=1e-2,
                              decay=0.9, kl_clip=1e-3, learning_rate=0.5)
    state = opt.init(params)
    for step in range(4):
        a, g = rng.standard_normal((16, 5)), rng.standard_normal((16, 4))
        W = a.T @ g / 16
        grads = {"w": W if layout == "in_out" else W.T, "b": g.mean(axis=0),
                 "other": rng.standard_normal(2)}
        D, state = opt.update(grads, state, activations={"fc": a}, output_grads={"fc": g})
        layer.update(a, g)
        J = _joined(grads["w"], grads["b"], layout)
        E = layer.precondition(J)
        E = E * kl_clip_scale([E], [J], 0.5, 1e-3)
        scale = np.linalg.norm(E)
        # precondition_layers sums in another order than KFAC.precondition: rounding
        assert np.linalg.norm(_joined(D["w"], D["b"], layout) - E) <= 64 * 2.2e-16 * scale
        assert np.array_equal(D["other"], grads["other"])            # not declared: passed on


def test_mkor_equals_one_object_per_layer_with_loss():
    rng = np.random.default_rng(4)
    params = [rng.standard_normal((3, 5)), rng.standard_normal(3)]      # torch layout
    layer = MKOR(5, 3, hybrid=True, hybrid_window=2, decay=0.9)
    opt = optim.scale_by_mkor([optim.DenseLayer(0, 1, "out_in")], hybrid=True,
                              hybrid_window=2, decay=0.9)
    state = opt.init(params)
    for step, loss in enumerate([3.0, 2.0, 2.0, 2.0, 2.0]):
        a, g = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
        grads = [g.T @ a / 8, g.mean(axis=0)]
        D, state = opt.update(grads, state, params, activations=[a], output_grads=[g],
                              loss=loss)
        layer.observe_loss(loss)
        layer.update(a, g)
        E = layer.precondition(np.c_[grads[0], grads[1]])
        assert np.array_equal(np.c_[D[0], D[1]], E)
    assert state["layers"][0]["phase"] == layer.phase == "first"


def test_pieces():
    params = {"w": np.array([1.0, -1.0]), "b": np.array([2.0])}
    grads = {"w": np.array([0.5, 0.5]), "b": np.array([1.0])}
    opt = optim.chain(optim.trace(0.5, nesterov=True),
                      optim.add_decayed_weights(0.1, mask=lambda p: {"w": True, "b": False}),
                      optim.scale_by_learning_rate(lambda count: 1.0 / (count + 1)))
    state = opt.init(params)
    u1, state = opt.update(grads, state, params)
    u2, state = opt.update(grads, state, params)
    # step 1: b = g, nesterov g + 0.5 b = 1.5 g; step 2: b = 1.5 g, out g + 0.75 g = 1.75 g
    assert np.allclose(u1["w"], -(1.5 * 0.5 + 0.1 * params["w"]))
    assert np.allclose(u2["w"], -(1.75 * 0.5 + 0.1 * params["w"]) / 2)
    assert np.allclose(u2["b"], -1.75 / 2)
    assert state[2] == {"count": 2}
    with pytest.raises(ValueError, match="add_decayed_weights needs the parameters"):
        opt.update(grads, state)
    with pytest.raises(ValueError, match="learning_rate must be finite and >= 0"):
        optim.scale_by_learning_rate(float("nan"))
    bad = optim.scale_by_learning_rate(lambda count: -1.0)
    with pytest.raises(ValueError, match=r"learning_rate\(0\) \(the schedule\)"):
        bad.update(grads, bad.init(params))
    with pytest.raises(ValueError, match="kl_clip needs the learning_rate"):
        optim.scale_by_kfac(DENSE_LAYERS, kl_clip=1e-2)
    with pytest.raises(ValueError, match="beta2 must be in"):
        optim.scale_by_shampoo(beta2=2.0)                 # the object's own check, at once


# --- other array libraries ---------------------------------------------------------

def condition(name, state):
    """kappa of the operator the last step solved with, from the NumPy state: M-FAC's
    ``1 + lambda_max(G G' / k) / damping``, K-FAC's ``(lambda_max(A) lambda_max(G) + damping)
    / damping`` over the layers; 1 for the rest."""
    if name.startswith("mfac"):
        window = state[0]["mfac"]
        k = min(window["count"], window["m"])
        top = max(np.linalg.eigvalsh(gram[:k, :k] / k)[-1] for gram in window["gram"])
        return 1.0 + top / window["damping"]
    if name == "kfac":
        return max((np.linalg.eigvalsh(layer["A"])[-1] * np.linalg.eigvalsh(layer["G"])[-1]
                    + layer["damping"]) / layer["damping"] for layer in state[0]["layers"])
    return 1.0


@pytest.mark.parametrize("name", sorted(METHODS))
def test_array_api_strict_equals_numpy(name):
    ours, history = run_method(name, 3, xp=array_api_strict)
    reference, expected = run_method(name, 3)
    if name.startswith(("mfac", "kfac")):
        # The windows' and K-FAC's batched kernels: Numba for NumPy, cext.reference for
        # array_api_strict, summing in other orders: 10 n eps kappa (n entries in the sums,
        # a few such steps chained), kappa of the operator solved with.
        n = sum(leaf.size for leaf in flatten(reference)[0])
        tolerance = 10 * n * np.finfo(np.float64).eps * condition(name, expected[-1][1])
        for (u, _), (e, _) in zip(history, expected):
            for x, y in zip(flatten(to_np(u))[0], flatten(e)[0]):
                assert np.linalg.norm(x - y) <= tolerance * np.linalg.norm(y)
        return
    # array_api_strict wraps NumPy: the same operations, the same rounding
    assert_same(to_np(ours), reference)
    for (u, _), (e, _) in zip(history, expected):
        assert_same(to_np(u), e)


def test_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    params = {k: torch.as_tensor(v) for k, v in {"w": np.ones((3, 2)), "b": np.zeros(2)}.items()}
    opt = optim.shampoo(0.1, momentum=0.9)
    state = opt.init(params)
    updates, state = opt.update({"w": params["w"] * 2, "b": params["b"] + 1}, state, params)
    new = optim.apply_updates(params, updates)
    assert isinstance(new["w"], torch.Tensor)
    reference = optim.shampoo(0.1, momentum=0.9)
    expected, _ = reference.update({"w": np.full((3, 2), 2.0), "b": np.ones(2)},
                                   reference.init({"w": np.ones((3, 2)), "b": np.zeros(2)}))
    assert np.allclose(updates["w"].numpy(), expected["w"], rtol=1e-12)


def test_import_loads_no_jax_or_torch():
    script = ("import sys, curvature, curvature.optim; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'torch')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
