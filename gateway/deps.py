"""What routes depend on: the backend stubs (one set of gRPC channels per process), and
the per-request call options: the caller's access token from its cookie as `authorization`
metadata, the request id as `x-request-id`, and the deadline."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

import grpc
from fastapi import Depends, Request
from grpc_health.v1 import health_pb2_grpc

from dropfile.auth.v1 import auth_pb2_grpc
from dropfile.events.v1 import events_pb2_grpc
from dropfile.upload.v1 import share_pb2_grpc, upload_pb2, upload_pb2_grpc
from services.common.clients import GRPC_CHANNEL_OPTIONS
from services.common.logs import REQUEST_ID_HEADER

from .call_limits import LimitedChannel
from .client_address import client_address
from .cookies import ACCESS_TOKEN
from .errors import ACCESS_TOKEN_INVALID, ACCESS_TOKEN_MISSING, ApiError
from .file_event_relay import FileEventRelay
from .middleware import request_id_of
from .part_recorder import PartRecorder
from .settings import GatewaySettings

_CHANNEL_OPTIONS = [
    *GRPC_CHANNEL_OPTIONS,
    ("grpc.primary_user_agent", "dropfile-gateway"),
    # A long file list is the largest reply; gRPC's default cap is 4 MiB.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]
# A JWT is under 1 KB; gRPC metadata must be printable ASCII and small.
_USABLE_TOKEN = re.compile(r"[!-~]{1,4096}")


class Backends:
    """The gRPC stubs of the services behind the gateway, on channels opened once at
    start (they reconnect by themselves when a backend restarts)."""

    def __init__(self, settings: GatewaySettings, *, service_token: str) -> None:
        addresses = {
            "auth": settings.auth_service_addr,
            "upload": settings.upload_service_addr,
            "events": settings.events_service_addr,
        }
        self._channels = {
            name: grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            for name, address in addresses.items()
        }
        self.auth = auth_pb2_grpc.AuthServiceStub(self._channels["auth"])
        # The upload coordinator's calls wait here beyond a bound (call_limits.py).
        upload = LimitedChannel(
            self._channels["upload"], settings.upload_max_calls_in_flight
        ).as_channel()
        self.upload = upload_pb2_grpc.UploadServiceStub(upload)
        self.events = events_pb2_grpc.EventsServiceStub(self._channels["events"])
        # Every SSE client's subscription rides one SubscribeFileEvents call, which needs
        # the service credential.
        self.file_events = FileEventRelay(
            self.events, metadata=((SERVICE_TOKEN_HEADER, service_token),)
        )
        # Share links live in the upload service; ResolveLink needs the service credential.
        self.share = share_pb2_grpc.ShareServiceStub(upload)
        self.share_internal = share_pb2_grpc.ShareInternalServiceStub(upload)
        # Readiness asks each backend's standard gRPC health service (on the channels
        # themselves: a probe never waits behind a burst's calls).
        self.health = {
            name: health_pb2_grpc.HealthStub(channel) for name, channel in self._channels.items()
        }
        self.part_recorder = PartRecorder(
            self.upload,
            batch_size=settings.record_part_batch_size,
            batches_in_flight=settings.record_part_batches_in_flight,
            timeout=settings.grpc_timeout_seconds,
            max_waiting_per_session=settings.record_part_max_waiting_per_session,
        )

    async def close(self) -> None:
        await self.part_recorder.close()
        await self.file_events.close()
        for channel in self._channels.values():
            await channel.close()


# Dependencies are `async def` though they do no I/O: FastAPI runs a plain `def` dependency
# in a worker thread, which cost about a third of the gateway's CPU per request.
async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_backends(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


@dataclass(frozen=True)
class CallOptions:
    """Keyword arguments of one backend call: `await stub.Method(msg, **call.kwargs)`."""

    # Carries the access token: kept out of repr(), so it never reaches a log.
    metadata: tuple[tuple[str, str], ...] = field(repr=False)
    timeout: float

    @property
    def kwargs(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "timeout": self.timeout}


@dataclass(frozen=True)
class UserCallOptions(CallOptions):
    """A call on the signed-in user's behalf, with the backends to make it to: one
    dependency per route on the hot path (FastAPI's per-dependency cost was a tenth of
    the gateway's CPU per request)."""

    backends: Backends
    access_token: str = field(repr=False)
    request_id: str

    async def record_part(self, part: upload_pb2.RecordPartRequest) -> None:
        """RecordPart, sent together with concurrent ones (part_recorder.py)."""
        await self.backends.part_recorder.record(
            part, access_token=self.access_token, request_id=self.request_id
        )

    async def record_parts(
        self, parts: list[upload_pb2.RecordPartRequest]
    ) -> list[BaseException | None]:
        """RecordPart for each, sent together; each one's outcome (None or its error)."""
        return await self.backends.part_recorder.record_all(
            parts, access_token=self.access_token, request_id=self.request_id
        )


async def anonymous_call(
    request: Request, settings: Annotated[GatewaySettings, Depends(get_settings)]
) -> CallOptions:
    """For RPCs that need no access token (sign up, sign in, refresh, sign out)."""
    return CallOptions(
        metadata=((REQUEST_ID_HEADER, request_id_of(request.scope)),),
        timeout=settings.grpc_timeout_seconds,
    )


# Metadata auth believes only with the service credential (services/auth/client_address.py).
CLIENT_ADDRESS_HEADER = "x-dropfile-client-address"
SERVICE_TOKEN_HEADER = "x-dropfile-service-token"


async def client_call(
    request: Request, settings: Annotated[GatewaySettings, Depends(get_settings)]
) -> CallOptions:
    """For sign-up and sign-in, which auth limits per client address: the client's address
    and the service credential that makes auth believe it."""
    return CallOptions(
        metadata=(
            (REQUEST_ID_HEADER, request_id_of(request.scope)),
            (CLIENT_ADDRESS_HEADER, client_address(request, settings.trusted_proxy_hops)),
            (SERVICE_TOKEN_HEADER, request.app.state.service_token),
        ),
        timeout=settings.grpc_timeout_seconds,
    )


async def user_call(request: Request) -> UserCallOptions:
    """For RPCs made on the signed-in user's behalf. The services verify the token; the
    gateway only refuses a request that has none (or one that cannot be sent).

    The cookie is read here, not declared as a `Cookie` parameter: FastAPI resolves a
    declared parameter's type on every request, ~7 % of the gateway's work on a
    record-chunk. openapi.py documents the cookie for these routes instead."""
    access_token = request.cookies.get(ACCESS_TOKEN)
    if not access_token:
        raise ApiError(
            401, "not signed in: the access_token cookie is missing", code=ACCESS_TOKEN_MISSING
        )
    if not _USABLE_TOKEN.fullmatch(access_token):
        raise ApiError(401, "invalid access token", code=ACCESS_TOKEN_INVALID)
    state = request.app.state
    request_id = request_id_of(request.scope)
    return UserCallOptions(
        metadata=(("authorization", f"Bearer {access_token}"), (REQUEST_ID_HEADER, request_id)),
        timeout=state.settings.grpc_timeout_seconds,
        backends=state.backends,
        access_token=access_token,
        request_id=request_id,
    )


BackendsDep = Annotated[Backends, Depends(get_backends)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
AnonymousCall = Annotated[CallOptions, Depends(anonymous_call)]
ClientCall = Annotated[CallOptions, Depends(client_call)]
UserCall = Annotated[UserCallOptions, Depends(user_call)]
