"""Reading S3 event notifications: what an SQS message body says, and what it asks of us.

Pure functions, no I/O, so every shape of message is testable without a queue. A body is
one of: S3's test event (sent when a notification is configured), or a list of records;
either may arrive wrapped in an SNS envelope. Each record becomes an `ObjectCreated` to
confirm or an `Ignored` with the reason. A body we can never act on raises
`UnprocessableMessage`, whose message says why (it is logged, then the queue's redrive
policy dead-letters the message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

OBJECT_CREATED_PREFIX = "ObjectCreated:"
TEST_EVENT = "s3:TestEvent"


class UnprocessableMessage(ValueError):
    """The message can never be processed; str(exc) says why."""


@dataclass(frozen=True)
class StorageTestEvent:
    """S3 checks that it can reach the queue; nothing to do but acknowledge."""

    bucket: str | None


@dataclass(frozen=True)
class ObjectCreated:
    """An object now exists in our bucket: the upload it belongs to can be confirmed."""

    event_name: str
    bucket: str
    key: str  # decoded: S3 URL-encodes keys in events, with `+` for spaces
    size: int
    etag: str  # without quotes
    event_time: datetime | None
    sequencer: str | None


@dataclass(frozen=True)
class Ignored:
    """A well-formed record that is not ours to act on."""

    event_name: str
    bucket: str
    key: str | None
    reason: str


Record = ObjectCreated | Ignored


def read_message(body: str, *, bucket: str) -> StorageTestEvent | list[Record]:
    """Interprets one SQS message body for the processor of `bucket`."""
    document = _unwrap_sns(_json_object(body, "message body"))
    if document.get("Event") == TEST_EVENT:
        test_bucket = document.get("Bucket")
        return StorageTestEvent(bucket=test_bucket if isinstance(test_bucket, str) else None)
    if "Records" not in document:
        raise UnprocessableMessage("not an S3 event notification: no Records and no Event")
    records = document["Records"]
    if not isinstance(records, list) or not records:
        raise UnprocessableMessage("Records must be a non-empty list")
    # Every record is checked before any is acted on, so a bad message does nothing
    # half-way.
    return [_read_record(raw, index, bucket) for index, raw in enumerate(records)]


def _json_object(text: Any, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise UnprocessableMessage(f"{what} is not a string")
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise UnprocessableMessage(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise UnprocessableMessage(f"{what} is JSON but not an object")
    return document


def _unwrap_sns(document: dict[str, Any]) -> dict[str, Any]:
    """S3 -> SNS -> SQS delivers the S3 event as a JSON string in the envelope's Message."""
    if document.get("Type") == "Notification" and "Message" in document:
        return _json_object(document["Message"], "SNS Message")
    return document


def _read_record(raw: Any, index: int, bucket: str) -> Record:
    where = f"Records[{index}]"
    if not isinstance(raw, dict):
        raise UnprocessableMessage(f"{where} is not an object")
    event_name = _string(raw, "eventName", where)
    s3 = _object(raw, "s3", where)
    record_bucket = _string(_object(s3, "bucket", f"{where}.s3"), "name", f"{where}.s3.bucket")
    if record_bucket != bucket:
        # Another bucket's events are not ours, however they look inside.
        return Ignored(
            event_name=event_name,
            bucket=record_bucket,
            key=None,
            reason=f"bucket {record_bucket} is not ours",
        )
    obj = _object(s3, "object", f"{where}.s3")
    key = decode_key(_string(obj, "key", f"{where}.s3.object"))
    if not event_name.startswith(OBJECT_CREATED_PREFIX):
        return Ignored(
            event_name=event_name,
            bucket=record_bucket,
            key=key,
            reason=f"{event_name} does not create an object",
        )
    size = obj.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UnprocessableMessage(f"{where}.s3.object.size is missing or not a whole number")
    etag = obj.get("eTag")
    if not isinstance(etag, str) or not etag.strip('"'):
        raise UnprocessableMessage(f"{where}.s3.object.eTag is missing or empty")
    sequencer = obj.get("sequencer")
    return ObjectCreated(
        event_name=event_name,
        bucket=record_bucket,
        key=key,
        size=size,
        etag=etag.strip('"'),
        event_time=_event_time(raw.get("eventTime"), where),
        sequencer=sequencer if isinstance(sequencer, str) else None,
    )


def decode_key(encoded: str) -> str:
    """Object keys in S3 events are URL-encoded with `+` for spaces."""
    return unquote_plus(encoded)


def _event_time(value: Any, where: str) -> datetime | None:
    # Only used for lag accounting: absent is fine, present must be a time.
    if value is None:
        return None
    if not isinstance(value, str):
        raise UnprocessableMessage(f"{where}.eventTime is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UnprocessableMessage(
            f"{where}.eventTime is not an ISO-8601 time: {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _object(parent: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise UnprocessableMessage(f"{where}.{name} is missing or not an object")
    return value


def _string(parent: dict[str, Any], name: str, where: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise UnprocessableMessage(f"{where}.{name} is missing or not a non-empty string")
    return value
