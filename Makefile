# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := amg,bench,mpi,test

.PHONY: demo test bench speed docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m bench

test: $(STAMP)
	$(BIN)/python -m pytest

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

clean:
	rm -rf $(VENV) results .pytest_cache build/api
