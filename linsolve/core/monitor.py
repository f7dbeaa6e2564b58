"""The monitor: one contract for every solver's ``monitor=`` argument.

``monitor`` may be ``True`` (PETSc's ``-ksp_monitor`` lines on stdout), an
object with ``write`` (the same lines, e.g. a file or ``io.StringIO``), or a
callable ``monitor(k, rnorm)``. Whatever it is, each line also goes to the
``"linsolve"`` logger at DEBUG level, so a pipeline can collect every
solver's progress through :mod:`logging` without touching the call.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

import numpy as np

LOGGER = logging.getLogger("linsolve")
"""The logger every solver's residual lines go to (DEBUG level)."""


def line_format(label: str) -> str:
    """PETSc's monitor line for a solver called ``label`` (``"KSP"``, ``"SOR"``, ...).

    Examples
    --------
    >>> line_format("KSP") % (3, 0.25)
    '  3 KSP Residual norm 2.500000000000e-01'
    """
    return f"%3d {label} Residual norm %14.12e"


class Monitor:
    """A solver's ``monitor`` argument, checked once, called as ``monitor(k, rnorm)``.

    Parameters
    ----------
    monitor : bool, file-like or callable
        See the module docstring; False or None reports to the logger only.
    label : str
        The solver's name in the line, PETSc style (``"KSP"`` for the Krylov
        methods, ``"SOR"`` for the stationary sweeps).
    active : bool
        False mutes this process entirely (the MPI solvers report on rank 0).
    flush : bool
        Flush stdout after each printed line (the MPI ranks' output is
        forwarded by ``mpiexec`` and would otherwise arrive late).

    Raises
    ------
    TypeError
        ``monitor`` is none of the accepted kinds.

    Examples
    --------
    >>> seen = []
    >>> report = Monitor(lambda k, rnorm: seen.append((k, rnorm)), "KSP")
    >>> report(0, 1.0); report(1, 0.5)
    >>> seen, report.watching
    ([(0, 1.0), (1, 0.5)], True)
    >>> Monitor(False, "SOR").watching
    False
    """

    def __init__(self, monitor: Any, label: str, *, active: bool = True, flush: bool = False):
        self.format = line_format(label)
        sink = _sink(monitor, self.format, flush)
        self.active = active
        self._sink = sink if active else None

    @property
    def watching(self) -> bool:
        """Whether a caller's sink sees each line (the logger alone does not count)."""
        return self._sink is not None

    @property
    def listening(self) -> bool:
        """Whether a line would go anywhere now: the caller's sink, or the logger at DEBUG."""
        return self._sink is not None or (self.active and LOGGER.isEnabledFor(logging.DEBUG))

    def __call__(self, k: int, rnorm: float) -> None:
        if self._sink is not None:
            self._sink(k, rnorm)
        if self.active and LOGGER.isEnabledFor(logging.DEBUG):
            LOGGER.debug(self.format, k, rnorm)


def _sink(monitor, line: str, flush: bool) -> Callable[[int, float], None] | None:
    """``monitor`` as a function ``(k, rnorm) -> None``, or None; TypeError for other kinds."""
    if isinstance(monitor, (bool, np.bool_)) or (isinstance(monitor, int) and monitor in (0, 1)):
        monitor = bool(monitor)  # 0 and 1 read as the booleans they were once documented as
    if monitor is None or monitor is False:
        return None
    if monitor is True:
        # sys.stdout looked up at each line, so redirections made later apply
        return lambda k, rnorm: print(line % (k, rnorm), file=sys.stdout, flush=flush)
    write = getattr(monitor, "write", None)
    if callable(write):
        return lambda k, rnorm: write(line % (k, rnorm) + "\n")
    if callable(monitor):
        return monitor
    raise TypeError(f"monitor must be True/False, a file-like object with write(), or a "
                    f"callable monitor(k, rnorm); got {type(monitor).__name__}")
