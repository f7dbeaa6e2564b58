"""The one result type of every linear solver."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Reason = Literal[
    "CONVERGED_RTOL",
    "CONVERGED_ATOL",
    "DIVERGED_ITS",
    "DIVERGED_BREAKDOWN",
    "DIVERGED_INDEFINITE_MAT",
    "DIVERGED_INDEFINITE_PC",
    "DIVERGED_NANORINF",
    "DIVERGED_DTOL",
]
"""PETSc's ``KSPConvergedReason`` names, the closed set of ``SolveResult.reason``."""

REASONS: tuple[str, ...] = Reason.__args__


@dataclass(frozen=True)
class SolveResult:
    """Outcome of an iterative solve.

    Attributes
    ----------
    x : array
        The final iterate, in the namespace and dtype of the input.
    converged : bool
        True only if the *true* residual ``||b - A x||`` meets the tolerance.
    reason : str
        One of :data:`REASONS` (PETSc's names).
    iterations : int
        Iterations performed.
    residual_norms : numpy.ndarray
        Host float64 array of length ``iterations + 1``, initial residual
        first. Entries are the solver's recursively updated residual norms;
        where the solver replaced its residual by the true one, the entry
        is the true norm. :func:`linsolve.sor` records true norms, NaN for
        the sweeps it did not measure (``check_every > 1``).
    true_residual_norm : float
        ``||b - A x||`` recomputed at exit.
    matvecs : int
        Products with ``A``.
    time : float
        Wall-clock seconds.
    message : str
        A sentence on why the solver stopped, for humans.
    psolves : int
        Applications of the preconditioner.
    info_count : int or None
        What scipy's ``info`` counts when the iteration limit is reached, for
        a method whose scipy counterpart counts something other than
        ``iterations`` (``gmres``: restart cycles); None means ``iterations``.

    Unpacks as ``x, info = result`` with scipy's meaning of ``info``: 0 if
    converged, the iteration count (at least 1; ``info_count`` where set)
    if the iteration limit was reached, -1 on breakdown (indefinite matrix
    or preconditioner, NaN/Inf).

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve import pcg
    >>> x, info = pcg(np.diag([1.0, 2.0]), np.array([1.0, 1.0]))
    >>> info, np.allclose(x, [1.0, 0.5])
    (0, True)
    """

    x: Any
    converged: bool
    reason: str
    iterations: int
    residual_norms: np.ndarray
    true_residual_norm: float
    matvecs: int
    time: float
    message: str = ""
    psolves: int = 0
    extra: dict = field(default_factory=dict, compare=False, repr=False)
    info_count: int | None = None

    def __post_init__(self):
        if self.reason not in REASONS:
            raise ValueError(f"unknown reason {self.reason!r}; expected one of {REASONS}")

    @property
    def info(self) -> int:
        """scipy's convergence flag (see the class docstring)."""
        if self.converged:
            return 0
        if self.reason == "DIVERGED_ITS":
            return max(self.iterations if self.info_count is None else self.info_count, 1)
        return -1

    def __iter__(self):
        return iter((self.x, self.info))


@dataclass(frozen=True)
class BatchSolveResult:
    """Outcome of a batched solve: one :class:`SolveResult` per system.

    ``pcg(A, B)`` with ``B`` of shape ``(..., n)`` returns it. The per-system
    arrays below have ``B``'s leading shape; ``results`` (and indexing,
    ``result[i]``) run over the systems in C order.

    Attributes
    ----------
    results : tuple of SolveResult
        Each system's result, as :func:`linsolve.pcg` would report it alone.
    time : float
        Wall-clock seconds of the whole batch.
    shape : tuple of int
        The leading shape of ``B`` (``(k,)`` for a ``(k, n)`` block).

    Unpacks as ``X, info = result``: the iterates, shaped as ``B``, and a
    host int array of scipy's ``info`` per system.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve import pcg
    >>> result = pcg(np.diag([1.0, 2.0]), np.array([[1.0, 1.0], [2.0, 0.0]]))
    >>> result.x.tolist(), result.converged.tolist(), result[1].reason
    ([[1.0, 0.5], [2.0, 0.0]], [True, True], 'CONVERGED_RTOL')
    """

    results: tuple
    time: float
    shape: tuple = ()

    def __post_init__(self):
        if not self.shape:
            object.__setattr__(self, "shape", (len(self.results),))

    def _per_system(self, values, dtype) -> np.ndarray:
        return np.asarray(values, dtype=dtype).reshape(self.shape)

    @property
    def x(self):
        """The iterates, shaped as ``B`` (``(..., n)``), in ``B``'s namespace and dtype."""
        from array_api_compat import array_namespace

        first = self.results[0].x
        xp = array_namespace(first)
        stacked = xp.stack([r.x for r in self.results], axis=0)
        return xp.reshape(stacked, tuple(self.shape) + (first.shape[0],))

    @property
    def converged(self) -> np.ndarray:
        return self._per_system([r.converged for r in self.results], bool)

    @property
    def reason(self) -> np.ndarray:
        return self._per_system([r.reason for r in self.results], object)

    @property
    def iterations(self) -> np.ndarray:
        return self._per_system([r.iterations for r in self.results], np.int64)

    @property
    def true_residual_norm(self) -> np.ndarray:
        return self._per_system([r.true_residual_norm for r in self.results], np.float64)

    @property
    def info(self) -> np.ndarray:
        """scipy's ``info`` of each system."""
        return self._per_system([r.info for r in self.results], np.int64)

    @property
    def residual_norms(self) -> tuple:
        """Each system's residual history (see :attr:`SolveResult.residual_norms`)."""
        return tuple(r.residual_norms for r in self.results)

    @property
    def matvecs(self) -> int:
        """Products of ``A`` with one vector, summed over the systems (a block product of
        ``a`` active systems counts ``a``)."""
        return sum(r.matvecs for r in self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> SolveResult:
        return self.results[index]

    def __iter__(self):
        return iter((self.x, self.info))


MinimizeReason = Literal[
    "CONVERGED_GTOL",
    "CONVERGED_KKT",
    "DIVERGED_ITS",
    "DIVERGED_LINE_SEARCH",
    "DIVERGED_BREAKDOWN",
    "DIVERGED_NANORINF",
]
"""The closed set of ``MinimizeResult.reason``: PETSc-style names for minimizers
(``CONVERGED_GTOL``: gradient norm below tolerance; ``CONVERGED_KKT``: KKT
residual of a constrained problem below tolerance)."""

MINIMIZE_REASONS: tuple[str, ...] = MinimizeReason.__args__

HISTORY_FIELDS: tuple[str, ...] = (
    "fun", "grad_norm", "step", "n_fun", "n_grad", "n_hess", "n_factorizations")
"""Columns of ``MinimizeResult.history``; the ``n_*`` columns are cumulative."""


@dataclass(frozen=True)
class MinimizeResult:
    """Outcome of a minimizer (Newton family, sketched Newton).

    Attributes
    ----------
    x : array
        The final iterate, in the namespace and dtype of ``x0``.
    fun : float
        Objective value at ``x``.
    converged : bool
        Whether the stopping test held at ``x``.
    reason : str
        One of :data:`MINIMIZE_REASONS`.
    iterations : int
        Outer iterations performed.
    history : dict of numpy.ndarray
        Host arrays of length ``iterations + 1`` (the start first), keyed by
        :data:`HISTORY_FIELDS`: per-iteration ``fun``, ``grad_norm`` and
        ``step`` (the step length taken to reach that iterate; 0 at the
        start) and the cumulative counters ``n_fun``, ``n_grad``,
        ``n_hess``, ``n_factorizations``. Methods may add columns of their
        own (documented by the method).
    message : str
        A sentence on why the minimizer stopped.
    time : float
        Wall-clock seconds.

    The totals ``n_fun``, ``n_grad``, ``n_hess`` and ``n_factorizations``
    are also properties (the last history entry), for cost tables.

    Examples
    --------
    >>> import numpy as np
    >>> from linsolve import MinimizeResult
    >>> h = {k: np.zeros(1) for k in ("fun", "grad_norm", "step", "n_fun",
    ...                               "n_grad", "n_hess", "n_factorizations")}
    >>> r = MinimizeResult(np.zeros(2), 0.0, True, "CONVERGED_GTOL", 0, h)
    >>> r.n_hess
    0
    """

    x: Any
    fun: float
    converged: bool
    reason: str
    iterations: int
    history: dict
    message: str = ""
    time: float = 0.0
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.reason not in MINIMIZE_REASONS:
            raise ValueError(
                f"unknown reason {self.reason!r}; expected one of {MINIMIZE_REASONS}")
        missing = [k for k in HISTORY_FIELDS if k not in self.history]
        if missing:
            raise ValueError(f"history lacks the columns {missing}")

    def _total(self, key: str) -> int:
        column = self.history[key]
        return int(column[-1]) if len(column) else 0

    @property
    def n_fun(self) -> int:
        return self._total("n_fun")

    @property
    def n_grad(self) -> int:
        return self._total("n_grad")

    @property
    def n_hess(self) -> int:
        return self._total("n_hess")

    @property
    def n_factorizations(self) -> int:
        return self._total("n_factorizations")


class HistoryRecorder:
    """Collects one row per iterate and returns ``MinimizeResult.history``.

    The cost counters are attributes a minimizer increments as it spends;
    :meth:`record` snapshots them beside the per-iterate values.

    Examples
    --------
    >>> rec = HistoryRecorder()
    >>> rec.n_fun += 1; rec.n_grad += 1
    >>> rec.record(fun=2.0, grad_norm=1.0, step=0.0)
    >>> rec.arrays()["n_fun"]
    array([1])
    """

    def __init__(self, *extra_columns: str):
        self.n_fun = self.n_grad = self.n_hess = self.n_factorizations = 0
        self._columns = HISTORY_FIELDS + tuple(extra_columns)
        self._rows: dict[str, list] = {k: [] for k in self._columns}

    def record(self, *, fun: float, grad_norm: float, step: float, **extra: float) -> None:
        values = dict(fun=float(fun), grad_norm=float(grad_norm), step=float(step),
                      n_fun=self.n_fun, n_grad=self.n_grad, n_hess=self.n_hess,
                      n_factorizations=self.n_factorizations, **extra)
        for key in self._columns:
            self._rows[key].append(values.get(key, np.nan))

    def arrays(self) -> dict:
        return {k: np.asarray(v) for k, v in self._rows.items()}
