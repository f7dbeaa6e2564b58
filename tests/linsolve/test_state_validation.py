"""Every ``load_state_dict`` checks the whole state first (``linsolve.validation.state``).

A bad state raises ``ValueError``/``TypeError`` naming the key and leaves the
object bit-identical (its ``state_dict()``, RNG included, and its next
update); a good one loads and round-trips exactly.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curvature import KFAC, MFAC, MKOR, SOAP, BlockedMFAC, DistributedShampoo, Shampoo
from linsolve.mpi import SerialComm
from linsolve import OmegaBandit, OmegaContextualBandit

IN, OUT = 3, 2


# --- the stateful objects, each trained a little, with one unit of work ---------------
def _mfac(cls, *args):
    obj = cls(*args)
    dim = obj.shape[0]
    for g in np.random.default_rng(1).standard_normal((3, dim)):
        obj.update(g)

    def work(o):
        o.update(np.linspace(-1.0, 1.0, dim))
        return o.solve(np.ones(dim))
    return obj, work


def _layer(cls, **kwargs):
    obj = cls(IN, OUT, **kwargs)
    rng = np.random.default_rng(2)
    for _ in range(3):
        obj.update(rng.standard_normal((8, IN)), rng.standard_normal((8, OUT)))

    def work(o):
        o.update(np.ones((4, IN)) + np.arange(IN), np.ones((4, OUT)) - np.arange(OUT))
        return o.solve(np.linspace(1.0, 2.0, OUT * (IN + 1)))
    return obj, work


def _tensor(cls, shape, **kwargs):
    obj = cls(shape, **kwargs)
    rng = np.random.default_rng(3)
    for _ in range(3):
        obj.update(rng.standard_normal(shape))
    return obj, lambda o: o.update(np.linspace(-1.0, 1.0, math.prod(shape)).reshape(shape))


def _distributed():
    shapes = [(3, 2), (4,)]
    obj = DistributedShampoo(shapes, comm=SerialComm(), eps=1e-8)
    rng = np.random.default_rng(4)
    for _ in range(2):
        obj.update([rng.standard_normal(s) for s in shapes])
    return obj, lambda o: o.update([np.ones(s) for s in shapes])


def _tuner(tuner, contexts):
    for t, c in enumerate(contexts):
        arm, _ = tuner.choose(c)
        tuner.update(10.0 + 3 * arm + t % 4)
    c = contexts[0]

    def work(o):
        arm, omega = o.choose(c)
        o.update(7.0 + arm)
        return arm, omega, o.probabilities(c)
    return tuner, work


CTX = list(np.linspace(0.0, 1.0, 12))
# name -> (factory, path of an array entry, path of a counter)
CASES = {
    "MFAC": (lambda: _mfac(MFAC, 6, 4, 0.1), ("window",), ("count",)),
    "BlockedMFAC": (lambda: _mfac(BlockedMFAC, (2, 3), 2, 0.5), ("gram",), ("count",)),
    "KFAC-eigen": (lambda: _layer(KFAC, damping=1e-2), ("A",), ("step",)),
    "KFAC-inverse": (lambda: _layer(KFAC, mode="inverse"), ("frozen_G",), ("step",)),
    "MKOR": (lambda: _layer(MKOR), ("J_A",), ("refused",)),
    "MKOR-code": (lambda: _layer(MKOR, form="code"), ("J_G",), ("step",)),
    "Shampoo": (lambda: _tensor(Shampoo, (3, 2), eps=1e-8), ("factors", 0), ("step",)),
    "Shampoo-diagonal": (lambda: _tensor(Shampoo, (4, 2), max_dim=3, grafting="adagrad"),
                         ("roots", 0), ("failures",)),
    "SOAP": (lambda: _tensor(SOAP, (3, 2), precondition_frequency=2), ("exp_avg_sq",),
             ("step",)),
    "SOAP-1d": (lambda: _tensor(SOAP, (5,)), ("exp_avg",), ("step",)),
    "DistributedShampoo": (_distributed, ("blocks", 0, "factors", 0), ("blocks", 1, "step")),
    "OmegaBandit": (lambda: _tuner(OmegaBandit([1.2, 1.5, 1.8], seed=5), [None] * 12),
                    ("state", "importance_sums"), ("state", "t")),
    "OmegaContextualBandit": (lambda: _tuner(OmegaContextualBandit(
        (0.0, 1.0), [1.2, 1.8], n_bins=3, seed=6), CTX), ("state", 1, "importance_sums"),
        ("state", 2, "t")),
    "ChebCB": (lambda: _tuner(OmegaContextualBandit(
        (0.0, 1.0), [1.2, 1.5, 1.8], method="chebcb", degree=2, seed=7), CTX),
        ("state", "gram"), ("state", "t")),
}
NAMES = list(CASES)


# --- helpers ----------------------------------------------------------------------
def same(a, b) -> bool:
    """Exact equality of states: arrays by value, dtype and shape; lists = tuples."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
                and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b)))
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    equal = a == b  # NumPy scalars compare with Python numbers by value
    return isinstance(equal, (bool, np.bool_)) and bool(equal)


def get(state, path):
    for key in path:
        state = state[key]
    return state


def put(state, path, value):
    """A deep copy of ``state`` with the entry at ``path`` replaced (or deleted for DROP)."""
    state = copy.deepcopy(state)
    parent = get(state, path[:-1])
    if value is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return state


DROP = object()


def last_key(path):
    return [k for k in path if isinstance(k, str)][-1]


def as_array(value):
    return value if isinstance(value, np.ndarray) else np.asarray(value)


def like(old, array):
    """``array`` in the form of ``old``: an ndarray, or nested lists (JSON states)."""
    return array if isinstance(old, np.ndarray) else array.tolist()


def expect_refused(factory, obj, work, bad, *, names=None, error=(ValueError, TypeError)):
    twin = factory()[0]  # an untouched twin (objects hold their array module: no deepcopy)
    before = obj.state_dict()
    with pytest.raises(error) as info:
        obj.load_state_dict(bad)
    if names is not None:
        assert names in str(info.value), str(info.value)
    assert same(obj.state_dict(), before)
    assert same(work(obj), work(twin))
    return info.value


# --- every kind of bad state, for every class -------------------------------------
def _bad_states(name):
    """(kind, mutate(state) -> bad state, text the message must contain, error)."""
    _, array_path, counter_path = CASES[name]
    key = last_key(array_path)
    drop_at = array_path[:array_path.index(key) + 1]

    def reshape(state):
        a = as_array(get(state, array_path))
        return put(state, array_path, like(get(state, array_path),
                                          np.zeros(a.shape[:-1] + (a.shape[-1] + 1,))))

    def retype(dtype):
        def mutate(state):
            a = as_array(get(state, array_path))
            if isinstance(get(state, array_path), list):  # JSON: lists of non-reals
                return put(state, array_path, np.full(a.shape, None if dtype is object
                                                      else 1j).tolist())
            return put(state, array_path, a.astype(dtype))
        return mutate

    def nan(state):
        a = np.array(as_array(get(state, array_path)), dtype=float)
        a.reshape(-1)[0] = np.nan
        return put(state, array_path, like(get(state, array_path), a))

    other = NAMES[(NAMES.index(name) + 1) % len(NAMES)]
    kinds = [
        ("none", lambda s: None, "mapping", TypeError),
        ("list", lambda s: [s], "mapping", TypeError),
        ("missing-key", lambda s: put(s, drop_at, DROP), repr(key), ValueError),
        ("unknown-key", lambda s: {**s, "bogus": 1}, "'bogus'", ValueError),
        ("wrong-shape", reshape, repr(key), ValueError),
        ("complex", retype(np.complex128), repr(key), TypeError),
        ("object", retype(object), repr(key), TypeError),
        ("nan", nan, repr(key), ValueError),
        ("negative-counter", lambda s: put(s, counter_path, -1), repr(last_key(counter_path)),
         ValueError),
        ("float-counter", lambda s: put(s, counter_path, 2.0), repr(last_key(counter_path)),
         TypeError),
        ("other-class", lambda s: CASES[other][0]()[0].state_dict(), "state", ValueError),
    ]
    if name.startswith("Omega") or name == "ChebCB":
        kinds += [
            ("history-arm", lambda s: put(s, ("history", 0, 1), 99), "'history'", ValueError),
            ("history-nan-cost", lambda s: put(s, ("history", 1, 3), float("nan")),
             "'history'", ValueError),
            ("pending-arm", lambda s: put(s, ("pending",), [99, s["history"][0][0], 0.5]),
             "'pending'", ValueError),
            ("rng", lambda s: put(s, ("rng", "state"), {"state": "garbage"}), "'rng'",
             ValueError),
            ("rng-name", lambda s: put(s, ("rng", "bit_generator"), "default_rng"),
             "bit_generator", ValueError),
            ("config", lambda s: put(s, ("config", "omegas"), [1.1]), "configuration",
             ValueError),
        ]
    return kinds


BAD = [(name, kind) for name in NAMES for kind, *_ in _bad_states(name)]


@pytest.mark.parametrize(("name", "kind"), BAD, ids=[f"{n}-{k}" for n, k in BAD])
def test_bad_state_raises_naming_the_key_and_changes_nothing(name, kind):
    factory = CASES[name][0]
    obj, work = factory()
    mutate, text, error = next((m, t, e) for k, m, t, e in _bad_states(name) if k == kind)
    bad = mutate(obj.state_dict())
    exc = expect_refused(factory, obj, work, bad, names=text, error=(ValueError, TypeError))
    if kind in ("none", "list"):
        assert isinstance(exc, error)


@pytest.mark.parametrize("name", NAMES)
def test_valid_state_round_trips_exactly(name):
    obj, work = CASES[name][0]()
    state = obj.state_dict()
    fresh = CASES[name][0]()[0]
    work(fresh)  # moved on: the load must bring it back
    fresh.load_state_dict(state)
    assert same(fresh.state_dict(), state)
    assert same(work(fresh), work(obj))


def test_kfac_failed_inversion_leaves_the_layer_unchanged():
    """A state that passes the checks but whose inverse cannot be formed (a singular
    damped factor) is rolled back, not half-loaded."""
    factory = CASES["KFAC-inverse"][0]
    obj, work = factory()
    state = obj.state_dict()
    damped = -math.sqrt(state["damping"]) * np.eye(OUT)  # G + sqrt(damping) I = 0
    expect_refused(factory, obj, work, {**state, "frozen_G": damped})


# --- one property test: random mutations of a valid state -------------------------
def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_mutations_are_refused_unchanged_or_round_trip(data):
    name = data.draw(st.sampled_from(NAMES), label="class")
    obj = CASES[name][0]()[0]
    state = obj.state_dict()
    paths = list(_paths(state))
    path = data.draw(st.sampled_from(paths), label="path")
    target = get(state, path)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    try:  # the entry's shape, when it is an array or a regular list of numbers
        shape = tuple(np.shape(target)) if isinstance(target, (np.ndarray, list)) else ()
    except (ValueError, TypeError):
        shape = ()
    kind = data.draw(st.sampled_from(["drop", "add", "none", "nan", "scalar", "array",
                                      "same-shape", "perturb-shape", "list"]), label="kind")
    if kind == "drop":
        if not path or not isinstance(get(state, path[:-1]), dict):
            return
        bad = put(state, path, DROP)
    elif kind == "add":
        if not isinstance(target, dict):
            return
        bad = put(state, path, {**target, "extra": 0}) if path else {**state, "extra": 0}
    else:
        values = {
            "none": None,
            "nan": float("nan"),
            "scalar": data.draw(st.sampled_from([-1, 0, 1, 3, 2.5, -0.5, True, "x", 10**6])),
            "array": rng.standard_normal(rng.integers(1, 4, size=rng.integers(0, 3))),
            "same-shape": rng.standard_normal(shape) * data.draw(
                st.sampled_from([1.0, np.nan, np.inf])),
            "perturb-shape": rng.standard_normal(tuple(n + 1 for n in shape) or (2,)),
            "list": rng.standard_normal(shape).tolist(),
        }
        value = values[kind]
        if kind == "same-shape" and isinstance(target, np.ndarray):
            value = value.astype(target.dtype)
        bad = put(state, path, value) if path else value
    before = obj.state_dict()
    try:
        obj.load_state_dict(bad)
    except (ValueError, TypeError):
        assert same(obj.state_dict(), before)
    else:
        assert same(obj.state_dict(), bad)
