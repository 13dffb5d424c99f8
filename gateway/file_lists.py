"""v1's file list (`GET /api/files/list`) from ListFiles' pages, streamed.

v1's contract is every file in one JSON reply. The upload coordinator answers a page of
at most 1,000 files at a time (services/upload/listing.py), so the gateway asks for pages
and writes each to the client as it arrives: neither process ever holds more than a page,
whatever the number of files. The bytes are those the route sent when it built the whole
reply through its response model (compact JSON in the model's key order; the tests
compare them), in one Response (with its Content-Length) when one page holds every file,
else chunked.

Once the first bytes are sent the status is 200: a later page that fails (a backend gone
mid-list) can no longer be answered 503. The connection is then closed without the
chunked body's end, so the client sees a cut-off reply (an error of its HTTP library),
never a shorter list that parses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from pydantic_core import to_json
from starlette.responses import Response, StreamingResponse

from dropfile.upload.v1 import upload_pb2
from services.common.logs import log_fields

from .deps import UserCallOptions

# Files per ListFiles call: the coordinator's largest page.
V1_PAGE_SIZE = 1000
_OPEN = b'{"success":true,"files":['
_CLOSE = b"]}"
_MEDIA_TYPE = "application/json"

log = logging.getLogger("gateway.file_lists")

Entry = Callable[[upload_pb2.File], dict[str, Any]]
_STATUS_NAMES = {
    value: name.removeprefix("FILE_STATUS_") for name, value in upload_pb2.FileStatus.items()
}


def created_at_text(file: upload_pb2.File) -> str:
    """The creation time as JavaScript's Date#toISOString writes it (which clients parse),
    milliseconds truncated: what `ToDatetime().isoformat(timespec="milliseconds")` gives,
    at a third of its cost (the seconds alone through datetime)."""
    created = file.created_at
    seconds = datetime.fromtimestamp(created.seconds, UTC).isoformat()[:19]
    return f"{seconds}.{created.nanos // 1_000_000:03d}Z"


def v1_entry(file: upload_pb2.File) -> dict[str, Any]:
    """A file of v1's list (routes/files.py's _file_entry, key for key)."""
    return {
        "fileId": file.file_id,
        "fileName": file.file_name,
        "mimeType": file.mime_type,
        "size": file.size,
        "s3Key": file.s3_key,
        "status": _STATUS_NAMES[file.status],
        "createdAt": created_at_text(file),
    }


def v2_entry(file: upload_pb2.File) -> dict[str, Any]:
    """A file of v2's list (routes/v2_uploads.py's file_v2, key for key)."""
    return {**v1_entry(file), "sha256": file.sha256 or None}


class ListCutShort(Exception):
    """A page after the first failed: the reply, already begun, cannot be finished."""


def _items(files: Any, entry: Entry) -> bytes:
    """The page's entries as JSON array items, without the brackets."""
    return to_json([entry(file) for file in files])[1:-1]


async def _page(call: UserCallOptions, token: str) -> upload_pb2.ListFilesResponse:
    return await call.backends.upload.ListFiles(
        upload_pb2.ListFilesRequest(page_size=V1_PAGE_SIZE, page_token=token), **call.kwargs
    )


async def v1_file_list(call: UserCallOptions, entry: Entry = v1_entry) -> Response:
    """Every file of the caller, newest first, as v1's `{"success": true, "files": [...]}`.
    The first page is asked for before answering, so that its refusals (401, 503...) are
    answered as usual."""
    first = await _page(call, "")
    if not first.next_page_token:
        body = _OPEN + _items(first.files, entry) + _CLOSE
        return Response(body, media_type=_MEDIA_TYPE)
    return StreamingResponse(_pages(call, first, entry), media_type=_MEDIA_TYPE)


async def _pages(
    call: UserCallOptions, page: upload_pb2.ListFilesResponse, entry: Entry
) -> AsyncIterator[bytes]:
    yield _OPEN + _items(page.files, entry)
    pages = 1
    while page.next_page_token:
        try:
            page = await _page(call, page.next_page_token)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "v1 file list cut short after %d pages: %s",
                pages,
                exc.code().name,
                extra=log_fields(pages=pages, code=exc.code().name),
            )
            raise ListCutShort(f"page {pages + 1}: {exc.code().name}") from None
        pages += 1
        if len(page.files):
            yield b"," + _items(page.files, entry)
    yield _CLOSE
