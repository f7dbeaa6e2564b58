#!/usr/bin/env bash
# make gpu-check (issue 18): every CuPy test and the GPU benchmarks on a bare CUDA
# machine, one report. That machine has python3 with cupy, numba, scipy, numpy,
# pytest, hypothesis, threadpoolctl, tqdm and matplotlib but no package index:
# array-api-compat, array-api-strict and pyamg come as wheels in gpu_wheels/
# (`make gpu-wheels` here, then carried to the device), installed with --target
# into a temporary folder; the source tree runs through PYTHONPATH, no .venv.
# Without a CUDA device: one line, exit 0.
set -u
cd "$(dirname "$0")/.."
PY=${GPU_PYTHON:-python3}
OUT_DIR=${OUT:-results}/gpu
if ! "$PY" -c "import sys, cupy; sys.exit(cupy.cuda.runtime.getDeviceCount() < 1)" 2>/dev/null; then
    echo "gpu-check: no CUDA device (or no CuPy) here; nothing to run"
    exit 0
fi
mkdir -p "$OUT_DIR"
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
if compgen -G "gpu_wheels/*.whl" > /dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" gpu_wheels/*.whl
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export LINSOLVE_REQUIRE_GPU=1  # tests/gpu.py: a missing GPU fails, it does not skip
REPORT="$OUT_DIR/gpu_report.md"
{
    echo "# make gpu-check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    "$PY" -c "import cupy; p = cupy.cuda.runtime.getDeviceProperties(0); \
name = p['name']; name = name.decode() if isinstance(name, bytes) else name; \
print('device:', name, '| CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), \
'| cupy', cupy.__version__)"
} > "$REPORT"
# the GPU modules only: the others import packages this machine does not have;
# addopts cleared (pytest-benchmark's option and the doctests need the [test] extra)
timeout 330 "$PY" -m pytest -o addopts="-ra" -p no:cacheprovider -q \
    --junitxml "$OUT_DIR/gpu-junit.xml" \
    tests/test_gpu_paths.py tests/cext/test_cupy.py tests/cext/test_kron.py \
    tests/cext/test_cuda_sources.py 2>&1 | tee "$OUT_DIR/gpu-tests.txt"
tests=${PIPESTATUS[0]}
timeout 150 "$PY" -m bench gpu --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/gpu-bench.txt"
bench=${PIPESTATUS[0]}
{
    echo
    echo "## tests (exit status $tests)"
    echo '```'
    tail -n 40 "$OUT_DIR/gpu-tests.txt"
    echo '```'
    echo
    echo "## python -m bench gpu (exit status $bench)"
    echo '```'
    cat "$OUT_DIR/gpu-bench.txt"
    echo '```'
} >> "$REPORT"
echo "gpu-check: report in $REPORT"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
