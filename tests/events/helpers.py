"""What the event processor's integration tests share: uploading a file as a user would,
building the S3 events storage sends, publishing status changes as the upload coordinator
does, and reading queues and stats."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote_plus

import httpx

from dropfile.events.v1 import events_pb2
from dropfile.upload.v1 import upload_pb2
from services.common.clients import redis_client
from services.common.file_events import FileStatusChange, channel_of


def bearer(token: str):
    return [("authorization", f"Bearer {token}")]


@dataclass(frozen=True)
class UploadedFile:
    file_id: str
    s3_key: str
    size: int


def upload_file(
    stub,
    token: str,
    *,
    size: int,
    file_name: str = "report.pdf",
    file_id: str | None = None,
    first_byte: int = 0,
) -> UploadedFile:
    """Initiates, PUTs every part to its presigned URL, records the parts and completes the
    multipart upload, as a client does. The file is then UPLOADING until confirmed. The
    bytes count up from `first_byte` (another value, other bytes)."""
    metadata = bearer(token)
    file_id = file_id or str(uuid.uuid4())
    reply = stub.InitiateUpload(
        upload_pb2.InitiateUploadRequest(
            file_id=file_id, file_name=file_name, mime_type="application/pdf", file_size=size
        ),
        metadata=metadata,
    )
    pattern = bytes((first_byte + i) % 256 for i in range(256))
    data = pattern * (size // 256) + bytes(size % 256)
    parts = []
    for index, url in enumerate(reply.part_urls):
        chunk = data[index * reply.part_size : (index + 1) * reply.part_size]
        response = httpx.put(url, content=chunk, timeout=30)
        response.raise_for_status()
        etag = response.headers["ETag"]
        stub.RecordPart(
            upload_pb2.RecordPartRequest(
                file_id=file_id, chunk_index=index, size=len(chunk), etag=etag
            ),
            metadata=metadata,
        )
        parts.append(upload_pb2.CompletedPart(part_number=index + 1, etag=etag))
    stub.CompleteUpload(
        upload_pb2.CompleteUploadRequest(upload_id=reply.upload_id, file_id=file_id, parts=parts),
        metadata=metadata,
    )
    return UploadedFile(file_id=file_id, s3_key=reply.s3_key, size=size)


def file_status(stub, token: str, file_id: str) -> str:
    """The file's status name as its owner sees it (e.g. "FILE_STATUS_UPLOADED")."""
    files = stub.ListFiles(upload_pb2.ListFilesRequest(), metadata=bearer(token)).files
    [match] = [f for f in files if f.file_id == file_id]
    return upload_pb2.FileStatus.Name(match.status)


def s3_record(
    bucket: str,
    key: str,
    *,
    event_name: str,
    size: int | None = None,
    etag: str | None = None,
    sequencer: str | None = None,
) -> dict:
    """One record as S3 writes it (key URL-encoded with `+` for spaces)."""
    obj: dict = {"key": quote_plus(key, safe="/")}  # as AWS: "/" kept, " " is "+"
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if sequencer is not None:
        obj["sequencer"] = sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "dropfile-object-created",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def created_event(
    s3,
    bucket: str,
    key: str,
    *,
    sequencer: str | None = None,
    event_name: str = "ObjectCreated:CompleteMultipartUpload",
) -> str:
    """The ObjectCreated event storage would send for the object now at `key`."""
    head = s3.head_object(Bucket=bucket, Key=key)
    return json.dumps(
        {
            "Records": [
                s3_record(
                    bucket,
                    key,
                    event_name=event_name,
                    size=head["ContentLength"],
                    etag=head["ETag"].strip('"'),
                    sequencer=sequencer,
                )
            ]
        }
    )


def removed_event(bucket: str, key: str, *, sequencer: str | None = None) -> str:
    return json.dumps(
        {
            "Records": [
                s3_record(bucket, key, event_name="ObjectRemoved:Delete", sequencer=sequencer)
            ]
        }
    )


def queue_counts(sqs, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def is_empty(sqs, queue_url: str) -> bool:
    return queue_counts(sqs, queue_url) == (0, 0)


def stats(processor_stub, make_token) -> events_pb2.GetStatsResponse:
    return processor_stub.GetStats(events_pb2.GetStatsRequest(), metadata=bearer(make_token()))


def messages_of(caplog, needle: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if needle in record.getMessage()]


def dead_lettered_count() -> float:
    """This process's count of messages left for the dead-letter queue (the Prometheus
    counter the poller increments)."""
    from prometheus_client import REGISTRY

    return (
        REGISTRY.get_sample_value("dropfile_queue_messages_total", {"outcome": "dead_lettered"})
        or 0.0
    )


def publish_uploaded(redis_url: str, user_ids: list[str]) -> dict[str, str]:
    """An UPLOADED change for each user, as the upload coordinator publishes it; the file
    id published for each."""
    client = redis_client(redis_url)
    published = {}
    try:
        for user_id in user_ids:
            file_id = str(uuid.uuid4())
            change = FileStatusChange(
                file_id=file_id, status="UPLOADED", size=1, at=datetime.now(UTC)
            )
            client.publish(channel_of(user_id), change.to_json())
            published[user_id] = file_id
    finally:
        client.close()
    return published
