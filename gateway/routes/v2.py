"""`/api/v2`: additions beside the v1 contract (which stays unchanged under /api).

`POST /api/v2/files/{file_id}/part-urls` gives presigned PUT URLs for parts a..b of an
upload in progress: v2 uploads (v2_uploads.py) get their URLs only this way, in batches,
each signed for its part's checksum; v1 uploads get fresh ones when theirs expired
mid-upload. Errors have v1's shape and status mapping (gateway.errors): `{"error": "..."}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from dropfile.upload.v1 import upload_pb2

from ..deps import UserCall
from ..json_replies import json_reply
from ..responses import error_responses
from ..schemas import Uuid
from ..schemas_v2 import PartUrlsBody, PartUrlsReply

router = APIRouter(prefix="/api/v2", tags=["v2"])


@router.post(
    "/files/{file_id}/part-urls",
    operation_id="getPartUrls",
    response_model=PartUrlsReply,
    responses=error_responses(
        "INVALID_ARGUMENT", "NOT_FOUND", "UPLOAD_ABORTED", "UPLOAD_COMPLETE", "NO_CHECKSUMS"
    ),
    summary="Presigned PUT URLs for parts a..b of an upload in progress",
)
async def part_urls(
    file_id: Annotated[Uuid, Path(description="The file's id (a UUID)")],
    body: PartUrlsBody,
    call: UserCall,
) -> Response:
    reply = await call.backends.upload.GetPartUrls(
        upload_pb2.GetPartUrlsRequest(
            file_id=file_id,
            first_part_number=body.first_part,
            last_part_number=body.last_part,
            checksums=body.checksums,
        ),
        **call.kwargs,
    )
    # Up to 1,000 entries: written as they are read (json_replies.py), the bytes FastAPI
    # would send through PartUrlsReply without validating what the typed reply guarantees.
    return json_reply(
        {
            "parts": (
                {"partNumber": part.part_number, "url": part.url, "headers": dict(part.headers)}
                for part in reply.parts
            ),
            "expiresIn": reply.expires_in_seconds,
        },
        long_list="parts",
    )
