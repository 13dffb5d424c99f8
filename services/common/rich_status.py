"""The google.rpc.Status every Dropfile refusal carries: the code, the message, an ErrorInfo
with the reason (domain "dropfile") and, when the caller may retry, a RetryInfo. One builder
for the services that raise refusals and the gateway that rebuilds ones it learnt in a
message (a RecordParts result, a SubscriptionEnded)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from google.rpc.status_pb2 import Status

ERROR_DOMAIN = "dropfile"


def rich_status(
    code: grpc.StatusCode, message: str, reason: str, retry_after: float | None = None
) -> Status:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN))
    details = [detail]
    if retry_after is not None:
        retry = any_pb2.Any()
        delay = error_details_pb2.RetryInfo()
        delay.retry_delay.FromMilliseconds(max(int(retry_after * 1000), 0))
        retry.Pack(delay)
        details.append(retry)
    return Status(code=code.value[0], message=message, details=details)
