"""EventsService over gRPC: this process's counters as protobuf."""
from __future__ import annotations

from dropfile.events.v1 import events_pb2, events_pb2_grpc

from .stats import ProcessingStats


class EventsServicer(events_pb2_grpc.EventsServiceServicer):
    def __init__(self, stats: ProcessingStats) -> None:
        self._stats = stats

    def GetStats(self, request, context):
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
