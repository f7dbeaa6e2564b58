"""Bad and extreme input to the curvature objects: a finite result or a clear exception,
never NaN from finite input, never a raw error from deep inside NumPy/LAPACK."""

from __future__ import annotations

import math

import numpy as np
import pytest
from array_api_compat import array_namespace

from curvature import gradient_normalized_newton, polynomial_preconditioner, sherman_morrison_step
from curvature.hutchinson import hutchinson_diagonal, hutchpp_trace
from curvature.kronecker.kfac import KFAC
from curvature.mfac.window import MFAC, BlockedMFAC
from curvature.mfac.static import MFACStatic
from curvature.kronecker.mkor import MKOR
from curvature.shampoo.roots import inverse_root
from curvature.shampoo.shampoo import Shampoo
from curvature.shampoo.soap import SOAP

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow warnings

SCALES = [1e150, 1e-150]


def _finite_or_value_error(fn):
    """Run ``fn``; a ValueError with a message is acceptable, a NaN/Inf result is not."""
    try:
        result = fn()
    except ValueError as exc:
        assert str(exc)
        return None
    assert np.all(np.isfinite(result)), result
    return result


# --- the reported findings ------------------------------------------------

def test_mfac_overflowing_gram_refused_window_unchanged():
    mfac = MFAC(10, m=4, damping=1e-3)
    mfac.update(np.ones(10))
    with pytest.raises(ValueError, match="MFAC: sum\\(g\\*\\*2\\) overflows float64"):
        mfac.update(np.full(10, 1e155))
    assert mfac.size == 1 and np.array_equal(mfac.window, np.ones((1, 10)))
    assert np.all(np.isfinite(mfac.solve(np.ones(10))))


def test_mfac_solve_rescales_when_g_dot_v_overflows():
    # ||g|| ||v|| ~ 4e309 overflows in G v, the answer itself (~v / damping) does not.
    g = np.array([1e153, -1e153, 1e153, 1e153])
    v = np.array([1e156, 1e156, 0.0, -1e156])
    mfac = MFAC(4, m=2, damping=1e-3)
    mfac.update(g)
    x = mfac.solve(v)
    assert np.all(np.isfinite(x))
    # Same answer as the scaled problem: F^{-1} is linear (power-of-two scaling is exact).
    np.testing.assert_allclose(x, mfac.solve(v / 2.0**520) * 2.0**520, rtol=1e-12)


@pytest.mark.parametrize("mode", ["inverse", "eigen"])
def test_kfac_overflowing_factors_refused(mode):
    rng = np.random.default_rng(0)
    layer = KFAC(3, 2, mode=mode)
    with pytest.raises(ValueError, match="KFAC: the Kronecker factors"):
        layer.update(rng.standard_normal((8, 3)) * 1e200, rng.standard_normal((8, 2)) * 1e200)
    assert layer.factors is None and layer.step == 0


def test_kfac_eigen_failure_named():
    layer = KFAC(2, 2, mode="eigen")
    layer.update(np.ones((4, 2)), np.ones((4, 2)))
    layer._A = np.full_like(layer._A, np.nan)  # as a corrupted state would
    with pytest.raises(ValueError, match="KFAC: the eigendecomposition failed"):
        layer.refresh()


def test_soap_eps_zero_refused():
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        SOAP((2, 2), eps=0)
    # eps > 0: a zero gradient gives a zero direction, not NaN.
    assert np.array_equal(SOAP((2, 2)).update(np.zeros((2, 2))), np.zeros((2, 2)))


@pytest.mark.parametrize("cls, kwargs, message", [
    (SOAP, {"eps": -1}, "eps"),
    (SOAP, {"eps": math.nan}, "eps"),
    (SOAP, {"eps": math.inf}, "eps"),
    (SOAP, {"max_dim": -5}, "max_dim"),
    (SOAP, {"max_dim": 0}, "max_dim"),
    (Shampoo, {"root_method": "nope"}, "root_method"),
    (Shampoo, {"eps": math.nan}, "eps"),
    (Shampoo, {"eps": -1.0}, "eps"),
    (Shampoo, {"eps": math.inf}, "eps"),
])
def test_invalid_settings_raise_at_construction(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls((3, 2), **kwargs)


@pytest.mark.parametrize("make, push", [
    (lambda b: MFAC(3, 2, 1e-3, xp=b.xp), lambda o, x: o.update(x)),
    (lambda b: MFAC(3, 2, 1e-3, xp=b.xp), lambda o, x: o.solve(x)),
    (lambda b: MFAC(3, 2, 1e-3, xp=b.xp), lambda o, x: o.matvec(x)),
    (lambda b: BlockedMFAC([2, 1], 2, 1e-3, xp=b.xp), lambda o, x: o.update(x)),
    (lambda b: BlockedMFAC([2, 1], 2, 1e-3, xp=b.xp), lambda o, x: o.solve(x)),
    (lambda b: SOAP((3,)), lambda o, x: o.update(x)),
    (lambda b: Shampoo((3,)), lambda o, x: o.update(x)),
    (lambda b: MFACStatic(b.asarray(np.ones((2, 3))), 0.1), lambda o, x: o.solve(x)),
], ids=["mfac-update", "mfac-solve", "mfac-matvec", "blocked-update", "blocked-solve",
        "soap", "shampoo", "static-solve"])
def test_complex_input_refused(make, push, backend):
    target = make(backend)
    with pytest.raises(TypeError, match="complex"):
        push(target, backend.asarray(np.array([1.0 + 1.0j, 2.0, 3.0])))


# --- NaN input and wrong shapes: the same exception on every backend ---
#
# name: (make(backend) -> object or None, push(object, x, backend), a valid x's shape,
#        a wrong shape, (type, match) for the wrong shape). The NaN case puts one NaN
# into a valid x (at flat index 1: off the diagonal of a matrix) and expects a
# ValueError naming NaN.

def _update(obj, x, backend):
    return obj.update(x)


def _update_layer(obj, x, backend):
    return obj.update(x, backend.asarray(np.ones((x.shape[0], 2))))


BAD_INPUT = {
    "MFAC.update": (lambda b: MFAC(3, 2, 1e-3, xp=b.xp), _update, (3,), (4,),
                    (ValueError, r"g must have shape \(3,\)")),
    "BlockedMFAC.update": (lambda b: BlockedMFAC([2, 1], 2, 1e-3, xp=b.xp), _update, (3,),
                           (3, 1), (ValueError, r"g must have shape \(3,\)")),
    "MFACStatic": (lambda b: None, lambda o, x, b: MFACStatic(x, 0.1), (2, 3), (6,),
                   (ValueError, "2-D")),
    "KFAC.update": (lambda b: KFAC(3, 2), _update_layer, (4, 3), (4, 4),
                    (ValueError, r"a must have shape \(batch, 3\)")),
    "MKOR.update": (lambda b: MKOR(3, 2), _update_layer, (4, 3), (4, 4),
                    (ValueError, r"a must have shape \(batch, 3\)")),
    "Shampoo.update": (lambda b: Shampoo((2, 3)), _update, (2, 3), (3, 2),
                       (ValueError, r"gradient shape \(3, 2\) != \(2, 3\)")),
    "SOAP.update": (lambda b: SOAP((2, 3)), _update, (2, 3), (3, 2),
                    (ValueError, r"gradient shape \(3, 2\) != \(2, 3\)")),
    "inverse_root": (lambda b: None, lambda o, x, b: inverse_root(x, 2), (3, 3), (3, 4),
                     (ValueError, r"A must have shape \(\.\.\., n, n\)")),
    "sherman_morrison_step": (lambda b: None,
                              lambda o, x, b: sherman_morrison_step(b.asarray(np.eye(3)), x, 0.5),
                              (3,), (4,), (ValueError, r"v must have shape \(3,\)")),
    "polynomial_preconditioner": (lambda b: None,
                                  lambda o, x, b: polynomial_preconditioner(x, 1), (3, 3), (3, 4),
                                  (ValueError, "square")),
}


def _valid(shape):
    """A finite, well-posed input of ``shape``: the identity for square matrices."""
    if len(shape) == 2 and shape[0] == shape[1]:
        return np.eye(shape[0])
    return np.arange(1.0, 1.0 + math.prod(shape)).reshape(shape) / math.prod(shape)


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_nan_input_refused_on_every_backend(name, backend):
    make, push, shape, _, _ = BAD_INPUT[name]
    x = _valid(shape)
    x.flat[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        push(make(backend), backend.asarray(x), backend)


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_wrong_shape_refused_on_every_backend(name, backend):
    make, push, _, wrong, (error, match) = BAD_INPUT[name]
    with pytest.raises(error, match=match):
        push(make(backend), backend.asarray(np.ones(wrong)), backend)


def test_mfac_static_complex_gradients_refused():
    with pytest.raises(TypeError, match="complex"):
        MFACStatic(np.ones((2, 3), dtype=complex), 0.1)


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("hybrid", [True, False])
def test_mkor_non_finite_loss_refused(loss, hybrid):
    layer = MKOR(3, 2, hybrid=hybrid)
    with pytest.raises(ValueError, match="non-finite loss"):
        layer.observe_loss(loss)
    assert layer.phase != "first" or not hybrid


def test_mkor_non_numeric_loss_refused():
    with pytest.raises(TypeError, match="loss"):
        MKOR(3, 2, hybrid=True).observe_loss(None)


def _nan_hvp(v):
    return array_namespace(v).full_like(v, math.nan)


def test_hutchinson_nan_hvp_named(backend):
    with pytest.raises(ValueError, match="hvp \\(_nan_hvp\\) returned NaN"):
        hutchinson_diagonal(_nan_hvp, 4, samples=2, seed=0, xp=backend.xp)


def test_hutchpp_nan_matvec_named(backend):
    with pytest.raises(ValueError, match="matvec \\(_nan_hvp\\) returned NaN"):
        hutchpp_trace(_nan_hvp, 6, samples=6, seed=0, xp=backend.xp)


@pytest.mark.parametrize("i, j, name", [(7, 0, "i=7"), (0, 5, "j=5"), (-6, 0, "i=-6")])
def test_mfac_static_index_out_of_range(i, j, name):
    static = MFACStatic(np.ones((2, 5)), 0.1)
    with pytest.raises(IndexError, match=f"{name} is out of range .* valid indices are -5..4"):
        static.inverse_entry(i, j)


def test_mfac_static_index_type():
    static = MFACStatic(np.ones((2, 5)), 0.1)
    with pytest.raises(TypeError, match="i must be an int"):
        static.inverse_entry(1.5, 0)
    with pytest.raises(IndexError, match="i=9"):
        static.inverse_column(9)


def test_mfac_static_overflowing_gram_refused():
    with pytest.raises(ValueError, match="MFACStatic: sum\\(G\\*\\*2\\) overflows"):
        MFACStatic(np.full((2, 4), 1e160), 0.1)


def test_inverse_root_float16_refused():
    # Refused rather than computed in float32: float16 has no eigh, and its 3 digits
    # cannot meet the root's residual threshold.
    with pytest.raises(TypeError, match="float32 or float64"):
        inverse_root(np.eye(3, dtype=np.float16) * 4, 2)


@pytest.mark.parametrize("scale", [1e200, 1e155])
def test_soap_overflowing_gradient_named(scale):
    opt = SOAP((3, 2))
    with pytest.raises(ValueError, match="SOAP: sum\\(grad\\*\\*2\\) overflows"):
        opt.update(np.full((3, 2), scale))
    assert opt.step == 0 and opt.factors is None


def test_soap_linalg_failure_named():
    opt = SOAP((3, 2), precondition_frequency=2)
    opt.update(np.ones((3, 2)))
    opt.bases[0] = np.full_like(opt.bases[0], np.nan)   # as a corrupted state would
    opt.factors[0] = np.full_like(opt.factors[0], np.nan)
    try:
        opt.update(np.ones((3, 2)))
    except ValueError as exc:   # LAPACK may or may not notice the NaN in QR
        assert "SOAP" in str(exc)


def test_shampoo_summed_factors_overflow_refused():
    opt = Shampoo((2, 2), grafting=None)
    big = np.full((2, 2), 4.7e153)    # each term finite (4.4e307); their sum overflows
    # Either the roots of the near-overflowing factors fail max_failures times
    # (RootError) or the sum itself overflows first: a named ValueError, finite state.
    with pytest.raises(ValueError, match="Shampoo"):
        for _ in range(10):
            opt.update(big)
    assert all(np.all(np.isfinite(F)) for F in opt.factors)


@pytest.mark.parametrize("hessian, message", [
    (np.full((2, 2), np.nan), "NaN/Inf"),
    (np.full((2, 2), 1e308), "eigendecomposition"),
], ids=["nan", "overflow"])
def test_gradient_normalized_newton_bad_hessian_is_a_reason(hessian, message):
    result = gradient_normalized_newton(lambda x: float(x @ x), lambda x: 2 * x,
                                        lambda x: hessian, np.array([1.0, 2.0]))
    assert result.reason == "DIVERGED_NANORINF"
    assert message in result.message


# --- extreme but finite input: every object ----------------------------------

def _mfac_like(make, scale, rng):
    obj = make()
    for _ in range(3):
        obj.update(rng.standard_normal(12) * scale)
    v = rng.standard_normal(12) * scale
    return np.concatenate([obj.solve(v), obj.matvec(v), obj.solve(np.ones(12))])


def _layer(make, scale, rng):
    layer = make()
    for _ in range(3):
        layer.update(rng.standard_normal((8, 3)) * scale, rng.standard_normal((8, 2)) * scale)
    V = rng.standard_normal((2, 4)) * scale
    v = np.reshape(V.T, (-1,))
    return np.concatenate([layer.precondition(V).ravel(), layer.solve(v), layer.matvec(v)])


def _tensor(make, scale, rng):
    opt = make()
    directions = [opt.update(rng.standard_normal((3, 4)) * scale) for _ in range(6)]
    v = rng.standard_normal(12) * scale
    return np.concatenate([directions[-1].ravel(), opt.solve(v), opt.matvec(v)])


OBJECTS = {
    "mfac": (_mfac_like, lambda: MFAC(12, 2, 1e-3)),
    "mfac-float32": (_mfac_like, lambda: MFAC(12, 2, 1e-3, dtype="float32")),
    "blocked-mfac": (_mfac_like, lambda: BlockedMFAC([5, 7], 2, 1e-3)),
    "kfac-eigen": (_layer, lambda: KFAC(3, 2, mode="eigen")),
    "kfac-inverse": (_layer, lambda: KFAC(3, 2, mode="inverse", pi_heuristic=True)),
    "mkor-paper": (_layer, lambda: MKOR(3, 2, form="paper")),
    "mkor-code": (_layer, lambda: MKOR(3, 2, form="code")),
    "shampoo": (_tensor, lambda: Shampoo((3, 4))),
    "shampoo-ema": (_tensor, lambda: Shampoo((3, 4), beta2=0.9)),
    "soap": (_tensor, lambda: SOAP((3, 4), precondition_frequency=2)),
}


@pytest.mark.parametrize("scale", SCALES + [1e155, 1e200, 1e-200])
@pytest.mark.parametrize("name", list(OBJECTS))
def test_extreme_finite_input_never_nan(name, scale):
    drive, make = OBJECTS[name]
    _finite_or_value_error(lambda: drive(make, scale, np.random.default_rng(0)))


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", ["mfac", "blocked-mfac", "kfac-eigen", "kfac-inverse",
                                  "mkor-paper", "shampoo", "soap"])
def test_extreme_scales_give_finite_directions(name, scale):
    """At 1e150 and 1e-150 the statistics (squares up to 1e301 and down to 1e-301) are
    representable: the inverse-curvature directions come back finite, no error."""
    drive, make = OBJECTS[name]
    obj = make()
    rng = np.random.default_rng(1)
    if drive is _mfac_like:
        for _ in range(3):
            obj.update(rng.standard_normal(12) * scale)
        result = obj.solve(rng.standard_normal(12) * scale)
    elif drive is _layer:
        for _ in range(3):
            obj.update(rng.standard_normal((8, 3)) * scale, rng.standard_normal((8, 2)) * scale)
        result = obj.precondition(rng.standard_normal((2, 4)) * scale)
    else:
        result = [obj.update(rng.standard_normal((3, 4)) * scale) for _ in range(6)][-1]
    assert np.all(np.isfinite(result))


# --- the NaN/Inf contract of solve, matvec and precondition ---------------

def _warmed(kind, **options):
    """A curvature object after a few updates, and the length of the vectors it takes."""
    rng = np.random.default_rng(3)
    if kind in ("MFAC", "BlockedMFAC"):
        obj = MFAC(12, 3, 0.1, **options) if kind == "MFAC" else BlockedMFAC([8, 4], 3, 0.1,
                                                                            **options)
        for g in rng.standard_normal((4, 12)):
            obj.update(g)
        return obj, 12
    if kind == "MFACStatic":
        return MFACStatic(rng.standard_normal((3, 12)), 0.1, **options), 12
    if kind in ("Shampoo", "SOAP"):
        obj = Shampoo((3, 4), **options) if kind == "Shampoo" else SOAP((3, 4), **options)
        for _ in range(5):
            obj.update(rng.standard_normal((3, 4)))
        return obj, 12
    layer = KFAC(3, 2, **options) if kind == "KFAC" else MKOR(3, 2, **options)
    for _ in range(3):
        layer.update(rng.standard_normal((8, 3)), rng.standard_normal((8, 2)))
    return layer, 8


CONTRACT = [(kind, method) for kind in ("MFAC", "BlockedMFAC", "MFACStatic", "Shampoo", "SOAP",
                                        "KFAC", "MKOR")
            for method in ("solve", "matvec")] + [("KFAC", "precondition"),
                                                  ("MKOR", "precondition")]


def _call(obj, method, v):
    if method == "precondition":       # the (out, in + 1) matrix form of the layers
        return obj.precondition(np.reshape(v, (obj.rows, obj.cols)))
    return getattr(obj, method)(v)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind, method", CONTRACT)
def test_non_finite_vector_is_refused_by_name(kind, method, bad):
    obj, dim = _warmed(kind)
    v = np.random.default_rng(0).standard_normal(dim)
    v[[1, 5]] = bad
    before = v.copy()
    name = "grad_W" if method == "precondition" else "v"
    with pytest.raises(ValueError, match=rf"^{kind}\.{method}: {name} contains NaN or Inf "
                                         rf"\(2 of {dim} entries\); .*check_finite=False"):
        _call(obj, method, v)
    np.testing.assert_array_equal(v, before)


@pytest.mark.parametrize("kind", ["MFAC", "Shampoo", "SOAP", "KFAC", "MKOR"])
def test_non_finite_vector_is_refused_before_the_first_update(kind):
    # the identity operator of a fresh object is held to the same contract
    obj = {"MFAC": lambda: MFAC(6, 2, 0.1), "Shampoo": lambda: Shampoo((2, 3)),
           "SOAP": lambda: SOAP((2, 3)), "KFAC": lambda: KFAC(2, 2),
           "MKOR": lambda: MKOR(2, 2)}[kind]()
    with pytest.raises(ValueError, match=rf"^{kind}\.solve: v contains NaN"):
        obj.solve(np.array([1.0, np.nan, 0.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("kind, method", CONTRACT)
def test_unchecked_objects_let_nan_through_and_checking_changes_no_result(kind, method):
    checked, dim = _warmed(kind)
    unchecked, _ = _warmed(kind, check_finite=False)
    always, _ = _warmed(kind, check_finite=True)
    v = np.random.default_rng(0).standard_normal(dim)
    expected = _call(unchecked, method, v)
    # the check returns the very result of the unchecked call (no rounding of its own)
    np.testing.assert_array_equal(_call(checked, method, v), expected)
    np.testing.assert_array_equal(_call(always, method, v), expected)
    v[2] = np.nan
    assert np.isnan(_call(unchecked, method, v)).any()


def test_device_arrays_are_not_checked_by_default(monkeypatch):
    """None checks what Python can read without waiting on a device; a device array passes
    unchecked (NaN in, NaN out), and check_finite=True checks it anyway."""
    import curvature._checks as checks

    monkeypatch.setattr(checks, "on_host", lambda x: False)   # as for a CuPy array
    obj, dim = _warmed("MFAC")
    v = np.full(dim, np.nan)
    assert np.isnan(obj.solve(v)).all()
    obj.check_finite = True
    with pytest.raises(ValueError, match="MFAC.solve: v contains NaN"):
        obj.solve(v)


def test_on_host_tells_host_from_device_arrays():
    from curvature._checks import on_host

    assert on_host(np.zeros(2))
    array_api_strict = pytest.importorskip("array_api_strict")
    assert on_host(array_api_strict.zeros(2))
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    assert on_host(jnp.zeros(2)) == (jax.default_backend() == "cpu")
    traced = []
    jax.jit(lambda x: traced.append(on_host(x)) or x)(jnp.zeros(2))
    assert traced == [False]                 # inside jit there is no value to read


def test_check_finite_switch_is_checked():
    with pytest.raises(TypeError, match="check_finite must be True, False or None"):
        MFAC(4, 2, 0.1, check_finite="yes")


def test_all_finite_settles_an_overflowing_sum_exactly():
    from curvature._checks import all_finite

    xp = array_namespace(np.zeros(1))
    big = np.full(4, np.finfo(np.float64).max)      # the sum overflows, every entry is finite
    assert all_finite(xp, big)
    assert not all_finite(xp, np.array([1.0, np.inf, -np.inf]))
    assert not all_finite(xp, np.array([np.nan], dtype=np.float32))


def test_overflowing_result_from_finite_input_is_refused():
    # An empty window is damping * I: v / damping overflows where v is finite.
    mfac = MFAC(3, 2, 1e-300)
    with pytest.raises(ValueError, match="MFAC.solve: the result overflows float64"):
        mfac.solve(np.array([1e10, 1.0, 0.0]))
    assert np.isinf(MFAC(3, 2, 1e-300, check_finite=False).solve(np.array([1e10, 1.0, 0.0]))).any()


# --- inverse_root's domain --------------------------------------------------

@pytest.mark.parametrize("method", ["auto", "eigh", "newton"])
def test_inverse_root_refuses_a_visibly_non_symmetric_matrix(method):
    with pytest.raises(ValueError, match=r"^A is not symmetric: .* = 10 for a random x"):
        inverse_root(np.array([[1.0, 10.0], [-10.0, 1.0]]), 2, method=method)
    stack = np.stack([np.eye(2), np.array([[1.0, 10.0], [-10.0, 1.0]])])
    with pytest.raises(ValueError, match=r"A is not symmetric \(block 1 of the flattened stack\)"):
        inverse_root(stack, 2, method=method)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inverse_root_takes_rounding_level_asymmetry(dtype):
    """A computed G G' (BLAS gemm, not syrk) is symmetric to rounding only: it is rooted,
    as the root of its symmetric part (reference: float64 eigh of that part)."""
    G = np.random.default_rng(0).standard_normal((40, 60)).astype(dtype)
    A = G @ G.T
    A = A + (np.triu(A, 1) * 8 * np.finfo(dtype).eps)          # a few ulps off symmetric
    S = ((A.astype(np.float64) + A.T.astype(np.float64)) / 2)
    lam, Q = np.linalg.eigh(S)
    expected = (Q * lam ** -0.25) @ Q.T
    X = inverse_root(A, 4, method="eigh")
    tol = 100 * np.finfo(dtype).eps * lam[-1] / lam[0]
    assert np.linalg.norm(X - expected) <= tol * np.linalg.norm(expected)


@pytest.mark.parametrize("shape", [(0, 0), (0, 3, 3), (2, 0, 0)])
@pytest.mark.parametrize("method", ["auto", "eigh", "newton"])
def test_inverse_root_of_an_empty_stack_is_empty(shape, method):
    X, info = inverse_root(np.zeros(shape), 2, method=method, return_info=True)
    assert X.shape == shape and X.dtype == np.float64
    assert info.converged and info.residual == 0.0
    assert inverse_root(np.zeros(shape, dtype=np.float32), 4).dtype == np.float32


# --- refusals in the caller's words -------------------------------------------

@pytest.mark.parametrize("kind", ["Shampoo", "SOAP"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool])
def test_integer_gradient_is_refused_with_the_fix(kind, dtype):
    obj = Shampoo((3, 2)) if kind == "Shampoo" else SOAP((3, 2))
    with pytest.raises(TypeError, match=rf"^{kind}: grad has dtype {np.dtype(dtype)}; it must be "
                                        r"a real floating array .*xp\.astype\(grad, xp\.float64\)"):
        obj.update(np.ones((3, 2), dtype=dtype))
    assert obj.step == 0 and obj.dtype is None          # nothing was taken in


def test_distributed_shampoo_refuses_integer_gradients_before_any_block_updates():
    from curvature.shampoo.distributed import DistributedShampoo
    from linsolve.mpi import SerialComm

    opt = DistributedShampoo([(3, 2), (4,)], comm=SerialComm(), grafting=None)
    with pytest.raises(TypeError, match=r"grads\[1\] has dtype int64; .*numpy\.asarray"):
        opt.update([np.ones((3, 2)), np.arange(4)])
    assert all(block.step == 0 for block in opt.blocks.values())
    with pytest.raises(TypeError, match="grads must be a list or tuple of arrays"):
        opt.update(np.ones((3, 2)))


@pytest.mark.parametrize("kind", ["Shampoo", "SOAP"])
def test_list_gradient_is_refused_with_the_fix(kind):
    obj = Shampoo((2, 2)) if kind == "Shampoo" else SOAP((2, 2))
    with pytest.raises(TypeError, match=r"^grad must be an array, got list: convert it with "
                                        r"numpy\.asarray\(grad"):
        obj.update([[1.0, 2.0], [3.0, 4.0]])
    obj.update(np.eye(2))
    with pytest.raises(TypeError, match=rf"^v must be an array of {kind}'s library \(numpy\), "
                                        "got list"):
        obj.solve([1.0, 2.0, 3.0, 4.0])


def test_mfac_memmap_in_a_missing_folder_names_the_argument(tmp_path):
    missing = tmp_path / "no" / "such" / "window.dat"
    with pytest.raises(ValueError, match=r"^memmap='.*window\.dat': the folder '.*such' does not "
                                         r"exist; .*os\.makedirs"):
        MFAC(8, 2, 0.1, memmap=missing)
    assert not (tmp_path / "no").exists()
    with pytest.raises(ValueError, match="is a folder; pass the path of a file in it"):
        MFAC(8, 2, 0.1, memmap=tmp_path)
    with pytest.raises(TypeError, match="memmap must be a path"):
        MFAC(8, 2, 0.1, memmap=3.5)
    # an existing folder works, and the window lives in the file
    mfac = MFAC(8, 2, 0.1, memmap=tmp_path / "window.dat")
    g = np.arange(8.0)
    mfac.update(g)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "window.dat")[:8], g)
