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

install: gen/.generated

# Creates the bucket, CORS rule, queues and event notification where missing.
setup: install
	$(PY) -m services.setup

migrate: install
	$(PY) -m alembic upgrade head

run: install
	$(PY) -m tools.run_stack

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf gen $(VENV) .pytest_cache
