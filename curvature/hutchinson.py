"""Randomised diagonal and trace estimators from matrix-vector products.

* :func:`hutchinson_diagonal`: Bekas, Kokiopoulou and Saad's diagonal
  estimator ``diag(H) ~ mean_k z_k * (H z_k)`` with Rademacher probes, the
  curvature estimate of ADAHESSIAN (Yao et al., AAAI 2021) and Sophia (Liu
  et al., ICLR 2024). Entry ``i`` has variance ``sum_{j != i} H_ij^2`` per
  probe (a diagonal ``H`` is recovered exactly by one probe).
* :func:`hutchpp_trace`: Hutch++ (Meyer, Musco, Musco and Woodruff, SOSA
  2021), Algorithm 1: a third of the products sketch ``Q = orth(H S)``,
  the trace is ``tr(Q' H Q)`` plus Hutchinson on ``(I - QQ') H (I - QQ')``.

Both take a product ``v -> H v`` on 1-D arrays of the namespace ``xp``
(NumPy by default). Probes are drawn on the host from
``numpy.random.default_rng(seed)``, so a seed gives the same estimate on
every backend.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np

__all__ = ["hutchinson_diagonal", "hutchpp_trace", "rademacher"]


def _check(dim, samples, minimum: int = 1) -> tuple[int, int]:
    for name, value, low in (("dim", dim, 1), ("samples", samples, minimum)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(dim), int(samples)


def _namespace(xp):
    if xp is None:
        from array_api_compat import array_namespace

        return array_namespace(np.empty(0))
    return xp


def rademacher(rng: np.random.Generator, shape) -> np.ndarray:
    """Independent +-1 entries (float64) from ``rng``."""
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


def _apply(matvec, v, xp, dim: int, name: str):
    out = matvec(v)
    if tuple(out.shape) != (dim,):
        raise ValueError(f"{name} returned shape {tuple(out.shape)}, expected ({dim},)")
    # An estimate from a NaN product is NaN: say which callable produced it.
    if not bool(xp.all(xp.isfinite(out))):
        raise ValueError(f"{name} ({getattr(matvec, '__qualname__', type(matvec).__name__)}) "
                         "returned NaN or Inf for a finite +-1 probe; the estimate would be "
                         "NaN: check the Hessian-vector product at this point")
    return out


def hutchinson_diagonal(hvp: Callable[[Any], Any], dim: int, samples: int, seed=None, *,
                        xp=None, dtype=None):
    """Estimate ``diag(H)`` from ``samples`` products ``H z`` with Rademacher ``z``.

    Parameters
    ----------
    hvp : callable
        ``hvp(v) -> H v`` on 1-D arrays of length ``dim``.
    dim : int
        Size of ``H``.
    samples : int
        Number of probes (products), at least 1.
    seed : int or numpy.random.Generator, optional
        Randomness of the probes.
    xp : namespace, optional
        Array namespace of the vectors ``hvp`` takes (default NumPy).
    dtype : dtype of ``xp``, optional
        Probe dtype (default float64).

    Returns
    -------
    array (dim,)
        ``mean_k z_k * (H z_k)``, in ``xp``.

    Raises
    ------
    ValueError
        ``dim`` or ``samples`` not a positive integer; ``hvp`` of the wrong shape,
        or returning NaN or Inf.

    Examples
    --------
    >>> import numpy as np
    >>> H = np.diag([1.0, 2.0, 3.0])
    >>> hutchinson_diagonal(lambda v: H @ v, 3, samples=1, seed=0).tolist()
    [1.0, 2.0, 3.0]
    """
    dim, samples = _check(dim, samples)
    xp = _namespace(xp)
    dtype = xp.float64 if dtype is None else dtype
    rng = np.random.default_rng(seed)
    total = xp.zeros(dim, dtype=dtype)
    for _ in range(samples):
        z = xp.asarray(rademacher(rng, dim), dtype=dtype)
        total = total + z * _apply(hvp, z, xp, dim, "hvp")
    return total / samples


def hutchpp_trace(matvec: Callable[[Any], Any], dim: int, samples: int, seed=None, *,
                  xp=None, dtype=None) -> float:
    """Hutch++ estimate of ``tr(H)`` from ``samples`` products (at least 3).

    ``samples`` is split as in Meyer et al.: ``k = samples // 3`` products
    sketch the range (``S`` Rademacher, ``Q = qr(H S)``), ``k`` compute
    ``tr(Q' H Q)`` exactly, the remaining ``samples - 2k`` run Hutchinson on
    the deflated ``(I - QQ') H (I - QQ')``. For ``H`` of rank at most ``k``
    the estimate is exact up to rounding.

    Parameters
    ----------
    matvec : callable
        ``matvec(v) -> H v`` on 1-D arrays of length ``dim``.
    dim, samples : int
    seed : int or numpy.random.Generator, optional
    xp, dtype : optional
        Namespace and dtype of the vectors (default NumPy float64).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        ``dim`` or ``samples`` invalid; ``matvec`` of the wrong shape, or
        returning NaN or Inf.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> U = rng.standard_normal((50, 4)); H = U @ U.T
    >>> estimate = hutchpp_trace(lambda v: H @ v, 50, 15, seed=1)   # rank 4 <= 15 // 3
    >>> bool(abs(estimate - np.trace(H)) < 1e-10 * np.trace(H))
    True
    """
    dim, samples = _check(dim, samples, minimum=3)
    xp = _namespace(xp)
    dtype = xp.float64 if dtype is None else dtype
    rng = np.random.default_rng(seed)
    k = samples // 3
    m = samples - 2 * k
    S = xp.asarray(rademacher(rng, (dim, k)), dtype=dtype)
    HS = xp.stack([_apply(matvec, S[:, j], xp, dim, "matvec") for j in range(k)], axis=1)
    Q, _ = xp.linalg.qr(HS)
    HQ = xp.stack([_apply(matvec, Q[:, j], xp, dim, "matvec") for j in range(k)], axis=1)
    trace = float(xp.sum(Q * HQ))
    G = xp.asarray(rademacher(rng, (dim, m)), dtype=dtype)
    G = G - Q @ (Q.T @ G)
    deflated = 0.0
    for j in range(m):
        g = G[:, j]
        Hg = _apply(matvec, g, xp, dim, "matvec")
        Hg = Hg - Q @ (Q.T @ Hg)
        deflated += float(xp.sum(g * Hg))
    return trace + deflated / m
