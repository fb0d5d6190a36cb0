# The two commands that matter: `make demo` and `make test`. Both install what
# they need: a venv with the package, and Debian's prometheus and
# prometheus-alertmanager when missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STACK ?= deploy/stack.yaml

.PHONY: help demo test lint typecheck layers pytest tools venv generate check-generated \
        dashboards rules deploy-dashboards bench clean

help:
	@echo "make demo               the closed loop on simulated GPUs with real Prometheus + Alertmanager"
	@echo "make test               ruff, mypy, import-linter, generated-artefact check, pytest"
	@echo "make generate           regenerate rules, Alertmanager/Prometheus config and dashboards"
	@echo "make deploy-dashboards  push dashboards to the stack's Grafana (GRAFANA_TOKEN or token file)"
	@echo "make bench              run every benchmark in benchmarks/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's packages: promtool ships with prometheus, amtool with prometheus-alertmanager.
tools:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
	   || ! command -v prometheus-alertmanager >/dev/null || ! command -v amtool >/dev/null; then \
	  echo "installing Debian's prometheus and prometheus-alertmanager"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    prometheus prometheus-alertmanager; \
	fi

demo: venv tools
	$(BIN)/novabrain demo --stack $(STACK)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

layers: venv
	$(BIN)/lint-imports

generate: venv
	$(BIN)/novabrain generate --stack $(STACK)

rules dashboards: generate

# Generated artefacts are committed; regenerating must not change them.
check-generated: generate
	@git diff --exit-code -- deploy/generated deploy/grafana || \
	  (echo "deploy/generated is stale: run 'make generate' and commit the result" && exit 1)
	@test -z "$$(git ls-files --others --exclude-standard deploy/generated deploy/grafana)" || \
	  (echo "untracked files in deploy/generated: run 'make generate' and commit them" && exit 1)

pytest: venv tools
	$(BIN)/pytest

test: lint typecheck layers check-generated pytest

deploy-dashboards: venv
	$(BIN)/novabrain dashboards deploy --stack $(STACK)

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
