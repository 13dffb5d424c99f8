"""The `/api/v2` JSON bodies (camelCase), as pydantic models: requests refuse unknown fields
and wrong types (answered 400), responses document the API in /docs. As for v1, only the
shape is checked here; the upload service decides what values are acceptable."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, Strict

from .schemas import INT32_MAX, INT64_MAX, FileEntry, RequestBody, Text

ByteSize = Annotated[int, Strict(), Field(ge=0, le=INT64_MAX)]
PartNumber = Annotated[int, Strict(), Field(ge=1, le=INT32_MAX)]
Algorithm = Literal["SHA256", "CRC32C"]
# A base64 part checksum; the service checks it is a digest of the upload's algorithm.
Checksum = Annotated[str, Strict(), Field(max_length=128)]
MAX_PART_URLS_PER_CALL = 1000
MAX_PARTS_PER_RECORD_CALL = 100


class CreateUploadBody(RequestBody):
    fileId: Text | None = Field(
        default=None, description="A UUID for the new file; omitted: the server makes one"
    )
    fileName: Text
    mimeType: Text = Field(default="", description="MIME type; may be empty")
    size: ByteSize = Field(description="Exact size in bytes")
    checksumAlgorithm: Algorithm = Field(
        default="SHA256",
        description="The checksum every part carries; storage refuses a "
        "part whose bytes do not match it",
    )
    sha256: Text | None = Field(
        default=None, description="Optional: hex SHA-256 of the whole file (or give it to complete)"
    )


class CreateUploadReply(BaseModel):
    fileId: str
    uploadId: str
    partSize: int = Field(description="Bytes in every part but the last")
    partCount: int
    checksumAlgorithm: Algorithm


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
        description="Parts storage already holds (while RECEIVING_PARTS), in part order"
    )


class PartUrlsBody(RequestBody):
    first_part: PartNumber = Field(description="1-based number of the first part wanted")
    last_part: PartNumber = Field(
        description="1-based number of the last part wanted "
        "(inclusive; at most 1000 parts per call)"
    )
    checksums: list[Checksum] = Field(
        default_factory=list,
        max_length=MAX_PART_URLS_PER_CALL,
        description="Uploads made with /api/v2/files: each part's checksum (base64), in "
        "part order; the URL is signed for it",
    )


class PartUrlEntry(BaseModel):
    partNumber: int
    url: str
    headers: dict[str, str] = Field(
        description="Headers the PUT must send exactly as given "
        "(signed), e.g. x-amz-checksum-sha256"
    )


class PartUrlsReply(BaseModel):
    parts: list[PartUrlEntry]
    expiresIn: int = Field(description="Seconds the URLs stay valid")


class RecordPartBody(RequestBody):
    partNumber: PartNumber
    size: ByteSize
    etag: Text = Field(description="The ETag storage answered, with or without quotes")
    checksum: Checksum | None = Field(
        default=None, description="The part's checksum (base64), as sent to storage"
    )


class RecordPartReply(BaseModel):
    partNumber: int


class RecordPartsBody(RequestBody):
    parts: list[RecordPartBody] = Field(
        min_length=1,
        max_length=MAX_PARTS_PER_RECORD_CALL,
        description="Each as POST .../parts takes it",
    )


class RecordPartsReply(BaseModel):
    partNumbers: list[int] = Field(description="The parts recorded, in the request's order")


class CompletedPartV2(RequestBody):
    partNumber: PartNumber
    etag: Text


class CompleteBody(RequestBody):
    uploadId: Text | None = Field(default=None, description="Checked when given")
    parts: list[CompletedPartV2] | None = Field(
        default=None, description="Omitted: the recorded parts (all must be recorded)"
    )
    sha256: Text | None = Field(default=None, description="Hex SHA-256 of the whole file")


class CompleteReply(BaseModel):
    fileId: str
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
