"""EventsService over gRPC: this process's counters, and the caller's live file status
(watch.py), as protobuf."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from services.common.errors import InvalidArgument, Unauthenticated, Unavailable
from services.common.file_events import FileStatusChange
from services.common.revocations import RevokedSessions
from services.common.tokens import SIGNED_OUT, current_identity

from .stats import ProcessingStats
from .watch import FileEventHub, StreamEnded

DEFAULT_HEARTBEAT_SECONDS = 15
MAX_HEARTBEAT_SECONDS = 300
# How often an open stream asks whether its session was signed out (from the verifier's
# memory, refreshed from Redis once a second at most).
REVOCATION_CHECK_SECONDS = 0.5
_HEARTBEAT = events_pb2.WatchFileEventsResponse(heartbeat=events_pb2.Heartbeat())
_STATUS = {
    "UPLOADING": events_pb2.FILE_EVENT_STATUS_UPLOADING,
    "UPLOADED": events_pb2.FILE_EVENT_STATUS_UPLOADED,
    "FAILED": events_pb2.FILE_EVENT_STATUS_FAILED,
    "DELETED": events_pb2.FILE_EVENT_STATUS_DELETED,
}


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
    reply = events_pb2.WatchFileEventsResponse(
        file_event=events_pb2.FileEvent(
            file_id=change.file_id, status=_STATUS[change.status], size=change.size
        )
    )
    reply.file_event.at.FromDatetime(change.at)
    return reply


class EventsServicer(events_pb2_grpc.EventsServiceServicer):
    def __init__(
        self, stats: ProcessingStats, hub: FileEventHub, revocations: RevokedSessions
    ) -> None:
        self._stats = stats
        self._hub = hub
        self._revocations = revocations

    def GetStats(
        self, request: events_pb2.GetStatsRequest, context: grpc.ServicerContext
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

    def WatchFileEvents(
        self, request: events_pb2.WatchFileEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[events_pb2.WatchFileEventsResponse]:
        user_id, session_id = _caller()
        interval = _heartbeat_seconds(request.heartbeat_seconds)
        with self._hub.subscribe(user_id) as subscription:
            # Wakes the wait below as soon as the caller hangs up (or the deadline passes).
            if not context.add_callback(lambda: subscription.end("the caller hung up")):
                return
            yield _HEARTBEAT  # the subscription is live: changes from now on arrive
            heartbeat_at = time.monotonic() + interval
            while context.is_active():
                # Wakes often: a signed-out session's stream ends within about a second.
                item = subscription.next(
                    timeout=max(min(heartbeat_at - time.monotonic(), REVOCATION_CHECK_SECONDS), 0)
                )
                if isinstance(item, StreamEnded):
                    if not context.is_active():
                        return
                    # The caller reconnects (to any replica) and re-lists what it missed.
                    raise Unavailable(item.reason, reason=item.error_reason)
                if self._revocations.is_revoked(session_id):
                    raise Unauthenticated(SIGNED_OUT, reason="SESSION_REVOKED")
                if item is not None:
                    yield _event(item)
                elif time.monotonic() < heartbeat_at:
                    continue
                else:
                    yield _HEARTBEAT
                heartbeat_at = time.monotonic() + interval  # a heartbeat when quiet
