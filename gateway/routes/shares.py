"""`/api/v2` share links, for the owner of a file:

    POST   /api/v2/files/{id}/links     create a link (201, its URL shown once)
    GET    /api/v2/files/{id}/links     the file's links, with download counts, no URLs
    DELETE /api/v2/links/{link_id}      revoke a link at once (204)

Strangers use the links at `/s/<token>` (share_pages.py). Errors are `{"error": "..."}`
with the usual mapping (gateway/errors.py): another user's file is 404 NOT_FOUND, another
user's link (or a revoked one) 404 LINK_NOT_FOUND, a file not uploaded yet 409, an id
that is no UUID 400."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from google.protobuf.timestamp_pb2 import Timestamp

from dropfile.upload.v1 import share_pb2

from ..deps import SettingsDep, UserCall
from ..responses import error_responses
from ..schemas import Uuid
from ..schemas_share import CreateLinkBody, CreateLinkReply, LinkEntry, LinksReply
from ..settings import GatewaySettings

router = APIRouter(prefix="/api/v2", tags=["share links"])

FileIdPath = Annotated[Uuid, Path(description="The file's id (a UUID)")]
LinkIdPath = Annotated[Uuid, Path(description="The link's id (a UUID)")]


def _iso(stamp: Timestamp) -> str:
    moment = stamp.ToDatetime(tzinfo=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_base_url(request: Request, settings: GatewaySettings) -> str:
    """Where strangers reach this gateway: PUBLIC_BASE_URL, or else the address this
    request came to (right for a developer's machine, not behind a proxy)."""
    return (settings.public_base_url or str(request.base_url)).rstrip("/")


def _entry(link: share_pb2.ShareLink) -> LinkEntry:
    return LinkEntry(
        linkId=link.link_id,
        fileId=link.file_id,
        createdAt=_iso(link.created_at),
        expiresAt=_iso(link.expires_at),
        maxDownloads=link.max_downloads if link.HasField("max_downloads") else None,
        downloadCount=link.download_count,
        passwordProtected=link.password_protected,
    )


@router.post(
    "/files/{file_id}/links",
    status_code=201,
    response_model=CreateLinkReply,
    responses=error_responses("INVALID_ARGUMENT", "NOT_FOUND", "NOT_UPLOADED", "SHARE_BUSY"),
    operation_id="createShareLink",
    summary="Create a share link to an uploaded file (its URL is shown only here)",
)
async def create_link(
    file_id: FileIdPath,
    body: CreateLinkBody,
    request: Request,
    settings: SettingsDep,
    call: UserCall,
) -> CreateLinkReply:
    message = share_pb2.CreateLinkRequest(file_id=file_id, password=body.password or "")
    if body.expiresInSeconds is not None:
        message.expires_in_seconds = body.expiresInSeconds
    if body.maxDownloads is not None:
        message.max_downloads = body.maxDownloads
    reply = await call.backends.share.CreateLink(message, **call.kwargs)
    link = reply.link
    return CreateLinkReply(
        linkId=link.link_id,
        url=f"{public_base_url(request, settings)}/s/{reply.token}",
        expiresAt=_iso(link.expires_at),
        maxDownloads=link.max_downloads if link.HasField("max_downloads") else None,
        passwordProtected=link.password_protected,
    )


@router.get(
    "/files/{file_id}/links",
    response_model=LinksReply,
    responses=error_responses("NOT_FOUND"),
    operation_id="listShareLinks",
    summary="A file's share links, newest first, with their download counts (no URLs)",
)
async def list_links(file_id: FileIdPath, call: UserCall) -> LinksReply:
    reply = await call.backends.share.ListLinks(
        share_pb2.ListLinksRequest(file_id=file_id), **call.kwargs
    )
    return LinksReply(links=[_entry(link) for link in reply.links])


@router.delete(
    "/links/{link_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses("LINK_NOT_FOUND"),
    operation_id="revokeShareLink",
    summary="Revoke a share link: it stops working at once",
)
async def revoke_link(link_id: LinkIdPath, call: UserCall) -> Response:
    await call.backends.share.RevokeLink(
        share_pb2.RevokeLinkRequest(link_id=link_id), **call.kwargs
    )
    return Response(status_code=204)
