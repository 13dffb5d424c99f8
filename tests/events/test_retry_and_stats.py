"""The retry backoff and the stats counters, which need no servers."""

from __future__ import annotations

import itertools
import threading

from services.events.processing import RetryPolicy
from services.events.stats import ProcessingStats


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap_with_jitter():
    delays = list(itertools.islice(RetryPolicy(initial_seconds=0.5, max_seconds=8).delays(), 60))
    ceilings = [0.5, 1, 2, 4, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings):
        assert ceiling / 2 <= delay <= ceiling
    assert all(4 <= delay <= 8 for delay in delays[4:])
    assert len(set(delays)) > 1  # jittered, not in lockstep


def test_stats_count_from_many_threads_and_stamp_the_last_processed_time():
    stats = ProcessingStats()
    assert stats.snapshot().last_processed_at is None

    def work():
        for _ in range(500):
            stats.received(1)
            stats.finished(deleted=True)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats.finished(rejected=True)
    stats.finished(failed=True)
    stats.transient_failure()
    stats.upload_confirmed()
    snapshot = stats.snapshot()
    assert (snapshot.messages_received, snapshot.messages_deleted) == (4000, 4000)
    assert (snapshot.messages_rejected, snapshot.messages_failed) == (1, 1)
    assert (snapshot.transient_failures, snapshot.uploads_confirmed) == (1, 1)
    assert snapshot.last_processed_at is not None
