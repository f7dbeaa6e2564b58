"""Shared pieces of the Kronecker-factored layers (K-FAC, MKOR).

The vec convention, used by both: a dense layer's weight (and its
gradient) is the ``(out, in)`` matrix ``W`` (``in`` counts the bias column
when there is one: ``W_bar = [W, b]``), and ``vec`` is **column-major**:
``vec(W)[j * out + i] = W[i, j]``. Then for one example with input ``a``
and output gradient ``g`` the weight gradient is ``g a'`` and

    vec(g a') = kron(a, g),   vec(g a') vec(g a')' = kron(a a', g g'),

so ``kron(A, G)`` acts on ``vec(grad_W)`` and ``kron(A, G) vec(V) =
vec(G V A)`` (A, G symmetric). In array-API terms, ``vec(V) =
reshape(V', (-1,))`` (C order of the transpose); for a weight stored the
other way round, ``(in, out)`` as in ``h @ W``, the column-major vec of
its transpose is simply its C-order ravel.
"""

from __future__ import annotations

import math

from array_api_compat import array_namespace

from .._checks import namespace_of


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not (math.isfinite(value) and ok):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {value}")
    return value


def check_decay(name: str, value, *, allow_one: bool = False) -> float:
    value = check_positive(name, value, allow_zero=True)
    if not (value < 1.0 or (allow_one and value == 1.0)):
        raise ValueError(f"{name} must be in [0, 1{']' if allow_one else ')'}, got {value}")
    return value


def check_real(xp, x, name: str, *, finite: bool = True):
    """Refuse integer, boolean and complex arrays and (``finite``) NaN/Inf (a clear error,
    not a cast). The operators' ``solve``/``matvec``/``precondition`` pass ``finite=False``
    and test finiteness under their ``check_finite`` contract instead."""
    if not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(f"{name} must be a real floating array (float32 or float64), got dtype "
                        f"{x.dtype}; convert it with xp.astype(x, xp.float64)")
    if finite and not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def check_vector(v, name: str, expected, dim: int, owner: str = "this layer", *,
                 finite: bool = True):
    """``(xp, v)`` for a flattened-weight vector: same library, shape ``(dim,)``, real,
    finite (unless ``finite=False``)."""
    xp = namespace_of(v, name, expected, owner)
    if tuple(v.shape) != (dim,):
        raise ValueError(f"{name} must have shape ({dim},), got {tuple(v.shape)}")
    return xp, check_real(xp, v, name, finite=finite)


def check_batch(xp, x, name: str, features: int):
    """A ``(batch, features)`` array (a 1-D ``(features,)`` is one example)."""
    if x.ndim == 1:
        x = xp.reshape(x, (1, x.shape[0]))
    if x.ndim != 2 or x.shape[1] != features or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (batch, {features}), got {tuple(x.shape)}")
    return check_real(xp, x, name)


def check_layer_batch(a, g, expected, in_features: int, out_features: int):
    """``(xp, a, g)`` for a layer update: one library, ``(batch, features)`` each, same batch."""
    xp = namespace_of(a, "a", expected, "this layer")
    namespace_of(g, "g", xp, "a")
    a = check_batch(xp, a, "a", in_features)
    g = check_batch(xp, g, "g", out_features)
    if a.shape[0] != g.shape[0]:
        raise ValueError(f"a and g must have the same batch size, got {a.shape[0]} "
                         f"and {g.shape[0]}")
    return xp, a, g


def with_ones(xp, a):
    """``[a, 1]``: the ones column that carries the bias (last column)."""
    ones = xp.ones((a.shape[0], 1), dtype=a.dtype)
    return xp.concat([a, ones], axis=1)


def symmetrise(xp, X):
    """``(X + X')/2``: exactly symmetric (the two sums are the same rounded value)."""
    return (X + xp.matrix_transpose(X)) * 0.5


def vec(xp, V):
    """Column-major vec of an ``(out, in)`` matrix."""
    return xp.reshape(xp.matrix_transpose(V), (-1,))


def unvec(xp, v, rows: int, cols: int):
    """Inverse of :func:`vec`: the ``(rows, cols)`` matrix."""
    return xp.matrix_transpose(xp.reshape(v, (cols, rows)))


def frobenius_dot(xp, X, Y) -> float:
    return float(xp.sum(X * Y))


def kl_clip_scale(directions, gradients, lr: float, kl_clip: float) -> float:
    """K-FAC's step scale ``nu = min(1, sqrt(kl_clip / (lr^2 sum_l <D_l, grad_l>)))``.

    KL clipping of Ba, Grosse and Martens ("Distributed second-order
    optimization using Kronecker-factored approximations", ICLR 2017), in the
    form of kfac-pytorch (Martens and Grosse 2015 themselves rescale the step
    through the quadratic model, their section 6.4): the predicted KL change
    of the step ``-lr D`` under the Fisher model is about
    ``lr^2 sum_l <D_l, grad_l>``; the whole step (all layers) is scaled so
    that it is at most ``kl_clip``. A zero sum (zero gradient) gives 1.
    kfac-pytorch divides by ``|sum|``; here a negative sum -- a direction
    that is not a descent direction, which K-FAC's damped SPD operators
    cannot produce -- also gives 1: the KL model says nothing about such a
    step, and the hybrid MKOR fallback handles it instead.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.kronecker.kfac import kl_clip_scale
    >>> D, g = [np.full((2, 2), 10.0)], [np.ones((2, 2))]
    >>> round(kl_clip_scale(D, g, lr=0.1, kl_clip=0.01), 12)   # sqrt(0.01 / (0.01 * 40))
    0.158113883008
    """
    lr = check_positive("lr", lr)
    kl_clip = check_positive("kl_clip", kl_clip)
    total = 0.0
    for D, grad in zip(directions, gradients, strict=True):
        xp = array_namespace(D, grad)
        total += frobenius_dot(xp, D, grad)
    total *= lr * lr
    if not (total > 0.0 and math.isfinite(total)):
        return 1.0
    return min(1.0, math.sqrt(kl_clip / total))
