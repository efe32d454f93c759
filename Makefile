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

DVENV := .venv-deploy
DSTAMP := $(DVENV)/.installed
PYDIR = $(dir $(PYTHON))
# sam build needs python$(PYTHON_VERSION) on PATH; keep SAM's telemetry off.
SAM := PATH="$(PYDIR):$$PATH" SAM_CLI_TELEMETRY=0 $(DVENV)/bin/sam
SAMPLE_EVENTS = $(filter-out events/env.json events/dev-jwks.json,$(wildcard events/*.json))
EVENT ?= events/allowed-call.json

.PHONY: help venv test lint typecheck unit policies demo bench clean deploy-venv template build invoke smoke events ci

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt src/requirements.txt pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: python$(PYTHON_VERSION) not found (Lambda runs python$(PYTHON_VERSION))." >&2; \
	  echo "Install it (e.g. 'pyenv install $(PYTHON_VERSION)') or run 'make PYTHON=/path/to/python$(PYTHON_VERSION) ...'." >&2; \
	  exit 1; fi
	@"$(PYTHON)" -c 'import sys; v="$(PYTHON_VERSION)".split("."); sys.exit(0 if list(map(str, sys.version_info[:2])) == v else 1)' || \
	  { echo "error: $(PYTHON) is not python$(PYTHON_VERSION)" >&2; exit 1; }
	"$(PYTHON)" -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with python3.13 and every dependency

$(DSTAMP): requirements-deploy.txt $(STAMP)
	"$(PYTHON)" -m venv $(DVENV)
	$(DVENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(DVENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-deploy.txt
	@touch $(DSTAMP)

deploy-venv: $(DSTAMP) ## create .venv-deploy with aws-sam-cli, cfn-lint, awslambdaric

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src tests devtools benchmarks
	$(VENV)/bin/ruff format --check src tests devtools benchmarks

typecheck: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

unit: $(STAMP) ## pytest only
	$(VPY) -m pytest

policies: $(STAMP) ## schema --check, validate, format --check, test --coverage (what CI runs on policies/)
	$(VENV)/bin/teleport-policy schema --check
	$(VENV)/bin/teleport-policy validate
	$(VENV)/bin/teleport-policy format --check
	$(VENV)/bin/teleport-policy test --coverage

test: lint typecheck policies unit ## everything CI checks

demo: $(STAMP) ## run the handler on sample requests against a local Teleport-like issuer
	$(VPY) -m devtools.demo

bench: $(STAMP) ## latency and cold-init benchmarks (results: docs/benchmarks.md)
	$(VPY) -m benchmarks.run

template: $(DSTAMP) ## cfn-lint and sam validate --lint
	$(DVENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint

build: $(DSTAMP) ## sam build for x86_64 (local invoke) and arm64 (what deploys by default)
	$(SAM) build --parameter-overrides Architecture=x86_64 --build-dir .aws-sam/build-x86_64 --cache-dir .aws-sam/cache-x86_64
	$(SAM) build --parameter-overrides Architecture=arm64 --build-dir .aws-sam/build-arm64 --cache-dir .aws-sam/cache-arm64

invoke: $(DSTAMP) ## run the built function under the real Runtime Interface Client: make invoke EVENT=events/denied-call.json
	@test -d .aws-sam/build-x86_64/InterceptorFunction || $(MAKE) build
	PYTHONPATH=. $(DVENV)/bin/python -m devtools.invoke $(EVENT)

smoke: $(DSTAMP) ## every sample event (freshly minted) through the built artifact, checked
	@test -d .aws-sam/build-x86_64/InterceptorFunction || $(MAKE) build
	$(VPY) -m devtools.events --out .aws-sam/smoke-events
	PYTHONPATH=. $(DVENV)/bin/python -m devtools.invoke --check --env-file .aws-sam/smoke-events/env.json \
	  $$(ls .aws-sam/smoke-events/*.json | grep -v -e /env.json -e /dev-jwks.json)

events: $(STAMP) ## regenerate events/ with a fresh development key (tokens valid 30 days)
	$(VPY) -m devtools.events

ci: test template build smoke ## everything CI runs

clean: ## remove the virtual environments, build output and caches
	rm -rf $(VENV) $(DVENV) .aws-sam .mypy_cache .ruff_cache
