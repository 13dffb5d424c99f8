"""The event processor's one use of S3: whether a completed upload's object is stored, and
what storage holds there (HEAD). The reconciler confirms uploads with it where storage sends
no events, or an event was lost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from services.common.clients import aws_client

from .notifications import ObjectCreated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from .settings import EventsSettings

# What a storage call may raise: unreachable, throttled, refused.
STORAGE_ERRORS = (BotoCoreError, ClientError)
_MISSING = ("404", "NoSuchKey", "NotFound")


class StoredObjects:
    def __init__(self, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    def created(self, key: str) -> ObjectCreated | None:
        """The object at `key` as an ObjectCreated (as its storage event would name it), or
        None when there is none; STORAGE_ERRORS when storage cannot tell."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        return ObjectCreated(
            event_name="Reconciler:HeadObject",
            bucket=self.bucket,
            key=key,
            size=head["ContentLength"],
            etag=head.get("ETag", "").strip('"'),
            event_time=head.get("LastModified"),
            sequencer=None,
        )


def stored_objects(settings: EventsSettings) -> StoredObjects:
    """The bucket of `settings`, through a client of its own."""
    return StoredObjects(
        aws_client("s3", region=settings.aws_region, endpoint_url=settings.s3_endpoint),
        settings.s3_bucket,
    )
