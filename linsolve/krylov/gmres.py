"""Restarted GMRES with right preconditioning, and flexible GMRES, with scipy's semantics.

GMRES (Saad and Schultz, SIAM J. Sci. Stat. Comput. 7, 1986) minimises
``||b - A x||`` over ``x0 + M K_j(A M, r0)``; each restart cycle builds an
orthonormal basis ``V`` of the Krylov space by the Arnoldi process and
solves the small least-squares problem with Givens rotations. Here:

- Right preconditioning (Saad, "Iterative Methods for Sparse Linear
  Systems", 2nd ed., Algorithm 9.5): the method solves ``A M u = r0`` and
  sets ``x = x0 + M u``, so the residual the rotations track, ``|g_{j+1}|``,
  is the norm of the true residual ``b - A x_j`` in exact arithmetic, not
  of a preconditioned one (scipy's ``gmres`` preconditions on the left).
- Flexible GMRES (Saad, SIAM J. Sci. Comput. 14, 1993; Algorithm 9.6):
  ``z_j = M v_j`` is stored and ``x = x0 + Z y``, so ``M`` may change from
  one application to the next (an inner Krylov solve, an AMG cycle).
- Orthogonalisation: classical Gram-Schmidt applied twice (CGS2), as
  passes over the contiguous basis (:func:`cext.numba.gmres.gmres_project`
  and its twins), instead of scipy's modified Gram-Schmidt, one vector at a
  time; the second update is skipped where it is below rounding
  (:data:`REORTHOGONALISE_ABOVE`). On the compiled kernels the test is made
  one step late (:data:`LAGGED_CHECK_ABOVE`): each step runs one classical
  pass, whose sweep over the basis also forms the inner products of the
  previous step's vector ``v_j`` with the rows before it (CGS2's
  second-pass dots of that step, for ``v_j`` as it stands in the basis).
  Where they exceed rounding, the kernel applies the second update to
  ``v_j`` before it projects the new vector, and the solver corrects
  ``v_j``'s Hessenberg column and redoes its Givens rotation; the new
  vector was made from the old ``v_j``, a difference of at most
  :data:`cext.numba.gmres.SEVERE` units of roundoff that the Arnoldi
  relation carries like the rounding of every step. Beyond that (a first
  pass that cancelled nearly all of its vector) ``v_j`` gets both passes
  anew and the step's product is made again from it. The second sweep's
  dots, most of the cost of the two-pass test, are gone; each basis vector
  ends with inner products of root mean square at most
  :data:`LAGGED_CHECK_ABOVE` units of roundoff, against CGS2's
  :data:`REORTHOGONALISE_ABOVE` (norm). The last vector of a cycle is not
  checked: it enters ``x`` only through ``h_{j+1,j}``, which its second
  pass would move by no more than the rounding already in the basis.
- The stopping rule is ``pcg``'s: the cycle ends when ``|g_{j+1}|`` meets
  ``max(rtol ||b||, atol)``; ``b - A x`` is then recomputed and the solve
  is converged only if it meets the tolerance too (otherwise a new cycle
  starts from it: :class:`~linsolve.core.stopping.ResidualTest`). A cycle
  that ends at ``restart`` steps recomputes ``b - A x`` as well (the new
  cycle starts from it) and compares it with the recurrence.
- Breakdowns: when ``h_{j+1,j}`` vanishes the Krylov space is invariant and
  the least-squares solution exact there (a "lucky" breakdown, verified by
  the true residual as any other exit). When a diagonal of the rotated
  Hessenberg matrix vanishes, ``A M`` is singular on the Krylov space: the
  least-squares problem keeps the columns before it (the best solution
  the space offers), and the solve stops with ``DIVERGED_BREAKDOWN``
  instead of dividing by it (scipy's iterates jump or overflow there).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from cext.registry import writes_in_place
from cext.threads import kernel_threads

from ..core.record import SolveRecord
from ..core.setup import (KrylovSystem, check_x0, initial_iterate, krylov_operators,
                          rhs_and_dtype, settings)
from ..core.stopping import (DRIFT_FACTOR, STAGNATION_FACTOR, Replacement, ResidualTest, Stop,
                             Tolerance, b_verdict)
from ..result import SolveResult
from ..validation.inputs import check_maxiter, check_period, dtype_name

CALLBACK_TYPES = ("x", "pr_norm")
"""The ``callback_type`` values taken: scipy's, less its deprecated ``'legacy'``."""

REORTHOGONALISE_ABOVE = 16.0
"""CGS2's second update is applied when its coefficients exceed this many units of
roundoff times ``||w||`` (below, it would change ``w`` by rounding only; see
:mod:`cext.numba.gmres`). 0 applies it always."""

LAGGED_CHECK_ABOVE = 64.0
"""The one-pass projection's late check (module notes): the previous step's vector
gets CGS2's second pass when the root mean square of its inner products with the
rows before it exceeds this many units of roundoff. One classical pass leaves about
``4 u ||w|| / ||w_1||`` there (measured: median 10 u, at most 28 u, on the P1 and
convection-diffusion bench matrices, where ``||w|| / ||w_1||`` is about 2.5), so the
second pass comes where the first cancelled ``w`` by a factor of about 16 or more
(the Daniel-Gragg-Kaufman-Stewart situation, measured rather than inferred from
the norms), and the basis keeps ``||I - V^T V||_F`` below about ``64 u m``."""

SINGULAR_FACTOR = 16.0
"""A rotated Hessenberg diagonal at most ``SINGULAR_FACTOR * eps * max_j ||A M v_j||``
counts as zero: ``A M`` is singular to working precision on the Krylov space."""


def gmres(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0,
          restart: int | None = None, maxiter: int | None = None, M: Any = None,
          callback: Callable[[Any], None] | None = None, callback_type: str | None = None,
          monitor: Any = False, flexible: bool = False, **kwargs) -> SolveResult:
    """Solve ``A x = b`` by restarted GMRES, right-preconditioned by ``M``.

    scipy's signature and meanings (:func:`scipy.sparse.linalg.gmres`:
    ``restart``, ``maxiter`` counting restart cycles, ``callback_type``), with
    failures reported as values and a guarantee: ``converged`` is True only
    if the recomputed ``||b - A x||`` meets ``max(rtol * ||b||, atol)``.
    Right preconditioning makes the residual the iteration monitors the
    true one (scipy preconditions on the left and watches ``M r``).

    Parameters
    ----------
    A : array, sparse matrix, LinearOperator, object with ``matvec``, or callable
        Square, possibly non-symmetric, real or complex.
    b : array or array-like of shape (n,) or (n, 1)
        Right-hand side; its namespace (NumPy, CuPy, ``array_api_strict``,
        JAX) decides where the solve runs. float32 in gives float32 out;
        complex ``A`` or ``b`` makes the solve complex (Hermitian inner
        products ``v_i^H w`` and complex Givens rotations, on the array-API
        kernels).
    x0 : array, array-like or ``'Mb'``, optional
        Initial guess (never modified); default zeros; ``'Mb'`` starts from
        ``M @ b`` as in scipy.
    rtol, atol : float
        Stop when ``||b - A x|| <= max(rtol * ||b||, atol)``.
    restart : int, optional
        Arnoldi steps per cycle (scipy's default ``min(20, n)``); the basis
        holds ``restart + 1`` vectors (``restart`` more for ``flexible``).
    maxiter : int, optional
        Restart cycles, as in scipy (default ``10 n``): at most
        ``maxiter * restart`` inner iterations. ``iterations`` in the result
        counts the inner iterations, ``extra["cycles"]`` the cycles.
    M : operator-like, optional
        Preconditioner approximating ``A^{-1}``, applied on the right; accepts
        everything ``A`` does, pyamg ``aspreconditioner()`` and objects with
        ``solve``. It must be the same linear map at every application
        unless ``flexible=True``.
    callback : callable, optional
        Called as selected by ``callback_type``.
    callback_type : {'x', 'pr_norm'}
        ``'x'``: ``callback(x)`` at the end of every restart cycle (``x`` is
        the live iterate: copy it to keep it). ``'pr_norm'``:
        ``callback(||r|| / ||b||)`` after every inner iteration, with the
        residual estimate of the rotations -- the true residual's norm, not
        a preconditioned one. Required with a callback: scipy's default,
        the deprecated ``'legacy'`` (``'pr_norm'`` with ``maxiter``
        counting inner iterations), is not reproduced.
    monitor : bool, file-like or callable
        PETSc ``-ksp_monitor`` lines, ``"%3d KSP Residual norm %14.12e"``, one
        per inner iteration (see :func:`linsolve.pcg`).
    flexible : bool
        Flexible GMRES: ``M`` may change between applications (see
        :func:`fgmres`).

    Returns
    -------
    SolveResult
        Unpacks as ``x, info`` like scipy: ``info`` is 0 when converged, the
        number of restart cycles (``maxiter``) at the iteration limit, -1 on
        breakdown. ``iterations`` counts inner iterations (one product with
        ``A`` each), ``matvecs`` every product with ``A`` (with the true
        residuals), ``psolves`` every application of ``M``. ``reason``:
        ``CONVERGED_RTOL``, ``CONVERGED_ATOL``, ``DIVERGED_ITS``,
        ``DIVERGED_NANORINF`` (a NaN or Inf in the recurrence; ``x`` is the
        last finite iterate), ``DIVERGED_BREAKDOWN`` (``A M`` singular on the
        Krylov space, or the true residual stagnated above the tolerance).
        ``extra``: ``cycles``, ``restarts`` (``cycles - 1``), ``restart``,
        ``flexible``, ``residual_replacements`` (cycles that ended with the
        estimate below the tolerance but not the true residual),
        ``residual_gaps`` (restarts at which ``||b - A x||`` exceeded twice
        the estimate; when one does not halve the true residual of the last,
        the solve stops with ``DIVERGED_BREAKDOWN``), ``reorthogonalised``
        (steps whose vector got the second Gram-Schmidt pass a step late;
        see the module notes), ``threads``.

    Raises
    ------
    TypeError
        ``tol=`` or another unknown keyword; mixed backends; a ``monitor``
        that is none of the accepted kinds.
    ValueError
        Shapes that do not match; negative ``rtol``/``atol``; bad ``maxiter``
        or ``restart``; a string ``x0`` other than ``'Mb'``; a callback
        without ``callback_type``, or ``callback_type`` other than ``'x'``
        and ``'pr_norm'``.

    Notes
    -----
    At most ``maxiter`` cycles of at most ``restart`` steps. A step costs a
    product with ``A``, an application of ``M`` (with one more per cycle
    unless ``flexible``) and two passes over the basis block (three where a
    vector needs the second Gram-Schmidt pass in full); a cycle ends with one
    product with ``A`` for ``b - A x``. Without ``M`` the iterates
    are scipy's, to rounding: the same ``restart`` and ``maxiter`` give the
    same number of inner iterations (CuPy's ``gmres`` counts ``maxiter`` in
    inner iterations instead).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve.krylov.gmres import gmres
    >>> n = 100
    >>> A = sp.diags([-1.2, 2.0, -0.8], [-1, 0, 1], shape=(n, n), format="csr")
    >>> b = np.ones(n)
    >>> result = gmres(A, b, rtol=1e-10, restart=30)
    >>> result.converged, result.reason
    (True, 'CONVERGED_RTOL')
    >>> bool(np.linalg.norm(b - A @ result.x) <= 1e-10 * np.linalg.norm(b))
    True
    >>> x, info = gmres(A, b, rtol=1e-10, restart=5, maxiter=2)
    >>> info  # scipy's: the restart cycles spent
    2
    """
    return _solve("fgmres" if flexible else "gmres", A, b, x0, rtol=rtol, atol=atol,
                  restart=restart, maxiter=maxiter, M=M, callback=callback,
                  callback_type=callback_type, monitor=monitor, flexible=bool(flexible),
                  kwargs=kwargs)


def fgmres(A: Any, b: Any, x0: Any = None, *, rtol: float = 1e-5, atol: float = 0.0,
           restart: int | None = None, maxiter: int | None = None, M: Any = None,
           callback: Callable[[Any], None] | None = None, callback_type: str | None = None,
           monitor: Any = False, **kwargs) -> SolveResult:
    """Solve ``A x = b`` by flexible GMRES: a preconditioner that may change at every step.

    :func:`gmres` with ``flexible=True`` (Saad, SIAM J. Sci. Comput. 14, 1993):
    each ``z_j = M v_j`` is stored and the iterate is ``x0 + Z y``, so ``M``
    may be an inner iterative solve, an AMG cycle, or any callable with
    state; the residual estimate stays the true residual's norm. Costs
    ``restart`` more vectors of memory than :func:`gmres` and saves its one
    extra application of ``M`` per cycle. Same parameters, result and
    errors as :func:`gmres`.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import pcg
    >>> from linsolve.krylov.gmres import fgmres
    >>> n = 100
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")
    >>> inner = lambda r: pcg(A, r, rtol=1e-2, maxiter=10).x  # changes with r
    >>> result = fgmres(A, np.ones(n), M=inner, rtol=1e-10)
    >>> result.converged
    True
    """
    return _solve("fgmres", A, b, x0, rtol=rtol, atol=atol, restart=restart, maxiter=maxiter,
                  M=M, callback=callback, callback_type=callback_type, monitor=monitor,
                  flexible=True, kwargs=kwargs)


def _check_callback_type(name: str, callback, callback_type) -> str | None:
    """The callback's type, refusing scipy's deprecated legacy mode with the alternatives."""
    if callback_type == "legacy":
        raise ValueError(f"{name}: callback_type='legacy' (scipy's deprecated default: the "
                         "preconditioned residual, maxiter counting inner iterations) is not "
                         "supported; use callback_type='pr_norm' (callback(||r||/||b||) every "
                         "inner iteration) or 'x' (callback(x) every restart cycle)")
    if callback_type is not None and callback_type not in CALLBACK_TYPES:
        raise ValueError(f"Unknown callback_type: {callback_type!r}; expected 'x' or 'pr_norm'")
    if callback is None:
        return None
    if callback_type is None:
        raise ValueError(f"{name}: a callback needs callback_type='x' (callback(x) after every "
                         "restart cycle) or 'pr_norm' (callback(||r||/||b||) after every inner "
                         "iteration); scipy's default without it, the deprecated 'legacy', is "
                         "not reproduced")
    return callback_type


def _solve(name, A, b, x0, *, rtol, atol, restart, maxiter, M, callback, callback_type,
           monitor, flexible, kwargs) -> SolveResult:
    start = time.perf_counter()
    common = settings(name, kwargs, rtol=rtol, atol=atol, monitor=monitor, label="KSP",
                      callback=callback)
    callback_type = _check_callback_type(name, callback, callback_type)
    restart = check_period("restart", 20 if restart is None else restart)
    check_x0(x0)
    xp, b, n, dtype = rhs_and_dtype(A, b, allow_complex=True)
    maxiter = check_maxiter(maxiter, 10 * n)
    restart = max(1, min(restart, n))  # scipy: min(restart, n)
    with kernel_threads(n + int(getattr(A, "nnz", 0) or 0)) as threads:
        A_op, M_op = krylov_operators(A, M, xp, dtype, n)
        record = SolveRecord(common.monitor, start=start)
        x = initial_iterate(x0, b, M_op, xp, n, dtype, record)
        system = KrylovSystem(xp, A_op, M_op, b, x, n, dtype, maxiter, A_op.kernels.dot)
        solver = _GMRES(system, common, callback_type, restart, flexible, record)
        return solver.run(threads)


def _host(values, count: int) -> list:
    """The first ``count`` entries of a 1-D array of any namespace, as Python numbers."""
    head = values[:count]
    if isinstance(head, np.ndarray):
        return head.tolist()
    get = getattr(head, "get", None)  # CuPy: one device-to-host copy
    if callable(get):
        return get().tolist()
    try:
        return np.from_dlpack(head).tolist()
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return [complex(head[i]) if "complex" in dtype_name(head.dtype) else float(head[i])
                for i in range(count)]


def _givens(a, b):
    """``(c, s, r)`` with ``[[c, s], [-conj(s), c]] @ [a, b] = [r, 0]``, ``c`` real (LAPACK's
    ``lartg`` convention, which scipy's gmres uses); complex-safe."""
    abs_a, abs_b = abs(a), abs(b)
    if abs_b == 0.0:
        return 1.0, 0.0 * b, a
    if abs_a == 0.0:
        return 0.0, b.conjugate() / abs_b, abs_b
    norm = math.hypot(abs_a, abs_b)
    phase = a / abs_a
    return abs_a / norm, phase * b.conjugate() / norm, phase * norm


def _is_view_namespace(xp) -> bool:
    """NumPy and CuPy: a row of a 2-D array is a view the kernels can write into."""
    return xp.__name__.split(".")[-1] in ("numpy", "cupy")


class _Basis:
    """Rows of a Krylov basis: a preallocated ``(rows, n)`` array where arrays can be
    written, a list of rows where they cannot (JAX), stacked when a kernel needs a block."""

    def __init__(self, xp, rows: int, n: int, dtype, in_place: bool):
        self.xp = xp
        self.array = xp.zeros((rows, n), dtype=dtype) if in_place else None
        self.rows: list = []

    def set(self, i: int, v) -> None:
        if self.array is not None:
            self.array[i, :] = v
        elif i == len(self.rows):
            self.rows.append(v)
        else:
            self.rows[i] = v

    def row(self, i: int):
        return self.array[i, :] if self.array is not None else self.rows[i]

    def block(self, count: int):
        """At least the first ``count`` rows as one 2-D array (the kernels read ``[:count]``)."""
        if self.array is not None:
            return self.array
        del self.rows[count:]
        return self.xp.stack(self.rows[:count], axis=0)


class _GMRES:
    """One solve's state; :meth:`run` is the restart loop, :meth:`cycle` one Arnoldi cycle.

    ``project`` replaces the orthogonalisation kernel (same signature and
    meaning as :func:`cext.numba.gmres.gmres_project`) and ``any_nonzero(x)``
    the test for a nonzero start: :mod:`linsolve.mpi.krylov` passes versions
    whose sums run over the ranks, so that every rank takes the same branch.
    """

    def __init__(self, system: KrylovSystem, common, callback_type, restart: int,
                 flexible: bool, record: SolveRecord, project: Callable | None = None,
                 any_nonzero: Callable[[Any], bool] | None = None):
        self.system = system
        self.xp = xp = system.xp
        self.A, self.M, self.b, self.x = system.A, system.M, system.b, system.x
        self.kernels = system.A.kernels
        self.project = self.kernels.gmres_project if project is None else project
        self.any_nonzero = (lambda x: bool(xp.any(x != 0))) if any_nonzero is None \
            else any_nonzero
        self.callback, self.callback_type = common.callback, callback_type
        self.restart = restart
        self.flexible = flexible and system.M is not None
        self.record = record
        self.complex = "complex" in dtype_name(system.dtype)
        self.coef_dtype = xp.complex128 if self.complex else xp.float64
        self.eps = float(xp.finfo(system.dtype).eps)
        self.in_place = writes_in_place(xp)
        # NumPy and CuPy: A's product is written straight into the basis row it becomes
        self.views = self.in_place and _is_view_namespace(xp)
        # the one-pass projection checked a step late (module notes): the compiled
        # kernel's tau < 0; a projection passed in (MPI's) keeps the two-pass test
        self.lagged = (project is None and self.views and self.kernels.backend == "numba")
        self.bnorm = system.norm(system.b)
        self.tolerance = Tolerance.of(common.rtol, common.atol, self.bnorm)
        self.tol = self.tolerance.tol
        self.test = ResidualTest(self.tolerance, system.maxiter, self.true_residual,
                                 dtype_name(system.x.dtype))
        self.iterations = 0
        self.repairs = 0  # second passes applied a step late (the lagged check)
        self.cycles = 0
        self.gaps = 0
        self.last_gap = math.inf  # the true residual at the last restart with a gap

    # -- the shared pieces ------------------------------------------------------------
    def true_residual(self):
        """``(b - A x, ||b - A x||)``, one product with ``A``."""
        return self.system.residual(self.x, self.record)

    def finish(self, stop: Stop) -> SolveResult:
        if stop.true_residual_norm is None:
            stop = Stop(stop.reason, stop.message, self.true_residual()[1])
        extra = {"cycles": self.cycles, "restarts": max(self.cycles - 1, 0),
                 "restart": self.restart, "flexible": self.flexible,
                 "residual_replacements": self.test.replacements,
                 "residual_gaps": self.gaps, "reorthogonalised": self.repairs,
                 "threads": self.threads.threads}
        return self.record.result(self.x, stop, self.iterations, extra=extra,
                                  info_count=self.cycles)

    def product(self, z, basis: _Basis, j: int):
        """``A z``, written into basis row ``j`` where the kernels can (one product)."""
        self.record.matvecs += 1
        if self.views:
            out = basis.array[j, :]
            A, K = self.A, self.A.kernels
            # the compiled product alone, into the row: matvec_dot's fused dot, unused
            # here, doubled the time of a DIA product on one thread (0.5 -> 1.0 ms, n = 250k)
            if A.layout == "dia":
                return K.dia_spmv(A.offsets, A.values, z, out)
            if A.layout == "csr":
                return K.csr_spmv(A.indptr, A.indices, A.data, z, out)
            out[...] = A.matvec(z)
            return out
        return self.A.matvec(z)

    # -- the iteration ------------------------------------------------------------------
    def run(self, threads) -> SolveResult:
        self.threads = threads
        xp, record = self.xp, self.record
        stop = b_verdict(self.bnorm)
        if stop is not None:
            if stop.converged:  # scipy returns zeros for b = 0, whatever x0 is: exact
                self.x = xp.zeros_like(self.x)
            record.append(0, self.bnorm)
            return self.finish(stop)
        if self.any_nonzero(self.x):
            r, beta = self.true_residual()
        else:
            r, beta = self.b, self.bnorm
        record.append(0, beta)
        if not math.isfinite(beta):
            return self.finish(Stop("DIVERGED_NANORINF", f"initial residual norm is {beta}",
                                    beta))
        if beta <= self.tol:  # beta is the true residual: no second product
            return self.finish(self.tolerance.met(beta))
        m, n, dtype = self.restart, self.system.n, self.system.dtype
        V = _Basis(xp, m + 1, n, dtype, self.in_place)
        Z = _Basis(xp, m, n, dtype, self.in_place) if self.flexible else None
        h = xp.zeros((2 * m + 4,), dtype=self.coef_dtype)  # the lagged check: 2 j + 4
        while True:
            if self.cycles >= self.system.maxiter:
                return self.finish(Stop(
                    "DIVERGED_ITS", f"reached maxiter = {self.system.maxiter} restart cycles "
                    f"({self.iterations} iterations) with ||r|| = {beta:.3e}", beta))
            V.set(0, r * (1.0 / beta))
            estimate, end, h = self.cycle(V, Z, h, beta)
            self.cycles += 1
            if self.callback_type == "x":
                self.callback(self.x)
            if end is not None:  # NaN/Inf in the recurrence, or A M singular
                reason, message = end
                rtrue = self.true_residual()[1]
                if not math.isfinite(rtrue):
                    return self.finish(Stop("DIVERGED_NANORINF", message, rtrue))
                if rtrue <= self.tol:
                    return self.finish(self.tolerance.met(rtrue))
                return self.finish(Stop(reason, message, rtrue))
            if estimate <= self.tol:
                outcome = self.test.check(self.cycles, estimate)
                if isinstance(outcome, Stop):
                    return self.finish(outcome)
                if isinstance(outcome, Replacement):
                    r, beta = outcome.r, outcome.rnorm
                    record.norms[-1] = beta
                continue
            # the restart: continue from the true residual, and check the recurrence
            # still describes it (they agree to rounding in exact arithmetic)
            r, beta = self.true_residual()
            if not math.isfinite(beta):
                return self.finish(Stop("DIVERGED_NANORINF",
                                        f"true residual norm is {beta} after cycle "
                                        f"{self.cycles}", beta))
            if beta <= self.tol:
                return self.finish(self.tolerance.met(beta))
            if beta > DRIFT_FACTOR * estimate:
                # the recurrence no longer describes b - A x (rounding: the limit of
                # attainable accuracy; or an M that changed without flexible=True):
                # continue from the truth, and stop where doing so stopped paying, with
                # ResidualTest's rule for residual replacements
                self.gaps += 1
                record.norms[-1] = beta
                if beta > STAGNATION_FACTOR * self.last_gap:
                    return self.finish(Stop(
                        "DIVERGED_BREAKDOWN", f"true residual {beta:.3e} stagnated above the "
                        f"recurrence's {estimate:.3e} and the tolerance {self.tol:.3e} (limit "
                        f"of attainable accuracy in {dtype_name(self.x.dtype)}, or a "
                        "preconditioner that changes: flexible=True)", beta))
                self.last_gap = beta

    def arnoldi_product(self, V: _Basis, Z: _Basis | None, j: int):
        """``A M v_j``, written into basis row ``j + 1`` where it can be (``Z[j] = M v_j``)."""
        v = V.row(j)
        if self.M is None:
            z = v
        else:
            z = self.M.matvec(v)
            self.record.psolves += 1
            if Z is not None:
                Z.set(j, z)
        return self.product(z, V, j + 1)

    def cycle(self, V: _Basis, Z: _Basis | None, h, beta: float):
        """One Arnoldi cycle from ``V[0] = r / beta``; updates ``x``.

        Returns ``(estimate, end, h)``: the residual estimate ``|g_j|``,
        ``(reason, message)`` when the cycle ended on a NaN/Inf or a singular
        Hessenberg matrix (None otherwise), and the coefficient buffer.
        """
        record = self.record
        lagged = self.lagged
        lsq = _LeastSquares(beta, self.eps)
        end = None
        previous = None  # (column as projected, ||w||) of the last step absorbed
        for j in range(self.restart):
            self.threads.refresh()
            w = self.arnoldi_product(V, Z, j)
            if lagged:
                w, h = self.project(V.block(j + 1), j, w, h, -LAGGED_CHECK_ABOVE)
                values = _host(h, 2 * j + 4)
                status = values[2 * j + 3] if j > 0 else 0
                outcome = None
                if status == 1:
                    # the kernel gave v_j CGS2's second update: its column, h_{i,j-1}
                    # += h_{j,j-1} d_i, and its rotation again (the norm stays 1)
                    self.repairs += 1
                    column, norm_in = previous
                    size = column[j]
                    corrected = [column[i] + size * values[j + 3 + i] for i in range(j)]
                    previous = (corrected + [size], norm_in)
                    outcome = self.absorb_again(j - 1, list(previous[0]), norm_in, lsq)
                elif status == 2:
                    # v_j is far from orthogonal: both passes for it, its column again,
                    # then this step's product from the new v_j, projected by both passes
                    outcome = self.repair(V, j - 1, *previous, lsq)
                    if outcome is None:
                        w = self.arnoldi_product(V, Z, j)
                        w, h = self.project(V.block(j + 1), j, w, h, REORTHOGONALISE_ABOVE)
                        values = _host(h, j + 3)
                if outcome is not None:  # the corrected step ends the cycle
                    end = outcome if isinstance(outcome, tuple) else None
                    break
            else:
                w, h = self.project(V.block(j + 1), j, w, h, REORTHOGONALISE_ABOVE)
                if not self.views:
                    V.set(j + 1, w)
                values = _host(h, j + 3)
            column, norm_in = values[:j + 2], abs(values[j + 2])
            self.iterations += 1
            if not all(map(_finite, column)) or not math.isfinite(norm_in):
                end = self.not_finite()
                record.append(self.iterations, float("nan"))
                break
            previous = (list(column), norm_in)
            status = lsq.absorb(j, column, norm_in)
            if status == "singular":
                end = self.singular(lsq.diagonal)
                record.append(self.iterations, lsq.estimate)
                self._report(lsq.estimate)
                break
            record.append(self.iterations, lsq.estimate)
            self._report(lsq.estimate)
            if status == "breakdown" or lsq.estimate <= self.tol:
                break
        self.update(V, Z, lsq.R, lsq.g, lsq.columns)
        return lsq.estimate, end, h

    def not_finite(self) -> tuple[str, str]:
        return ("DIVERGED_NANORINF", (f"NaN or Inf in Arnoldi step {self.iterations} "
                                      "(from A or M); x is the iterate before it"))

    def singular(self, diagonal: float) -> tuple[str, str]:
        return ("DIVERGED_BREAKDOWN",
                (f"the rotated Hessenberg diagonal {diagonal:.3e} at iteration "
                 f"{self.iterations} vanished to working precision: A M is singular "
                 "on the Krylov space (x keeps the steps before it)"))

    def absorb_again(self, j: int, column: list, norm_in: float, lsq: _LeastSquares):
        """Column ``j`` (the last absorbed), corrected, in place of the one absorbed.

        Returns None where the cycle goes on, ``(reason, message)`` where the
        corrected column makes ``A M`` singular, and ``True`` where it ends the
        cycle otherwise (a breakdown, or the tolerance met). The history's last
        entry takes the corrected estimate (the callback has seen the first).
        """
        lsq.undo()
        if not all(map(_finite, column)):
            self.record.norms[-1] = float("nan")
            return self.not_finite()
        status = lsq.absorb(j, column, norm_in)
        self.record.norms[-1] = lsq.estimate
        if status == "singular":
            return self.singular(lsq.diagonal)
        if status == "breakdown" or lsq.estimate <= self.tol:
            return True
        return None

    def repair(self, V: _Basis, j: int, column: list, norm_in: float, lsq: _LeastSquares):
        """Both classical passes for ``v_{j+1}`` (made by step ``j``, the last absorbed),
        and its column of ``H`` corrected (:meth:`absorb_again`'s returns).

        ``v_{j+1} = w_1 / ||w_1||`` is orthogonalised again
        (:func:`cext.numba.gmres.gmres_project` with ``tau = 0``): ``w_1 =
        ||w_1|| (V c + nu v_new)``, so ``h_{i,j} += ||w_1|| c_i`` and
        ``h_{j+1,j} = ||w_1|| nu``.
        """
        self.repairs += 1
        correction = self.xp.zeros((j + 3,), dtype=self.coef_dtype)
        _, correction = self.kernels.gmres_project(V.array, j, V.array[j + 1, :], correction,
                                                   0.0)
        values = _host(correction, j + 2)
        coefficients, nu = values[:j + 1], abs(values[j + 1])
        size = column[j + 1]
        corrected = [column[i] + size * coefficients[i] for i in range(j + 1)]
        corrected.append(size * nu if math.isfinite(nu) else float("nan"))
        return self.absorb_again(j, corrected, norm_in, lsq)

    def _report(self, estimate: float) -> None:
        if self.callback_type == "pr_norm":
            self.callback(estimate / self.bnorm)

    def update(self, V: _Basis, Z: _Basis | None, R: list, g: list, columns: int) -> None:
        """``x += M V y`` (``x += Z y`` when flexible) with ``R y = g`` (back substitution)."""
        if columns == 0:
            return
        xp, K = self.xp, self.kernels
        y = [0.0] * columns
        for i in reversed(range(columns)):
            total = g[i]
            for l in range(i + 1, columns):
                total -= R[l][i] * y[l]
            y[i] = total / R[i][i]
        coefficients = xp.asarray(y, dtype=self.coef_dtype)
        if Z is not None:
            self.x = K.gmres_combine(Z.block(columns), coefficients, columns, self.x)
        elif self.M is None:
            self.x = K.gmres_combine(V.block(columns), coefficients, columns, self.x)
        else:
            u = K.gmres_combine(V.block(columns), coefficients, columns,
                                xp.zeros_like(self.x))
            correction = self.M.matvec(u)
            self.record.psolves += 1
            if self.in_place:
                self.x += correction
            else:
                self.x = self.x + correction


class _LeastSquares:
    """The rotated Hessenberg matrix of one cycle (``R``, ``g``, the Givens rotations),
    one column at a time; the last column can be taken back and absorbed again."""

    def __init__(self, beta: float, eps: float):
        self.eps = eps
        self.g = [beta]             # the rotated right-hand side beta e_1
        self.rotations: list = []   # (c, s) of each step
        self.R: list = []           # R[j]: column j of the rotated Hessenberg matrix
        self.scale = 0.0            # max ||A M v_j||, the scale of H
        self.estimate = beta
        self.columns = 0
        self.diagonal = 0.0         # |the last rotated diagonal|
        self._before = None

    def absorb(self, j: int, column: list, norm_in: float) -> str:
        """Column ``j`` of ``H`` (``h_{0..j+1,j}``; modified) with ``||A M v_j||``:
        ``"breakdown"`` (absorbed; the Krylov space is invariant), ``"singular"``
        (not absorbed: ``A M`` is singular on the space) or ``"ok"``."""
        eps = self.eps
        self._before = (self.scale, self.estimate, self.g[j])
        self.scale = max(self.scale, norm_in)
        # scipy's test of an exact solution in the Krylov space (lucky breakdown)
        breakdown = abs(column[j + 1]) <= eps * norm_in
        if breakdown:
            column[j + 1] = 0.0
        for i, (c, s) in enumerate(self.rotations):
            column[i], column[i + 1] = (c * column[i] + s * column[i + 1],
                                        -s.conjugate() * column[i] + c * column[i + 1])
        c, s, diagonal = _givens(column[j], column[j + 1])
        self.diagonal = abs(diagonal)
        if not self.diagonal > SINGULAR_FACTOR * eps * self.scale:
            return "singular"
        column[j] = diagonal
        self.rotations.append((c, s))
        self.R.append(column[:j + 1])
        self.g.append(-s.conjugate() * self.g[j])
        self.g[j] = c * self.g[j]
        self.estimate = abs(self.g[j + 1])
        self.columns = j + 1
        return "breakdown" if breakdown else "ok"

    def undo(self) -> None:
        """Take back the last :meth:`absorb` (column ``columns - 1``)."""
        j = self.columns - 1
        self.scale, self.estimate, g_j = self._before
        del self.rotations[j:], self.R[j:], self.g[j + 1:]
        self.g[j] = g_j
        self.columns = j


def _finite(value) -> bool:
    return math.isfinite(abs(value))
