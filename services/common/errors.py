"""Domain errors, and their one mapping to gRPC status codes.

Every refusal carries a `reason` (google.rpc.ErrorInfo) that clients may branch on; those
that a retry may cure carry `retry_after` too (google.rpc.RetryInfo)."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """A refusal the caller can act on; its message is shown to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    reason: str = "ERROR"
    # Seconds after which a retry may succeed; sent as a google.rpc.RetryInfo detail, which
    # the gateway turns into `Retry-After` (429 and 503 answers).
    retry_after: float | None = None

    def __init__(
        self, message: str, *, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class TooManyRequests(DomainError):
    """A limit on how often or how much one caller may do (sign-in attempts, uploads in
    progress, streams): HTTP 429 with `Retry-After`, unlike a quota (413)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"
    retry_after = 1.0


class Unavailable(DomainError):
    """A dependency (database, cache, storage) is unreachable: retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"
    retry_after = 1.0
