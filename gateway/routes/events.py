"""`GET /api/v2/events`: the signed-in user's file status changes as Server-Sent Events,
relayed from the events service: each response is a subscription on the gateway process's
one SubscribeFileEvents call (gateway/file_event_relay.py), not a backend call of its own.

The response starts only once the backend's subscription is live (SubscriptionLive), so a
refusal is a plain HTTP error (401, 429, 503) and an `open` seen by a browser's EventSource
means every change from then on arrives. An events process holding as many streams as it
may (WATCH_MAX_STREAMS) refuses with RESOURCE_EXHAUSTED and a RetryInfo: 429 with
Retry-After here.

Each change is an event named `file` whose data is JSON
`{"fileId", "status", "size", "at"}` (status UPLOADING, UPLOADED, FAILED or DELETED). A comment
line every sse_heartbeat_seconds keeps proxies from closing a quiet stream. The stream ends
after sse_max_stream_seconds (EventSource reconnects by itself, with the cookie's current
token) or when the backend ends the subscription or the shared call breaks; changes made
while no stream was open are not replayed, so a client re-lists its files when a stream
opens."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from dropfile.events.v1 import events_pb2

from ..deps import SettingsDep, UserCall
from ..errors import rpc_error_response
from ..file_event_relay import FileEventRelay, Subscriber
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


async def _relay(
    relay: FileEventRelay, subscriber: Subscriber, *, heartbeat: float, lifetime: float
) -> AsyncIterator[str]:
    """The SSE body of a live subscription. A client that goes away cancels this generator
    (Starlette watches for the disconnect), which unsubscribes it.

    Nothing here is per connection but the subscriber (a queue): no thread (the route and
    this generator are coroutines on the gateway's loop), no backend call of its own (the
    process's one SubscribeFileEvents call carries every client's, file_event_relay.py)."""
    # A deadline checked between messages, not asyncio.timeout around the loop: that would
    # cancel whatever this task awaits when it fires, Starlette's send included.
    ends_at = time.monotonic() + lifetime
    try:
        yield PREAMBLE
        while (left := ends_at - time.monotonic()) > 0:
            event = await subscriber.next(timeout=min(heartbeat, left))
            if event is not None:
                yield sse_file_event(event)
            elif time.monotonic() < ends_at:
                yield KEEPALIVE
        # The stream's time is up: EventSource reconnects, with the cookie's current token.
        log.debug("file event stream ended: its time is up")
    except grpc.aio.AioRpcError as exc:
        # The subscription was ended (signed out, replaced, fell behind) or the shared call
        # broke (events restarted): ending the response makes EventSource reconnect, and the
        # client re-lists its files.
        log.info("file event stream ended: %s", exc.code().name)
    finally:
        relay.unsubscribe(subscriber)


@router.get(
    "/events",
    operation_id="watchFileEvents",
    response_class=StreamingResponse,
    responses=_RESPONSES,
    summary="Live status changes of the caller's files (Server-Sent Events)",
)
async def file_events(request: Request, settings: SettingsDep, call: UserCall) -> Response:
    relay = call.backends.file_events
    try:
        # Once live: every change from now on reaches it.
        subscriber = await relay.subscribe(call.access_token, timeout=call.timeout)
    except grpc.aio.AioRpcError as exc:
        # Too many streams there (RESOURCE_EXHAUSTED with RetryInfo): 429 and Retry-After.
        return rpc_error_response(request, exc)
    return StreamingResponse(
        _relay(
            relay,
            subscriber,
            heartbeat=settings.sse_heartbeat_seconds,
            lifetime=settings.sse_max_stream_seconds,
        ),
        media_type=EVENT_STREAM,
        headers=_HEADERS,
    )
