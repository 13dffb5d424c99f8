"""Which failures are a dependency being briefly unreachable, worth a retry: a PostgreSQL
connection refused, dropped or refused while the server starts, stops or is read-only
(a failover), Redis unreachable or loading, S3/SQS unreachable or answering 5xx or
throttling. Callers retry what is safe to retry (`retry_transient`); whatever is left
becomes UNAVAILABLE with RetryInfo in the shared interceptor (grpc_server.py), 503 with
Retry-After at the gateway, never INTERNAL."""

from __future__ import annotations

import logging
import random
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# By module: the exceptions of a library that mean its server is briefly unreachable.
# Looked up only in libraries the process has loaded (one it never imported cannot have
# raised): importing them just to name their exceptions would cost a process that uses
# none of some (auth: redis and botocore, ~10 MB; events: SQLAlchemy, ~10 MB).
_TRANSIENT_BY_MODULE = {
    "sqlalchemy.exc": (
        "OperationalError",
        "InterfaceError",
        "TimeoutError",
    ),  # TimeoutError: the pool is exhausted
    # psycopg2's own, as raised where SQLAlchemy does not wrap them (a pool's connect
    # under Engine.raw_connection): refused, reset, "the database system is shutting
    # down" / "is starting up" (all OperationalError), a closed connection
    # (InterfaceError), and a server that became a read-only standby (failover).
    "psycopg2": ("OperationalError", "InterfaceError"),
    "psycopg2.errors": ("ReadOnlySqlTransaction",),
    # BusyLoadingError (a restarted server reading its data) is a ConnectionError.
    "redis.exceptions": ("ConnectionError", "TimeoutError", "ReadOnlyError", "TryAgainError"),
    # Connection refused, reset, closed, timed out (every one of botocore's connection
    # failures derives from one of these two).
    "botocore.exceptions": ("ConnectionError", "HTTPClientError"),
}

# Error codes with which S3 and SQS ask to be called again later (botocore's standard
# retry mode retries them too, a few times, before they reach us).
_RETRYABLE_AWS_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "InternalFailure",
    }
)


def _transient_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ConnectionError]
    for module_name, names in _TRANSIENT_BY_MODULE.items():
        module = sys.modules.get(module_name)
        if module is not None:
            found.extend(getattr(module, name) for name in names if hasattr(module, name))
    return tuple(found)


def _aws_asks_for_retry(exc: BaseException) -> bool:
    """An S3/SQS answer that is its server's trouble (5xx) or a request to slow down."""
    aws_errors = sys.modules.get("botocore.exceptions")
    if aws_errors is None or not isinstance(exc, aws_errors.ClientError):
        return False
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    code = str(response.get("Error", {}).get("Code", ""))
    return status >= 500 or status == 429 or code in _RETRYABLE_AWS_CODES


def is_transient(exc: BaseException) -> bool:
    database_errors = sys.modules.get("sqlalchemy.exc")
    if database_errors is not None and isinstance(exc, database_errors.DBAPIError):
        if exc.connection_invalidated:
            return True
        # SQLAlchemy wraps the driver's error by its DB-API class only: a read-only
        # standby's refusal arrives as InternalError, whose cause tells.
        if exc.orig is not None and exc.orig is not exc and is_transient(exc.orig):
            return True
    return isinstance(exc, _transient_types()) or _aws_asks_for_retry(exc)


# When the caller of the RPC being served stops waiting (time.monotonic()), set by the
# gRPC interceptor: retrying past it would only keep a worker busy for nobody.
caller_gives_up_at: ContextVar[float | None] = ContextVar("caller_gives_up_at", default=None)

# Backoff between attempts: short first (a dropped connection is usually replaced at
# once), doubling to a ceiling, with jitter so that many callers do not retry in step.
FIRST_BACKOFF_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 1.0


def retry_transient(
    run: Callable[[], T], *, deadline_seconds: float, what: str = "a statement"
) -> T:
    """Runs `run` (safe to run more than once) until it succeeds, retrying transient
    failures with backoff for up to `deadline_seconds` in all, and never past the moment
    the RPC's caller gives up; then the last failure propagates (the interceptor answers
    UNAVAILABLE). Other failures propagate at once."""
    give_up_at = time.monotonic() + deadline_seconds
    caller_deadline = caller_gives_up_at.get()
    if caller_deadline is not None:
        give_up_at = min(give_up_at, caller_deadline)
    backoff = FIRST_BACKOFF_SECONDS
    attempt = 1
    started = time.monotonic()
    while True:
        try:
            result = run()
        except Exception as exc:  # any failure: only transient ones are retried
            if not is_transient(exc):
                raise
            pause = random.uniform(backoff / 2, backoff)
            if time.monotonic() + pause >= give_up_at:
                raise
            # One line per attempt only at DEBUG: an outage would otherwise log one per
            # attempt of every call (readiness.py and the interceptor report it).
            log.debug(
                "%s met an unavailable dependency (%s), retrying (attempt %d)",
                what,
                type(exc).__name__,
                attempt + 1,
            )
        else:
            if attempt > 1:
                log.info(
                    "%s succeeded after %d attempts (%.1f s): a dependency was briefly unavailable",
                    what,
                    attempt,
                    time.monotonic() - started,
                )
            return result
        time.sleep(pause)
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        attempt += 1
