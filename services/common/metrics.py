"""Prometheus metrics of every Dropfile process, defined once. Every process serves them
at /metrics on METRICS_PORT (the gateway: gateway/metrics.py); the upload coordinator's
own series are in services/upload/metrics.py."""

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

QUEUE_MESSAGES = Counter(
    "dropfile_queue_messages_total", "SQS messages by what became of them", ["outcome"]
)
# outcome: received, deleted, rejected, failed, transient_failure, deferred (an upload not
# completed yet), dead_lettered (left undeleted at its queue's maxReceiveCount: SQS moves it
# to the dead-letter queue), stale_event (records, not messages: an object other than the
# one completion recorded).
# auth: every bcrypt hash or check run (a sign-in's check, a sign-up's hash), and the
# sign-ins and sign-ups refused before one: by a limit on attempts, or a full hashing queue.
PASSWORD_HASHES = Counter(
    "dropfile_auth_password_hashes_total", "bcrypt operations run", ["operation"]
)  # hash, check
PASSWORD_HASHING_REFUSED = Counter(
    "dropfile_auth_hashing_queue_full_total",
    "Sign-ins and sign-ups refused because the hashing queue was full",
)
SIGN_IN_THROTTLED = Counter(
    "dropfile_auth_throttled_total",
    "Sign-ins and sign-ups refused by a limit on attempts",
    ["kind"],
)  # sign_in, sign_up

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
