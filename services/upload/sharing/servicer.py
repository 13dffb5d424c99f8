"""ShareService and ShareInternalService over gRPC: protobuf in, domain call, protobuf out."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from dropfile.upload.v1 import share_pb2, share_pb2_grpc

from ..servicer import caller_id
from .links import LinkInfo, Sharing


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _link(info: LinkInfo) -> share_pb2.ShareLink:
    link = share_pb2.ShareLink(
        link_id=info.link_id,
        file_id=info.file_id,
        created_at=_timestamp(info.created_at),
        expires_at=_timestamp(info.expires_at),
        download_count=info.download_count,
        password_protected=info.password_protected,
    )
    if info.max_downloads is not None:
        link.max_downloads = info.max_downloads
    return link


class ShareServicer(share_pb2_grpc.ShareServiceServicer):
    def __init__(self, sharing: Sharing) -> None:
        self._sharing = sharing

    def CreateLink(
        self, request: share_pb2.CreateLinkRequest, context: grpc.ServicerContext
    ) -> share_pb2.CreateLinkResponse:
        created = self._sharing.create_link(
            user_id=caller_id(),
            file_id=request.file_id,
            expires_in_seconds=(
                request.expires_in_seconds if request.HasField("expires_in_seconds") else None
            ),
            password=request.password,
            max_downloads=request.max_downloads if request.HasField("max_downloads") else None,
        )
        return share_pb2.CreateLinkResponse(link=_link(created.link), token=created.token)

    def ListLinks(
        self, request: share_pb2.ListLinksRequest, context: grpc.ServicerContext
    ) -> share_pb2.ListLinksResponse:
        links = self._sharing.list_links(user_id=caller_id(), file_id=request.file_id)
        return share_pb2.ListLinksResponse(links=[_link(info) for info in links])

    def RevokeLink(
        self, request: share_pb2.RevokeLinkRequest, context: grpc.ServicerContext
    ) -> share_pb2.RevokeLinkResponse:
        self._sharing.revoke_link(user_id=caller_id(), link_id=request.link_id)
        return share_pb2.RevokeLinkResponse()


class ShareInternalServicer(share_pb2_grpc.ShareInternalServiceServicer):
    def __init__(self, sharing: Sharing) -> None:
        self._sharing = sharing

    def ResolveLink(
        self, request: share_pb2.ResolveLinkRequest, context: grpc.ServicerContext
    ) -> share_pb2.ResolveLinkResponse:
        resolved = self._sharing.resolve(
            token=request.token, password=request.password, client_address=request.client_address
        )
        return share_pb2.ResolveLinkResponse(
            url=resolved.url,
            expires_in_seconds=resolved.expires_in_seconds,
            file_name=resolved.file_name,
        )
