"""ListFiles as a use case: a user's files a page at a time, newest first, optionally only
those whose name contains a text; the SQL is store/listing.py's.

The page token is opaque to clients: URL-safe base64 (unpadded) of compact JSON
`{"v": 1, "t": <created_at, microseconds since the epoch>, "i": "<file id>", "f": "<hash
of the name filter>"}`, the position of the previous page's last file. It carries no
secret and needs none: a token only ever selects among the caller's own files (the query
is always the caller's), so an edited one can do no more than a well-formed request. It is
checked strictly all the same, so that anything but a token this service made is a clean
INVALID_ARGUMENT (HTTP 400), never an error of the database: its size and alphabet (no
character base64 decoding would skip), its base64, its JSON, each field's type and range.
A token made for one name filter is refused with another, since its position means
nothing in a differently filtered list. Page tokens never expire: a position stays a
position."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.errors import InvalidArgument

from .store.listing import ListedRow, ListingStore, Position

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A file name holds up to 1,024 characters; a filter longer than this finds nothing useful.
MAX_NAME_FILTER_LENGTH = 255
# Tokens this module makes are ~110 characters.
MAX_PAGE_TOKEN_LENGTH = 512
# URL-safe base64 without padding: what the gateway's API document states of a token.
_TOKEN_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{0,{MAX_PAGE_TOKEN_LENGTH}}}")
_TOKEN_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# PostgreSQL's timestamptz spans 4713 BC to 294276 AD; Python's datetime years 1..9999.
_MIN_MICROS = (datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_MAX_MICROS = (datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_INVALID_TOKEN = "invalid page token: pass the nextPageToken of the previous page unchanged"


@dataclass(frozen=True)
class FilePage:
    files: list[ListedRow]
    # Empty when this page is the last.
    next_page_token: str


def page_size_of(requested: int) -> int:
    """0 means the default; above the maximum is served as the maximum (AIP-158)."""
    if requested < 0:
        raise InvalidArgument(f"page size must be 0..{MAX_PAGE_SIZE}, not {requested}")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def clean_name_filter(value: str) -> str:
    if len(value) > MAX_NAME_FILTER_LENGTH:
        raise InvalidArgument(f"the name filter is longer than {MAX_NAME_FILTER_LENGTH} characters")
    if "\x00" in value:
        raise InvalidArgument("the name filter holds a NUL character")
    return value


def _filter_tag(name_filter: str) -> str:
    """A short digest of the filter, to bind a token to the filter it was made with."""
    return hashlib.sha256(name_filter.encode()).hexdigest()[:16]


def encode_page_token(position: Position, name_filter: str) -> str:
    payload = {
        "v": _TOKEN_VERSION,
        "t": position.created_us,
        "i": str(position.file_id),
        "f": _filter_tag(name_filter),
    }
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, name_filter: str) -> Position:
    """The position a token names; InvalidArgument for anything this module did not make
    (or made for another name filter)."""
    if not _TOKEN_SHAPE.fullmatch(token):  # b64decode would skip other characters
        raise InvalidArgument(_INVALID_TOKEN, reason="INVALID_PAGE_TOKEN")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):  # bad base64, bad UTF-8, bad JSON
        raise InvalidArgument(_INVALID_TOKEN, reason="INVALID_PAGE_TOKEN") from None
    if not isinstance(payload, dict) or set(payload) != {"v", "t", "i", "f"}:
        raise InvalidArgument(_INVALID_TOKEN, reason="INVALID_PAGE_TOKEN")
    version, micros, file_id, tag = payload["v"], payload["t"], payload["i"], payload["f"]
    if (
        version != _TOKEN_VERSION
        or type(micros) is not int  # not a bool, not a float
        or not _MIN_MICROS <= micros <= _MAX_MICROS
        or not isinstance(file_id, str)
        or not isinstance(tag, str)
    ):
        raise InvalidArgument(_INVALID_TOKEN, reason="INVALID_PAGE_TOKEN")
    try:
        parsed_id = uuid.UUID(file_id)
    except ValueError:
        raise InvalidArgument(_INVALID_TOKEN, reason="INVALID_PAGE_TOKEN") from None
    if tag != _filter_tag(name_filter):
        raise InvalidArgument(
            "the page token was made for another name filter: "
            "ask for the first page again with this filter",
            reason="INVALID_PAGE_TOKEN",
        )
    return Position(created_us=micros, file_id=parsed_id)


def list_files_page(
    store: ListingStore,
    *,
    user_id: uuid.UUID,
    page_size: int = 0,
    page_token: str = "",
    name_filter: str = "",
) -> FilePage:
    """One page of the user's files, newest first, and the token of the next one."""
    size = page_size_of(page_size)
    name_filter = clean_name_filter(name_filter)
    after = decode_page_token(page_token, name_filter) if page_token else None
    rows = store.page(user_id, limit=size + 1, after=after, name_contains=name_filter)
    if len(rows) <= size:
        return FilePage(files=rows, next_page_token="")
    rows = rows[:size]
    last = rows[-1]
    token = encode_page_token(Position(last.created_us, uuid.UUID(last.file_id)), name_filter)
    return FilePage(files=rows, next_page_token=token)
