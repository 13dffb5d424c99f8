"""S3 operations the upload coordinator needs, and the Content-Disposition that makes a
browser save a download under the file's real name."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from botocore.exceptions import ClientError

from .checksums import ChecksumAlgorithm
from .presign import LazyPartUrls, PartUrlResigner


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


def _signed_headers(length: int, checksum: tuple[ChecksumAlgorithm, str] | None) -> dict[str, str]:
    """The headers a part's URL signs besides host, as botocore writes them."""
    headers = {"content-length": str(length)}
    if checksum is not None:
        headers[checksum[0].header.lower()] = checksum[1]
    return headers


def _check_lengths(numbers: list[int], lengths: Sequence[int]) -> None:
    if len(lengths) != len(numbers):
        raise ValueError("one length per part is needed")
    if any(length < 0 for length in lengths):
        raise ValueError("a part's length is 0 or more bytes")


def stored_object(s3, bucket: str, key: str) -> tuple[int, str] | None:
    """(size, bare ETag) of an object (HEAD), or None when there is none."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head["ContentLength"], normalize_etag(head.get("ETag", ""))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Storage:
    """One bucket. Every method is a thin, named S3 call; errors other than the ones
    documented propagate (the interceptor maps connection failures to UNAVAILABLE).

    `presigner` signs the URLs handed to clients when they reach storage at another
    address than this process does (S3_PUBLIC_ENDPOINT_URL): a SigV4 signature covers the
    host, so the URL must be signed for the host the client will connect to."""

    def __init__(
        self, s3, bucket: str, *, presigner=None, list_parts_page_size: int = 1000
    ) -> None:
        self._s3 = s3
        self._presigner = presigner or s3
        self._bucket = bucket
        self._page_size = list_parts_page_size

    @property
    def bucket(self) -> str:
        return self._bucket

    def create_multipart_upload(
        self, key: str, *, content_type: str, checksum_algorithm: ChecksumAlgorithm | None = None
    ) -> str:
        """With `checksum_algorithm`, every part must carry that checksum (S3 refuses a
        part without it, or whose bytes do not match it)."""
        extra = {"ChecksumAlgorithm": checksum_algorithm.value} if checksum_algorithm else {}
        reply = self._s3.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type, **extra
        )
        return reply["UploadId"]

    def presign_part(
        self,
        key: str,
        *,
        upload_id: str,
        part_number: int,
        length: int,
        ttl: int,
        checksum: tuple[ChecksumAlgorithm, str] | None = None,
    ) -> str:
        """A PUT URL signed for a body of exactly `length` bytes (content-length is a signed
        header: storage refuses any other length, and a chunked body). With `checksum`
        (algorithm, base64 digest), the checksum header is signed too: the PUT must send it
        (checksum_headers) and storage checks the bytes against it."""
        params = {
            "Bucket": self._bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": part_number,
            "ContentLength": length,
        }
        if checksum is not None:
            params[checksum[0].s3_param] = checksum[1]
        return self._presigner.generate_presigned_url("upload_part", Params=params, ExpiresIn=ttl)

    def presign_checksummed_parts(
        self,
        key: str,
        *,
        upload_id: str,
        part_numbers: range,
        lengths: Sequence[int],
        algorithm: ChecksumAlgorithm,
        checksums: list[str],
        ttl: int,
    ) -> list[str]:
        """Presigned PUT URLs whose signatures cover each part's length and checksum header,
        in the order of `part_numbers` (re-signed from botocore's first, as presign_parts)."""
        numbers = list(part_numbers)
        if len(checksums) != len(numbers):
            raise ValueError("one checksum per part is needed")
        return self._presign_many(
            key,
            upload_id=upload_id,
            numbers=numbers,
            lengths=lengths,
            ttl=ttl,
            checksums=[(algorithm, value) for value in checksums],
        )

    def presign_parts(
        self, key: str, *, upload_id: str, part_numbers: range, lengths: Sequence[int], ttl: int
    ) -> list[str]:
        """Presigned PUT URLs for many parts of one upload, in the order of `part_numbers`,
        each signed for its part's length (`lengths`, in the same order): botocore signs the
        first, the rest are re-signed from it (presign.py; ~40x faster than botocore per
        URL, and the same URLs)."""
        return self._presign_many(
            key,
            upload_id=upload_id,
            numbers=list(part_numbers),
            lengths=lengths,
            ttl=ttl,
            checksums=None,
        )

    def presign_parts_lazily(
        self, key: str, *, upload_id: str, part_numbers: range, lengths: Sequence[int], ttl: int
    ) -> LazyPartUrls:
        """The URLs presign_parts returns, for a caller that reads them once, in order, into
        a reply: those re-signed from botocore's first are made as they are read, so they
        are never all held at once (10,000 URLs are ~5 MB of strings). Whatever can fail
        (botocore's signing, reading the credentials) is done before this returns."""
        numbers = list(part_numbers)
        _check_lengths(numbers, lengths)
        if not numbers:
            return LazyPartUrls([])
        first, resigner = self._reference_url(
            key,
            upload_id=upload_id,
            numbers=numbers,
            length=lengths[0],
            ttl=ttl,
            first_checksum=None,
        )
        if resigner is None:  # botocore signs each one: now, while failing is still allowed
            return LazyPartUrls(
                [first]
                + [
                    self.presign_part(
                        key, upload_id=upload_id, part_number=number, length=length, ttl=ttl
                    )
                    for number, length in zip(numbers[1:], lengths[1:])
                ]
            )
        return LazyPartUrls([first], resigner, numbers[1:], lengths[1:])

    def _reference_url(
        self,
        key: str,
        *,
        upload_id: str,
        numbers: list[int],
        length: int,
        ttl: int,
        first_checksum: tuple[ChecksumAlgorithm, str] | None,
    ) -> tuple[str, PartUrlResigner | None]:
        """botocore's URL of the first part, and a resigner for the others (None when the
        URL cannot be re-signed, or there are no others)."""
        first = self.presign_part(
            key,
            upload_id=upload_id,
            part_number=numbers[0],
            length=length,
            ttl=ttl,
            checksum=first_checksum,
        )
        resigner = None
        # The credentials botocore just signed with (a private attribute: if botocore ever
        # moves it, every URL is presigned by botocore, only slower).
        credentials = getattr(
            getattr(self._presigner, "_request_signer", None), "_credentials", None
        )
        if credentials is not None and len(numbers) > 1:
            frozen = credentials.get_frozen_credentials()
            resigner = PartUrlResigner.from_reference(
                first,
                access_key=frozen.access_key,
                secret_key=frozen.secret_key,
                token=frozen.token,
                headers=_signed_headers(length, first_checksum),
            )
        return first, resigner

    def _presign_many(
        self,
        key: str,
        *,
        upload_id: str,
        numbers: list[int],
        lengths: Sequence[int],
        ttl: int,
        checksums: list[tuple[ChecksumAlgorithm, str]] | None,
    ) -> list[str]:
        _check_lengths(numbers, lengths)
        if not numbers:
            return []
        sums = checksums or [None] * len(numbers)
        first, resigner = self._reference_url(
            key,
            upload_id=upload_id,
            numbers=numbers,
            length=lengths[0],
            ttl=ttl,
            first_checksum=sums[0],
        )
        rest = zip(numbers[1:], lengths[1:], sums[1:])
        if resigner is None:
            return [first] + [
                self.presign_part(
                    key,
                    upload_id=upload_id,
                    part_number=number,
                    length=length,
                    ttl=ttl,
                    checksum=checksum,
                )
                for number, length, checksum in rest
            ]
        return [first] + [
            resigner.url(number, _signed_headers(length, checksum))
            for number, length, checksum in rest
        ]

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
            if _error_code(exc) == "NoSuchUpload":
                raise UploadGone(upload_id) from None
            raise
        return parts

    def complete_multipart_upload(
        self,
        key: str,
        *,
        upload_id: str,
        parts: list[tuple[int, str]],
        checksums: dict[int, str] | None = None,
        checksum_algorithm: ChecksumAlgorithm | None = None,
    ) -> str:
        """`parts` are (part number, bare ETag) in order. An upload created with a checksum
        algorithm names each part's checksum too (S3 requires it), where known. Returns the
        object's bare ETag ("" when the store names none): confirmation checks storage's
        events against it."""
        listed = []
        for number, etag in parts:
            entry = {"PartNumber": number, "ETag": f'"{etag}"'}
            if checksum_algorithm is not None and checksums and checksums.get(number):
                entry[checksum_algorithm.s3_param] = checksums[number]
            listed.append(entry)
        try:
            reply = self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listed},
            )
        except ClientError as exc:
            code = _error_code(exc)
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
            if _error_code(exc) != "NoSuchUpload":
                raise

    def stored_object(self, key: str) -> tuple[int, str] | None:
        """(size, bare ETag) of the stored object, or None when there is none."""
        return stored_object(self._s3, self._bucket, key)

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
