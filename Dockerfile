# syntax=docker/dockerfile:1
# One image for every Dropfile process. Each Kubernetes workload picks its process with
# `command` (deploy/base): python -m services.auth.server | services.upload.server |
# services.events.server | gateway | alembic upgrade head | services.setup. The audit
# (`python -m services.audit [--json] [--repair]`, README) runs from the same image, e.g.
# `kubectl exec deploy/upload -- python -m services.audit`: it reads upload's settings.
#
#   docker build -t dropfile:dev .          (BuildKit, the default builder, is required)
#
# Stages: `web` builds web/ when it exists, `build` installs the locked runtime dependencies
# and the package (with its generated protobuf code) into /opt/venv, `runtime` is the final image:
# no compilers, no protoc, no test dependencies, a non-root numeric user.
#
# Base images are pinned to a full version. Their multi-platform digests, as recorded when
# these pins were chosen (re-check with `docker buildx imagetools inspect <image>` and append
# `@sha256:...` to the ARGs to pin by digest):
#   python:3.11.13-slim-bookworm  sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
#   node:22.18.0-bookworm-slim    sha256:752ea8a2f758c34002a0461bd9f1cee4f9a3c36d48494586f60ffce1fc708e0e
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG NODE_IMAGE=node:22.18.0-bookworm-slim

# ---- web: the browser app, built into static files the gateway serves ----------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /web
# web/ may not exist yet: BuildKit lets a wildcard at the context root match nothing, so
# this stage then yields an empty dist/. (`web*` copies the contents of web/ into /web.)
# Once web/ exists, copy web/package*.json and run `npm ci` first, for layer caching.
COPY web* ./
RUN if [ -f package.json ]; then npm ci --no-audit --no-fund && npm run build; fi \
 && mkdir -p dist

# ---- build: dependencies, generated code, the package --------------------------------------
FROM ${PYTHON_IMAGE} AS build
# pip compiles the .pyc files here: at run time the filesystem is read-only.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The server's runtime lock only (requirements/runtime.txt, written by `make lock`): no test,
# bench, lint or SDK dependency. protoc (the protos group's lock) gets a venv of its own,
# left behind in this stage.
COPY requirements/runtime.txt requirements/protos.txt requirements/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -r requirements/runtime.txt \
 && python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install -r requirements/protos.txt
COPY protos/ protos/
# Same generation as `make protos`: gen/ is build output, never copied from a work tree.
RUN mkdir gen \
 && /opt/protoc/bin/python -m grpc_tools.protoc -Iprotos --python_out=gen --pyi_out=gen \
      --grpc_python_out=gen $(find protos -name '*.proto') \
 && find gen/dropfile -type d -exec touch {}/__init__.py \;
COPY services/ services/
COPY gateway/ gateway/
COPY migrations/ migrations/
COPY pyproject.toml ./
# Non-editable: the package (services, gateway, migrations, dropfile.*) lands in site-packages.
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/python -c "import dropfile.auth.v1.auth_pb2, services.auth.server, gateway, \
      services.audit.__main__"

# ---- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# MALLOC_ARENA_MAX: glibc keeps one arena per worker thread; two keep the upload
# coordinator's peak RSS ~50 MB lower under load (bench/README.md).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2
RUN groupadd --system --gid 10001 dropfile \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin dropfile
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# alembic.ini points at ./migrations; `alembic upgrade head` and `alembic current` run here.
COPY alembic.ini ./
COPY migrations/ migrations/
COPY --from=web /web/dist/ web/dist/
USER 10001:10001
EXPOSE 50051 50052 50053 8080 9090
CMD ["python", "-m", "gateway"]
