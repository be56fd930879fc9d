# Every target installs what it needs into .venv (git-ignored) first; CI runs exactly these.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check connector tests benchmarks sample_configs
	$(VENV)/bin/ruff format --check connector tests benchmarks sample_configs
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m connector.simulator.demo

bench: $(STAMP)
	$(PY) benchmarks/bench_extract.py

clean:
	rm -rf $(VENV) demo-data bench-data .pytest_cache .mypy_cache .ruff_cache
