"""``python -m bench``: sub-command help, missing extras, progress off a terminal, SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bench import _progress
from bench.__main__ import COMMAND_HELP, SUBCOMMANDS, main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTRA = "pip install 'curvature-linsolve[bench]'"
# A long omega run: ~150 systems a second, so minutes unless stopped.
LONG_OMEGA = ["omega", "--experiment", "shifted", "--variance", "high", "--steps", "200000"]


def test_top_help_lists_every_command_on_one_line(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert set(SUBCOMMANDS) == set(COMMAND_HELP)
    for name, text in COMMAND_HELP.items():
        assert any(line.split() and line.split()[0] == name and text in line for line in lines), name
    # the default job's options are listed too
    assert any("--size" in line for line in lines)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_command_help_shows_its_options(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m bench {command}") and "--out" in out


def test_help_does_not_load_heavy_packages():
    code = ("import sys\nfrom bench.__main__ import main\n"
            "for argv in (['--help'], ['linear', '--help'], ['omega', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('sklearn', 'mpi4py', 'skfem') if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("module, argv", [
    ("tqdm", ["--size", "4"]),
    ("matplotlib", ["linear", "--size", "4"]),
    ("matplotlib", ["omega", "--steps", "3"]),
    ("sklearn", ["curvature", "--quick"]),
    ("sklearn", ["sketch", "--quick"]),
])
def test_missing_extra_is_one_error_line(module, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert module in err[0] and EXTRA in err[0]
    assert not out.exists()


@pytest.mark.parametrize("command", ("", *SUBCOMMANDS))
def test_unwritable_out_is_one_error_line_before_any_work(command, tmp_path, capsys):
    """Every command checks --out first: a file in the way is named, nothing runs."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ([command] if command else []) + ["--out", str(blocker / "results")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out"), err
    assert "a-file" in err[0] and "writable folder" in err[0]


def test_missing_skfem_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "skfem", None)
    assert main(["speed", "--matrices", "p1tri", "--size", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and EXTRA in err[0]


_BLOCK_TQDM = """
import runpy, sys
class BlockTqdm:
    def find_spec(self, name, path=None, target=None):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("blocked for the test: " + name)
        return None
sys.meta_path.insert(0, BlockTqdm())
sys.modules.pop("tqdm", None)
sys.argv = ["bench"] + sys.argv[1:]
runpy.run_module("bench", run_name="__main__", alter_sys=True)
"""


def test_subprocess_without_tqdm(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", _BLOCK_TQDM, "--size", "4", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tqdm") and EXTRA in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_plain_lines_off_a_terminal(monkeypatch):
    stream = io.StringIO()  # isatty() is False
    monkeypatch.setattr(sys, "stderr", stream)
    with _progress.progress_bar(total=4, desc="job", interval=0.02) as bar:
        bar.update(1)
        time.sleep(0.2)
        bar.set_postfix_str("step two")
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and lines[0].startswith("job: 1/4 (25%)")
    assert lines[-1].startswith("job: 2/4 (50%)") and lines[-1].endswith("[step two]")
    # closed: the heartbeat has stopped
    time.sleep(0.1)
    assert stream.getvalue().splitlines() == lines


def test_bar_on_a_terminal_stays(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    bar = _progress.progress_bar(range(3), desc="tty")
    assert type(bar).__name__ == "tqdm" and bar.leave
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert _progress.progress_bar(range(3), disable=True).__iter__ is not None


@pytest.mark.slow  # a whole bench job in a child process
def test_sigterm_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["omega", "--steps", "2", "--experiment", "heat", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def _start_long_omega(out, interval="5"):
    env = {**os.environ, "BENCH_PROGRESS_INTERVAL": interval}
    return subprocess.Popen([sys.executable, "-m", "bench", *LONG_OMEGA, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=env)


def _first_stderr_line(process, timeout):
    """The first stderr line of ``process``, or None after ``timeout`` seconds."""
    found = []
    reader = threading.Thread(target=lambda: found.append(process.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return found[0] if found else None


def _next_progress_line(process, timeout):
    """The next stderr line of the job's progress (other lines skipped), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = _first_stderr_line(process, deadline - time.monotonic())
        if line is None or line == "":
            return None
        if line.startswith("shifted-high: "):
            return line
    return None


@pytest.mark.slow  # waits for a progress interval of a real job
def test_long_job_reports_progress_off_a_terminal(tmp_path):
    # the default interval (5 s): two lines at most 10 s apart, twice the interval;
    # start-up (imports, a cold Numba cache) gets its own generous limit
    process = _start_long_omega(tmp_path)
    try:
        assert _next_progress_line(process, 60) is not None
        start = time.monotonic()
        assert _next_progress_line(process, 15) is not None
        assert time.monotonic() - start < 15
    finally:
        process.kill()
        process.communicate(timeout=30)


@pytest.mark.slow  # runs a bench job until a row is written, then stops it
def test_sigterm_writes_the_finished_rows(tmp_path):
    process = _start_long_omega(tmp_path)
    try:
        assert _first_stderr_line(process, 30) is not None  # running, past start-up
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 130, err
    payload = json.loads((tmp_path / "omega.json").read_text())
    assert payload["interrupted"] and payload["rows"]
    assert all(0 < row["steps"] < 200000 for row in payload["rows"])
    assert "wrote" in out


# slow: a whole bench run with its plot (~9 s of a fresh clone's make test)
@pytest.mark.slow
def test_plot_histories_are_true_residuals_at_measured_times(tmp_path):
    assert main(["linear", "--size", "8", "--methods", "pcg,scipy-cg,pcg-jacobi",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    payload = json.loads((tmp_path / "poisson2d_n64.json").read_text())
    rows = {row["method"]: row for row in payload["rows"]}
    for history in payload["histories"]:
        row = rows[history["method"]]
        residual, seconds = history["relative_residual"], history["time_s"]
        assert len(residual) == len(seconds) == row["iterations"] + 1
        assert residual[0] == 1.0
        # the last point is the returned iterate's true residual (up to rounding)
        assert abs(residual[-1] - row["true_relative_residual"]) <= 1e-6 * residual[-1] + 1e-15
        assert seconds[0] == row["setup_time_s"]
        assert all(b >= a for a, b in zip(seconds, seconds[1:]))
    # scipy's cg and our pcg without preconditioner take the same iterates
    by = {h["method"]: h["relative_residual"] for h in payload["histories"]}
    assert len(by["pcg"]) == len(by["scipy-cg"])
