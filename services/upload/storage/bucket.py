"""The S3 calls of the upload coordinator on its bucket: multipart uploads, objects, and
the presigned GET of a download."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..checksums import ChecksumAlgorithm
from .disposition import content_disposition
from .presigning import PartPresigner, Presigner

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef


class UploadGone(Exception):
    """Storage no longer has the multipart upload (aborted, completed, or never existed)."""


class CompletionRefused(Exception):
    """Storage refused the parts named to complete an upload (its error code)."""


@dataclass(frozen=True)
class StoredPart:
    etag: str  # without quotes
    size: int
    # The part's checksum (base64) when storage reports it (S3 does for uploads created
    # with a checksum algorithm; SeaweedFS and moto do not).
    checksum: str | None = None


@dataclass(frozen=True)
class StoredObject:
    size: int
    etag: str  # without quotes
    # The object's checksum (base64) of `algorithm` when storage reports it (S3 does for
    # an object PUT with one; moto and SeaweedFS may not).
    checksum: str | None = None


def normalize_etag(etag: str) -> str:
    """ETags travel quoted in HTTP headers and S3 XML; Dropfile compares them bare."""
    return etag.strip().strip('"').strip().lower()


def error_code(exc: ClientError) -> str:
    """The S3 error code of a refused call ("NoSuchUpload", "404"...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def stored_object(s3: S3Client, bucket: str, key: str) -> tuple[int, str] | None:
    """(size, bare ETag) of an object (HEAD), or None when there is none."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head["ContentLength"], normalize_etag(head.get("ETag", ""))


def _completed_part(
    number: int, etag: str, algorithm: ChecksumAlgorithm | None, checksum: str | None
) -> CompletedPartTypeDef:
    entry: CompletedPartTypeDef = {"PartNumber": number, "ETag": f'"{etag}"'}
    if algorithm is ChecksumAlgorithm.SHA256 and checksum:
        entry["ChecksumSHA256"] = checksum
    elif algorithm is ChecksumAlgorithm.CRC32C and checksum:
        entry["ChecksumCRC32C"] = checksum
    return entry


class Storage:
    """One bucket. Every method is a thin, named S3 call; errors other than the ones
    documented propagate (the interceptor maps connection failures to UNAVAILABLE).

    `presigner` signs the URLs handed to clients when they reach storage at another
    address than this process does (S3_PUBLIC_ENDPOINT_URL): a SigV4 signature covers the
    host, so the URL must be signed for the host the client will connect to. Part URLs
    are `part_urls`' (presigning.py)."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        presigner: Presigner | None = None,
        list_parts_page_size: int = 1000,
    ) -> None:
        self._s3 = s3
        self._presigner: Presigner = presigner or s3
        self._bucket = bucket
        self._page_size = list_parts_page_size
        self.part_urls = PartPresigner(self._presigner, bucket)

    @property
    def bucket(self) -> str:
        return self._bucket

    def create_multipart_upload(
        self, key: str, *, content_type: str, checksum_algorithm: ChecksumAlgorithm | None = None
    ) -> str:
        """With `checksum_algorithm`, every part must carry that checksum (S3 refuses a
        part without it, or whose bytes do not match it)."""
        if checksum_algorithm is None:
            reply = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=key, ContentType=content_type
            )
        else:
            reply = self._s3.create_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                ContentType=content_type,
                ChecksumAlgorithm=checksum_algorithm.s3_name,
            )
        return reply["UploadId"]

    def list_parts(self, key: str, *, upload_id: str) -> dict[int, StoredPart]:
        """Every part storage holds, by 1-based part number (all pages)."""
        paginator = self._s3.get_paginator("list_parts")
        parts: dict[int, StoredPart] = {}
        try:
            for page in paginator.paginate(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                PaginationConfig={"PageSize": self._page_size},
            ):
                for part in page.get("Parts", []):
                    checksum = part.get("ChecksumSHA256") or part.get("ChecksumCRC32C")
                    parts[part["PartNumber"]] = StoredPart(
                        normalize_etag(part["ETag"]), part["Size"], checksum or None
                    )
        except ClientError as exc:
            if error_code(exc) == "NoSuchUpload":
                raise UploadGone(upload_id) from None
            raise
        return parts

    def complete_multipart_upload(
        self,
        key: str,
        *,
        upload_id: str,
        parts: list[tuple[int, str]],
        checksums: dict[int, str | None] | None = None,
        checksum_algorithm: ChecksumAlgorithm | None = None,
    ) -> str:
        """`parts` are (part number, bare ETag) in order. An upload created with a checksum
        algorithm names each part's checksum too (S3 requires it), where known. Returns the
        object's bare ETag ("" when the store names none): confirmation checks storage's
        events against it."""
        listed = [
            _completed_part(number, etag, checksum_algorithm, (checksums or {}).get(number))
            for number, etag in parts
        ]
        try:
            reply = self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "NoSuchUpload":
                raise UploadGone(upload_id) from None
            if code in ("InvalidRequest", "InvalidPart", "InvalidPartOrder", "BadDigest"):
                raise CompletionRefused(code) from None
            raise
        return normalize_etag(reply.get("ETag", ""))

    def abort_multipart_upload(self, key: str, *, upload_id: str) -> None:
        """Aborts; an upload that is already gone is fine."""
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) != "NoSuchUpload":
                raise

    def stored_object(self, key: str) -> tuple[int, str] | None:
        """(size, bare ETag) of the stored object, or None when there is none."""
        return stored_object(self._s3, self._bucket, key)

    def head_object(
        self, key: str, *, algorithm: ChecksumAlgorithm | None = None
    ) -> StoredObject | None:
        """The stored object, with its `algorithm` checksum where storage reports one; None
        when there is none."""
        try:
            if algorithm is None:
                head = self._s3.head_object(Bucket=self._bucket, Key=key)
            else:
                head = self._s3.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        checksum: str | None = None
        if algorithm is ChecksumAlgorithm.SHA256:
            checksum = head.get("ChecksumSHA256")
        elif algorithm is ChecksumAlgorithm.CRC32C:
            checksum = head.get("ChecksumCRC32C")
        return StoredObject(
            size=head["ContentLength"],
            etag=normalize_etag(head.get("ETag", "")),
            checksum=checksum or None,
        )

    def delete_object(self, key: str) -> None:
        """Deletes the object; deleting a missing object succeeds (S3 semantics)."""
        self._s3.delete_object(Bucket=self._bucket, Key=key)

    def presign_download(self, key: str, *, file_name: str, mime_type: str, ttl: int) -> str:
        return self._presigner.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ResponseContentDisposition": content_disposition(file_name),
                "ResponseContentType": mime_type,
            },
            ExpiresIn=ttl,
        )
