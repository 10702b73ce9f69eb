# One entry point for everything: `make test` from a fresh clone does it all.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_VERSION ?= 4.1.1
export KAFKA_VERSION
STREAMCTL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/streamctl
export STREAMCTL_CACHE

.PHONY: help venv kafka system-deps lint typecheck pytest test bench demo demo-up demo-down completions clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The virtualenv is rebuilt when pyproject.toml or the C extension's source or build changes.
$(VENV)/.installed: pyproject.toml setup.py streamctl/kafka/_records_c.c
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+" >&2; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11+ is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed  ## create .venv with streamctl and its test extras

kafka:  ## fetch the Kafka broker and console tools into the cache (once per version)
	bash scripts/fetch-kafka.sh

system-deps:  ## install kcat and PostgreSQL from Debian packages when missing
	bash scripts/system-deps.sh

lint: venv  ## ruff
	$(BIN)/ruff check streamctl tests scripts bench

typecheck: venv  ## mypy --strict on the package
	$(BIN)/mypy --strict streamctl

pytest: venv kafka system-deps
	$(BIN)/pytest

test: venv kafka system-deps lint typecheck pytest  ## everything: deps, lint, types, the whole suite on real Kafka and PostgreSQL

bench: venv kafka system-deps  ## benchmarks; writes bench-results.json
	$(BIN)/python -m bench

demo: venv kafka system-deps  ## the whole story on a local broker and server, then stop everything
	$(BIN)/python scripts/demo.py run

demo-up: venv kafka system-deps  ## start the demo broker and server and leave them running
	$(BIN)/python scripts/demo.py up

demo-down:  ## stop what demo-up started
	$(BIN)/python scripts/demo.py down

completions: venv  ## regenerate completions/ from the CLI
	$(BIN)/python -m streamctl.cli.completions completions

clean:  ## remove the virtualenv and build leftovers (the jar cache stays)
	rm -rf $(VENV) .demo build *.egg-info .pytest_cache .mypy_cache .ruff_cache
