"""Live-status streams per user (issue #14, item 6): a user holds at most
watch_max_streams_per_user streams (8) across every events replica, counted in Redis; one
more closes that user's oldest, wherever it is; one user never fills a replica for others;
a crashed replica's streams stop counting once its lease runs out."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest

from services.common.clients import async_redis_client
from services.events.stream_limits import Evicted, StreamLimits
from services.events.watch import REPLACED
from tests.conftest import wait_until

from .test_live_status import NO_RECONCILING, Watcher, hub_of

PER_USER = 8


@pytest.fixture
def start_replica(start_processor, upload_address):
    """An events replica that only serves streams (no queue, no reconciling)."""

    def start(**overrides):
        return start_processor(
            sqs_queue_url=None, upload_service_addr=upload_address, **NO_RECONCILING, **overrides
        )

    return start


@pytest.fixture
def watch():
    opened: list[Watcher] = []

    def open_(stub, token: str) -> Watcher:
        opened.append(Watcher(stub, token))
        return opened[-1]

    yield open_
    for watcher in opened:
        watcher.close()


def replaced(watcher: Watcher) -> bool:
    return (
        watcher.ended.wait(10)
        and watcher.error is not None
        and watcher.error.code() == grpc.StatusCode.UNAVAILABLE
        and watcher.error.details() == REPLACED
    )


@pytest.mark.slow
def test_one_stream_too_many_closes_the_users_oldest_across_two_replicas(
    start_replica, watch, make_token
):
    replica_a, replica_b = start_replica(), start_replica()
    alice_id = str(uuid.uuid4())
    alice = make_token(user_id=alice_id)
    # Opened one after the other, alternately on A and B: the first is the oldest, on A.
    streams = [watch(replica.stub, alice).live() for replica in (replica_a, replica_b) * 4]
    assert not any(stream.ended.is_set() for stream in streams)

    ninth = watch(replica_b.stub, alice).live()
    assert replaced(streams[0]), streams[0].error  # on the other replica: told through Redis
    tenth = watch(replica_a.stub, alice).live()
    assert replaced(streams[1]), streams[1].error

    def open_of_alice() -> int:
        return hub_of(replica_a.handle).streams_of(alice_id) + hub_of(replica_b.handle).streams_of(
            alice_id
        )

    wait_until(lambda: open_of_alice() == PER_USER, what="Alice to hold 8 streams")
    time.sleep(0.5)  # nothing else is closed a moment later
    assert open_of_alice() == PER_USER
    assert not any(s.ended.is_set() for s in [*streams[2:], ninth, tenth])
    # Another user's streams still open, on either replica.
    bob = make_token(user_id=str(uuid.uuid4()))
    watch(replica_a.stub, bob).live()
    watch(replica_b.stub, bob).live()


@pytest.mark.slow
def test_one_user_cannot_fill_a_replica_for_the_others(start_replica, watch, make_token):
    replica = start_replica(watch_max_streams=10)
    alice_id = str(uuid.uuid4())
    alice = make_token(user_id=alice_id)
    for _ in range(PER_USER + 4):  # beyond the replica's 10: each closes her oldest instead
        watch(replica.stub, alice).live()
    wait_until(
        lambda: hub_of(replica.handle).streams_of(alice_id) == PER_USER,
        what="Alice's extra streams to be closed",
    )
    bob = make_token(user_id=str(uuid.uuid4()))
    watch(replica.stub, bob).live()
    watch(replica.stub, bob).live()
    # The replica's own cap still holds for everyone together.
    carol = watch(replica.stub, make_token(user_id=str(uuid.uuid4())))
    assert carol.ended.wait(10)
    assert carol.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.slow
def test_a_crashed_replicas_streams_stop_counting_once_its_lease_runs_out(redis_url):
    """StreamLimits on the real Redis: the crashed replica renewed its lease once and never
    again, as a killed process would."""

    async def scenario() -> None:
        crashed = StreamLimits(async_redis_client(redis_url), per_user=PER_USER, lease_seconds=1)
        alive = StreamLimits(async_redis_client(redis_url), per_user=PER_USER, lease_seconds=30)
        try:
            await crashed.keep_alive(set())
            await alive.keep_alive(set())
            user_id = str(uuid.uuid4())
            for n in range(PER_USER):
                assert await crashed.register(user_id, f"c{n}") == []
            # While its lease holds, its streams count: the oldest makes way.
            assert await alive.register(user_id, "a0") == [Evicted(crashed.replica_id, "c0")]
            await asyncio.sleep(1.5)
            assert await alive.register(user_id, "a1") == []
            assert await alive.count_of(user_id) == 2
            await alive.release(user_id, "a0")
            assert await alive.count_of(user_id) == 1
        finally:
            await crashed.close()
            await alive.close()

    asyncio.run(scenario())
