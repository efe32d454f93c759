# One entry point for people and CI. Every target bootstraps the virtual environment it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.13: develop and test on the same interpreter.
PYTHON_VERSION ?= 3.13
PYTHON ?= $(shell for c in python$(PYTHON_VERSION) \
	$$(ls -d "$${PYENV_ROOT:-$$HOME/.pyenv}"/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION) 2>/dev/null | sort -V -r); do \
	"$$c" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(PYTHON_VERSION)".split("."))))' \
	  >/dev/null 2>&1 && { command -v "$$c"; break; }; done)
VENV := .venv
VPY := PYTHONPATH=src:. $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv test lint typecheck unit demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt src/requirements.txt
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: python$(PYTHON_VERSION) not found (Lambda runs python$(PYTHON_VERSION))." >&2; \
	  echo "Install it (e.g. 'pyenv install $(PYTHON_VERSION)') or run 'make PYTHON=/path/to/python$(PYTHON_VERSION) ...'." >&2; \
	  exit 1; fi
	@"$(PYTHON)" -c 'import sys; v="$(PYTHON_VERSION)".split("."); sys.exit(0 if list(map(str, sys.version_info[:2])) == v else 1)' || \
	  { echo "error: $(PYTHON) is not python$(PYTHON_VERSION)" >&2; exit 1; }
	"$(PYTHON)" -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with python3.13 and every dependency

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src tests devtools benchmarks
	$(VENV)/bin/ruff format --check src tests devtools benchmarks

typecheck: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

unit: $(STAMP) ## pytest only
	$(VPY) -m pytest

test: lint typecheck unit ## everything CI checks

demo: $(STAMP) ## run the handler on sample requests against a local Teleport-like issuer
	$(VPY) -m devtools.demo

bench: $(STAMP) ## latency and cold-init benchmarks (results: docs/benchmarks.md)
	$(VPY) -m benchmarks.run

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache
