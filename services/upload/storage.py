"""S3 operations the upload coordinator needs, and the Content-Disposition that makes a
browser save a download under the file's real name."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from botocore.exceptions import ClientError


class UploadGone(Exception):
    """Storage no longer has the multipart upload (aborted, completed, or never existed)."""


@dataclass(frozen=True)
class StoredPart:
    etag: str  # without quotes
    size: int


def normalize_etag(etag: str) -> str:
    """ETags travel quoted in HTTP headers and S3 XML; Dropfile compares them bare."""
    return etag.strip().strip('"').strip().lower()


# Characters the quoted `filename` fallback must not carry: quotes and backslashes (escaping
# is handled inconsistently by browsers), `%` (some decode it), path separators, controls.
_UNSAFE_FALLBACK = re.compile(r'["\\%/\x00-\x1f\x7f]')
# RFC 5987 attr-char minus the ones `quote` always keeps (letters, digits, "_.-~").
_ATTR_CHAR_EXTRA = "!#$&+^`|"
# Long names are shortened (extension kept): OS limits are ~255 bytes and the header
# travels inside a presigned URL.
MAX_DISPOSITION_NAME = 180


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if dot and stem and 0 < len(extension) <= 16:
        return stem[: limit - len(extension) - 1] + "." + extension
    return name[:limit]


def ascii_fallback(name: str) -> str:
    """A plain-ASCII version of `name` for clients that ignore `filename*`: accents are
    dropped (é -> e), other non-ASCII and unsafe characters become `_`."""
    decomposed = unicodedata.normalize("NFKD", name)
    without_marks = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    ascii_only = "".join(ch if ord(ch) < 128 else "_" for ch in without_marks)
    return _UNSAFE_FALLBACK.sub("_", ascii_only).strip() or "download"


def content_disposition(file_name: str) -> str:
    """`attachment` with both an ASCII `filename` and the exact UTF-8 `filename*` (RFC 6266,
    RFC 5987): modern browsers use `filename*`, old ones the fallback."""
    name = _shorten(file_name, MAX_DISPOSITION_NAME) or "download"
    encoded = quote(name, safe=_ATTR_CHAR_EXTRA, encoding="utf-8")
    return f"attachment; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Storage:
    """One bucket. Every method is a thin, named S3 call; errors other than the ones
    documented propagate (the interceptor maps connection failures to UNAVAILABLE)."""

    def __init__(self, s3, bucket: str, *, list_parts_page_size: int = 1000) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._page_size = list_parts_page_size

    @property
    def bucket(self) -> str:
        return self._bucket

    def create_multipart_upload(self, key: str, *, content_type: str) -> str:
        reply = self._s3.create_multipart_upload(Bucket=self._bucket, Key=key,
                                                 ContentType=content_type)
        return reply["UploadId"]

    def presign_part(self, key: str, *, upload_id: str, part_number: int, ttl: int) -> str:
        return self._s3.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self._bucket, "Key": key, "UploadId": upload_id,
                    "PartNumber": part_number},
            ExpiresIn=ttl,
        )

    def list_parts(self, key: str, *, upload_id: str) -> dict[int, StoredPart]:
        """Every part storage holds, by 1-based part number (all pages)."""
        paginator = self._s3.get_paginator("list_parts")
        parts: dict[int, StoredPart] = {}
        try:
            for page in paginator.paginate(Bucket=self._bucket, Key=key, UploadId=upload_id,
                                           PaginationConfig={"PageSize": self._page_size}):
                for part in page.get("Parts", []):
                    parts[part["PartNumber"]] = StoredPart(normalize_etag(part["ETag"]),
                                                           part["Size"])
        except ClientError as exc:
            if _error_code(exc) == "NoSuchUpload":
                raise UploadGone(upload_id) from None
            raise
        return parts

    def complete_multipart_upload(self, key: str, *, upload_id: str,
                                  parts: list[tuple[int, str]]) -> None:
        """`parts` are (part number, bare ETag) in order."""
        try:
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": number, "ETag": f'"{etag}"'}
                                           for number, etag in parts]},
            )
        except ClientError as exc:
            if _error_code(exc) == "NoSuchUpload":
                raise UploadGone(upload_id) from None
            raise

    def abort_multipart_upload(self, key: str, *, upload_id: str) -> None:
        """Aborts; an upload that is already gone is fine."""
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise

    def object_size(self, key: str) -> int | None:
        """The stored object's size, or None when there is none."""
        try:
            return self._s3.head_object(Bucket=self._bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def delete_object(self, key: str) -> None:
        """Deletes the object; deleting a missing object succeeds (S3 semantics)."""
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def presign_download(self, key: str, *, file_name: str, mime_type: str, ttl: int) -> str:
        return self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": key,
                    "ResponseContentDisposition": content_disposition(file_name),
                    "ResponseContentType": mime_type},
            ExpiresIn=ttl,
        )
