# Dropfile: `make run` starts the whole stack, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto')

.PHONY: install protos run test test-fast setup migrate clean

# The virtualenv is rebuilt when the pinned requirements change.
$(VENV)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: Dropfile needs Python 3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# Generated code is build output: gen/ is never edited by hand nor committed.
gen/.generated: $(VENV)/.installed $(PROTOS)
	rm -rf gen && mkdir -p gen
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	find gen/dropfile -type d -exec touch {}/__init__.py \;
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

protos: gen/.generated

# The Python environment, the generated code and the browser app.
install: gen/.generated web

# Creates the bucket, CORS rule, queues and event notification where missing.
setup: install
	$(PY) -m services.setup

migrate: install
	$(PY) -m alembic upgrade head

run: install
	$(PY) -m tools.run_stack

# Every test, the manifests' offline validation (deploy-check's first half) included.
test: install deploy-validate
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf gen $(VENV) .pytest_cache web/dist web/node_modules

# Offline checks of the container image and Kubernetes manifests (no Docker, no cluster):
# every overlay is rendered with kustomize and validated strictly (unknown fields are
# errors, and so are resources no schema covers), then tests/deploy checks the invariants.
.PHONY: deploy-check deploy-validate
DEPLOY_OVERLAYS := $(sort $(wildcard deploy/overlays/*))
DEPLOY_K8S_VERSIONS := 1.30.0 1.37.0

$(VENV)/.deploy-tools: deploy/requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install -q -r deploy/requirements-dev.txt
	touch $@

deploy-validate: install $(VENV)/.deploy-tools
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
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) \
  web/index.html web/vite.config.ts web/tsconfig.json web/package.json

web/node_modules/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: building web/ needs Node.js 20.19+ and npm" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund
	touch $@

web/dist/index.html: web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run build
	touch $@

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
