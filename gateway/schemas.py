"""The v1 JSON bodies, as pydantic models: requests refuse unknown fields, wrong types and
values outside what the document declares (answered 400 INVALID_REQUEST by errors.py);
responses document the contract in /docs.

A request model is the API document's word on its body, and each constraint in it is one
the services really hold (services/auth, services/upload: lengths, patterns, part numbers,
sizes): a body the document allows is one the services take (but for what depends on a
file's state or on other fields, which the field descriptions say), and one it does not
allow is refused here, with the same answer whatever the value. What protobuf cannot carry
(integers beyond int64, text holding NUL) is refused here too. Limits a deployment sets
(the largest file) are filled into the document from the gateway's settings (openapi.py,
`x-dropfile-limit`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
MAX_PARTS = 10_000  # S3's limit on a multipart upload's parts
MAX_PART_SIZE = 5 * 1024**3  # S3's largest part
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Whitespace to Python (str.isspace, what the services strip and `\s` in their patterns) and
# to JavaScript (`\s` in a JSON Schema pattern): the patterns here never say `\s`, so that
# they mean the same to every reader of the document.
WHITESPACE = (
    r"\t\n\x0b\x0c\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
# Text the services keep must have a character left once they drop what is invisible and
# trim it: not whitespace, a control character (Cc) nor a bidi control.
_INVISIBLE = rf"{WHITESPACE}\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
VISIBLE_TEXT_PATTERN = rf"^[^\x00]*[^{_INVISIBLE}][^\x00]*$"
NO_NUL_PATTERN = r"^[^\x00]*$"
# services/upload: type/subtype (RFC 6838 names) with optional `; name=value` parameters.
_MIME_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MIME_TYPE_PATTERN = (
    rf"^$|^{_MIME_TOKEN}/{_MIME_TOKEN}(?: *; *[A-Za-z0-9!#$&^_.+-]+=[A-Za-z0-9!#$&^_.+-]+)*$"
)
# Printable ASCII without spaces or quotes, optionally quoted as S3 sends it.
ETAG_PATTERN = r'^"?[\x21\x23-\x7e]{1,200}"?$'
_EMAIL_PART = rf"[^@\x00{WHITESPACE}]+"
EMAIL_PATTERN = rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$"
_DIGITS = re.compile(r"0*[0-9]{1,19}")


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def decimal_at_most(limit: int) -> str:
    """A regular expression (no anchors) for the decimal numbers 0..limit without leading
    zeros: what JSON Schema can say of a number sent as a string."""
    digits = str(limit)
    width = len(digits)
    if width == 1:
        return f"[0-{digits}]"
    options = ["0", f"[1-9][0-9]{{0,{width - 2}}}" if width > 2 else "[1-9]"]
    for position in range(width):
        lowest = 1 if position == 0 else 0
        digit = int(digits[position])
        if digit > lowest:
            below = str(lowest) if digit - 1 == lowest else f"[{lowest}-{digit - 1}]"
            rest = width - position - 1
            tail = "" if not rest else "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
            options.append(f"{digits[:position]}{below}{tail}")
    options.append(digits)
    return "|".join(options)


def byte_count_schema(limit: int, *, limit_setting: str | None = None) -> dict[str, Any]:
    """The JSON Schema of a byte count sent as v1 sends it: a decimal string (leading
    zeros allowed), or a JSON integer, of at most `limit`."""
    schema: dict[str, Any] = {
        "anyOf": [
            {"type": "string", "pattern": f"^0*(?:{decimal_at_most(limit)})$"},
            {"type": "integer", "minimum": 0, "maximum": limit},
        ],
        "examples": ["15728640"],
    }
    if limit_setting:
        schema["x-dropfile-limit"] = limit_setting
    return schema


def whole(value: Any) -> Any:
    """A JSON number without a fraction (`5.0`) is an integer to JSON Schema: to us too."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**64:
        return int(value)
    return value


def _byte_count(value: Any) -> int:
    """The contract's "decimal string of bytes"; a JSON integer is accepted too."""
    value = whole(value)
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value.lstrip("0") or "0")
    else:
        raise ValueError('must be a whole number of bytes as a decimal string, like "1048576"')
    if number < 0:
        raise ValueError("must not be negative")
    if number > INT64_MAX:
        raise ValueError("is too large")
    return number


Text = Annotated[str, Strict(), AfterValidator(_text)]
Uuid = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=UUID_PATTERN),
    WithJsonSchema(
        {
            "type": "string",
            "format": "uuid",
            "pattern": UUID_PATTERN,
            "examples": ["3f1c2b8e-8d1a-4a43-9c55-1f6f0e1d2c3b"],
        }
    ),
]
# Names of files, as the upload service keeps them (at most 1,024 characters).
FileName = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=VISIBLE_TEXT_PATTERN, max_length=1024),
    AfterValidator(_text),
]
MimeType = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=MIME_TYPE_PATTERN, max_length=255),
    AfterValidator(_text),
]
ETag = Annotated[
    str, Strict(), StringConstraints(pattern=ETAG_PATTERN, max_length=202), AfterValidator(_text)
]
UploadId = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=NO_NUL_PATTERN, min_length=1, max_length=1024),
    AfterValidator(_text),
]
# Sign-in takes any non-empty email (a wrong one is 401).
LooseText = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=VISIBLE_TEXT_PATTERN, max_length=4096),
    AfterValidator(_text),
]
V1FileSize = Annotated[
    int,
    PlainValidator(_byte_count),
    WithJsonSchema(byte_count_schema(INT64_MAX, limit_setting="max_file_size_bytes")),
]
PartByteCount = Annotated[
    int, PlainValidator(_byte_count), WithJsonSchema(byte_count_schema(MAX_PART_SIZE))
]
ChunkIndex = Annotated[int, Strict(), Interval(ge=0, le=MAX_PARTS - 1), BeforeValidator(whole)]
PartNumberValue = Annotated[int, Strict(), Interval(ge=1, le=MAX_PARTS), BeforeValidator(whole)]


class RequestBody(BaseModel):
    # python-re: Python's regular expressions, as the services' (the patterns here mean
    # the same in JavaScript's too, the JSON Schema dialect).
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")


def _example(**example: Any) -> ConfigDict:
    return ConfigDict(
        extra="forbid", regex_engine="python-re", json_schema_extra={"examples": [example]}
    )


# --- auth ---------------------------------------------------------------------------------


class SignUpUser(RequestBody):
    email: Annotated[
        str,
        Strict(),
        StringConstraints(pattern=EMAIL_PATTERN, max_length=320),
        AfterValidator(_text),
    ] = Field(description="Compared without case; at most 320 characters")
    name: Annotated[
        str,
        Strict(),
        StringConstraints(pattern=VISIBLE_TEXT_PATTERN, max_length=200),
        AfterValidator(_text),
    ]
    password: Annotated[
        str,
        Strict(),
        StringConstraints(pattern=NO_NUL_PATTERN, min_length=8, max_length=72),
        AfterValidator(_text),
    ] = Field(
        description="8 characters or more, and at most 72 bytes once UTF-8 encoded "
        "(bcrypt's limit; longer is refused with INVALID_ARGUMENT)"
    )


class SignUpBody(RequestBody):
    model_config = _example(
        user={"email": "grace@example.com", "name": "Grace", "password": "correct horse"},
        rememberMe=True,
    )
    user: SignUpUser
    rememberMe: StrictBool | None = False


class SignInUser(RequestBody):
    email: LooseText
    password: Annotated[
        str,
        Strict(),
        StringConstraints(pattern=NO_NUL_PATTERN, min_length=1, max_length=4096),
        AfterValidator(_text),
    ]


class SignInBody(RequestBody):
    model_config = _example(
        user={"email": "grace@example.com", "password": "correct horse"}, rememberMe=False
    )
    user: SignInUser
    # Long-lived (days) session cookies when true, one day otherwise.
    rememberMe: StrictBool | None = Field(
        default=False, description="Session cookies for days (true) or one day"
    )


class StatusReply(BaseModel):
    status: str


ERROR_CODE_FIELD = Field(
    pattern=r"^[A-Z][A-Z0-9_]*$",
    description='Why, for programs to branch on: the README\'s table ("Error codes") '
    "lists every code; treat one you do not know by the HTTP status",
    examples=["NOT_FOUND"],
)


class ErrorReply(BaseModel):
    """Every error of the API but v1's file routes."""

    error: str = Field(description="What went wrong, for people")
    code: str = ERROR_CODE_FIELD


class FileErrorReply(BaseModel):
    """Errors of v1's file routes (/api/files): `success` is false."""

    success: Literal[False] = False
    error: str = Field(description="What went wrong, for people")
    code: str = ERROR_CODE_FIELD


# --- files --------------------------------------------------------------------------------


class UploadUrlsBody(RequestBody):
    model_config = _example(
        file_id="b7d0c4a2-5e3f-4c1a-8f6e-2d9b0a1c3e5f",
        file_name="holiday.mp4",
        file_type="video/mp4",
        file_size="15728640",
    )
    file_id: Uuid = Field(description="A UUID the client made for the new file")
    file_name: FileName
    file_type: MimeType = Field(default="", description="MIME type; may be empty")
    file_size: V1FileSize = Field(description="Bytes, up to the server's v1 limit")


class RecordChunkBody(RequestBody):
    model_config = _example(
        file_id="3f1c2b8e-8d1a-4a43-9c55-1f6f0e1d2c3b",
        chunk_index=0,
        size="5242880",
        etag="9b2cf535f27731c974343645a3985328",
    )
    file_id: Uuid
    chunk_index: ChunkIndex = Field(description="0-based part index, below the file's part count")
    size: PartByteCount = Field(description="The part's exact size: 5 MiB but for the last")
    etag: ETag = Field(description="The ETag storage answered, with or without quotes")


class CompletedPartBody(RequestBody):
    ETag: ETag
    PartNumber: PartNumberValue = Field(description="1-based part number")


class CompleteUploadBody(RequestBody):
    model_config = _example(
        uploadId="2~abcdef",
        fileId="3f1c2b8e-8d1a-4a43-9c55-1f6f0e1d2c3b",
        parts=[{"ETag": '"9b2cf535f27731c974343645a3985328"', "PartNumber": 1}],
    )
    uploadId: UploadId
    fileId: Uuid
    parts: list[CompletedPartBody] = Field(
        max_length=MAX_PARTS, description="Every part of the file, each once"
    )


class AbortUploadBody(RequestBody):
    model_config = _example(uploadId="2~abcdef", file_id="3f1c2b8e-8d1a-4a43-9c55-1f6f0e1d2c3b")
    uploadId: UploadId
    file_id: Uuid


class DownloadUrlBody(RequestBody):
    model_config = _example(
        s3_key="users/0b7e4f1c-2f4a-4b8e-9a57-6a1c8e0d7f42/3f1c2b8e-8d1a-4a43-9c55-1f6f0e1d2c3b"
    )
    s3_key: Annotated[
        str,
        Strict(),
        StringConstraints(pattern=NO_NUL_PATTERN, min_length=1, max_length=1024),
        AfterValidator(_text),
    ] = Field(description="The file's s3Key, as the list gives it")


class DeleteFileBody(RequestBody):
    model_config = _example(file_id="3f1c2b8e-8d1a-4a43-9c55-1f6f0e1d2c3b")
    file_id: Uuid


class SuccessReply(BaseModel):
    success: Literal[True] = True


class MessageReply(SuccessReply):
    message: str


class UploadUrlsReply(SuccessReply):
    presignedUrls: list[str]
    uploadId: str


class DownloadUrlReply(SuccessReply):
    url: str


FileStatusName = Literal["UPLOADING", "UPLOADED", "FAILED"]


class FileEntry(BaseModel):
    fileId: str = Field(json_schema_extra={"format": "uuid"})
    fileName: str
    mimeType: str
    size: int = Field(ge=0)
    s3Key: str
    status: FileStatusName
    createdAt: str = Field(description="ISO 8601, UTC", json_schema_extra={"format": "date-time"})


class FileListReply(SuccessReply):
    files: list[FileEntry]


class HealthReply(BaseModel):
    status: str


class ReadinessReply(BaseModel):
    status: str
    backends: dict[str, str]


class NotReadyReply(ReadinessReply):
    error: str
    code: str = ERROR_CODE_FIELD
