"""`GET /api/v2/events`: the signed-in user's file status changes as Server-Sent Events,
relayed from the events service's WatchFileEvents stream.

The response starts only once the backend's subscription is live (its first message), so a
refusal is a plain HTTP error (401, 429, 503) and an `open` seen by a browser's EventSource
means every change from then on arrives. An events process holding as many streams as it
may (WATCH_MAX_STREAMS) refuses with RESOURCE_EXHAUSTED and a RetryInfo: 429 with
Retry-After here.

Each change is an event named `file` whose data is JSON
`{"fileId", "status", "size", "at"}` (status UPLOADING, UPLOADED, FAILED or DELETED). A comment
line every sse_heartbeat_seconds keeps proxies from closing a quiet stream. The stream ends
after sse_max_stream_seconds (EventSource reconnects by itself, with the cookie's current
token) or when the backend goes away; changes made while no stream was open are not
replayed, so a client re-lists its files when a stream opens."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from dropfile.events.v1 import events_pb2

from ..deps import SettingsDep, UserCall
from ..errors import FILE_EVENTS_UNAVAILABLE, error_response, rpc_error_response
from ..responses import error_responses

log = logging.getLogger("gateway.events")

router = APIRouter(prefix="/api/v2", tags=["v2"])

EVENT_STREAM = "text/event-stream"
# Sent first: how long EventSource waits before reconnecting, and a comment that the
# stream is live.
PREAMBLE = "retry: 2000\n: live\n\n"
KEEPALIVE = ": keepalive\n\n"
_STATUS_PREFIX = "FILE_EVENT_STATUS_"
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_DESCRIPTION = (
    'Server-Sent Events: `event: file` with data `{"fileId", "status", "size", "at"}` '
    "for each status change of the caller's files (status UPLOADING, UPLOADED, FAILED or "
    "DELETED), and a `: keepalive` comment while nothing happens."
)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}, "description": _DESCRIPTION},
    **error_responses("SESSION_REVOKED", "TOO_MANY_STREAMS", "FILE_EVENTS_UNAVAILABLE"),
}


def sse_file_event(event: events_pb2.FileEvent) -> str:
    at = event.at.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")
    data = json.dumps(
        {
            "fileId": event.file_id,
            "status": events_pb2.FileEventStatus.Name(event.status).removeprefix(_STATUS_PREFIX),
            "size": event.size,
            "at": at.replace("+00:00", "Z"),
        },
        separators=(",", ":"),
    )
    return f"event: file\ndata: {data}\n\n"


WatchCall = grpc.aio.UnaryStreamCall[
    events_pb2.WatchFileEventsRequest, events_pb2.WatchFileEventsResponse
]


async def _next(stream: WatchCall) -> events_pb2.WatchFileEventsResponse | None:
    """The stream's next message; None at its end."""
    reply = await stream.read()
    return reply if isinstance(reply, events_pb2.WatchFileEventsResponse) else None


async def _relay(
    stream: WatchCall, first: events_pb2.WatchFileEventsResponse
) -> AsyncIterator[str]:
    """The SSE body, from the backend's `first` message on. A client that goes away cancels
    this generator (Starlette watches for the disconnect), which cancels the backend
    stream, which ends its subscription.

    Nothing here is per connection but the stream itself: no thread (the route and this
    generator are coroutines on the gateway's loop), and the backend call rides the
    process's one channel to the events service (deps.Backends), an HTTP/2 stream among
    the others on its connection."""
    try:
        yield PREAMBLE
        reply = first
        while True:
            if reply.HasField("file_event"):
                yield sse_file_event(reply.file_event)
            elif reply is not first:
                yield KEEPALIVE
            following = await _next(stream)
            if following is None:
                return
            reply = following
    except grpc.aio.AioRpcError as exc:
        # The stream's time is up (DEADLINE_EXCEEDED) or the backend went away: ending the
        # response makes EventSource reconnect, and the client re-lists its files.
        level = logging.DEBUG if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else logging.INFO
        log.log(level, "file event stream ended: %s", exc.code().name)
    finally:
        stream.cancel()


@router.get(
    "/events",
    operation_id="watchFileEvents",
    response_class=StreamingResponse,
    responses=_RESPONSES,
    summary="Live status changes of the caller's files (Server-Sent Events)",
)
async def file_events(request: Request, settings: SettingsDep, call: UserCall) -> Response:
    stream: WatchCall = call.backends.events.WatchFileEvents(
        events_pb2.WatchFileEventsRequest(heartbeat_seconds=settings.sse_heartbeat_seconds),
        metadata=call.metadata,
        timeout=settings.sse_max_stream_seconds,
    )
    try:
        first = await _next(stream)  # a heartbeat, once the subscription is live
    except grpc.aio.AioRpcError as exc:
        # Too many streams there (RESOURCE_EXHAUSTED with RetryInfo): 429 and Retry-After.
        return rpc_error_response(request, exc)
    if first is None:
        return error_response(
            request.url.path,
            503,
            "live status ended at once; retry",
            code=FILE_EVENTS_UNAVAILABLE,
            headers={"Retry-After": "2"},
        )
    return StreamingResponse(_relay(stream, first), media_type=EVENT_STREAM, headers=_HEADERS)
