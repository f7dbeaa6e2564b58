# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := amg,bench,mpi,test,torch

.PHONY: demo test test-slow bench speed docs clean gpu-check gpu-wheels

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m bench

# The suite without the tests marked slow (JAX optimizer runs, whole bench jobs,
# three MPI ranks), one pytest-xdist worker per core; .ci/run runs those too, with
# `make test-slow` (one process: its MPI and contention tests want the cores).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n auto

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

speed: $(STAMP)
	$(BIN)/python -m bench speed

bench: $(STAMP)
	$(BIN)/python -m pytest bench/suite --benchmark-enable

# API reference from the docstrings into build/api (open build/api/index.html).
# linsolve.precond is reached through linsolve's __all__; linsolve.mpi is named.
API_MODULES := linsolve linsolve.mpi curvature cext

docs: $(STAMP)
	rm -rf build/api
	$(BIN)/python -m pdoc --docformat numpy -o build/api $(API_MODULES)

# Issue 18: on a CUDA machine (no .venv, no package index there) every CuPy test and
# `python -m bench gpu`, one report in results/gpu/ (or $OUT/gpu). Prints one line and
# exits 0 where there is no device. The wheels it needs: `make gpu-wheels` beforehand.
gpu-check:
	bash .ci/gpu_check.sh

GPU_WHEELS := array-api-compat array-api-strict pyamg

gpu-wheels:
	$(PYTHON) -m pip download --quiet --only-binary=:all: --python-version 3.12 \
	    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux_2_28_x86_64 --no-deps -d gpu_wheels $(GPU_WHEELS)

clean:
	rm -rf $(VENV) results .pytest_cache build/api
