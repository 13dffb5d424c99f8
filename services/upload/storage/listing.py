"""The bucket's multipart uploads in progress, as the reaper (reaper.py) needs them: listed
a page at a time, aborted, and the objects of the uploads it ends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from botocore.exceptions import ClientError

from .bucket import error_code, stored_object

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


@dataclass(frozen=True)
class PendingMultipart:
    key: str
    upload_id: str
    initiated: datetime


class _Markers(TypedDict, total=False):
    """Where ListMultipartUploads continues from."""

    KeyMarker: str
    UploadIdMarker: str


class BucketUploads:
    """The bucket's multipart uploads in progress, as the reaper needs them."""

    def __init__(self, s3: S3Client, bucket: str, *, page_size: int = 1000) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._page_size = page_size

    @property
    def bucket(self) -> str:
        return self._bucket

    def pages(self, prefix: str) -> Iterator[list[PendingMultipart]]:
        """Every multipart upload under `prefix`, a page at a time: ListMultipartUploads
        continues from the markers the previous answer gave while it was truncated. S3 gives
        NextKeyMarker and NextUploadIdMarker; SeaweedFS only the latter (its order is by
        upload id), which it alone continues correctly from."""
        markers: _Markers = {}
        while True:
            reply = self._s3.list_multipart_uploads(
                Bucket=self._bucket, Prefix=prefix, MaxUploads=self._page_size, **markers
            )
            yield [
                PendingMultipart(
                    key=item["Key"], upload_id=item["UploadId"], initiated=item["Initiated"]
                )
                for item in reply.get("Uploads", [])
            ]
            following: _Markers = {}
            if reply.get("NextKeyMarker"):
                following["KeyMarker"] = reply["NextKeyMarker"]
            if reply.get("NextUploadIdMarker"):
                following["UploadIdMarker"] = reply["NextUploadIdMarker"]
            if not reply.get("IsTruncated") or not following or following == markers:
                return  # the end (or a store that would make us go round in circles)
            markers = following

    def abort(self, key: str, upload_id: str) -> bool:
        """Aborts; False when storage no longer had it (another replica was first)."""
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) == "NoSuchUpload":
                return False
            raise
        return True

    def delete_object(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def stored_object(self, key: str) -> tuple[int, str] | None:
        """(size, bare ETag) of the object, or None when there is none."""
        return stored_object(self._s3, self._bucket, key)
