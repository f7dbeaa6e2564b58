"""The GPU test gate and ``make gpu-check`` on a machine without a GPU: a failure, not a skip."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from . import gpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gate_skips_without_a_gpu_and_fails_when_one_is_required(monkeypatch):
    monkeypatch.setattr(gpu, "unavailable_reason", lambda: "no CUDA device")
    monkeypatch.delenv(gpu.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no CUDA device"):
        gpu.cupy_or_skip()
    for off in ("", "0"):
        monkeypatch.setenv(gpu.REQUIRE_ENV, off)
        with pytest.raises(pytest.skip.Exception):
            gpu.cupy_or_skip()
    monkeypatch.setenv(gpu.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="LINSOLVE_REQUIRE_GPU is set but no CUDA"):
        gpu.cupy_or_skip()


def test_gpu_check_without_a_device_prints_one_line_and_succeeds(tmp_path):
    # a Python without CuPy stands for a machine without a device
    env = dict(os.environ, GPU_PYTHON=sys.executable, OUT=str(tmp_path))
    if gpu.unavailable_reason() is None:
        pytest.skip("this machine has a GPU: make gpu-check would run")
    done = subprocess.run(["bash", os.path.join(ROOT, ".ci", "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "gpu-check: no CUDA device (or no CuPy) here; nothing to run"]
    assert not os.path.exists(tmp_path / "gpu")


def test_bench_gpu_without_a_device_is_one_error_line():
    if gpu.unavailable_reason() is None:
        pytest.skip("this machine has a GPU")
    done = subprocess.run([sys.executable, "-m", "bench", "gpu"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bench gpu needs")
