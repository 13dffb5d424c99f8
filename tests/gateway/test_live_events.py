"""GET /api/v2/events: live file status as Server-Sent Events, through the gateway, from
an events replica that is not the one handling storage's events (so the change reaches it
through Redis, as with several replicas in production)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import httpx
import jwt
import pytest

from dropfile.events.v1 import events_pb2_grpc
from gateway.app import create_app
from gateway.file_event_relay import FileEventRelay
from gateway.settings import GatewaySettings
from services.common.grpc_server import SERVICE_TOKEN_HEADER
from services.events.server import create_server
from services.events.settings import EventsSettings
from services.events.watch import FileEventHub
from tests.conftest import settings_for, wait_until
from tests.events.helpers import publish_uploaded
from tests.fixtures.gateway import serve_gateway

from .conftest import PART_SIZE, put_part, sign_up, start_upload, upload_file

EVENTS = "/api/v2/events"


class SseStream:
    """An open GET /api/v2/events, read by a thread of its own as EventSource would."""

    def __init__(self, client: httpx.Client) -> None:
        self._context = client.stream("GET", EVENTS, timeout=httpx.Timeout(30, read=None))
        self.response = self._context.__enter__()
        self.events: list[tuple[str, dict]] = []
        self.comments: list[str] = []
        self.ended = threading.Event()
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.response.read()
            self.ended.set()

    def _read(self) -> None:
        name, data = "message", []
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    self.events.append((name, json.loads("\n".join(data))))
                    name, data = "message", []
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test
        finally:
            self.ended.set()

    def saw(self, file_id: str, status: str) -> bool:
        return any(
            name == "file" and data["fileId"] == file_id and data["status"] == status
            for name, data in list(self.events)
        )

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self.ended.wait(10)


@pytest.fixture
def open_stream() -> Iterator:
    opened: list[SseStream] = []

    def open_(client: httpx.Client) -> SseStream:
        opened.append(SseStream(client))
        return opened[-1]

    yield open_
    for stream in opened:
        stream.close()


@pytest.fixture
def streams_only_replica(start_processor, quiet_bucket, upload_address):
    """An events replica that takes no storage events (no queue, no reconciling): it only
    serves streams, so what they show came through Redis."""
    return start_processor(
        sqs_queue_url=None,
        s3_bucket=quiet_bucket,
        upload_service_addr=upload_address,
        reconcile_interval_seconds=3600,
    )


@pytest.fixture
def gateway_on_replica(gateway_settings, streams_only_replica) -> Iterator[str]:
    settings = gateway_settings.model_copy(
        update={
            "events_service_addr": f"127.0.0.1:{streams_only_replica.handle.port}",
            "sse_heartbeat_seconds": 1,
        }
    )
    with serve_gateway(settings) as url:
        yield url


def new_user(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    assert sign_up(client).status_code == 200
    return client


def user_id_of(client: httpx.Client) -> str:
    token = client.cookies["access_token"]
    return jwt.decode(token, options={"verify_signature": False})["sub"]


def test_a_browser_sees_uploaded_after_the_storage_event(gateway_on_replica, open_stream):
    client = new_user(gateway_on_replica)
    stream = open_stream(client)
    assert stream.response.status_code == 200
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.response.headers["cache-control"] == "no-cache"
    data = bytes(PART_SIZE + 10)
    file_id, started = start_upload(client, data, name="live.bin")
    wait_until(lambda: stream.saw(file_id, "UPLOADING"), what="the UPLOADING event")
    parts = []
    for index, url in enumerate(started["presignedUrls"]):
        part = data[index * PART_SIZE : (index + 1) * PART_SIZE]
        etag = put_part(url, part)
        assert (
            client.post(
                "/api/files/record-chunk",
                json={
                    "file_id": file_id,
                    "chunk_index": index,
                    "size": str(len(part)),
                    "etag": etag.strip('"'),
                },
            ).status_code
            == 200
        )
        parts.append({"ETag": etag, "PartNumber": index + 1})

    # Storage sends its event while completing the upload: the second starts before that.
    completed = client.post(
        "/api/files/complete-upload",
        json={"uploadId": started["uploadId"], "fileId": file_id, "parts": parts},
    )
    assert completed.status_code == 200, completed.text
    wait_until(
        lambda: stream.saw(file_id, "UPLOADED"),
        # Delivery, not its speed, on a shared machine (`make bench` measures the latency).
        timeout=30,
        what="UPLOADED on the event stream after the storage event",
    )

    [(_, event)] = [(n, d) for n, d in stream.events if d["status"] == "UPLOADED"]
    assert event["size"] == len(data) and event["at"].endswith("Z")
    assert client.get("/api/files/list").json()["files"][0]["status"] == "UPLOADED"


@pytest.mark.slow
def test_another_users_changes_never_reach_a_stream(gateway_on_replica, open_stream):
    alice, bob = new_user(gateway_on_replica), new_user(gateway_on_replica)
    alices_stream, bobs_stream = open_stream(alice), open_stream(bob)
    alices, _ = upload_file(alice, b"alice's")
    bobs, _ = upload_file(bob, b"bob's")
    wait_until(
        lambda: alices_stream.saw(alices, "UPLOADED") and bobs_stream.saw(bobs, "UPLOADED"),
        timeout=30,
        what="both uploads confirmed",
    )
    assert {data["fileId"] for _, data in alices_stream.events} == {alices}
    assert {data["fileId"] for _, data in bobs_stream.events} == {bobs}


@pytest.mark.slow
def test_a_quiet_stream_carries_heartbeat_comments(gateway_on_replica, open_stream):
    stream = open_stream(new_user(gateway_on_replica))
    wait_until(lambda: stream.comments.count("keepalive") >= 2, what="keepalive comments")
    assert stream.comments[0] == "live" and stream.events == []


@pytest.mark.slow
def test_a_browser_going_away_ends_the_backend_subscription(
    gateway_on_replica, streams_only_replica, open_stream
):
    hub = next(w for w in streams_only_replica.handle.loop_workers if isinstance(w, FileEventHub))
    client = new_user(gateway_on_replica)
    user_id = user_id_of(client)
    stream = open_stream(client)
    assert hub.streams_of(user_id) == 1
    stream.close()
    wait_until(lambda: hub.streams_of(user_id) == 0, what="the backend stream to end")


def test_not_signed_in_is_401_and_a_down_events_service_is_503(
    gateway_settings, api_client, open_stream
):
    response = api_client().get(EVENTS)
    assert response.status_code == 401 and "not signed in" in response.json()["error"]
    settings = gateway_settings.model_copy(update={"events_service_addr": "127.0.0.1:9"})
    with serve_gateway(settings) as url:
        client = new_user(url)
        stream = open_stream(client)
        assert stream.response.status_code == 503
        assert stream.response.headers["retry-after"]
        assert "error" in stream.response.json()


@pytest.mark.slow
def test_the_stream_ends_when_its_time_is_up(gateway_settings, streams_only_replica, open_stream):
    settings = gateway_settings.model_copy(
        update={
            "events_service_addr": f"127.0.0.1:{streams_only_replica.handle.port}",
            "sse_max_stream_seconds": 2,
        }
    )
    with serve_gateway(settings) as url:
        stream = open_stream(new_user(url))
        assert stream.response.status_code == 200
        assert stream.ended.wait(30), "the stream outlived sse_max_stream_seconds"


def test_the_route_is_documented_as_an_event_stream(api_client):
    operation = api_client().get("/openapi.json").json()["paths"][EVENTS]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]


def test_gateway_settings_bound_the_stream(common_settings):
    with pytest.raises(ValueError):
        settings_for(GatewaySettings, common_settings, sse_heartbeat_seconds=0)
    assert settings_for(GatewaySettings, common_settings).sse_heartbeat_seconds == 15


async def _sse_client(url: str, token: str, live: asyncio.Event, seen: list[str]) -> int:
    """One EventSource-like client: the response's status, then (on 200) each `file`
    event's fileId appended to `seen`; `live` set once the stream is open (or refused)."""
    async with httpx.AsyncClient(
        base_url=url, cookies={"access_token": token}, timeout=httpx.Timeout(60, read=None)
    ) as client:
        async with client.stream("GET", EVENTS) as response:
            live.set()
            if response.status_code != 200:
                await response.aread()
                return response.status_code
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    seen.append(json.loads(line[5:])["fileId"])
    return 200


def test_many_browsers_at_once_each_get_their_users_change(
    gateway_on_replica, streams_only_replica, make_token, redis_url
):
    """Hundreds of SSE clients on one gateway, relayed over its one SubscribeFileEvents call
    to one events replica: each gets its own user's change."""
    clients, per_user = 200, 8
    users = [str(uuid.uuid4()) for _ in range(clients // per_user)]
    tokens = {user_id: make_token(user_id=user_id) for user_id in users}
    hub = next(w for w in streams_only_replica.handle.loop_workers if isinstance(w, FileEventHub))

    async def scenario() -> None:
        owners = [users[n % len(users)] for n in range(clients)]
        lives = [asyncio.Event() for _ in owners]
        seen: list[list[str]] = [[] for _ in owners]
        tasks = [
            asyncio.create_task(_sse_client(gateway_on_replica, tokens[owner], live, got))
            for owner, live, got in zip(owners, lives, seen, strict=True)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(live.wait() for live in lives)), 120)
            assert not [task.result() for task in tasks if task.done()]  # none refused
            await asyncio.to_thread(
                wait_until, lambda: hub.open_streams == clients, what="every subscription"
            )
            # All of them ride the gateway's one SubscribeFileEvents call.
            assert hub.open_calls == 1
            published = await asyncio.to_thread(publish_uploaded, redis_url, users)
            for _ in range(600):
                if all(got for got in seen):
                    break
                await asyncio.sleep(0.1)
            for owner, got in zip(owners, seen, strict=True):
                assert got == [published[owner]]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    wait_until(lambda: hub.open_streams == 0, timeout=30, what="the backend streams to end")


def test_a_full_events_replica_is_429_with_retry_after(
    gateway_settings, start_processor, quiet_bucket, upload_address, make_token, open_stream
):
    replica = start_processor(
        sqs_queue_url=None,
        s3_bucket=quiet_bucket,
        upload_service_addr=upload_address,
        reconcile_interval_seconds=3600,
        # The gateway's one SubscribeFileEvents call takes a place, its first subscriber
        # the other.
        watch_max_streams=2,
    )
    settings = gateway_settings.model_copy(
        update={"events_service_addr": f"127.0.0.1:{replica.handle.port}"}
    )
    with serve_gateway(settings) as url:
        first = open_stream(httpx.Client(base_url=url, cookies={"access_token": make_token()}))
        assert first.response.status_code == 200
        refused = open_stream(httpx.Client(base_url=url, cookies={"access_token": make_token()}))
        assert refused.response.status_code == 429
        assert int(refused.response.headers["retry-after"]) >= 1
        assert "as many event streams" in refused.response.json()["error"]


def test_forged_and_expired_cookies_are_401_and_leave_others_streams_alone(
    gateway_on_replica, streams_only_replica, make_token, redis_url, open_stream
):
    """Every SSE client shares the gateway's call: a bad token is refused alone."""
    from tests.events.test_multiplexed_streams import foreign_key_token

    victim = str(uuid.uuid4())
    stream = open_stream(
        httpx.Client(base_url=gateway_on_replica, cookies={"access_token": make_token(victim)})
    )
    assert stream.response.status_code == 200
    for token in (
        foreign_key_token(victim),
        make_token(user_id=victim, exp=int(time.time()) - 60),
    ):
        refused = open_stream(
            httpx.Client(base_url=gateway_on_replica, cookies={"access_token": token})
        )
        assert refused.response.status_code == 401
        assert refused.response.json()["code"] == "ACCESS_TOKEN_INVALID"
    hub = next(w for w in streams_only_replica.handle.loop_workers if isinstance(w, FileEventHub))
    assert hub.streams_of(victim) == 1 and hub.open_calls == 1
    published = publish_uploaded(redis_url, [victim])
    wait_until(lambda: stream.saw(published[victim], "UPLOADED"), what="the victim's change")
    assert not stream.ended.is_set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_an_events_restart_ends_every_sse_stream_and_the_gateway_recovers(
    gateway_settings, common_settings, make_token, redis_url, open_stream
):
    """The shared call breaks: each SSE client is told as before (its response ends, so
    EventSource reconnects and the app re-lists), and new streams work once events is back,
    on a new call."""
    port = free_port()
    settings = settings_for(
        EventsSettings, common_settings, sqs_queue_url=None, reconcile_interval_seconds=3600
    )
    events = create_server(settings, port=port)
    events.start()
    app = create_app(
        gateway_settings.model_copy(
            update={"events_service_addr": f"127.0.0.1:{port}", "sse_heartbeat_seconds": 1}
        )
    )
    try:
        with serve_gateway(app.state.settings, app) as url:
            users = [str(uuid.uuid4()) for _ in range(2)]
            clients = [
                httpx.Client(base_url=url, cookies={"access_token": make_token(user)})
                for user in users
            ]
            streams = [open_stream(client) for client in [*clients, clients[0]]]
            assert [s.response.status_code for s in streams] == [200, 200, 200]
            relay = app.state.backends.file_events
            assert relay.calls_opened == 1 and relay.subscribers == 3

            events.stop(5).wait()
            for stream in streams:
                assert stream.ended.wait(20), "an SSE stream outlived the events process"
            assert relay.subscribers == 0

            events = create_server(settings, port=port)
            events.start()
            reopened: list = []

            def opens() -> bool:
                stream = open_stream(clients[0])
                if stream.response.status_code == 200:
                    reopened.append(stream)
                    return True
                assert stream.response.status_code == 503  # meanwhile: retry later
                assert stream.response.headers["retry-after"]
                return False

            wait_until(opens, timeout=30, interval=0.5, what="a stream once events is back")
            assert relay.calls_opened >= 2
            published = publish_uploaded(redis_url, users[:1])
            wait_until(
                lambda: reopened[0].saw(published[users[0]], "UPLOADED"),
                what="a change on the new call",
            )
    finally:
        events.stop(0).wait()


@pytest.mark.slow
def test_the_shared_call_is_renewed_and_the_old_one_ends_with_its_last_subscriber(
    streams_only_replica, make_token, redis_url, service_token
):
    """New subscribers go to a new call once the current one is old (connections are aged
    out by the events service); the old call ends when its last subscriber leaves, and
    subscribers on either call get their changes."""
    hub = next(w for w in streams_only_replica.handle.loop_workers if isinstance(w, FileEventHub))
    users = [str(uuid.uuid4()), str(uuid.uuid4())]

    async def scenario() -> None:
        address = f"127.0.0.1:{streams_only_replica.handle.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            relay = FileEventRelay(
                events_pb2_grpc.EventsServiceStub(channel),
                metadata=((SERVICE_TOKEN_HEADER, service_token),),
                renew_after=0.5,
            )
            try:
                first = await relay.subscribe(make_token(users[0]), timeout=10)
                await asyncio.sleep(0.6)
                second = await relay.subscribe(make_token(users[1]), timeout=10)
                assert (relay.calls_opened, relay.open_calls, relay.subscribers) == (2, 2, 2)
                assert hub.open_calls == 2
                published = await asyncio.to_thread(publish_uploaded, redis_url, users)
                assert (await first.next(timeout=10)).file_id == published[users[0]]
                assert (await second.next(timeout=10)).file_id == published[users[1]]
                relay.unsubscribe(first)
                for _ in range(100):
                    if relay.open_calls == 1 and hub.open_calls == 1:
                        break
                    await asyncio.sleep(0.1)
                assert (relay.open_calls, hub.open_calls, hub.open_streams) == (1, 1, 1)
                published = await asyncio.to_thread(publish_uploaded, redis_url, users[1:])
                assert (await second.next(timeout=10)).file_id == published[users[1]]
            finally:
                await relay.close()

    asyncio.run(scenario())
    wait_until(lambda: hub.open_calls == 0, what="the calls to end")
