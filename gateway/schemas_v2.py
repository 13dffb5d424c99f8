"""The `/api/v2` JSON bodies (camelCase), as pydantic models: as for v1 (schemas.py), a
request model is the document's word on its body, every constraint one the upload service
holds, and what it does not allow is refused here (400 INVALID_REQUEST)."""

from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Interval
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, Strict, StringConstraints

from .schemas import (
    INT64_MAX,
    MAX_PART_SIZE,
    MAX_PARTS,
    ETag,
    FileEntry,
    FileName,
    MimeType,
    RequestBody,
    UploadId,
    Uuid,
    _example,
    _text,
    whole,
)

ByteSize = Annotated[int, Strict(), Interval(ge=0, le=INT64_MAX), BeforeValidator(whole)]
PartSize = Annotated[int, Strict(), Interval(ge=0, le=MAX_PART_SIZE), BeforeValidator(whole)]
PartNumber = Annotated[int, Strict(), Interval(ge=1, le=MAX_PARTS), BeforeValidator(whole)]
Algorithm = Literal["SHA256", "CRC32C"]
# A part's checksum as S3 takes it: base64 of a CRC32C (4 bytes) or SHA-256 (32 bytes)
# digest; the service checks it is one of the upload's algorithm.
CHECKSUM_PATTERN = r"^(?:[A-Za-z0-9+/]{6}==|[A-Za-z0-9+/]{43}=)$"
Checksum = Annotated[str, Strict(), StringConstraints(pattern=CHECKSUM_PATTERN)]
SHA256_HEX_PATTERN = r"^[0-9a-fA-F]{64}$"
Sha256Hex = Annotated[
    str, Strict(), StringConstraints(pattern=SHA256_HEX_PATTERN), AfterValidator(_text)
]
MAX_PART_URLS_PER_CALL = 1000
MAX_PARTS_PER_RECORD_CALL = 100
_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_PART_SHA256 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="


class PartUrlEntry(BaseModel):
    partNumber: int
    url: str
    headers: dict[str, str] = Field(
        description="Headers the PUT must send exactly as given "
        "(signed), e.g. x-amz-checksum-sha256"
    )


class CreateUploadBody(RequestBody):
    model_config = _example(
        fileId="c9e8f7a6-1b2c-4d3e-9f40-5a6b7c8d9e0f",
        fileName="holiday.mp4",
        mimeType="video/mp4",
        size=15728640,
        checksumAlgorithm="SHA256",
    )
    fileId: Uuid | None = Field(
        default=None, description="A UUID for the new file; omitted: the server makes one"
    )
    fileName: FileName
    mimeType: MimeType = Field(default="", description="MIME type; may be empty")
    size: ByteSize = Field(
        description="Exact size in bytes, up to the server's v2 limit",
        json_schema_extra={"x-dropfile-limit": "v2_max_file_size_bytes"},
    )
    checksumAlgorithm: Algorithm = Field(
        default="SHA256",
        description="The checksum every part carries; storage refuses a "
        "part whose bytes do not match it",
    )
    sha256: Sha256Hex | None = Field(
        default=None, description="Optional: hex SHA-256 of the whole file (or give it to complete)"
    )
    singlePut: Annotated[bool, Strict()] = Field(
        default=False,
        description="Upload the whole file in one PUT (a presigned PutObject, no multipart "
        "upload): for files of up to the smallest part size (5 MiB, 5242880 bytes), else 400 "
        "SINGLE_PUT_TOO_LARGE. "
        "Its one URL is part 1's (part-urls), or comes in the reply given `partChecksum`",
    )
    partChecksum: Checksum | None = Field(
        default=None,
        description="With `singlePut`, optional: the file's checksum (base64, of "
        "checksumAlgorithm); the reply then carries the PUT's URL (`putUrl`)",
    )


class CreateUploadReply(BaseModel):
    fileId: str = Field(json_schema_extra={"format": "uuid"})
    uploadId: str
    partSize: int = Field(description="Bytes in every part but the last")
    partCount: int
    checksumAlgorithm: Algorithm
    # Only in replies to a single-PUT creation (others are as they were before it existed).
    singlePut: bool | None = Field(
        default=None, description="Present (true) only for a single-PUT upload"
    )
    putUrl: PartUrlEntry | None = Field(
        default=None,
        description="Single PUT created with `partChecksum`: the URL of its one PUT",
    )
    expiresIn: int | None = Field(
        default=None, description="With `putUrl`: seconds the URL stays valid"
    )


class FileV2(FileEntry):
    """A v1 file entry plus the whole file's checksum."""

    sha256: str | None = Field(
        description="Hex SHA-256 of the whole file, as its uploader "
        "declared it; check downloads against it"
    )


class FileReply(BaseModel):
    file: FileV2


class StoredPartEntry(BaseModel):
    partNumber: int
    size: int
    etag: str
    checksum: str | None


class UploadReply(BaseModel):
    state: Literal["RECEIVING_PARTS", "COMPLETED", "UPLOADED", "FAILED"] = Field(
        description="RECEIVING_PARTS: send the parts missing from storedParts, then "
        "complete; COMPLETED: waiting for storage to confirm; FAILED: start anew"
    )
    file: FileV2
    uploadId: str
    partSize: int
    partCount: int
    checksumAlgorithm: Algorithm | None
    storedParts: list[StoredPartEntry] = Field(
        description="Parts storage already holds (while RECEIVING_PARTS), in part order; "
        "always empty for a single PUT (resuming one is PUTting it again)"
    )
    singlePut: bool | None = Field(
        default=None, description="Present (true) only for a single-PUT upload"
    )


class PartUrlsBody(RequestBody):
    model_config = _example(first_part=1, last_part=2, checksums=[_PART_SHA256, _PART_SHA256])
    first_part: PartNumber = Field(description="1-based number of the first part wanted")
    last_part: PartNumber = Field(
        description="1-based number of the last part wanted: inclusive, not before "
        "first_part, at most 1000 parts per call, and not beyond the file's partCount"
    )
    checksums: list[Checksum] = Field(
        default_factory=list,
        max_length=MAX_PART_URLS_PER_CALL,
        description="Uploads made with /api/v2/files: each part's checksum (base64), in "
        "part order, one per part asked for; the URL is signed for it. Empty for v1 uploads",
    )


class PartUrlsReply(BaseModel):
    parts: list[PartUrlEntry]
    expiresIn: int = Field(description="Seconds the URLs stay valid")


class RecordPartBody(RequestBody):
    model_config = _example(partNumber=1, size=5242880, etag='"9b2cf535"', checksum=_PART_SHA256)
    partNumber: PartNumber = Field(description="Not beyond the file's partCount")
    size: PartSize = Field(description="The part's exact size: partSize but for the last")
    etag: ETag = Field(description="The ETag storage answered, with or without quotes")
    checksum: Checksum | None = Field(
        default=None,
        description="The part's checksum (base64), as sent to storage; v2 uploads only",
    )


class RecordPartReply(BaseModel):
    partNumber: int


class RecordPartsBody(RequestBody):
    model_config = _example(
        parts=[{"partNumber": 1, "size": 5242880, "etag": "9b2cf535", "checksum": _PART_SHA256}]
    )
    parts: list[RecordPartBody] = Field(
        min_length=1,
        max_length=MAX_PARTS_PER_RECORD_CALL,
        description="Each as POST .../parts takes it",
    )


class RecordPartsReply(BaseModel):
    partNumbers: list[int] = Field(description="The parts recorded, in the request's order")


class CompletedPartV2(RequestBody):
    partNumber: PartNumber
    etag: ETag


class CompleteBody(RequestBody):
    model_config = _example(uploadId="2~abcdef", sha256=_SHA256)
    uploadId: UploadId | None = Field(
        default=None, description="Checked when given; required with `parts`"
    )
    parts: list[CompletedPartV2] | None = Field(
        default=None,
        max_length=MAX_PARTS,
        description="Omitted: the recorded parts (all must be recorded). Given: every "
        "part of the file, each once, and `uploadId` with them",
    )
    sha256: Sha256Hex | None = Field(default=None, description="Hex SHA-256 of the whole file")


class CompleteReply(BaseModel):
    fileId: str = Field(json_schema_extra={"format": "uuid"})
    state: Literal["COMPLETED"] = "COMPLETED"


class QuotaReply(BaseModel):
    usedBytes: int = Field(description="Uploaded files and uploads in progress")
    uploadingBytes: int = Field(description="Of usedBytes, uploads in progress")
    limitBytes: int | None = Field(description="null: unlimited")


class OidcOption(BaseModel):
    name: str = Field(description='The issuer\'s name, for a "Sign in with <name>" button')
    loginUrl: str = Field(description="Where the browser goes to sign in with it (a GET)")


class SignInOptionsReply(BaseModel):
    password: bool = Field(description="Email and password sign-in (always offered)")
    oidc: OidcOption | None = Field(
        description="Single sign-on with OpenID Connect; null when not configured"
    )
