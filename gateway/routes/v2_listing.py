"""`GET /api/v2/files`: the caller's files a page at a time, newest first.

    GET /api/v2/files?pageSize=100&pageToken=...&name=...
    -> {"files": [<file, as GET /api/v2/files/{id} has it>, ...], "nextPageToken": "..." | null}

`pageSize` 1..1000 (omitted or 0: 100; larger is served as 1000), `pageToken` the previous
page's `nextPageToken` unchanged (anything else, or a token of another `name`, is 400
INVALID_PAGE_TOKEN), `name` a case-insensitive substring of the file name (`%` and `_` are
plain characters; at most 255 and no NUL, else 400 INVALID_REQUEST). `nextPageToken` is
null on the last page. Paging is stable: a file is never listed twice or skipped, whatever
is uploaded or deleted meanwhile (services/upload/listing.py). v1's `GET /api/files/list`
keeps answering every file at once (file_lists.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from dropfile.upload.v1 import upload_pb2

from ..deps import UserCall
from ..file_lists import v2_entry
from ..json_replies import json_reply
from ..responses import error_responses
from ..schemas import INT32_MAX, NO_NUL_PATTERN
from ..schemas_v2 import FileV2

router = APIRouter(prefix="/api/v2", tags=["v2"])

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
# services/upload/listing.py's: what a page token can look like (URL-safe base64 of at most
# 512 characters), and the longest name filter.
PAGE_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{0,512}$"
MAX_NAME_FILTER_LENGTH = 255


class FilePageReply(BaseModel):
    files: list[FileV2] = Field(description="Newest first")
    nextPageToken: str | None = Field(
        description="Pass it as pageToken for the next page; null on the last page"
    )


@router.get(
    "/files",
    response_model=FilePageReply,
    responses=error_responses("INVALID_PAGE_TOKEN"),
    operation_id="listFilesV2",
    summary="The caller's files, newest first, a page at a time (optionally by name)",
)
async def list_files(
    call: UserCall,
    pageSize: Annotated[
        int,
        Query(
            ge=0,
            le=INT32_MAX,
            description=f"Files per page, 1..{MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE}; "
            f"larger is served as {MAX_PAGE_SIZE})",
        ),
    ] = 0,
    pageToken: Annotated[
        str,
        Query(
            description="The nextPageToken of the previous page, unchanged (anything else is "
            "refused, INVALID_PAGE_TOKEN, by the upload service)",
            json_schema_extra={"pattern": PAGE_TOKEN_PATTERN},
        ),
    ] = "",
    name: Annotated[
        str,
        Query(
            description="Only files whose name contains this text, whatever its case",
            max_length=MAX_NAME_FILTER_LENGTH,
            pattern=NO_NUL_PATTERN,
        ),
    ] = "",
) -> Response:
    reply = await call.backends.upload.ListFiles(
        upload_pb2.ListFilesRequest(page_size=pageSize, page_token=pageToken, name_filter=name),
        **call.kwargs,
    )
    # Up to 1,000 entries, written as they are read (json_replies.py).
    return json_reply(
        {
            "files": (v2_entry(file) for file in reply.files),
            "nextPageToken": reply.next_page_token or None,
        },
        long_list="files",
    )
