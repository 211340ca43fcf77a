# teams-connect — the commands the README promises.
#   make run    start the whole system locally (gateway :3000, demo :8000, Nylas emulator :4010, moto :4566)
#   make test   lint, type-check and every test suite (unit, emulator, local stack, integration, browser)
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.12: develop, test and compile bytecode with the same minor version.
PYTHON ?= $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do \
             if [ -x "$$(command -v $$p 2>/dev/null)" ] && $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then command -v $$p; break; fi; done)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := requirements-dev.txt layers/core/requirements.txt
NYLAS_API ?= v3
export NYLAS_API
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help venv run test lint typecheck lint-template static deploy-check bench build clean chaos

help:
	@echo "make run    start everything locally (NYLAS_API=beta make run for the beta flavour)"
	@echo "make test   lint + type-check + all tests (installs what it needs on first run)"
	@echo "make deploy-check  offline rehearsal of sam build + sam deploy (part of make test)"
	@echo "make bench  cold start / latency / round trips / size report"
	@echo "make chaos  a long randomized fault campaign over the local stack (CHAOS_SEED=n replays one)"

$(STAMP): $(REQS)
	@test -n "$(PYTHON)" || { echo "Python 3.12 is required (the Lambda runtime's version); install it or set PYTHON=" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m local.run

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work on these machines).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy layers/core functions local tools tests

lint-template: $(STAMP)
	$(PY) -m local.lint_template

# Static security gates: bandit on our code, checkov on the SAM-translated template, template policy checks.
static: $(STAMP)
	$(PY) -m tools.static_gates

test: $(STAMP) browser lint typecheck lint-template static deploy-check
	rm -f test-results/figures-*.json
	$(PY) -m pytest
	$(PY) -m tools.figures

# The fault campaign of tests/chaos, long: CHAOS_SEQUENCES random sequences of up to CHAOS_STEPS steps
# (`make test` runs a bounded one with a pinned seed). Each `make chaos` draws a new seed; CHAOS_SEED=<n>
# replays the campaign a failure printed.
CHAOS_SEQUENCES ?= 150
CHAOS_SEED ?= random
CHAOS_STEPS ?= 30
chaos: $(STAMP)
	rm -f test-results/figures-chaos.json
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_SEQUENCES=$(CHAOS_SEQUENCES) CHAOS_STEPS=$(CHAOS_STEPS) CHAOS_SHRINK_SECONDS=300 $(PY) -m pytest tests/chaos -s

# Function and layer packages exactly as deployed (.build/), with checked-hash bytecode.
build: $(STAMP)
	$(PY) -m tools.package

# The offline rehearsal of `sam build` + `sam deploy` (docs/deployment.md, "The deploy rehearsal"): the
# built packages, every parameter set of deploy/parameters translated and linted in every claimed region,
# each role's permissions, each function imported as Lambda does, the template's size and S3 deploys.
deploy-check: $(STAMP) build
	$(PY) -m tools.deploy_check

# Cold start, warm latency, round trips and package sizes; updates bench/results, docs/performance.md and
# the README's summary line.
bench: $(STAMP) build
	$(PY) -m bench

clean:
	rm -rf $(VENV) .venv-tools .aws-sam .build .hypothesis .pytest_cache .mypy_cache .ruff_cache
