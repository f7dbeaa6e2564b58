"""Communicators: a do-nothing serial one, and MPI's world through mpi4py (imported lazily).

The solvers in :mod:`linsolve.mpi` talk to a communicator through the few
collective operations below, never to mpi4py directly, so the same code
runs in one process without MPI (:class:`SerialComm`) and under
``mpiexec -n P python -m mpi4py script.py`` (:class:`MPIComm`).

Reductions go through ``Allreduce`` (PETSc's ``VecDot``); every rank gets
the same bits (MPICH's recursive-doubling sum adds the same two operands on
both partners, and IEEE addition is commutative), which keeps the solvers'
control flow identical on all ranks.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import numpy as np

__all__ = ["MPIComm", "SerialComm", "as_comm", "check_same_settings", "raise_collectively",
           "raise_if_any_rank", "world"]

# Environment variables set by MPI launchers (MPICH/hydra, Open MPI, Slurm's PMI).
_LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


class _DoneRequest:
    """A completed request (what the serial communicator's non-blocking calls return)."""

    def __init__(self, value=None):
        self._value = value

    def wait(self):
        return self._value


class SerialComm:
    """One process, no MPI: every collective is the identity.

    Examples
    --------
    >>> import numpy as np
    >>> comm = SerialComm()
    >>> comm.rank, comm.size, comm.allreduce_sum(np.array([1.0, 2.0])).tolist()
    (0, 1, [1.0, 2.0])
    """

    rank = 0
    size = 1

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        """Elementwise sum over ranks (a copy)."""
        return np.array(values, dtype=np.float64, copy=True)

    def iallreduce_sum(self, values: np.ndarray):
        """Non-blocking :meth:`allreduce_sum`; ``.wait()`` returns the sums."""
        return _DoneRequest(self.allreduce_sum(values))

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather(self, obj: Any) -> list:
        return [obj]

    def alltoall(self, objs: Sequence[Any]) -> list:
        return list(objs)

    def scatter(self, objs: Sequence[Any] | None, root: int = 0) -> Any:
        return objs[0]

    def gather(self, obj: Any, root: int = 0) -> list:
        return [obj]

    def allgatherv(self, local: np.ndarray, counts: Sequence[int]) -> np.ndarray:
        """Concatenate every rank's 1-D ``local`` (``counts[r]`` entries from rank r)."""
        return np.array(local, copy=True)

    def gatherv(self, local: np.ndarray, counts: Sequence[int], root: int = 0):
        return np.array(local, copy=True)

    def start_exchange(self, sends, recvs):
        """Post sends ``[(rank, array)]`` and receives ``[(rank, buffer)]``; returns a waitable."""
        if sends or recvs:
            raise ValueError("the serial communicator has no other rank to exchange with")
        return _DoneRequest()

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        raise SystemExit(code)

    def __repr__(self) -> str:
        return "SerialComm()"


class _Requests:
    def __init__(self, MPI, requests):
        self._MPI, self._requests = MPI, requests

    def wait(self):
        self._MPI.Request.Waitall(self._requests)


class _ReduceRequest:
    def __init__(self, request, result):
        self._request, self._result = request, result

    def wait(self):
        self._request.Wait()
        return self._result


class MPIComm:
    """An mpi4py communicator behind the same small interface as :class:`SerialComm`.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Usually ``MPI.COMM_WORLD`` (see :func:`world`).
    """

    def __init__(self, comm):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def allreduce_sum(self, values: np.ndarray) -> np.ndarray:
        send = np.ascontiguousarray(values, dtype=np.float64)
        result = np.empty_like(send)
        self.comm.Allreduce(send, result, op=self._MPI.SUM)
        return result

    def iallreduce_sum(self, values: np.ndarray):
        send = np.array(values, dtype=np.float64, copy=True)
        result = np.empty_like(send)
        request = self.comm.Iallreduce(send, result, op=self._MPI.SUM)
        # keep the send buffer alive until the request completes
        return _ReduceRequest(request, result) if request is not None else _DoneRequest(result)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def allgather(self, obj: Any) -> list:
        return self.comm.allgather(obj)

    def alltoall(self, objs: Sequence[Any]) -> list:
        return self.comm.alltoall(list(objs))

    def scatter(self, objs, root: int = 0):
        return self.comm.scatter(objs, root=root)

    def gather(self, obj: Any, root: int = 0):
        return self.comm.gather(obj, root=root)

    def allgatherv(self, local: np.ndarray, counts: Sequence[int]) -> np.ndarray:
        local = np.ascontiguousarray(local)
        counts = np.asarray(counts, dtype=np.int64)
        result = np.empty(int(counts.sum()), dtype=local.dtype)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.comm.Allgatherv(local, [result, (counts, displs)])
        return result

    def gatherv(self, local: np.ndarray, counts: Sequence[int], root: int = 0):
        local = np.ascontiguousarray(local)
        counts = np.asarray(counts, dtype=np.int64)
        if self.rank == root:
            result = np.empty(int(counts.sum()), dtype=local.dtype)
            displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
            self.comm.Gatherv(local, [result, (counts, displs)], root=root)
            return result
        self.comm.Gatherv(local, None, root=root)
        return None

    def start_exchange(self, sends, recvs, tag: int = 77):
        """Post ``Irecv`` for every ``(rank, buffer)`` and ``Isend`` for every ``(rank, array)``."""
        requests = [self.comm.Irecv(buffer, source=rank, tag=tag) for rank, buffer in recvs]
        requests += [self.comm.Isend(array, dest=rank, tag=tag) for rank, array in sends]
        return _Requests(self._MPI, requests)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (``MPI_Abort``)."""
        self.comm.Abort(code)

    def __repr__(self) -> str:
        return f"MPIComm(rank={self.rank}, size={self.size})"


def world() -> MPIComm:
    """``MPI.COMM_WORLD`` wrapped; imports mpi4py (and so initialises MPI) on first call.

    Raises
    ------
    ImportError
        mpi4py is not installed: ``pip install "curvature-linsolve[mpi]"``.
    """
    try:
        from mpi4py import MPI
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("linsolve.mpi needs mpi4py and an MPI library: "
                          "pip install 'mpi4py>=4.0' mpich (the [mpi] extra)") from error
    return MPIComm(MPI.COMM_WORLD)


def _launched_by_mpi() -> bool:
    return "mpi4py.MPI" in sys.modules or any(v in os.environ for v in _LAUNCHER_VARIABLES)


def as_comm(comm: Any = None):
    """The communicator to use: ours as given, an mpi4py one wrapped, or a default.

    ``None`` means :func:`world` when the process was started by an MPI
    launcher (or mpi4py is already imported), else :class:`SerialComm`: a
    script runs unchanged with and without ``mpiexec``.

    Examples
    --------
    >>> as_comm(SerialComm()).size
    1
    """
    if comm is None:
        return world() if _launched_by_mpi() else SerialComm()
    if isinstance(comm, (SerialComm, MPIComm)):
        return comm
    if type(comm).__module__.startswith("mpi4py"):
        return MPIComm(comm)
    if all(hasattr(comm, name) for name in ("rank", "size", "allreduce_sum", "start_exchange")):
        return comm
    raise TypeError(f"comm must be a linsolve.mpi communicator or an mpi4py Comm, "
                    f"got {type(comm).__name__}")


def raise_collectively(comm, error: BaseException | None) -> None:
    """Raise on every rank once some rank is known (from a reduced flag) to hold an ``error``.

    Collective (one ``allgather`` of the messages): call it on every rank,
    and only after a reduction has told every rank that some rank failed.
    The failing rank re-raises its own exception; the others raise the same
    class (``ValueError``/``TypeError``, else ``RuntimeError``) saying which
    rank failed and why, so no rank is left waiting in the next collective.
    """
    reports = comm.allgather(_report(error))
    _raise_reported(reports, error)


def _report(error: BaseException | None):
    """What :func:`raise_collectively` sends of a rank's ``error``: ``(class name, message)``."""
    return None if error is None else (type(error).__name__, str(error))


def _raise_reported(reports: Sequence[Any], error: BaseException | None) -> None:
    """Raise this rank's ``error``, or the first failing rank's report, from gathered reports."""
    if error is not None:
        raise error
    failed = [(rank, report) for rank, report in enumerate(reports) if report is not None]
    if not failed:  # pragma: no cover - only if the caller's flag was wrong
        raise RuntimeError("another rank reported an error but sent no message")
    rank, (kind, message) = failed[0]
    cls = {"ValueError": ValueError, "TypeError": TypeError}.get(kind, RuntimeError)
    raise cls(f"another rank had invalid input: rank {rank}: {kind}: {message}")


def raise_if_any_rank(comm, error: BaseException | None) -> None:
    """Collective check: one ``Allreduce`` of a flag, then raise on every rank if any rank failed.

    Validation that can fail on some ranks only (a local vector of the wrong
    length, a zero diagonal in one block) must not raise before the next
    collective: the other ranks would wait there for ever. Each rank passes
    its own ``error`` (or ``None``) here instead.

    Examples
    --------
    >>> raise_if_any_rank(SerialComm(), None)
    >>> raise_if_any_rank(SerialComm(), ValueError("b has length 3"))
    Traceback (most recent call last):
    ...
    ValueError: b has length 3
    """
    flag = comm.allreduce_sum(np.array([0.0 if error is None else 1.0]))[0]
    if flag > 0:
        raise_collectively(comm, error)


_SETTINGS = "settings"  # the tag of a rank's report that it has no error


def check_same_settings(comm, settings: dict[str, Any] | None,
                        error: BaseException | None = None) -> None:
    """Collective start of a distributed solve: every rank passed the same scalar settings.

    One ``allgather`` of this rank's validated ``settings`` (name -> plain
    value: ``rtol``, ``maxiter``, ``variant``, ...) and of its validation
    ``error`` (or ``None``; ``settings`` may be ``None`` then). If some rank
    failed, every rank raises as :func:`raise_collectively`; if the ranks
    disagree on a setting, every rank raises the same ``ValueError`` naming
    it, since ranks that run different iterations would wait for each other
    in different collectives for ever.

    Examples
    --------
    >>> check_same_settings(SerialComm(), {"rtol": 1e-8, "maxiter": 100})
    >>> check_same_settings(SerialComm(), None, ValueError("rtol must be a real number >= 0"))
    Traceback (most recent call last):
    ...
    ValueError: rtol must be a real number >= 0
    """
    # each rank sends ("settings", its settings) or, like raise_collectively,
    # (error class name, message)
    reports = comm.allgather(_report(error) or (_SETTINGS, settings))
    failures = [None if kind == _SETTINGS else (kind, payload) for kind, payload in reports]
    if error is not None or any(failure is not None for failure in failures):
        _raise_reported(failures, error)
    gathered = [given for _, given in reports]
    names = sorted({name for given in gathered for name in given})
    for name in names:
        values = [given.get(name, "<not given>") for given in gathered]
        if any(value != values[0] for value in values):
            per_rank = ", ".join(f"{value!r} on rank {rank}" for rank, value in enumerate(values))
            raise ValueError(f"ranks passed different {name}: {per_rank}; every rank must call "
                             f"the distributed solver with the same {name}")
