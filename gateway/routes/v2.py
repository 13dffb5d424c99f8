"""`/api/v2`: additions beside the v1 contract (which stays unchanged under /api).

`POST /api/v2/files/{file_id}/part-urls` gives fresh presigned PUT URLs for parts of an
upload in progress, so a client whose URLs expired mid-upload can carry on. Errors have
v1's shape and status mapping (gateway.errors): `{"error": "..."}`."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, Strict

from dropfile.upload.v1 import upload_pb2

from ..deps import BackendsDep, UserCall
from ..schemas import INT32_MAX, ErrorReply, RequestBody, Text

router = APIRouter(prefix="/api/v2", tags=["v2"])

_ERRORS = {status: {"model": ErrorReply} for status in (400, 401, 404, 409, 503)}
PartNumber = Annotated[int, Strict(), Field(ge=1, le=INT32_MAX)]


class PartUrlsBody(RequestBody):
    first_part: PartNumber = Field(description="1-based number of the first part wanted")
    last_part: PartNumber = Field(description="1-based number of the last part wanted "
                                              "(inclusive; at most 1000 parts per call)")


class PartUrlEntry(BaseModel):
    partNumber: int
    url: str


class PartUrlsReply(BaseModel):
    parts: list[PartUrlEntry]
    expiresIn: int = Field(description="Seconds the URLs stay valid")


@router.post("/files/{file_id}/part-urls", response_model=PartUrlsReply, responses=_ERRORS,
             summary="Fresh presigned PUT URLs for parts of an upload in progress")
async def part_urls(file_id: Annotated[Text, Path(description="The file's id (a UUID)")],
                    body: PartUrlsBody, backends: BackendsDep, call: UserCall):
    reply = await backends.upload.GetPartUrls(upload_pb2.GetPartUrlsRequest(
        file_id=file_id, first_part_number=body.first_part, last_part_number=body.last_part,
    ), **call.kwargs)
    return {"parts": [{"partNumber": part.part_number, "url": part.url} for part in reply.parts],
            "expiresIn": reply.expires_in_seconds}
