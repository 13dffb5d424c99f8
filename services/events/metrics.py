"""The event processor's own Prometheus series (served with the common ones:
services/common/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter

# outcome: received, deleted, rejected, failed, transient_failure, deferred (an upload not
# completed yet), dead_lettered (left undeleted at its queue's maxReceiveCount: SQS moves it
# to the dead-letter queue), stale_event (records, not messages: an object other than the
# one completion recorded).
QUEUE_MESSAGES = Counter(
    "dropfile_queue_messages_total", "SQS messages by what became of them", ["outcome"]
)
