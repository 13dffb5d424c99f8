"""EventsService over gRPC: this process's counters, and the caller's live file status
(watch.py), as protobuf. Served on the asyncio server (services/common/grpc_aio.py): each
method is a coroutine, each open stream an async generator waiting on its subscription."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from services.common.errors import InvalidArgument, Unauthenticated
from services.common.file_events import FileStatusChange
from services.common.tokens import TokenVerifier, current_identity

from .multiplex import MultiplexedCall, file_event
from .stats import ProcessingStats
from .watch import FileEventHub, StreamEnded

DEFAULT_HEARTBEAT_SECONDS = 15
MAX_HEARTBEAT_SECONDS = 300
Context = grpc.aio.ServicerContext[Any, Any]
_HEARTBEAT = events_pb2.WatchFileEventsResponse(heartbeat=events_pb2.Heartbeat())


def _caller() -> tuple[str, str]:
    """The authenticated user, in the canonical form the upload coordinator names its
    channels with, and the device session the caller's token names."""
    identity = current_identity.get()
    if identity is None:  # the interceptor guarantees one; defensive
        raise Unauthenticated("missing access token")
    try:
        return str(uuid.UUID(identity.user_id)), identity.session_id
    except ValueError:
        raise Unauthenticated(
            "the access token's subject is not a Dropfile user", reason="ACCESS_TOKEN_INVALID"
        ) from None


def _heartbeat_seconds(requested: int) -> int:
    if requested == 0:
        return DEFAULT_HEARTBEAT_SECONDS
    if not 1 <= requested <= MAX_HEARTBEAT_SECONDS:
        raise InvalidArgument(f"heartbeat_seconds must be between 1 and {MAX_HEARTBEAT_SECONDS}")
    return requested


def _event(change: FileStatusChange) -> events_pb2.WatchFileEventsResponse:
    return events_pb2.WatchFileEventsResponse(file_event=file_event(change))


class EventsServicer(events_pb2_grpc.EventsServiceServicer):
    def __init__(self, stats: ProcessingStats, hub: FileEventHub, verifier: TokenVerifier) -> None:
        self._stats = stats
        self._hub = hub
        self._verifier = verifier  # SubscribeFileEvents verifies each subscriber's token

    async def GetStats(
        self, request: events_pb2.GetStatsRequest, context: Context
    ) -> events_pb2.GetStatsResponse:
        stats = self._stats.snapshot()
        reply = events_pb2.GetStatsResponse(
            messages_received=stats.messages_received,
            messages_deleted=stats.messages_deleted,
            messages_rejected=stats.messages_rejected,
            messages_failed=stats.messages_failed,
            transient_failures=stats.transient_failures,
            uploads_confirmed=stats.uploads_confirmed,
        )
        if stats.last_processed_at is not None:
            reply.last_processed_at.FromDatetime(stats.last_processed_at)
        return reply

    async def WatchFileEvents(
        self, request: events_pb2.WatchFileEventsRequest, context: Context
    ) -> AsyncIterator[events_pb2.WatchFileEventsResponse]:
        """A heartbeat once the subscription is live, then each change, and a heartbeat
        after each `heartbeat_seconds` of quiet. The caller hanging up cancels this
        coroutine; the hub ending the subscription (outage, sign-out, replaced, fell
        behind, stopping) ends the stream with its error."""
        user_id, session_id = _caller()
        interval = _heartbeat_seconds(request.heartbeat_seconds)
        async with self._hub.subscribe(user_id, session_id) as subscription:
            yield _HEARTBEAT  # the subscription is live: changes from now on arrive
            while True:
                item = await subscription.next(timeout=interval)
                if item is None:
                    yield _HEARTBEAT
                elif isinstance(item, StreamEnded):
                    # The caller reconnects (to any replica) and re-lists what it missed.
                    raise item.error
                else:
                    yield _event(item)

    async def SubscribeFileEvents(
        self,
        request_iterator: AsyncIterator[events_pb2.SubscribeFileEventsRequest],
        context: Context,
    ) -> AsyncIterator[events_pb2.SubscribeFileEventsResponse]:
        """Subscriptions come and go as the caller asks (multiplex.py); replies leave in
        order. The caller hanging up cancels this coroutine, which releases every
        subscription of the call."""
        call = MultiplexedCall(self._hub, self._verifier)
        with self._hub.call_counted():
            reader = asyncio.get_running_loop().create_task(call.read(request_iterator))
            try:
                async for reply in call.replies():
                    yield reply
            finally:
                reader.cancel()
                await call.close()
