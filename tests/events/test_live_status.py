"""Live file status over gRPC (EventsService.WatchFileEvents): the upload coordinator
publishes each status change to Redis, every events replica hears it, and the owner's
streams get it; nobody else's do.

A subscribed client sees UPLOADED once the event is handled, within a generous bound: on a
shared machine these tests check delivery, not its speed (`make bench` measures the time
from storage's event to the status the API shows)."""

from __future__ import annotations

import threading
import uuid

import grpc
import pytest

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from dropfile.upload.v1 import upload_pb2
from services.events.server import create_server
from services.events.settings import EventsSettings
from services.events.watch import FileEventHub
from tests.conftest import settings_for, wait_until
from tests.tcp_proxy import TcpProxy

from .helpers import bearer, created_event, stats, upload_file

NO_RECONCILING = {"reconcile_interval_seconds": 3600}  # only the test's event confirms
# How long a status change may take to reach a stream before the test gives up: delivery,
# not its speed, is checked here.
DELIVERY_TIMEOUT = 30.0
UPLOADED = events_pb2.FILE_EVENT_STATUS_UPLOADED


class Watcher:
    """A WatchFileEvents stream read by a thread of its own, as a client holds one."""

    def __init__(self, stub, token: str, *, heartbeat_seconds: int = 0) -> None:
        self.call = stub.WatchFileEvents(
            events_pb2.WatchFileEventsRequest(heartbeat_seconds=heartbeat_seconds),
            metadata=bearer(token),
        )
        self.replies: list[events_pb2.WatchFileEventsResponse] = []
        self.error: grpc.RpcError | None = None
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self.call:
                self.replies.append(reply)
        except grpc.RpcError as exc:
            self.error = exc
        finally:
            self.ended.set()

    def live(self) -> Watcher:
        """Returns once the first heartbeat says the subscription is live."""
        wait_until(lambda: self.heartbeats or self.ended.is_set(), what="the stream to open")
        assert self.heartbeats, f"the stream failed: {self.error}"
        return self

    @property
    def heartbeats(self) -> int:
        return sum(1 for reply in list(self.replies) if reply.HasField("heartbeat"))

    def events(self) -> list[events_pb2.FileEvent]:
        return [reply.file_event for reply in list(self.replies) if reply.HasField("file_event")]

    def saw(self, file_id: str, status: int) -> bool:
        return any(e.file_id == file_id and e.status == status for e in self.events())

    def close(self) -> None:
        self.call.cancel()
        self.ended.wait(10)


@pytest.fixture
def watch():
    opened: list[Watcher] = []

    def open_(stub, token: str, **kwargs) -> Watcher:
        opened.append(Watcher(stub, token, **kwargs))
        return opened[-1]

    yield open_
    for watcher in opened:
        watcher.close()


def hub_of(handle) -> FileEventHub:
    return next(worker for worker in handle.loop_workers if isinstance(worker, FileEventHub))


def confirm_request(uploaded, s3, bucket) -> upload_pb2.ConfirmUploadRequest:
    """What storage's event for the completed object says."""
    etag = s3.head_object(Bucket=bucket, Key=uploaded.s3_key)["ETag"]
    return upload_pb2.ConfirmUploadRequest(s3_key=uploaded.s3_key, size=uploaded.size, etag=etag)


def test_a_subscriber_sees_uploaded_after_confirmation(
    events_stub, quiet_upload, quiet_bucket, s3, watch, make_token, service_token
):
    user_id = str(uuid.uuid4())
    token = make_token(user_id=user_id)
    watcher = watch(events_stub, token).live()
    uploaded = upload_file(quiet_upload.stub, token, size=6 * 1024 * 1024)
    wait_until(
        lambda: watcher.saw(uploaded.file_id, events_pb2.FILE_EVENT_STATUS_UPLOADING),
        what="the UPLOADING event of the new upload",
    )

    sent = quiet_upload.internal_stub.ConfirmUpload.future(
        confirm_request(uploaded, s3, quiet_bucket),
        metadata=[("x-dropfile-service-token", service_token)],
    )
    wait_until(
        lambda: watcher.saw(uploaded.file_id, UPLOADED),
        timeout=DELIVERY_TIMEOUT,
        what="UPLOADED on the stream after the confirmation",
    )

    assert sent.result().outcome == upload_pb2.ConfirmUploadResponse.OUTCOME_CONFIRMED
    [event] = [e for e in watcher.events() if e.status == UPLOADED]
    assert event.size == uploaded.size and event.at.seconds > 0
    assert watcher.error is None


def test_two_replicas_a_storage_event_handled_by_one_reaches_a_stream_on_the_other(
    start_processor, make_queue, quiet_upload, quiet_bucket, s3, sqs, watch, make_token
):
    """Replica A only serves streams (no queue, no reconciling); replica B takes the storage
    event from the queue and confirms the upload. A's stream hears of it through Redis."""
    queue = make_queue()
    common = {
        "s3_bucket": quiet_bucket,
        "upload_service_addr": quiet_upload.address,
        **NO_RECONCILING,
    }
    replica_a = start_processor(sqs_queue_url=None, **common)
    replica_b = start_processor(sqs_queue_url=queue.url, **common)
    alice_id, bob_id = str(uuid.uuid4()), str(uuid.uuid4())
    alice, bob = make_token(user_id=alice_id), make_token(user_id=bob_id)
    alice_on_a = watch(replica_a.stub, alice).live()
    alice_on_b = watch(replica_b.stub, alice).live()
    bob_on_a = watch(replica_a.stub, bob).live()
    uploaded = upload_file(quiet_upload.stub, alice, size=1024)
    deleted_before = stats(replica_b.stub, make_token).messages_deleted

    sqs.send_message(
        QueueUrl=queue.url, MessageBody=created_event(s3, quiet_bucket, uploaded.s3_key)
    )
    wait_until(
        lambda: alice_on_a.saw(uploaded.file_id, UPLOADED),
        timeout=DELIVERY_TIMEOUT,
        what="UPLOADED on replica A after the event",
    )

    wait_until(
        lambda: alice_on_b.saw(uploaded.file_id, UPLOADED),
        what="UPLOADED on replica B's stream too",
    )
    wait_until(
        lambda: stats(replica_b.stub, make_token).messages_deleted > deleted_before,
        what="replica B to finish the message",
    )
    # Bob's stream on the same replica heard nothing of Alice's file...
    assert bob_on_a.events() == []
    # ...though it is live: his own change reaches him, and only it.
    bobs = upload_file(quiet_upload.stub, bob, size=10)
    wait_until(
        lambda: bob_on_a.saw(bobs.file_id, events_pb2.FILE_EVENT_STATUS_UPLOADING),
        what="Bob's own event",
    )
    assert {e.file_id for e in bob_on_a.events()} == {bobs.file_id}
    assert {e.file_id for e in alice_on_a.events()} == {uploaded.file_id}


def test_abort_and_delete_are_streamed_too(events_stub, quiet_upload, watch, make_token):
    user_id = str(uuid.uuid4())
    token = make_token(user_id=user_id)
    watcher = watch(events_stub, token).live()
    aborted_id, deleted = str(uuid.uuid4()), upload_file(quiet_upload.stub, token, size=10)
    started = quiet_upload.stub.InitiateUpload(
        upload_pb2.InitiateUploadRequest(file_id=aborted_id, file_name="a.bin", file_size=10),
        metadata=bearer(token),
    )
    quiet_upload.stub.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=aborted_id, upload_id=started.upload_id),
        metadata=bearer(token),
    )
    quiet_upload.stub.DeleteFile(
        upload_pb2.DeleteFileRequest(file_id=deleted.file_id), metadata=bearer(token)
    )

    wait_until(
        lambda: watcher.saw(deleted.file_id, events_pb2.FILE_EVENT_STATUS_DELETED),
        what="the deletion on the stream",
    )
    statuses = [(e.file_id, events_pb2.FileEventStatus.Name(e.status)) for e in watcher.events()]
    assert statuses == [
        (deleted.file_id, "FILE_EVENT_STATUS_UPLOADING"),
        (aborted_id, "FILE_EVENT_STATUS_UPLOADING"),
        (aborted_id, "FILE_EVENT_STATUS_FAILED"),
        (deleted.file_id, "FILE_EVENT_STATUS_DELETED"),
    ]


def test_a_stale_confirmation_changes_nothing_and_publishes_nothing(
    events_stub, quiet_upload, watch, make_token, service_token
):
    token = make_token(user_id=str(uuid.uuid4()))
    watcher = watch(events_stub, token).live()
    uploaded = upload_file(quiet_upload.stub, token, size=100)
    wrong_size = upload_pb2.ConfirmUploadRequest(s3_key=uploaded.s3_key, size=99, etag="e")
    for _ in range(2):  # not the object completion recorded: no change, nothing published
        quiet_upload.internal_stub.ConfirmUpload(
            wrong_size, metadata=[("x-dropfile-service-token", service_token)]
        )
    later = upload_file(quiet_upload.stub, token, size=10)  # a marker after both
    wait_until(
        lambda: watcher.saw(later.file_id, events_pb2.FILE_EVENT_STATUS_UPLOADING),
        what="the marker",
    )
    assert [e.status for e in watcher.events() if e.file_id == uploaded.file_id] == [
        events_pb2.FILE_EVENT_STATUS_UPLOADING
    ]


def test_the_stream_needs_a_user_token_and_a_sane_heartbeat(events_stub, make_token):
    request = events_pb2.WatchFileEventsRequest()
    with pytest.raises(grpc.RpcError) as info:
        next(iter(events_stub.WatchFileEvents(request)))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        next(
            iter(
                events_stub.WatchFileEvents(
                    request, metadata=bearer(make_token(user_id="not-a-uuid"))
                )
            )
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        next(
            iter(
                events_stub.WatchFileEvents(
                    events_pb2.WatchFileEventsRequest(heartbeat_seconds=301),
                    metadata=bearer(make_token()),
                )
            )
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.slow
def test_heartbeats_keep_a_quiet_stream_alive(events_stub, watch, make_token):
    watcher = watch(events_stub, make_token(), heartbeat_seconds=1).live()
    wait_until(lambda: watcher.heartbeats >= 3, what="heartbeats on a quiet stream")
    assert watcher.events() == [] and not watcher.ended.is_set()


def test_a_caller_hanging_up_ends_its_subscription(events_server, events_stub, watch, make_token):
    hub = hub_of(events_server)
    user_id = str(uuid.uuid4())
    watcher = watch(events_stub, make_token(user_id=user_id)).live()
    assert hub.streams_of(user_id) == 1
    watcher.close()
    wait_until(lambda: hub.streams_of(user_id) == 0, what="the subscription to end")
    assert watcher.error.code() == grpc.StatusCode.CANCELLED


def start_own_processor(common_settings, **overrides):
    settings = settings_for(
        EventsSettings, common_settings, sqs_queue_url=None, **NO_RECONCILING, **overrides
    )
    handle = create_server(settings, port=0)
    handle.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{handle.port}")
    return handle, channel, events_pb2_grpc.EventsServiceStub(channel)


@pytest.mark.slow
def test_a_stopping_server_ends_its_streams_at_once(common_settings, watch, make_token):
    handle, channel, stub = start_own_processor(common_settings)
    try:
        watcher = watch(stub, make_token()).live()
        stopped = handle.stop(10)  # a grace period the stream must not wait out
        assert watcher.ended.wait(5), "the stream outlived its server's stop"
        assert watcher.error.code() == grpc.StatusCode.UNAVAILABLE
        stopped.wait()
    finally:
        channel.close()


@pytest.mark.slow
def test_too_many_streams_are_refused(common_settings, watch, make_token):
    handle, channel, stub = start_own_processor(common_settings, watch_max_streams=1)
    try:
        watch(stub, make_token()).live()
        second = watch(stub, make_token())
        assert second.ended.wait(10)
        assert second.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()
        handle.stop(0).wait()


@pytest.mark.slow
def test_losing_redis_ends_the_streams_and_refuses_new_ones_until_it_is_back(
    common_settings, redis_url, quiet_upload, watch, make_token
):
    """Changes published while the feed is down are lost to it: a stream that stayed open
    would silently miss them, so it is ended and its client reconnects and re-lists."""
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    proxy = TcpProxy(host, int(port)).start()
    proxied = f"redis://127.0.0.1:{proxy.port}/0"
    handle, channel, stub = start_own_processor(common_settings, cloud_rd_uri=proxied)
    try:
        user_id = str(uuid.uuid4())
        token = make_token(user_id=user_id)
        watcher = watch(stub, token).live()
        proxy.cut()
        assert watcher.ended.wait(20), "the stream outlived the feed"
        assert watcher.error.code() == grpc.StatusCode.UNAVAILABLE
        refused = watch(stub, token)
        assert refused.ended.wait(20)
        assert refused.error.code() == grpc.StatusCode.UNAVAILABLE

        proxy.restore()
        hub = hub_of(handle)
        wait_until(lambda: hub.wait_ready(0.1), timeout=30, what="the feed to come back")
        again = watch(stub, token).live()
        uploaded = upload_file(quiet_upload.stub, token, size=10)
        wait_until(
            lambda: again.saw(uploaded.file_id, events_pb2.FILE_EVENT_STATUS_UPLOADING),
            what="changes to flow again",
        )
    finally:
        channel.close()
        handle.stop(0).wait()
        proxy.close()


def test_streams_are_counted_when_they_end(events_stub, watch, make_token):
    """Streams are in dropfile_grpc_requests_total like any call, by how they ended (the
    events server runs in this process, so its registry is this one)."""
    from prometheus_client import REGISTRY

    def count(code: str) -> float:
        return (
            REGISTRY.get_sample_value(
                "dropfile_grpc_requests_total",
                {
                    "service": "dropfile.events.v1.EventsService",
                    "method": "WatchFileEvents",
                    "code": code,
                },
            )
            or 0.0
        )

    before = {code: count(code) for code in ("CANCELLED", "UNAUTHENTICATED")}
    with pytest.raises(grpc.RpcError):
        next(iter(events_stub.WatchFileEvents(events_pb2.WatchFileEventsRequest())))
    watch(events_stub, make_token()).live().close()
    # At least: a stream an earlier test left may end (and be counted) meanwhile.
    wait_until(
        lambda: count("CANCELLED") >= before["CANCELLED"] + 1,
        timeout=30,
        what="the hung-up stream to be counted",
    )
    assert count("UNAUTHENTICATED") == before["UNAUTHENTICATED"] + 1
