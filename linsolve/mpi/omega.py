"""Learned omega on top of the distributed solvers: rank 0's tuner decides, all ranks solve.

The tuner (:class:`linsolve.OmegaBandit` or
:class:`linsolve.OmegaContextualBandit`) is used unchanged through its
public ``choose``/``update``: it lives on rank 0 only, its choice is
broadcast, every rank runs the distributed solve, and rank 0 learns from the
iteration count (which every rank computed identically). Its
``state_dict()`` is therefore rank 0's alone, as with any checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..result import SolveResult
from .comm import check_same_settings
from .matrix import DistCSR, _error_marker, _raise_if_marker

__all__ = ["tuned_solve", "SOLVERS"]

SOLVERS = ("sor", "ssor-pcg")


def tuned_solve(tuner: Any, A: DistCSR, b: Any, context=None, solver: str = "sor", *,
                root: int = 0, **kwargs) -> SolveResult:
    """Distributed counterpart of ``tuner.solve(A, b, context, solver=...)``.

    Parameters
    ----------
    tuner : OmegaBandit, OmegaContextualBandit, or None
        Needed on ``root`` only (other ranks may pass ``None``).
    A : DistCSR
    b : local or global numpy vector
    context : float, optional
        Read on ``root``.
    solver : {"sor", "ssor-pcg"}
        ``"sor"``: block-Jacobi SOR (:func:`linsolve.mpi.sor`, ``symmetric=False``
        unless given); ``"ssor-pcg"``: :func:`linsolve.mpi.pcg` with
        :class:`linsolve.mpi.BlockSOR` as preconditioner.
    **kwargs
        Passed on; ``rtol`` defaults to 1e-8 and ``maxiter`` to ``10 n``.

    Returns
    -------
    SolveResult
        With ``extra["omega"]``, ``extra["arm"]``, ``extra["cost"]`` on every rank.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from linsolve import OmegaBandit
    >>> from linsolve.mpi import DistCSR, SerialComm, tuned_solve
    >>> A = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(10, 10), format="csr")
    >>> tuner = OmegaBandit(seed=0)
    >>> result = tuned_solve(tuner, DistCSR.from_global(A, comm=SerialComm()), np.ones(10))
    >>> result.converged, tuner.history[0].cost == result.iterations
    (True, True)
    """
    from .pcg import pcg
    from .sor import BlockSOR, sor

    if not isinstance(A, DistCSR):
        raise TypeError(f"A must be a linsolve.mpi.DistCSR, got {type(A).__name__}")
    comm = A.comm
    rtol = kwargs.pop("rtol", 1e-8)
    maxiter = kwargs.pop("maxiter", None)
    settings = error = None
    try:  # a bad argument on one rank raises on all of them, in check_same_settings
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        if maxiter is None:
            maxiter = 10 * A.shape[0]
        if isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 1:
            raise ValueError(f"maxiter must be a positive int, got {maxiter!r}")
        if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < comm.size:
            raise ValueError(f"root must be a rank in [0, {comm.size}), got {root!r}")
        # rtol and the solver's own keywords are compared by that solver's check
        settings = {"solver": f"linsolve.mpi.tuned_solve({solver!r})", "root": root,
                    "maxiter": maxiter}
    except (ValueError, TypeError) as caught:
        error = caught
    check_same_settings(comm, settings, error)
    choice = error = None
    if comm.rank == root:
        try:
            if tuner is None:
                raise ValueError(f"the tuner is needed on rank {root}")
            choice = tuner.choose(context)
        except (ValueError, TypeError, RuntimeError) as caught:
            # broadcast instead of the choice: the other ranks wait in bcast
            error = caught
            choice = _error_marker(caught)
    arm, omega = _raise_if_marker(comm.bcast(choice, root=root), root, error)
    try:
        if solver == "sor":
            kwargs.setdefault("symmetric", False)
            result = sor(A, b, omega, rtol=rtol, maxiter=maxiter, **kwargs)
        else:
            result = pcg(A, b, M=BlockSOR(A, omega), rtol=rtol, maxiter=maxiter, **kwargs)
    except BaseException:
        if comm.rank == root:
            tuner.cancel()  # as tuner.solve: a solve that raised leaves the tuner as it was
        raise
    cost = result.iterations if result.converged else maxiter
    if comm.rank == root:
        tuner.update(cost)
    return dataclasses.replace(result, extra={**result.extra, "omega": omega, "arm": arm,
                                              "cost": cost})
