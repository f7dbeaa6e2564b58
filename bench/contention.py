"""Busy processes beside a measurement: how a kernel behaves when the cores are shared.

On a shared machine the other tenants' work lands on the cores our
parallel kernels want; a speed table taken quiet says nothing about that.
:func:`busy_processes` starts ``k`` pure-Python spin loops (one core each)
and always stops them: on normal exit, on an exception, on Ctrl-C, and on
SIGTERM, which it turns into ``SystemExit`` while it is active so that the
``finally`` clauses run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Iterator

# The brief's loop is ``while True: pass``. It departs in one way: every
# million turns (about 20 ms) it checks that its parent is still there, so
# that a bench killed by SIGKILL (out of memory, a CI timeout) does not
# leave k orphans spinning on a shared machine for good.
BUSY_LOOP = (
    "import os, sys\n"
    "parent = int(sys.argv[1])  # not getppid(): the parent may be gone before we start\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(1_000_000):\n"
    "        pass\n"
)
"""Source of one busy process: a pure-Python spin loop that ends when its parent dies.

Run as ``python -c BUSY_LOOP PARENT_PID``.
"""


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGKILL every process, then reap it (no zombies, no pid left behind)."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    for process in processes:
        process.wait()


@contextlib.contextmanager
def busy_processes(k: int) -> Iterator[list[subprocess.Popen]]:
    """Run ``k`` busy processes (``sys.executable`` spinning) for the duration of the block.

    Parameters
    ----------
    k : int
        Number of processes; 0 starts nothing (and installs no handler).

    Yields
    ------
    list of subprocess.Popen
        The running processes; all are killed and reaped when the block
        ends, however it ends.

    Notes
    -----
    The children share the parent's process group, so a Ctrl-C in the
    terminal reaches them as well; their stderr goes to ``/dev/null`` so
    that it prints no tracebacks. Within the main thread, SIGTERM raises
    ``SystemExit(143)`` while the block runs (the previous handler comes
    back afterwards); Python's default would end the process without
    running the cleanup.

    Examples
    --------
    >>> with busy_processes(1) as processes:
    ...     running = [p.poll() is None for p in processes]
    >>> running, [p.returncode is not None for p in processes]
    ([True], [True])
    >>> with busy_processes(0) as processes:
    ...     processes
    []
    """
    if int(k) != k or k < 0:
        raise ValueError(f"the number of busy processes must be an integer >= 0, got {k!r}")
    processes: list[subprocess.Popen] = []
    if k == 0:
        yield processes
        return
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # signal handlers can only be set from the main thread
        def _terminate(signum, frame):
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        for _ in range(k):
            processes.append(subprocess.Popen(
                [sys.executable, "-c", BUSY_LOOP, str(os.getpid())], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield processes
    finally:
        _stop(processes)
        if in_main_thread:
            # None: the previous handler was not set from Python; the default is the best guess
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
