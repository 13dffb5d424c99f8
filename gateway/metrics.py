"""The gateway's Prometheus metrics: requests and latency per route, and where /metrics is
served.

Routes are labelled by their template (`/api/files/get-upload-urls`, or `/a/{id}` for a
path with parameters), never by the raw path: a label per distinct URL would let any
caller create unbounded series. Requests no API route handled (unknown paths, and the web
app's files and pages, whose route FastAPI does not record) share one label.

/metrics is served on its own port (METRICS_PORT, started by `python -m gateway`) so
that it is not public: the HTTP port is what the NodePort or Ingress exposes. Without
METRICS_PORT, a development gateway also answers /metrics on its HTTP port; a production
one does not serve metrics at all (like the gRPC services without METRICS_PORT).
"""

from __future__ import annotations

from functools import lru_cache

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from services.common.metrics import LATENCY_BUCKETS

from .settings import GatewaySettings

UNMATCHED_ROUTE = "<unmatched>"
METRICS_PATH = "/metrics"

HTTP_REQUESTS = Counter(
    "dropfile_http_requests_total",
    "HTTP requests served by the gateway",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "dropfile_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)


def route_label(scope: Scope) -> str:
    """The template of the API route that handled the request (FastAPI records it in
    the scope), the class name of another route that did, or UNMATCHED_ROUTE."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED_ROUTE
    return (
        getattr(route, "path_format", None) or getattr(route, "path", None) or type(route).__name__
    )


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    """Counts one HTTP request by method, route template and status, and observes its
    latency by method and route (called by the gateway's EdgeMiddleware)."""
    route = route_label(scope)
    _latency(scope["method"], route).observe(seconds)
    _requests(scope["method"], route, status).inc()


# Each series' child, looked up once: `labels()` checks and locks on every call. The
# labels are few (methods, route templates, statuses), so the caches stay small.
@lru_cache(maxsize=4096)
def _latency(method: str, route: str) -> Histogram:
    return HTTP_LATENCY.labels(method, route)


@lru_cache(maxsize=4096)
def _requests(method: str, route: str, status: int) -> Counter:
    return HTTP_REQUESTS.labels(method, route, str(status))


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def serves_metrics_on_http_port(settings: GatewaySettings) -> bool:
    return settings.metrics_port is None and settings.development


def install_metrics_route(app: FastAPI, settings: GatewaySettings) -> None:
    """Adds /metrics to the HTTP port only in development without METRICS_PORT (see the
    module doc)."""
    if serves_metrics_on_http_port(settings):
        app.add_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False)
