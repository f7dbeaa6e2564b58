"""How many threads the compiled kernels use: the user's ceiling, lowered when the machine is busy.

Why not simply "every core": Numba's OpenMP layer ends each parallel region
at a barrier, and its idle threads spin. On a shared machine a thread that
loses its core mid-region holds the whole region until the scheduler gives
it back (a time slice, milliseconds), so 2-thread kernels beside one busy
process ran slower than scipy's serial code, and far slower under heavy
load, while the same kernels on one thread stayed close to scipy. The
measurements for this design are in ``docs/threads.md``.

The policy, applied by :func:`kernel_threads` around every solve (the
solvers call it, and refresh it once per iteration), and by
:func:`managed` around every parallel kernel the registry hands out when it
is called outside such a block:

1. The ceiling: :func:`set_num_threads` / :func:`num_threads`; by default
   the cores this process may run on, or one thread per rank when launched
   by ``mpiexec`` (several ranks per node would otherwise each start a
   team of all cores: the same oversubscription).
2. Small work runs on one thread: below ``MIN_WORK_PER_THREAD`` entries
   per thread, the region's start and barrier cost more than they save.
3. Cores other processes are using are not counted: the load is measured
   from ``/proc/stat`` (CPU time of the allowed cores, minus this
   process's own) over the last window, refreshed at most every
   ``PROBE_INTERVAL`` seconds, so a long solve follows the load as it
   changes. Where ``/proc`` is missing the ceiling is used as is.

With this policy pcg stays faster than scipy's ``cg`` per iteration quiet
and beside busy processes (``python -m bench speed --contention K``). The
alternatives measured (passive OpenMP waits, one thread always, a fused
direction update) are in ``docs/threads.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import threading
import time
from typing import Callable, Iterator

MIN_WORK_PER_THREAD = 50_000
"""Entries (rows plus stored nonzeros, or vector entries) below which a thread does not pay."""

PROBE_INTERVAL = 0.2
"""Seconds between two load measurements: ``/proc/stat`` counts 10 ms ticks, so a
0.1 s window on 2 cores read up to 0.7 busy cores on a quiet machine."""

_MPI_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_LOCAL_SIZE",
                             "MV2_COMM_WORLD_LOCAL_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")

# The process-wide ceiling set by set_num_threads (None: the default), and a
# per-context override for the num_threads context manager: like
# threadpoolctl's limits, a thread count is configuration of the process.
_ceiling: int | None = None
_override: contextvars.ContextVar[int | None] = contextvars.ContextVar("cext_threads",
                                                                       default=None)
# True inside kernel_threads: the block's owner chose the count for its kernels
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("cext_threads_inside",
                                                               default=False)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1.

    Examples
    --------
    >>> 1 <= available_cores() <= os.cpu_count()
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _mpi_ranks_on_node() -> int:
    for name in _MPI_LOCAL_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _pool_size() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def default_num_threads() -> int:
    """The ceiling when none is set: all allowed cores, or 1 per MPI rank under ``mpiexec``.

    Examples
    --------
    >>> default_num_threads() >= 1
    True
    """
    if _mpi_ranks_on_node() > 1:
        return 1
    return min(available_cores(), _pool_size())


def get_num_threads() -> int:
    """The thread ceiling in force here: :func:`num_threads`, :func:`set_num_threads`, or the default.

    Examples
    --------
    >>> with num_threads(1):
    ...     get_num_threads()
    1
    """
    value = _override.get()
    if value is None:
        value = _ceiling if _ceiling is not None else default_num_threads()
    return value


def _check_count(n) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be a positive int or None, got {n!r}")
    pool = _pool_size()
    if n > pool:
        raise ValueError(f"{n} threads requested but Numba's pool has {pool} "
                         f"(NUMBA_NUM_THREADS); set it before the first import to use more")
    return n


def set_num_threads(n: int | None) -> None:
    """Set the kernels' thread ceiling for the whole process (``None``: back to the default).

    The kernels may still use fewer: one thread for small work, and fewer
    than the ceiling while other processes keep cores busy.

    Parameters
    ----------
    n : int or None
        At least 1 and at most Numba's pool size (``NUMBA_NUM_THREADS``).

    Examples
    --------
    >>> set_num_threads(1); get_num_threads()
    1
    >>> set_num_threads(None)
    """
    global _ceiling
    _ceiling = _check_count(n)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Context manager: thread ceiling ``n`` inside the block, in this thread or task only.

    Examples
    --------
    >>> with num_threads(1):
    ...     get_num_threads()
    1
    """
    token = _override.set(_check_count(n))
    try:
        yield
    finally:
        _override.reset(token)


class _LoadProbe:
    """Cores other processes used over the last window, from ``/proc/stat`` deltas."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sample: tuple[float, float, float] | None = None  # (time, busy s, own cpu s)
        self._others = 0.0
        self._tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._cpus = None

    def _busy_seconds(self) -> float | None:
        if self._cpus is None:
            self._cpus = ({f"cpu{c}" for c in os.sched_getaffinity(0)}
                          if hasattr(os, "sched_getaffinity") else set())
        try:
            with open("/proc/stat", "rb") as stat:
                text = stat.read().decode("ascii", "replace")
        except OSError:
            return None
        busy = 0
        for line in text.splitlines():
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            fields = line.split()
            if fields[0] in self._cpus:
                # user nice system idle iowait irq softirq steal: all but idle, iowait
                values = [int(v) for v in fields[1:9]]
                busy += sum(values) - values[3] - values[4]
        return busy / self._tick

    def _instant_others(self) -> float:
        # /proc/loadavg's "running/total": runnable tasks now on the whole host,
        # ourselves included; scaled to the share of the host's CPUs we may use
        try:
            with open("/proc/loadavg", "rb") as loadavg:
                running = int(loadavg.read().split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        share = available_cores() / max(os.cpu_count() or 1, available_cores())
        return float(max(0, running - 1)) * share

    def others(self) -> float:
        """Estimated number of cores busy with other processes' work."""
        now = time.monotonic()
        with self._lock:
            sample = self._sample
            if sample is not None and now - sample[0] < PROBE_INTERVAL:
                return self._others
            busy = self._busy_seconds()
            if busy is None:
                return 0.0
            own = time.process_time()
            if sample is None or now - sample[0] > 10 * PROBE_INTERVAL:
                # no recent window: the instantaneous run queue stands in
                self._others = self._instant_others()
            else:
                elapsed = now - sample[0]
                self._others = max(0.0, ((busy - sample[1]) - (own - sample[2])) / elapsed)
            self._sample = (now, busy, own)
            return self._others


_probe = _LoadProbe()


def busy_cores() -> float:
    """Cores other processes have kept busy lately, as the policy sees it (0 without ``/proc``).

    Examples
    --------
    >>> busy_cores() >= 0.0
    True
    """
    return _probe.others()


def threads_for(work: int) -> int:
    """Threads a kernel doing ``work`` entries should use now (at least 1).

    ``min(ceiling, work / MIN_WORK_PER_THREAD, free cores)``, where free
    cores are the allowed ones not kept busy by other processes (rounded).

    Examples
    --------
    >>> threads_for(10)
    1
    >>> 1 <= threads_for(10**9) <= get_num_threads()
    True
    """
    count = int(work) // MIN_WORK_PER_THREAD
    if count <= 1:
        # before the ceiling is looked up (environment, affinity, the pool):
        # small solves, which pipelines run by the thousand, pay nothing for it
        return 1
    count = min(get_num_threads(), count)
    if count <= 1:
        return 1
    free = available_cores() - busy_cores()
    # rounded: tick noise and daemons stay below half a core, while a busy
    # process beside two threads of ours still shows about 0.67 of one
    return max(1, min(count, math.floor(free + 0.5)))


@contextlib.contextmanager
def kernel_threads(work: int) -> Iterator["ThreadAdjuster"]:
    """Run the block's kernels on :func:`threads_for` threads; restore Numba's count after.

    Numba's thread count is per calling thread, so concurrent solves in
    several threads do not disturb each other. The yielded object's
    :meth:`ThreadAdjuster.refresh` re-applies the policy (call it once per
    iteration of a long loop; it is cheap and re-measures the load only
    every ``PROBE_INTERVAL``).

    Examples
    --------
    >>> import numba
    >>> before = numba.get_num_threads()
    >>> with kernel_threads(10) as threads:
    ...     numba.get_num_threads()
    1
    >>> numba.get_num_threads() == before
    True
    """
    import numba

    previous = numba.get_num_threads()
    token = _inside.set(True)
    adjuster = ThreadAdjuster(work, numba, current=previous)
    try:
        yield adjuster
    finally:
        _inside.reset(token)
        if adjuster.threads != previous:
            numba.set_num_threads(previous)


def managed(kernel: Callable) -> Callable:
    """``kernel`` applying the policy itself when called outside :func:`kernel_threads`.

    The work is the largest array argument's size. Inside a solve's
    :func:`kernel_threads` block the call goes straight through (the solve
    has set the count once for all its kernels).

    Examples
    --------
    >>> import numpy as np
    >>> from cext.numba import dot
    >>> float(managed(dot)(np.ones(3), np.ones(3)))
    3.0
    """
    @functools.wraps(kernel)
    def call(*args, **kwargs):
        if _inside.get():
            return kernel(*args, **kwargs)
        work = max((getattr(arg, "size", 0) for arg in (*args, *kwargs.values())), default=0)
        with kernel_threads(work):
            return kernel(*args, **kwargs)

    return call


class ThreadAdjuster:
    """Keeps Numba's thread count at :func:`threads_for` ``(work)`` during a solve."""

    def __init__(self, work: int, numba_module, *, current: int = 0):
        self._work = int(work)
        self._numba = numba_module
        self._next = 0.0
        self.threads = current  # Numba's count now: set only where the policy differs
        self.refresh()

    def refresh(self) -> int:
        """Re-apply the policy if ``PROBE_INTERVAL`` has passed; return the thread count."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROBE_INTERVAL
            count = threads_for(self._work)
            if count != self.threads:
                self._numba.set_num_threads(count)
                self.threads = count
        return self.threads
