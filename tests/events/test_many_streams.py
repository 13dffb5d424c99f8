"""Many live-status streams on one events process (issue #19, item 3): WatchFileEvents runs
on gRPC's asyncio server, a coroutine per stream instead of a thread, so one process holds
far more than the old thread cap (256 + grpc_max_workers); the global cap refuses with
RESOURCE_EXHAUSTED and a RetryInfo; a stopping server ends every open stream at once.

Streams are opened with grpc.aio over one channel, as the gateway does (every SSE client's
stream is an HTTP/2 stream on its one connection). Changes are published on Redis as the
upload coordinator publishes them (services/upload/status_events.py)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from services.events.watch import FULL, FileEventHub
from tests.conftest import wait_until

from .helpers import bearer, publish_uploaded
from .test_live_status import start_own_processor

pytestmark = pytest.mark.slow

PER_USER = 8  # WATCH_MAX_STREAMS_PER_USER's default
OLD_THREAD_CAP = 256 + 32  # the thread-pool server's: watch_max_streams + grpc_max_workers
UPLOADED = events_pb2.FILE_EVENT_STATUS_UPLOADED


class AioWatch:
    """One WatchFileEvents stream read by a task of its own."""

    def __init__(self, stub: events_pb2_grpc.EventsServiceStub, token: str) -> None:
        self.call = stub.WatchFileEvents(
            events_pb2.WatchFileEventsRequest(heartbeat_seconds=30), metadata=bearer(token)
        )
        self.live = asyncio.Event()
        self.file_ids: set[str] = set()
        self.got_event = asyncio.Event()
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                if reply.HasField("heartbeat"):
                    self.live.set()
                elif reply.file_event.status == UPLOADED:
                    self.file_ids.add(reply.file_event.file_id)
                    self.got_event.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.live.set()  # a refused stream is "settled" too: see .error

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def hub_of(handle) -> FileEventHub:
    return next(w for w in handle.loop_workers if isinstance(w, FileEventHub))


async def settle(watches: list[AioWatch], timeout: float = 120) -> None:
    await asyncio.wait_for(asyncio.gather(*(w.live.wait() for w in watches)), timeout)


def test_more_streams_than_the_old_thread_cap_each_receive_their_users_change(
    common_settings, make_token, redis_url
):
    streams = 600
    assert streams > OLD_THREAD_CAP
    users = [str(uuid.uuid4()) for _ in range(streams // PER_USER)]
    tokens = {user_id: make_token(user_id=user_id) for user_id in users}
    handle, channel, _ = start_own_processor(common_settings)
    hub = hub_of(handle)

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as aio_channel:
            stub = events_pb2_grpc.EventsServiceStub(aio_channel)
            owners = [users[n % len(users)] for n in range(streams)]
            watches = [AioWatch(stub, tokens[owner]) for owner in owners]
            try:
                await settle(watches)
                assert [w.error for w in watches if w.error] == []
                assert hub.open_streams == streams

                published = await asyncio.to_thread(publish_uploaded, redis_url, users)
                await asyncio.wait_for(
                    asyncio.gather(*(w.got_event.wait() for w in watches)), timeout=60
                )
                # Each stream got its own user's change, and only it.
                for owner, watch in zip(owners, watches, strict=True):
                    assert watch.file_ids == {published[owner]}
            finally:
                await asyncio.gather(*(w.close() for w in watches))

    try:
        asyncio.run(scenario())
        wait_until(lambda: hub.open_streams == 0, timeout=30, what="every stream to be released")
    finally:
        channel.close()
        handle.stop(0).wait()


def test_beyond_watch_max_streams_a_stream_is_refused_with_a_retry_delay(
    common_settings, make_token
):
    handle, channel, _ = start_own_processor(common_settings, watch_max_streams=3)

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as aio_channel:
            stub = events_pb2_grpc.EventsServiceStub(aio_channel)
            admitted = [AioWatch(stub, make_token()) for _ in range(3)]
            await settle(admitted)
            refused = AioWatch(stub, make_token())
            await settle([refused])
            try:
                assert [w.error for w in admitted if w.error] == []
                assert refused.error is not None
                assert refused.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert refused.error.details() == FULL
                status = rpc_status.from_call(refused.error)
                retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
                info = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
                assert len(retry) == 1 and len(info) == 1
                delay, reason = error_details_pb2.RetryInfo(), error_details_pb2.ErrorInfo()
                retry[0].Unpack(delay)
                info[0].Unpack(reason)
                assert delay.retry_delay.ToMilliseconds() > 0
                assert reason.reason == "TOO_MANY_STREAMS"
                # One ends: room for another.
                await admitted[0].close()
                wait_until(lambda: hub_of(handle).open_streams == 2, what="a place to free up")
                again = AioWatch(stub, make_token())
                await settle([again])
                assert again.error is None
                admitted.append(again)
            finally:
                await asyncio.gather(*(w.close() for w in [*admitted, refused]))

    try:
        asyncio.run(scenario())
    finally:
        channel.close()
        handle.stop(0).wait()


def test_a_stopping_server_ends_hundreds_of_open_streams_and_stops(common_settings, make_token):
    """The graceful stop: NOT_SERVING, every open stream ended with UNAVAILABLE (its client
    reconnects to another replica), the server stopped well within its grace period."""
    streams = 300
    handle, channel, _ = start_own_processor(common_settings)

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as aio_channel:
            stub = events_pb2_grpc.EventsServiceStub(aio_channel)
            watches = [AioWatch(stub, make_token()) for _ in range(streams)]
            await settle(watches)
            assert hub_of(handle).open_streams == streams
            stopped = await asyncio.to_thread(handle.stop, 60)
            await asyncio.wait_for(asyncio.gather(*(w.task for w in watches)), timeout=30)
            assert {w.error.code() for w in watches if w.error} == {grpc.StatusCode.UNAVAILABLE}
            assert all(w.error is not None for w in watches)
            assert await asyncio.to_thread(stopped.wait, 30), "the server did not stop"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetStats(events_pb2.GetStatsRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    try:
        asyncio.run(scenario())
    finally:
        channel.close()
        handle.stop(0).wait()
