"""Progress, missing extras and SIGTERM for every long ``python -m bench`` command.

Three small pieces, shared so each command behaves alike:

- :func:`progress_bar`: a tqdm bar on a terminal (kept on screen,
  ``leave=True``); off a terminal (CI logs, ``nohup``, pipes) a plain line
  on stderr at least every :data:`LINE_INTERVAL_S` seconds, written by a
  heartbeat thread, so a log shows the job is alive even while one step
  (a long solve) runs for minutes. tqdm's own non-tty mode redraws with
  ``\\r`` and only when ``update`` is called, which is neither.
- :func:`require`: imports the optional packages a command needs before it
  starts, and turns a missing one into one ``error:`` line naming the extra.
- :func:`sigterm_as_interrupt`: SIGTERM raises ``KeyboardInterrupt``
  while a command runs, so it writes the finished rows exactly as Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
import time

EXTRA_HINT = "pip install 'curvature-linsolve[bench]'"
"""How to get the optional packages of the benchmarks."""

LINE_INTERVAL_S = float(os.environ.get("BENCH_PROGRESS_INTERVAL", "5"))
"""Seconds between two plain progress lines off a terminal."""


class MissingExtra(ImportError):
    """An optional package of the benchmarks is not importable."""


def require(*modules: str) -> None:
    """Import ``modules``; raise :class:`MissingExtra` naming the extra if one fails.

    Examples
    --------
    >>> require("numpy")
    >>> require("no_such_module_xyz")
    Traceback (most recent call last):
    ...
    bench._progress.MissingExtra: no_such_module_xyz is not installed; pip install 'curvature-linsolve[bench]'
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise MissingExtra(f"{name} is not installed; {EXTRA_HINT}") from error


class _Lines:
    """Plain-line progress: ``desc: k/total (p%) t s [postfix]`` every ``interval`` s."""

    def __init__(self, iterable, total, desc, stream, interval):
        self.iterable = iterable
        self.total = total if total is not None else (
            len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.postfix, self.n = desc or "", "", 0
        self.stream, self.interval = stream, interval
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one line at a time, the final one last
        self._thread = threading.Thread(target=self._beat, daemon=True, name="bench-progress")
        self._thread.start()

    def _line(self) -> str:
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f" [{self.postfix}]" if self.postfix else ""
        elapsed = time.monotonic() - self.start
        return f"{self.desc + ': ' if self.desc else ''}{count}{percent} {elapsed:.1f} s{postfix}"

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def _write(self) -> None:
        with self._lock:
            try:
                print(self._line(), file=self.stream, flush=True)
            except (ValueError, OSError):  # stream closed under us: stop quietly
                self._stop.set()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            if self._thread is not threading.current_thread():
                self._thread.join()
            self._write()  # the final count, once

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(iterable=None, *, total: int | None = None, desc: str = "",
                 disable: bool | None = None, unit: str = "it", interval: float | None = None):
    """A tqdm-like progress object on stderr (``update``, ``set_description``,
    ``set_postfix_str``, ``close``, iteration, ``with``).

    Parameters
    ----------
    iterable : iterable, optional
        Wrapped and counted, as tqdm does.
    total : int, optional
        Number of steps (default ``len(iterable)``).
    desc : str
        Prefix of the bar or line.
    disable : bool, optional
        True: silent. False or None: a tqdm bar when stderr is a terminal,
        plain lines every ``interval`` seconds otherwise.
    unit : str
        tqdm's unit.
    interval : float, optional
        Seconds between plain lines (default :data:`LINE_INTERVAL_S`).
    """
    stream = sys.stderr  # looked up per call: tests swap sys.stderr
    if disable:
        return _Silent(iterable)
    if _isatty(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, file=stream, leave=True, unit=unit,
                    mininterval=0.5, disable=False)
    return _Lines(iterable, total, desc, stream, LINE_INTERVAL_S if interval is None else interval)


class _Silent(_Lines):
    def __init__(self, iterable):  # no thread, no output
        self.iterable, self.n = iterable, 0

    def set_description(self, desc: str) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While inside, SIGTERM raises ``KeyboardInterrupt`` (the previous handler is restored).

    Every command already turns Ctrl-C into "write the finished rows, exit
    130"; this gives ``kill`` (a batch scheduler's time limit, ``timeout``)
    the same result. Outside the main thread signal handlers cannot be
    installed, and nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
