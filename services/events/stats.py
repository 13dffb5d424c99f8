"""Counters of what this process has done, shared by the poller's threads and GetStats,
and mirrored to the Prometheus counter of queue messages."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from .metrics import QUEUE_MESSAGES


@dataclass(frozen=True)
class StatsSnapshot:
    messages_received: int = 0
    messages_deleted: int = 0
    messages_rejected: int = 0
    messages_failed: int = 0
    transient_failures: int = 0
    uploads_confirmed: int = 0
    last_processed_at: datetime | None = None


class ProcessingStats:
    """Thread-safe counters; `snapshot()` reads them all at one instant."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = StatsSnapshot()

    def _add(self, **increments: int) -> None:
        with self._lock:
            self._current = replace(
                self._current,
                **{
                    name: getattr(self._current, name) + amount
                    for name, amount in increments.items()
                },
            )

    def received(self, count: int) -> None:
        self._add(messages_received=count)
        QUEUE_MESSAGES.labels("received").inc(count)

    def transient_failure(self) -> None:
        self._add(transient_failures=1)
        QUEUE_MESSAGES.labels("transient_failure").inc()

    def upload_confirmed(self) -> None:
        self._add(uploads_confirmed=1)

    def stale_event(self) -> None:
        QUEUE_MESSAGES.labels("stale_event").inc()

    def deferred(self) -> None:
        QUEUE_MESSAGES.labels("deferred").inc()

    def dead_lettered(self) -> None:
        """A message received maxReceiveCount times is left undeleted: SQS moves it to the
        dead-letter queue instead of delivering it again."""
        QUEUE_MESSAGES.labels("dead_lettered").inc()

    def finished(
        self, *, deleted: bool = False, rejected: bool = False, failed: bool = False
    ) -> None:
        """A message's processing ended (whatever happens to it in the queue next)."""
        with self._lock:
            self._current = replace(
                self._current,
                messages_deleted=self._current.messages_deleted + int(deleted),
                messages_rejected=self._current.messages_rejected + int(rejected),
                messages_failed=self._current.messages_failed + int(failed),
                last_processed_at=datetime.now(UTC),
            )
        for outcome, happened in (("deleted", deleted), ("rejected", rejected), ("failed", failed)):
            if happened:
                QUEUE_MESSAGES.labels(outcome).inc()

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return self._current
