"""The upload coordinator as the event processor sees it: one internal RPC, ConfirmUpload,
called with the service credential and a deadline. gRPC failures become three exceptions
the processing rules act on: transient (retry), refused (the message's fault) and failed
(anything else)."""

from __future__ import annotations

import enum
import uuid

import grpc
from google.protobuf import timestamp_pb2

from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc
from services.common.grpc_server import SERVICE_TOKEN_HEADER
from services.common.logs import REQUEST_ID_HEADER

from .notifications import ObjectCreated

# Worth retrying: the service or its database is unreachable or overloaded right now.
# CANCELLED is the channel closing under us while the process stops.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    UNKNOWN_KEY = "unknown_key"
    REJECTED = "rejected"
    NOT_COMPLETED = "not_completed"
    STALE = "stale"


_OUTCOMES = {
    upload_pb2.ConfirmUploadResponse.OUTCOME_CONFIRMED: ConfirmOutcome.CONFIRMED,
    upload_pb2.ConfirmUploadResponse.OUTCOME_ALREADY_CONFIRMED: ConfirmOutcome.ALREADY_CONFIRMED,
    upload_pb2.ConfirmUploadResponse.OUTCOME_UNKNOWN_KEY: ConfirmOutcome.UNKNOWN_KEY,
    upload_pb2.ConfirmUploadResponse.OUTCOME_REJECTED: ConfirmOutcome.REJECTED,
    upload_pb2.ConfirmUploadResponse.OUTCOME_NOT_COMPLETED: ConfirmOutcome.NOT_COMPLETED,
    upload_pb2.ConfirmUploadResponse.OUTCOME_STALE: ConfirmOutcome.STALE,
}


class ConfirmationError(Exception):
    """The call failed in a way neither retrying now nor the message explains."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientConfirmationError(ConfirmationError):
    """The upload service (or its database) is unreachable for now: retry later."""


class ConfirmationRefused(ConfirmationError):
    """The upload service says the request is invalid: it will never succeed."""


PendingUpload = upload_pb2.ListPendingConfirmationsResponse.PendingUpload


class UploadConfirmer:
    def __init__(self, channel: grpc.Channel, *, service_token: str, timeout: float) -> None:
        self._stub = upload_pb2_grpc.UploadInternalServiceStub(channel)
        self._service_token = service_token
        self._timeout = timeout

    def confirm(self, created: ObjectCreated, *, request_id: str) -> ConfirmOutcome:
        request = upload_pb2.ConfirmUploadRequest(
            s3_key=created.key, size=created.size, etag=created.etag
        )
        if created.event_time is not None:
            event_time = timestamp_pb2.Timestamp()
            event_time.FromDatetime(created.event_time)
            request.event_time.CopyFrom(event_time)
        metadata = ((SERVICE_TOKEN_HEADER, self._service_token), (REQUEST_ID_HEADER, request_id))
        try:
            reply = self._stub.ConfirmUpload(request, timeout=self._timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise _classify(exc) from None
        outcome = _OUTCOMES.get(reply.outcome)
        if outcome is None:
            raise ConfirmationError(f"ConfirmUpload answered an unknown outcome {reply.outcome}")
        return outcome

    def pending(self, *, completed_at_least_seconds_ago: int, limit: int) -> list[PendingUpload]:
        """Completed uploads the upload service has not seen confirmed yet."""
        request = upload_pb2.ListPendingConfirmationsRequest(
            completed_at_least_seconds_ago=completed_at_least_seconds_ago, limit=limit
        )
        # Every internal call carries a request id, so upload's log line about it can be
        # found; each listing is a request of its own.
        request_id = f"reconcile-{uuid.uuid4().hex}"
        try:
            reply = self._stub.ListPendingConfirmations(
                request,
                timeout=self._timeout,
                metadata=(
                    (SERVICE_TOKEN_HEADER, self._service_token),
                    (REQUEST_ID_HEADER, request_id),
                ),
            )
        except grpc.RpcError as exc:
            raise _classify(exc, "ListPendingConfirmations") from None
        return list(reply.uploads)


def _classify(exc: grpc.RpcError, rpc: str = "ConfirmUpload") -> ConfirmationError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    message = f"{rpc} failed: {code.name if code else 'UNKNOWN'}: {details}"
    if code in TRANSIENT_CODES:
        return TransientConfirmationError(message, code)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ConfirmationRefused(message, code)
    return ConfirmationError(message, code)
