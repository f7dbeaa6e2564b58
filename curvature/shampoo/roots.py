"""Inverse p-th roots of symmetric positive (semi)definite matrices, batched.

The core of Shampoo: ``X = A^{-1/p}`` for a stack of SPD blocks, by an
eigendecomposition or by the coupled Newton iteration of Guo and Higham
(SIAM J. Matrix Anal. Appl. 28(3), 2006), which needs only matrix products
and so suits GPUs.
"""

from __future__ import annotations

import math
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from array_api_compat import array_namespace, device, is_cupy_namespace, is_numpy_namespace

__all__ = ["inverse_root", "RootInfo", "RootError"]

# A root whose relative residual ||A X^p - I||_F / sqrt(n) is above this is a
# failed root. The residual of even the exact root, evaluated in working
# precision, is about n * u * cond(A); in float32 at cond(A) ~ 1e5 that is
# already ~1e-2, so above this no root can be certified in that precision.
RESIDUAL_THRESHOLD = 1e-2

# Default Newton tolerance on max|M - I|, in units of the dtype's epsilon.
# M is refreshed by products of matrices near I, so it reaches a few hundred
# ulps; below that the error stagnates and the "error grows" test ends the run.
_NEWTON_TOL_ULPS = 1000.0


# max|M - I| above this after a Newton step means divergence (see _newton_root).
_DIVERGED = 2.0


class RootError(ValueError):
    """An inverse root could not be computed to the required accuracy."""


@dataclass(frozen=True)
class RootInfo:
    """How an inverse root was obtained.

    Attributes
    ----------
    residual : float
        Largest relative residual over the blocks,
        ``||(A + s I) X^p - I||_F / sqrt(n)`` with ``s`` the shift that was
        applied (the ridge ``eps``, or the floor's shift), evaluated in the
        working precision. ``eigh`` evaluates it as
        ``||(A Q - Q Lambda) (Lambda + s)^{-1}||_F / sqrt(n)``, equal for an
        orthogonal ``Q``, at the cost of one matrix product.
    iterations : int
        Newton iterations taken (largest over the blocks); 0 for ``eigh``.
    method : str
        ``"eigh"``, ``"newton"``, or (``method="auto"`` only) ``"newton+eigh"``
        / ``"eigh+eigh"``: the first method's root failed and was recomputed
        by a float64 eigendecomposition. Then ``residual`` and ``converged``
        describe that float64 root; the returned root is it rounded to the
        working dtype, whose own residual in that dtype can be far larger for
        an ill-conditioned ``A`` (the rounding alone moves it by about
        ``eps(dtype) * cond(A)``).
    converged : bool
        True if every block's root is finite, its residual is at most
        :data:`RESIDUAL_THRESHOLD` and, for Newton, it met its tolerance.
        Every method checks; a failed root is never reported as converged.
    """

    residual: float
    iterations: int
    method: str
    converged: bool


def inverse_root(A: Any, p: int, *, eps: float = 0.0,
                 eps_mode: Literal["absolute", "relative"] = "absolute",
                 method: Literal["auto", "eigh", "newton"] = "auto",
                 tol: float | None = None, max_iter: int = 100,
                 return_info: bool = False, floor: bool = False):
    """Inverse p-th root ``A^{-1/p}`` of symmetric positive (semi)definite matrices.

    Parameters
    ----------
    A : array of shape (..., n, n)
        Symmetric matrices (a stack of them over the leading dimensions). A
        block that is visibly not symmetric is refused with a ValueError,
        not rooted: ``|A x - A' x| > sqrt(u) |A x + A' x|`` for a seeded
        random ``x`` (``u`` the dtype's rounding unit, so ``sqrt(u)`` is
        3.5e-4 in float32 and 1.5e-8 in float64; pcg's probe). Below that
        (the rounding of a computed ``G G'``) the input is symmetrised,
        ``(A + A') / 2``, first. Any array-API namespace.
    p : int
        Positive integer root.
    eps : float
        Ridge: every method returns the root of ``A + eps I`` (as Distributed
        Shampoo's ``epsilon``), so ``eigh`` and ``newton`` give the same root
        to their accuracy. ``eigh`` adds ``eps`` to the computed eigenvalues,
        ``newton`` to the diagonal. An eigenvalue of ``A`` below ``-eps``
        (also one made negative by rounding) leaves no root: a failure.
    eps_mode : {"absolute", "relative"}
        ``"relative"`` scales ``eps`` by each block's Frobenius norm
        ``||A||_F`` (for every method; between ``lambda_max`` and
        ``sqrt(rank) lambda_max`` for a positive semidefinite block).
    method : {"auto", "eigh", "newton"}
        ``"auto"``: ``eigh`` for CPU namespaces (NumPy, array-api-strict),
        ``newton`` for CuPy; when that root fails (Newton, or a float32
        ``eigh``), it is recomputed by a float64 ``eigh`` and cast back.
        ``"eigh"`` and ``"newton"`` run in the working precision only and
        report a failed root.
    tol : float, optional
        Newton stops when ``max|M_k - I| <= tol``; default ``1000 * eps(dtype)``.
        It also stops as soon as that error grows, and returns the best iterate.
    max_iter : int
        Newton iteration limit.
    return_info : bool
        Return ``(X, RootInfo)``. Then a failed root is reported in
        ``info.converged`` rather than raised.
    floor : bool
        The earlier regularisation, kept for ``eigh`` (and ``auto``, which
        then uses ``eigh`` on every backend): instead of the ridge, all
        eigenvalues are shifted up by the same amount so that the smallest is
        ``eps`` (scaled as ``eps_mode`` says) whenever it is below; otherwise
        ``A`` is untouched. A slightly indefinite ``A`` is thereby rooted.

    Returns
    -------
    X : array of shape (..., n, n)
        In the namespace and dtype of ``A``. An empty stack (``n = 0``, or
        no blocks) has the empty root: ``X`` is empty and ``info`` reports
        a converged root with residual 0, as ``numpy.linalg.inv`` of a 0 x 0
        matrix.
    info : RootInfo
        Only with ``return_info=True``.

    Raises
    ------
    ValueError
        NaN or Inf in ``A``; not a stack of square matrices; a block that is
        not symmetric (see ``A``); ``p`` not a
        positive integer; unknown ``method`` or ``eps_mode``; negative ``eps``;
        ``floor=True`` with ``method="newton"``.
    TypeError
        Complex ``A``, or a floating dtype other than float32 and float64
        (float16 is refused: no eigendecomposition exists for it).
    RootError
        (a ValueError) The root failed and ``return_info`` is False: a
        non-positive eigenvalue after the shift (e.g. a singular matrix with
        ``eps=0``), a residual above :data:`RESIDUAL_THRESHOLD` (the matrix
        is too ill-conditioned for the working precision), or Newton did not
        reach its tolerance. A bad root is never returned silently.

    Notes
    -----
    ``eigh`` is backward stable: the root is that of a matrix within a few
    ``u ||A||`` of ``A``; its relative error grows like ``u * cond(A)``, and
    so does its residual, which is checked like Newton's: in float32 a
    condition number above about 1e5 fails (``auto`` then retries in float64).
    ``newton`` is the coupled iteration ``X_0 = z^{1/p} I``, ``M_0 = z A``,
    ``z = (p + 1) / (2 ||A||_F)``,
    ``T_k = ((p + 1) I - M_k) / p``, ``X_{k+1} = X_k T_k``,
    ``M_{k+1} = T_k^p M_k`` (Guo and Higham 2006, eq. (3.5) with their
    scaling), which keeps ``M_k = X_k^p A`` and drives ``M_k -> I``. The
    smallest scaled eigenvalue grows about ``((p+1)/p)^p``-fold per step
    before quadratic convergence, so iterations grow like ``log(cond)``.

    Examples
    --------
    >>> import numpy as np
    >>> from curvature.shampoo.roots import inverse_root
    >>> A = np.diag([16.0, 81.0])
    >>> inverse_root(A, 4)
    array([[0.5       , 0.        ],
           [0.        , 0.33333333]])
    >>> X, info = inverse_root(A, 4, method="newton", return_info=True)
    >>> bool(np.allclose(X, np.diag([1 / 2, 1 / 3]))), info.method, info.converged
    (True, 'newton', True)
    >>> inverse_root(np.zeros((2, 2)), 2, eps=1e-4)     # singular: the ridge 1e-4 I
    array([[100.,   0.],
           [  0., 100.]])

    The ridge is the same for every method; ``floor=True`` raises the
    smallest eigenvalue to ``eps`` instead:

    >>> A = np.diag([0.1, 3.1])
    >>> np.round(np.diag(inverse_root(A, 2, eps=1.0, method="eigh")), 4)
    array([0.9535, 0.4939])
    >>> np.round(np.diag(inverse_root(A, 2, eps=1.0, method="newton")), 4)
    array([0.9535, 0.4939])
    >>> np.round(np.diag(inverse_root(A, 2, eps=1.0, floor=True)), 4)
    array([1. , 0.5])
    """
    xp = array_namespace(A)
    p = _check_power(p)
    if method not in ("auto", "eigh", "newton"):
        raise ValueError(f"method must be 'auto', 'eigh' or 'newton', got {method!r}")
    if eps_mode not in ("absolute", "relative"):
        raise ValueError(f"eps_mode must be 'absolute' or 'relative', got {eps_mode!r}")
    floor = bool(floor)
    if floor and method == "newton":
        raise ValueError("floor=True needs the eigenvalues: use method='eigh' (or 'auto'), "
                         "or the ridge (floor=False) with Newton")
    eps = float(eps)
    if not eps >= 0.0 or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must have shape (..., n, n), got {A.shape}")
    if not xp.isdtype(A.dtype, "real floating"):
        if xp.isdtype(A.dtype, "integral") or xp.isdtype(A.dtype, "bool"):
            A = xp.astype(A, xp.float64)
        else:
            raise TypeError(f"A must be real; got dtype {A.dtype}")
    if A.dtype not in (xp.float32, xp.float64):
        # float16 (and other narrow floats): the linear algebra libraries have no
        # eigh for them, and a root in 3 decimal digits fails RESIDUAL_THRESHOLD anyway.
        raise TypeError(f"A must be float32 or float64, got dtype {A.dtype}; convert it with "
                        "xp.astype(A, xp.float32) and cast the root back if needed")
    if 0 in A.shape:
        resolved = ("newton" if method == "newton" or (method == "auto" and not floor
                                                       and is_cupy_namespace(xp)) else "eigh")
        X = xp.zeros(A.shape, dtype=A.dtype)
        return (X, RootInfo(0.0, 0, resolved, True)) if return_info else X
    if not bool(xp.all(xp.isfinite(A))):
        raise ValueError("A contains NaN or Inf")
    A = _checked_symmetric_part(xp, A)

    if method == "auto":
        method = "newton" if is_cupy_namespace(xp) and not floor else "eigh"
        # A float64 eigh can rescue Newton's root, or a float32 eigh's.
        fallback = method == "newton" or A.dtype == xp.float32
    else:
        fallback = False

    if method == "eigh":
        X, residual, ok = _eigh_root(xp, A, p, eps, eps_mode, floor)
        iterations = 0
    else:
        X, residual, iterations, ok = _newton_root(xp, A, p, eps, eps_mode, tol, max_iter)
    info = RootInfo(residual, iterations, method, ok)
    if fallback and not ok:
        X64, residual, ok = _eigh_root(xp, xp.astype(A, xp.float64), p, eps, eps_mode, floor)
        X = xp.astype(X64, A.dtype)
        info = RootInfo(residual, iterations, method + "+eigh", ok)
    if return_info:
        return X, info
    if not info.converged:
        raise RootError(
            f"inverse {p}-th root failed ({info.method}: residual {info.residual:.3g}, "
            f"{info.iterations} iterations). The matrix is singular, indefinite or too "
            "ill-conditioned for its dtype: pass eps > 0, use float64, or method='eigh'; "
            "return_info=True reports the failure instead of raising.")
    return X


def _checked_symmetric_part(xp, A):
    """``(A + A') / 2``, or a ValueError when a block of ``A`` is visibly not symmetric.

    The probe of pcg's symmetry check, on a seeded random ``x`` per call:
    ``||A x - A' x|| > sqrt(u) ||A x + A' x||`` (``u`` the dtype's rounding
    unit) refuses the block. A computed ``G G'``, or a moving average of such
    products, is symmetric to a few ``u`` (relative) and the two products
    differ by rounding only, about ``sqrt(n) u``; a matrix not meant to be
    symmetric is far above (``[[1, 10], [-10, 1]]``: 10). A probe and not
    ``||A - A'||_F``: two matrix-vector products read ``A`` twice and write
    nothing, where the exact norm needs two more ``n x n`` temporaries per
    block (8% of a batched root at 64 blocks of 256, against about 1%).
    """
    n = A.shape[-1]
    probe = np.random.default_rng(0).random(n) - 0.5
    x = xp.asarray(probe, dtype=A.dtype, device=device(A))
    Ax = xp.matmul(A, xp.reshape(x, (n, 1)))[..., 0]          # (..., n)
    Atx = xp.matmul(xp.reshape(x, (1, n)), A)[..., 0, :]      # (x'A)' = A'x
    defect = xp.sum((Ax - Atx) ** 2, axis=-1)
    scale = xp.sum((Ax + Atx) ** 2, axis=-1)
    u = float(xp.finfo(A.dtype).eps)
    bad = defect > u * scale     # squares: ||D x||^2 > (sqrt(u) ||S x||)^2
    if bool(xp.any(bad)):
        flat_bad = xp.reshape(bad, (-1,))
        block = int(xp.argmax(xp.astype(flat_bad, xp.int32)))
        ratio = math.sqrt(float(xp.reshape(defect, (-1,))[block])
                          / max(float(xp.reshape(scale, (-1,))[block]), math.ulp(0.0)))
        where = "" if A.ndim == 2 else f" (block {block} of the flattened stack)"
        raise ValueError(f"A is not symmetric{where}: |(A - A')x| / |(A + A')x| = {ratio:.3g} "
                         f"for a random x, above sqrt(eps) = {math.sqrt(u):.2g} of {A.dtype}; "
                         "inverse_root roots symmetric positive semi-definite matrices: pass "
                         "(A + A') / 2 if the asymmetry is noise, or use a method for general "
                         "matrices (scipy.linalg.fractional_matrix_power)")
    # In place on the fresh sum: one temporary instead of two (this pass is a
    # visible share of a batched root's cost next to eigh at n ~ 256).
    S = A + xp.matrix_transpose(A)
    S *= 0.5
    return S


def _check_power(p) -> int:
    if isinstance(p, bool):
        raise ValueError(f"p must be a positive int, got {p!r}")
    try:
        p = operator.index(p)
    except TypeError:
        raise ValueError(f"p must be a positive int, got {p!r}") from None
    if p < 1:
        raise ValueError(f"p must be a positive int, got {p!r}")
    return p


def _eye_like(xp, A):
    n = A.shape[-1]
    return xp.eye(n, dtype=A.dtype, device=getattr(A, "device", None))


def _max_float(xp, x) -> float:
    return float(xp.max(x)) if x.ndim else float(x)


# Below this much work (blocks * n^3) threads cost more than they save.
_PARALLEL_MIN_WORK = 64 * 128**3


def _eigh_root(xp, A, p, eps, eps_mode, floor):
    """Root by batched ``eigh``; on NumPy, many large blocks go to all cores.

    LAPACK's ``syevd`` at n ~ 256 keeps one core busy, so a batch of blocks
    is split across threads (NumPy releases the GIL in ``eigh`` and
    ``matmul``) with BLAS held to one thread each: measured on 2 cores, 64
    blocks of 256, 190 ms against 360 ms for one batched ``eigh``. Without
    the BLAS limit, OpenBLAS's own threads fight the split (580 ms), so the
    path needs threadpoolctl; it is skipped when that is missing. Each block
    goes through the same LAPACK calls either way: results are identical.
    """
    workers = os.cpu_count() or 1
    batch = math.prod(A.shape[:-2])
    if (workers > 1 and batch >= 2 and is_numpy_namespace(xp)
            and batch * A.shape[-1] ** 3 >= _PARALLEL_MIN_WORK):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            threadpool_limits = None
        if threadpool_limits is not None:
            flat = xp.reshape(A, (batch, *A.shape[-2:]))
            bounds = [batch * k // workers for k in range(workers + 1)]
            chunks = [flat[lo:hi] for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
            with threadpool_limits(limits=1, user_api="blas"), \
                    ThreadPoolExecutor(len(chunks)) as pool:
                parts = list(pool.map(
                    lambda chunk: _eigh_root_serial(xp, chunk, p, eps, eps_mode, floor),
                    chunks))
            X = xp.reshape(xp.concat([part[0] for part in parts]), A.shape)
            return X, max(part[1] for part in parts), all(part[2] for part in parts)
    return _eigh_root_serial(xp, A, p, eps, eps_mode, floor)


def _eigh_root_serial(xp, A, p, eps, eps_mode, floor):
    """Root by one batched ``eigh``, one check of its residual and one product.

    The ridge is added to the computed eigenvalues: exact, where forming
    ``A + eps I`` would round a small ``eps`` away against a large diagonal.
    The residual ``||(A + s I) X^p - I||_F`` with ``X^p = Q (Lambda + s)^{-1} Q'``
    is ``||(A Q - Q Lambda) (Lambda + s)^{-1} Q'||_F``, and ``Q'`` (orthogonal)
    drops out: one product ``A Q`` instead of forming ``X^p`` and ``A X^p``.
    Its size is eigh's backward error ``~u ||A||`` over ``lambda_min + s``.
    """
    n = A.shape[-1]
    lam, Q = xp.linalg.eigh(A)
    if eps_mode == "relative":
        eps = eps * xp.linalg.matrix_norm(A, ord="fro")[..., None]
    if floor:
        # Ascending order: the first eigenvalue is the smallest.
        shift = xp.clip(eps - lam[..., :1], min=0.0)
    else:
        shift = eps
    shifted = lam + shift
    ok = bool(xp.all(shifted[..., :1] > 0)) and bool(xp.all(xp.isfinite(shifted)))
    if ok:
        backward = xp.matmul(A, Q) - Q * lam[..., None, :]
        norms = xp.linalg.matrix_norm(backward / shifted[..., None, :], ord="fro")
        residual = _max_float(xp, norms) / math.sqrt(n)
        residual = residual if math.isfinite(residual) else math.inf
        ok = residual <= RESIDUAL_THRESHOLD
    else:
        residual = math.inf
        # NaN rather than a divide-by-zero warning: the root is reported failed.
        shifted = xp.where(shifted > 0, shifted, xp.full_like(shifted, math.nan))
    # X = (Q s)(Q s)' with s = lam^(-1/(2p)): one product of a matrix with
    # its own transpose, which BLAS does as a rank-k update (half the flops).
    Q *= (shifted ** (-1.0 / (2 * p)))[..., None, :]
    X = xp.matmul(Q, xp.matrix_transpose(Q))
    return X, residual, ok


def _matrix_power(xp, X, p):
    """``X^p`` by repeated squaring (p >= 1)."""
    result = None
    base = X
    while True:
        if p & 1:
            result = base if result is None else xp.matmul(result, base)
        p >>= 1
        if not p:
            return result
        base = xp.matmul(base, base)


def _residual(xp, A, X, p) -> float:
    """Largest ``||A X^p - I||_F / sqrt(n)`` over the blocks."""
    n = A.shape[-1]
    R = xp.matmul(A, _matrix_power(xp, X, p)) - _eye_like(xp, A)
    norms = xp.linalg.matrix_norm(R, ord="fro") / math.sqrt(n)
    value = _max_float(xp, norms)
    return value if math.isfinite(value) else math.inf


def _newton_root(xp, A, p, eps, eps_mode, tol, max_iter):
    """Coupled Newton (Guo and Higham 2006), every block iterated at once.

    Blocks stop independently (converged, or error grew): a stopped block is
    frozen with ``where`` so the batch stays one array and no Python loop over
    blocks is needed.
    """
    if not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
    dtype = A.dtype
    if tol is None:
        tol = _NEWTON_TOL_ULPS * float(xp.finfo(dtype).eps)
    eye = _eye_like(xp, A)
    fro = xp.linalg.matrix_norm(A, ord="fro")[..., None, None]
    ridge = eps * fro if eps_mode == "relative" else eps
    A = A + ridge * eye
    fro = xp.linalg.matrix_norm(A, ord="fro")[..., None, None]
    if not bool(xp.all(fro > 0)):
        # A zero block has no inverse root; report it rather than divide by 0.
        nan = xp.full(A.shape, math.nan, dtype=dtype)
        return nan, math.inf, 0, False
    z = (p + 1) / (2 * fro)
    X = z ** (1.0 / p) * eye
    M = z * A
    err = _max_abs(xp, M - eye)
    best_X, best_err = X, err
    active = xp.ones(err.shape, dtype=xp.bool)
    iterations = 0
    for k in range(max_iter):
        active = active & (err > tol)
        if not bool(xp.any(active)):
            break
        iterations = k + 1
        T = ((p + 1) * eye - M) / p
        X_new = xp.matmul(X, T)
        M_new = xp.matmul(_matrix_power(xp, T, p), M)
        err_new = _max_abs(xp, M_new - eye)
        # Error growth ends a block's run (rounding has taken over, or the
        # matrix is too ill-conditioned for the dtype): keep its best iterate.
        # Departure: the test is applied only in the quadratic phase
        # (err < 1/2). Before it max|M - I| is not monotone (it is an entry
        # bound, not ||M - I||_2) and would stop a healthy run at step 1.
        # From step 1 on, M's eigenvalues lie in (0, 1] in exact arithmetic,
        # so an entry above _DIVERGED (or NaN) is rounding-driven divergence.
        grew = ((err_new > err) & (err < 0.5)) | ~(err_new <= _DIVERGED)
        active = active & ~grew
        mask = active[..., None, None]
        X = xp.where(mask, X_new, X)
        M = xp.where(mask, M_new, M)
        err = xp.where(active, err_new, err)
        better = err < best_err
        best_X = xp.where(better[..., None, None], X, best_X)
        best_err = xp.where(better, err, best_err)
    reached = bool(xp.all(best_err <= tol))
    residual = _residual(xp, A, best_X, p)
    ok = reached and residual <= RESIDUAL_THRESHOLD
    return best_X, residual, iterations, ok


def _max_abs(xp, E):
    return xp.max(xp.abs(E), axis=(-2, -1))
