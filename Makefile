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
EVENT ?= events/allowed-call.json
# Sample events minted afresh for `make invoke` and `make smoke` (committed tokens expire; events/ stays as is).
FRESH := .aws-sam/fresh-events
PIPQ := --quiet --disable-pip-version-check

# Deployment (README, "Deploy"): one stack per STACK; the gateway is named after it.
STACK ?= teleport-agentcore
ARCH ?= arm64
TELEPORT_PROXY_URL ?=
CUSTOM_DOMAIN ?=
ENFORCEMENT_MODE ?= enforce
REGION ?=
PARAMS ?=
DEPLOY_ARGS ?=
DEPLOY := $(VPY) -m devtools.deploy --sam $(DVENV)/bin/sam --stack-name '$(STACK)' \
	--config-file $(CURDIR)/samconfig.toml $(if $(REGION),--region '$(REGION)') \
	$(if $(DEPLOY_ARGS),'--sam-args=$(DEPLOY_ARGS)')
ifneq ($(filter deploy,$(MAKECMDGOALS)),)
ifeq ($(strip $(TELEPORT_PROXY_URL)),)
$(error make deploy needs TELEPORT_PROXY_URL, your Teleport proxy's public URL: make deploy TELEPORT_PROXY_URL=https://teleport.example.com (no trailing slash))
endif
ifeq ($(filter arm64 x86_64,$(ARCH)),)
$(error ARCH must be arm64 or x86_64)
endif
endif

.PHONY: help venv test lint typecheck unit policies demo bench fuzz clean deploy-venv template build invoke smoke events ci \
	deploy delete

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt src/requirements.txt pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: python$(PYTHON_VERSION) not found (Lambda runs python$(PYTHON_VERSION))." >&2; \
	  echo "Install it (e.g. 'pyenv install $(PYTHON_VERSION)') or run 'make PYTHON=/path/to/python$(PYTHON_VERSION) ...'." >&2; \
	  exit 1; fi
	@"$(PYTHON)" -c 'import sys; v="$(PYTHON_VERSION)".split("."); sys.exit(0 if list(map(str, sys.version_info[:2])) == v else 1)' || \
	  { echo "error: $(PYTHON) is not python$(PYTHON_VERSION)" >&2; exit 1; }
	@echo "installing dev dependencies into $(VENV) (first run only)..."
	@"$(PYTHON)" -m venv $(VENV)
	@$(VPY) -m pip install $(PIPQ) --upgrade pip
	@$(VPY) -m pip install $(PIPQ) -r requirements-dev.txt
	@$(VPY) -m pip install $(PIPQ) --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with python3.13 and every dependency

$(DSTAMP): requirements-deploy.txt $(STAMP)
	@echo "installing deploy tools (aws-sam-cli, cfn-lint, awslambdaric) into $(DVENV) (first run only)..."
	@"$(PYTHON)" -m venv $(DVENV)
	@$(DVENV)/bin/python -m pip install $(PIPQ) --upgrade pip
	@$(DVENV)/bin/python -m pip install $(PIPQ) -r requirements-deploy.txt
	@touch $(DSTAMP)

deploy-venv: $(DSTAMP) ## create .venv-deploy with aws-sam-cli, cfn-lint, awslambdaric

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check src tests devtools benchmarks
	$(VENV)/bin/ruff format --check src tests devtools benchmarks

typecheck: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

unit: $(STAMP) ## pytest only
	$(VPY) -m pytest

policies: $(STAMP) ## schema --check, validate, format --check, build (the bundle), test --coverage (CI on policies/)
	$(VENV)/bin/teleport-policy schema --check
	$(VENV)/bin/teleport-policy validate
	$(VENV)/bin/teleport-policy format --check
	$(VENV)/bin/teleport-policy build
	$(VENV)/bin/teleport-policy test --coverage

test: lint typecheck policies unit ## everything CI checks

demo: $(STAMP) ## the product in four steps against a local Teleport-like issuer and a local STS
	$(VPY) -m devtools.demo

bench: $(STAMP) ## cold start, tool lists, warm path vs its limit (QUICK=1: CI-sized; WRITE=1: docs/benchmarks.md)
	$(VPY) -m benchmarks.run $(if $(QUICK),--quick) $(if $(WRITE),--write)

fuzz: $(STAMP) ## seeded fuzz run of the handler, non-zero exit on any violation (N=100000 events, SEED=1)
	$(VPY) -m devtools.fuzz --events $(or $(N),100000) --seed $(or $(SEED),1)

template: $(DSTAMP) ## cfn-lint and sam validate --lint
	$(DVENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint

build: $(DSTAMP) ## policy bundle, then sam build for x86_64 (local invoke) and arm64 (what deploys by default)
	$(VENV)/bin/teleport-policy build
	$(SAM) build --parameter-overrides Architecture=x86_64 --build-dir .aws-sam/build-x86_64 --cache-dir .aws-sam/cache-x86_64
	$(SAM) build --parameter-overrides Architecture=arm64 --build-dir .aws-sam/build-arm64 --cache-dir .aws-sam/cache-arm64

invoke: $(DSTAMP) ## one event through the built artifact, checked: make invoke EVENT=events/denied-call.json
	@test -d .aws-sam/build-x86_64/InterceptorFunction || $(MAKE) build
	$(VPY) -m devtools.events --out $(FRESH)
	PYTHONPATH=. $(DVENV)/bin/python -m devtools.invoke --show --minted $(FRESH) $(EVENT)

smoke: $(DSTAMP) ## every sample event (freshly minted) through the built artifact, checked
	@test -d .aws-sam/build-x86_64/InterceptorFunction || $(MAKE) build
	$(VPY) -m devtools.events --out $(FRESH)
	PYTHONPATH=. $(DVENV)/bin/python -m devtools.invoke --minted $(FRESH) \
	  $$(ls $(FRESH)/*.json | grep -v -e /env.json -e /dev-jwks.json)

events: $(STAMP) ## regenerate events/ with a fresh development key (tokens valid 30 days)
	$(VPY) -m devtools.events

deploy: build ## build, deploy, settle the audience: make deploy TELEPORT_PROXY_URL=https://... [STACK= CUSTOM_DOMAIN=]
	$(DEPLOY) deploy --template-file .aws-sam/build-$(ARCH)/template.yaml \
	  --proxy-url '$(TELEPORT_PROXY_URL)' $(if $(CUSTOM_DOMAIN),--custom-domain '$(CUSTOM_DOMAIN)') \
	  --parameter-overrides Architecture=$(ARCH) EnforcementMode=$(ENFORCEMENT_MODE) $(PARAMS)

delete: $(DSTAMP) ## delete the stack (STACK=...); prints what is retained and how to remove it
	$(DEPLOY) delete

ci: test template build smoke ## everything CI runs

clean: ## remove the virtual environments, build output and caches
	rm -rf $(VENV) $(DVENV) .aws-sam .mypy_cache .ruff_cache
