"""Prometheus metrics every gRPC service records (its RPCs, its callers' tokens), defined
once, and the /metrics endpoint each process serves on METRICS_PORT. A service's own series
live in its own `metrics.py` (services/auth/metrics.py, services/events/metrics.py,
gateway/metrics.py), so a process exports only its own."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

GRPC_REQUESTS = Counter(
    "dropfile_grpc_requests_total", "gRPC requests served", ["service", "method", "code"]
)
GRPC_LATENCY = Histogram(
    "dropfile_grpc_request_duration_seconds",
    "gRPC request latency",
    ["service", "method"],
    buckets=LATENCY_BUCKETS,
)
# RSA checks of access tokens by outcome (valid, invalid), and access tokens refused by
# the check that refused them: claims (read without the key: algorithm, issuer, audience,
# expiry, missing claims), memory (a signature already found bad), signature, signed_out.
TOKEN_SIGNATURE_CHECKS = Counter(
    "dropfile_token_signature_checks_total", "RSA signature checks of access tokens", ["outcome"]
)
TOKENS_REFUSED = Counter(
    "dropfile_access_tokens_refused_total",
    "Access tokens refused, by the check that refused them",
    ["check"],
)


def start_metrics_server(port: int | None, host: str = "127.0.0.1") -> None:
    """Serves /metrics on `port` in a background thread; nothing when port is None."""
    if port is not None:
        start_http_server(port, addr=host)
