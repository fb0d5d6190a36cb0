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

.PHONY: help demo test lint typecheck layers pytest installed tools venv generate docs \
        check-generated dashboards rules deploy-dashboards bench clean wheel image

help:
	@echo "make demo               the closed loop on simulated GPUs with real Prometheus + Alertmanager"
	@echo "make test               ruff, mypy, import-linter, generated-artefact check, pytest,"
	@echo "                         then the commands' tests against the wheel, installed"
	@echo "make generate           regenerate rules, Alertmanager/Prometheus config and dashboards"
	@echo "make docs               regenerate docs/scheduling.md (a replay of the sample trace)"
	@echo "make deploy-dashboards  push dashboards to the stack's Grafana (GRAFANA_TOKEN or token file)"
	@echo "make bench              run every benchmark in benchmarks/"
	@echo "make image              build the container image (Docker or Podman) from the wheel"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's packages: promtool ships with prometheus, amtool with prometheus-alertmanager;
# rsyslog is the real syslog collector the audit log's off-box copy is tested against.
tools:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
	   || ! command -v prometheus-alertmanager >/dev/null || ! command -v amtool >/dev/null \
	   || ! test -x /usr/sbin/rsyslogd; then \
	  echo "installing Debian's prometheus, prometheus-alertmanager and rsyslog"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    prometheus prometheus-alertmanager rsyslog; \
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

# docs/scheduling.md: the policy, its knobs, and a replay of the sample trace (no timings).
docs: venv
	$(PY) -m scheduler.sim.docs --stack $(STACK) --out docs/scheduling.md

# Generated artefacts are committed; regenerating must not change them.
check-generated: generate docs
	@git diff --exit-code -- deploy/generated deploy/grafana docs/runbooks docs/scheduling.md || \
	  (echo "deploy/generated is stale: run 'make generate' and commit the result" && exit 1)
	@test -z "$$(git ls-files --others --exclude-standard deploy/generated deploy/grafana docs/runbooks)" || \
	  (echo "untracked files in deploy/generated: run 'make generate' and commit them" && exit 1)

# Every test but those that run the novabrain command as a process ("process"):
# they run in `installed`, against the wheel.
pytest: venv tools
	$(BIN)/pytest -m "not process"

# The commands as an operator gets them: a wheel built from the checkout's files
# (what a clone has: tracked and new, not ignored), installed with the
# dependencies its metadata names into a clean venv outside the checkout. The
# "process" tests run that venv's novabrain in a scratch directory, so a module
# or data file missing from the package, or a file read relative to the
# checkout, fails here. pip's cache keeps the install to seconds.
installed: venv tools
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir "$$tmp/src"; \
	git ls-files -z --cached --others --exclude-standard \
	  | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$$tmp/src"; \
	echo "building the wheel and installing it into $$tmp/venv"; \
	$(PY) -m pip wheel -q --no-deps -w "$$tmp/dist" "$$tmp/src" 2> >(grep -v "is ignored" >&2); \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q "$$(ls "$$tmp"/dist/*.whl)[kubernetes]" \
	  2> >(grep -v "is ignored" >&2); \
	NOVABRAIN_BIN="$$tmp/venv/bin/novabrain" $(BIN)/pytest -m process

test: lint typecheck layers check-generated pytest installed

deploy-dashboards: venv
	$(BIN)/novabrain dashboards deploy --stack $(STACK)

# The wheel, built once: the image installs it (deploy/Dockerfile), as CI's install check does.
WHEEL_DIR := .whl
wheel: venv
	rm -rf $(WHEEL_DIR)
	$(PY) -m pip wheel -q --no-deps --wheel-dir $(WHEEL_DIR) .

# Tagged as the stack's kubernetes.image, the name the generated manifests run.
image: wheel
	@image="$${IMAGE:-$$($(PY) -c 'from deploy.stack import load_stack; print(load_stack("$(STACK)").kubernetes.image)')}"; \
	if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; \
	elif command -v podman >/dev/null && podman info >/dev/null 2>&1; then engine=podman; \
	else echo "make image: no running Docker engine or Podman here; the wheel is in $(WHEEL_DIR)/." \
	  "Build on a machine with either: make image [IMAGE=registry/name:tag]" >&2; exit 1; fi; \
	echo "$$engine build -f deploy/Dockerfile -t $$image ."; \
	$$engine build -f deploy/Dockerfile -t "$$image" .

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
