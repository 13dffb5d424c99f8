"""Redis down, restarted or flushed mid-upload. Upload sessions are a cache of PostgreSQL,
and a caller whose sign-out a coordinator checked before keeps its last answer while
Redis is down (services/common/revocations.py): an upload in progress carries on. A
coordinator that never checked the caller refuses it UNAVAILABLE with RetryInfo (never
INTERNAL) until Redis is back. Restarted or emptied, Redis loses nothing: a second
coordinator (a replica without the session in memory) carries on where the first
started, and the uploads complete byte-exact."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
import redis

from dropfile.upload.v1 import upload_pb2
from services.upload.server import create_uploads
from services.upload.settings import UploadSettings
from tests.conftest import settings_for
from tests.upload.helpers import PART, completion, error_of, initiate, put_parts

from .conftest import assert_unavailable
from .test_database_restart import _record, _stored

pytestmark = pytest.mark.slow


def _until_served(call, *args, timeout: float = 10, **kwargs):
    """The call, again after its RetryInfo delay while it answers UNAVAILABLE (what a
    client does)."""
    give_up = time.monotonic() + timeout
    while True:
        try:
            return call(*args, **kwargs)
        except grpc.RpcError as err:
            delay = assert_unavailable(err)
            if time.monotonic() > give_up:
                raise
            time.sleep(min(delay, 0.5))


def test_an_upload_in_progress_carries_on_through_a_redis_outage(
    coordinator, own_valkey, user, s3, fault_bucket
):
    first = coordinator()
    upload = initiate(first.api, user, 4 * PART)
    put_parts(upload)
    _record(first.api, user, upload, 0)

    own_valkey.stop()
    _record(first.api, user, upload, 1)  # this caller was checked here before
    # A replica that never checked this caller cannot tell a signed-out session: it
    # refuses, UNAVAILABLE with RetryInfo (never INTERNAL), until Redis is back.
    replica = coordinator()
    assert_unavailable(error_of(_record, replica.api, user, upload, 2))
    own_valkey.start()

    _until_served(_record, replica.api, user, upload, 2)  # no session in its memory
    _until_served(_record, first.api, user, upload, 3)
    _until_served(replica.api.CompleteUpload, completion(upload), metadata=user.metadata)
    assert _stored(s3, fault_bucket, upload) == upload.data


def test_a_flushed_redis_loses_no_upload(coordinator, own_valkey, user, s3, fault_bucket):
    first = coordinator()
    upload = initiate(first.api, user, 3 * PART)
    put_parts(upload)
    _record(first.api, user, upload, 0)
    sessions = redis.Redis.from_url(own_valkey.url)
    assert sessions.keys("dropfile:upload:*")

    own_valkey.flushall()
    assert not sessions.keys("*")
    replica = coordinator()
    _record(replica.api, user, upload, 1)
    _record(first.api, user, upload, 2)
    replica.api.CompleteUpload(completion(upload), metadata=user.metadata)
    assert _stored(s3, fault_bucket, upload) == upload.data


@pytest.fixture
def hanging_redis() -> Iterator[str]:
    """A Redis address that accepts connections and never answers (a failover in
    progress, a host that stopped answering): every command times out."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_redis_that_never_answers_costs_a_second_not_a_deadline(
    coordinator, common_settings, own_postgres, fault_bucket, hanging_redis, user
):
    """With redis-py's defaults a session command waited 20 s (4 attempts of 5 s), and
    a part record on a replica without the session made two: past the gateway's 30 s
    deadline. The coordinator's session cache gives up after a second, unretried, and its
    calls answer UNAVAILABLE in time."""
    settings = settings_for(
        UploadSettings,
        common_settings,
        cloud_db_uri=own_postgres.url,
        cloud_rd_uri=hanging_redis,
        s3_bucket=fault_bucket,
    )
    sessions = create_uploads(settings).core.sessions
    started = time.monotonic()
    assert sessions.get(uuid.uuid4()) is None  # a miss: the caller reads PostgreSQL
    assert time.monotonic() - started < 2.5

    api = coordinator(cloud_rd_uri=hanging_redis).api
    started = time.monotonic()
    err = error_of(api.ListFiles, upload_pb2.ListFilesRequest(), metadata=user.metadata, timeout=15)
    assert_unavailable(err)
    assert time.monotonic() - started < 5
