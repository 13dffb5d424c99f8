"""Which failures count as a dependency briefly unreachable (UNAVAILABLE, retried where
safe), and which stay errors (INTERNAL: bugs, or a refusal retrying cannot change). The
faults themselves are caused for real in tests/faults; this pins the classification of
the errors those libraries raise, and the retry loop's bounds."""

from __future__ import annotations

import time

import botocore.exceptions
import psycopg2
import psycopg2.errors
import pytest
import redis.exceptions
import sqlalchemy.exc

from services.common.transient import is_transient, retry_transient


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "CompleteMultipartUpload",
    )


@pytest.mark.parametrize(
    "error",
    [
        psycopg2.OperationalError("FATAL:  the database system is shutting down"),
        psycopg2.OperationalError("FATAL:  the database system is starting up"),
        psycopg2.InterfaceError("connection already closed"),
        sqlalchemy.exc.InternalError("INSERT", {}, psycopg2.errors.ReadOnlySqlTransaction()),
        redis.exceptions.BusyLoadingError(),
        redis.exceptions.ReadOnlyError(),
        botocore.exceptions.ConnectionClosedError(endpoint_url="http://s3"),
        _client_error("SlowDown", 503),
        _client_error("InternalError", 500),
        _client_error("ServiceUnavailable", 503),
        _client_error("Throttling", 400),
        _client_error("503", 503),  # a HEAD's error has no body: its status is its code
    ],
    ids=lambda error: f"{type(error).__name__}:{str(error)[:40]}",
)
def test_a_dependency_briefly_unreachable_is_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        _client_error("NoSuchBucket", 404),
        _client_error("AccessDenied", 403),
        _client_error("InvalidPart", 400),
        psycopg2.errors.UniqueViolation(),
        sqlalchemy.exc.IntegrityError("INSERT", {}, psycopg2.errors.UniqueViolation()),
        sqlalchemy.exc.ProgrammingError("SELECT", {}, psycopg2.errors.UndefinedTable()),
        redis.exceptions.ResponseError("WRONGTYPE"),
        KeyError("bug"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_bugs_and_lasting_refusals_are_not_transient(error):
    assert not is_transient(error)


def test_a_transient_failure_is_retried_until_it_passes():
    attempts = []

    def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise psycopg2.OperationalError("connection refused")
        return "done"

    assert retry_transient(flaky, deadline_seconds=5) == "done"
    assert len(attempts) == 3
    assert attempts[1] > attempts[0]  # with a pause between attempts


def test_retries_stop_at_the_deadline_and_the_last_failure_propagates():
    attempts = []

    def down():
        attempts.append(1)
        raise psycopg2.OperationalError("connection refused")

    started = time.monotonic()
    with pytest.raises(psycopg2.OperationalError):
        retry_transient(down, deadline_seconds=0.5)
    assert time.monotonic() - started < 1.5
    assert len(attempts) >= 2


def test_other_failures_are_not_retried():
    attempts = []

    def bug():
        attempts.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retry_transient(bug, deadline_seconds=5)
    assert attempts == [1]
