"""Checksums of v2 uploads: the per-part checksum storage verifies (SHA-256 or CRC32C, as
S3 takes them: base64 of the digest, sent in `x-amz-checksum-<algorithm>`), and the
whole file's SHA-256 (lowercase hex) that is recorded and returned with the file.

The part checksum is a presigned, signed header: a client cannot send other bytes than
the ones it declared, and storage answers BadDigest when the bytes do not match."""

from __future__ import annotations

import base64
import binascii
import enum
import re
from typing import Literal

from services.common.errors import InvalidArgument


class ChecksumAlgorithm(str, enum.Enum):
    SHA256 = "SHA256"
    CRC32C = "CRC32C"

    @property
    def digest_bytes(self) -> int:
        return 32 if self is ChecksumAlgorithm.SHA256 else 4

    @property
    def header(self) -> str:
        """The request header that carries the part's checksum."""
        return f"x-amz-checksum-{self.value.lower()}"

    @property
    def s3_name(self) -> Literal["SHA256", "CRC32C"]:
        """The name S3 gives the algorithm (CreateMultipartUpload's ChecksumAlgorithm)."""
        return "SHA256" if self is ChecksumAlgorithm.SHA256 else "CRC32C"

    @property
    def s3_param(self) -> str:
        """The boto3 parameter of UploadPart / CompleteMultipartUpload parts."""
        return f"Checksum{self.value}"


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Longest base64 checksum: 32 bytes -> 44 characters (chunks.checksum holds 64).
MAX_CHECKSUM_CHARS = 64


def clean_part_checksum(value: str, algorithm: ChecksumAlgorithm, *, what: str) -> str:
    """The base64 checksum of one part, checked to be a digest of `algorithm`."""
    text = (value or "").strip()
    if not text:
        raise InvalidArgument(f"{what} is required")
    try:
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(
            f"{what} must be base64 (the {algorithm.value} digest, as S3 takes it)"
        ) from None
    if len(digest) != algorithm.digest_bytes or len(text) > MAX_CHECKSUM_CHARS:
        raise InvalidArgument(
            f"{what} must be a {algorithm.value} digest ({algorithm.digest_bytes} bytes, base64)"
        )
    return base64.b64encode(digest).decode()  # canonical padding


def clean_sha256_hex(value: str, *, what: str = "sha256") -> str | None:
    """The whole file's SHA-256 as lowercase hex, or None when not given."""
    text = (value or "").strip().lower()
    if not text:
        return None
    if not _SHA256_HEX.match(text):
        raise InvalidArgument(f"{what} must be 64 hexadecimal characters (a SHA-256)")
    return text
