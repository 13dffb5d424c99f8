"""The v1 JSON bodies, as pydantic models: requests refuse unknown fields and wrong types
(answered 400 by errors.py), responses document the contract in /docs.

Only the shape is checked here: the services decide what values are acceptable. What
protobuf itself cannot carry (integers beyond int32/int64, text that is not valid
Unicode or holds NUL) is refused here, because it could not even be sent."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StrictBool,
    WithJsonSchema,
)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,19}")


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _byte_count(value: Any) -> int:
    """The contract's "decimal string of bytes"; a JSON integer is accepted too."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise ValueError('must be a whole number of bytes as a decimal string, like "1048576"')
    if number < 0:
        raise ValueError("must not be negative")
    if number > INT64_MAX:
        raise ValueError("is too large")
    return number


Text = Annotated[str, Strict(), AfterValidator(_text)]
ByteCount = Annotated[
    int,
    PlainValidator(_byte_count),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{1,19}$", "examples": ["15728640"]}),
]
ChunkIndex = Annotated[int, Strict(), Field(ge=0, le=INT32_MAX - 1)]
PartNumberValue = Annotated[int, Strict(), Field(ge=1, le=INT32_MAX)]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth ---------------------------------------------------------------------------------


class SignUpUser(RequestBody):
    email: Text
    name: Text
    password: Text


class SignUpBody(RequestBody):
    user: SignUpUser
    rememberMe: StrictBool | None = False


class SignInUser(RequestBody):
    email: Text
    password: Text


class SignInBody(RequestBody):
    user: SignInUser
    # Long-lived (days) session cookies when true, one day otherwise.
    rememberMe: StrictBool | None = False


class StatusReply(BaseModel):
    status: str


class ErrorReply(BaseModel):
    error: str = Field(description="What went wrong, for people")
    code: str = Field(
        description='Why, for programs to branch on (README: "Error codes")',
        examples=["NOT_FOUND"],
    )


# --- files --------------------------------------------------------------------------------


class UploadUrlsBody(RequestBody):
    file_id: Text = Field(description="A UUID the client made for the new file")
    file_name: Text
    file_type: Text = Field(default="", description="MIME type; may be empty")
    file_size: ByteCount


class RecordChunkBody(RequestBody):
    file_id: Text
    chunk_index: ChunkIndex = Field(description="0-based part index")
    size: ByteCount
    etag: Text


class CompletedPartBody(RequestBody):
    ETag: Text
    PartNumber: PartNumberValue = Field(description="1-based part number")


class CompleteUploadBody(RequestBody):
    uploadId: Text
    fileId: Text
    parts: list[CompletedPartBody]


class AbortUploadBody(RequestBody):
    uploadId: Text
    file_id: Text


class DownloadUrlBody(RequestBody):
    s3_key: Text


class DeleteFileBody(RequestBody):
    file_id: Text


class FileErrorReply(BaseModel):
    success: Literal[False] = False
    error: str = Field(description="What went wrong, for people")
    code: str = Field(
        description='Why, for programs to branch on (README: "Error codes")',
        examples=["NOT_FOUND"],
    )


class SuccessReply(BaseModel):
    success: Literal[True] = True


class MessageReply(SuccessReply):
    message: str


class UploadUrlsReply(SuccessReply):
    presignedUrls: list[str]
    uploadId: str


class DownloadUrlReply(SuccessReply):
    url: str


class FileEntry(BaseModel):
    fileId: str
    fileName: str
    mimeType: str
    size: int
    s3Key: str
    status: str = Field(description='"UPLOADING", "UPLOADED" or "FAILED"')
    createdAt: str = Field(description="ISO 8601, UTC")


class FileListReply(SuccessReply):
    files: list[FileEntry]


class HealthReply(BaseModel):
    status: str


class ReadinessReply(BaseModel):
    status: str
    backends: dict[str, str]
