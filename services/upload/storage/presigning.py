"""Presigned UploadPart URLs (and a single-PUT upload's PutObject URL): each signed for its
part's exact length, and for v2 uploads its checksum; botocore signs the first of a batch,
the others are re-signed from it (resigning.py: ~40x faster than botocore per URL, and
the same URLs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..checksums import ChecksumAlgorithm
from .resigning import LazyPartUrls, PartUrlResigner

# A part's checksum as its URL signs it: (algorithm, base64 digest).
PartChecksum = tuple[ChecksumAlgorithm, str]


class Presigner(Protocol):
    """What presigning needs of a botocore S3 client."""

    def generate_presigned_url(
        self, ClientMethod: str, Params: Mapping[str, Any] = ..., ExpiresIn: int = ...
    ) -> str: ...


def signed_headers(length: int, checksum: PartChecksum | None) -> dict[str, str]:
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


class PartPresigner:
    """Part URLs of one bucket's multipart uploads, signed by `presigner` (a client of the
    address clients reach storage at: a SigV4 signature covers the host)."""

    def __init__(self, presigner: Presigner, bucket: str) -> None:
        self._presigner = presigner
        self._bucket = bucket

    def presign_part(
        self,
        key: str,
        *,
        upload_id: str,
        part_number: int,
        length: int,
        ttl: int,
        checksum: PartChecksum | None = None,
    ) -> str:
        """A PUT URL signed for a body of exactly `length` bytes (content-length is a signed
        header: storage refuses any other length, and a chunked body). With `checksum`
        (algorithm, base64 digest), the checksum header is signed too: the PUT must send it
        (checksum_headers) and storage checks the bytes against it."""
        params: dict[str, str | int] = {
            "Bucket": self._bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": part_number,
            "ContentLength": length,
        }
        if checksum is not None:
            params[checksum[0].s3_param] = checksum[1]
        return self._presigner.generate_presigned_url("upload_part", Params=params, ExpiresIn=ttl)

    def presign_object_put(
        self, key: str, *, length: int, ttl: int, checksum: PartChecksum | None = None
    ) -> str:
        """A PutObject URL for a single-PUT upload (the whole file as one request, no
        multipart upload), signed as presign_part signs a part: for exactly `length` bytes
        and, with `checksum`, its checksum header."""
        params: dict[str, str | int] = {
            "Bucket": self._bucket,
            "Key": key,
            "ContentLength": length,
        }
        if checksum is not None:
            params[checksum[0].s3_param] = checksum[1]
        return self._presigner.generate_presigned_url("put_object", Params=params, ExpiresIn=ttl)

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
        first, the rest are re-signed from it."""
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
        first_checksum: PartChecksum | None,
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
                headers=signed_headers(length, first_checksum),
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
        checksums: list[PartChecksum] | None,
    ) -> list[str]:
        _check_lengths(numbers, lengths)
        if not numbers:
            return []
        sums: Sequence[PartChecksum | None] = checksums or [None] * len(numbers)
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
            resigner.url(number, signed_headers(length, checksum))
            for number, length, checksum in rest
        ]
