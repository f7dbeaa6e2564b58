# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := amg,bench,mpi,test

.PHONY: demo test bench speed clean

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

clean:
	rm -rf $(VENV) results .pytest_cache
