# Kaizen: `make run` serves it with embedded PostgreSQL and Redis, `make test` checks it.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

# A Python >= 3.12 (Django 6): python3.13, python3.12, python3, then pyenv's versions.
define find_python
for c in python3.13 python3.12 python3 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
  if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
    command -v $$c; exit 0; \
  fi; \
done; exit 1
endef

.PHONY: help venv install run test lint types pytest bench clean

help:
	@echo "make run    - serve Kaizen (API, admin, worker, beat) with embedded PostgreSQL and Redis"
	@echo "make test   - ruff, mypy and the test suite against real PostgreSQL and Redis"
	@echo "make bench  - the benchmarks (bench/bench_*.py): figures next to baselines from the same run"

$(PY):
	@py=$$($(find_python)) || { \
	  echo "Kaizen needs Python 3.12 or newer (Django 6) and found none."; \
	  echo "Install one: 'apt-get install python3.12 python3.12-venv', 'pyenv install 3.12', or 'brew install python@3.12',"; \
	  echo "then run make again."; exit 1; }; \
	echo "Creating $(VENV) with $$py"; \
	"$$py" -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m config.launcher

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: install
	$(BIN)/mypy .

pytest: install
	$(BIN)/pytest -n 2 --dist loadgroup

test: lint types pytest

bench: install
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .kaizen .mypy_cache .ruff_cache .pytest_cache
