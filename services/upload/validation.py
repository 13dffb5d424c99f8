"""Input rules that need no database: file ids, names, MIME types, ETags, upload ids, the
parts a completion names, and where a file's bytes live. Each `clean_*`/`parse_*` returns
the value as the rules keep it, or raises InvalidArgument naming what is wrong."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass

from services.common.errors import InvalidArgument

from .storage import normalize_etag

DEFAULT_MIME_TYPE = "application/octet-stream"
MAX_FILE_NAME_CHARS = 1024  # files.file_name
MAX_MIME_TYPE_CHARS = 255  # files.mime_type
MAX_ETAG_CHARS = 200  # chunks.etag
MAX_UPLOAD_ID_CHARS = 1024  # files.upload_id

_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
# type/subtype (RFC 6838 names), optionally with simple `; name=value` parameters.
MIME_TYPE_PATTERN = re.compile(
    rf"^{_TOKEN}/{_TOKEN}(?:\s*;\s*[a-z0-9!#$&^_.+-]+=[a-z0-9!#$&^_.+-]+)*$", re.IGNORECASE
)
# ETags are opaque but printable ASCII without spaces (S3: hex, optionally "-<parts>").
ETAG_PATTERN = re.compile(r"^[\x21-\x7e]+$")
# Invisible characters that could disguise a name ("harmless\u202Eexe.pdf"): bidi controls.
_BIDI_CONTROLS = {
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
}


@dataclass(frozen=True)
class PartRef:
    """A part of a completion request: 1-based part number and its ETag."""

    part_number: int
    etag: str


def parse_file_id(value: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument("file_id is required")
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument("file_id must be a UUID") from None


def clean_file_name(value: str) -> str:
    """The name without control and bidi characters, NFC-normalized and trimmed."""
    name = "".join(
        ch
        for ch in unicodedata.normalize("NFC", value)
        if unicodedata.category(ch) not in ("Cc", "Cs", "Zl", "Zp") and ch not in _BIDI_CONTROLS
    ).strip()
    if not name:
        raise InvalidArgument("file_name is required")
    if len(name) > MAX_FILE_NAME_CHARS:
        raise InvalidArgument(f"file_name is longer than {MAX_FILE_NAME_CHARS} characters")
    return name


def clean_mime_type(value: str) -> str:
    mime = value.strip()
    if not mime:
        return DEFAULT_MIME_TYPE
    if len(mime) > MAX_MIME_TYPE_CHARS or not MIME_TYPE_PATTERN.match(mime):
        raise InvalidArgument("mime_type must look like type/subtype, e.g. application/pdf")
    type_and_subtype, _, parameters = mime.partition(";")
    return type_and_subtype.strip().lower() + (";" + parameters if parameters else "")


def clean_etag(value: str, *, what: str = "etag") -> str:
    etag = normalize_etag(value)
    if not etag:
        raise InvalidArgument(f"{what} is required")
    if len(etag) > MAX_ETAG_CHARS or not ETAG_PATTERN.match(etag):
        raise InvalidArgument(f"{what} is not a valid ETag")
    return etag


def require_upload_id(upload_id: str) -> str:
    if not upload_id:
        raise InvalidArgument("upload_id is required")
    if len(upload_id) > MAX_UPLOAD_ID_CHARS:
        raise InvalidArgument("upload_id is too long")
    return upload_id


def human_size(size: int) -> str:
    """A size as v1's refusals name it (1 GiB, 5 MiB...)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def ordered_parts(parts: list[PartRef], expected_count: int) -> list[tuple[int, str]]:
    """(part number, bare ETag) for 1..expected_count, each exactly once, else
    InvalidArgument naming what is wrong."""
    by_number: dict[int, str] = {}
    for part in parts:
        if not 1 <= part.part_number <= expected_count:
            raise InvalidArgument(f"part number {part.part_number} is outside 1..{expected_count}")
        if part.part_number in by_number:
            raise InvalidArgument(f"part {part.part_number} is listed more than once")
        by_number[part.part_number] = clean_etag(
            part.etag, what=f"the ETag of part {part.part_number}"
        )
    missing = [number for number in range(1, expected_count + 1) if number not in by_number]
    if missing:
        raise InvalidArgument(
            f"parts missing from the request: {shown_numbers(missing)} "
            f"(this file has {expected_count})"
        )
    return sorted(by_number.items())


def shown_numbers(numbers: list[int]) -> str:
    """The first ten part numbers of a refusal, and "..." when there are more."""
    return ", ".join(map(str, numbers[:10])) + (", ..." if len(numbers) > 10 else "")


def storage_key(user_id: uuid.UUID, file_id: uuid.UUID) -> str:
    """Where a file's bytes live: ids only, nothing the user typed."""
    return f"users/{user_id}/{file_id}"
