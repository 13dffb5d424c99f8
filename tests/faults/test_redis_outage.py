"""Redis holds upload sessions, a cache of PostgreSQL: stopped mid-upload, restarted, or
flushed, it costs no upload. A second coordinator (a replica that never saw the upload,
so has no session of its own in memory) carries on where the first started."""
from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest
import redis

from dropfile.upload.v1 import upload_pb2

from tests.upload.helpers import PART, completion, initiate, put_parts, record_parts

from .test_database_restart import _record, _stored


def test_uploads_go_on_while_redis_is_down_and_after_it_restarts(coordinator, own_valkey,
                                                                 user, s3, fault_bucket):
    first = coordinator()
    upload = initiate(first.api, user, 3 * PART)
    put_parts(upload)
    _record(first.api, user, upload, 0)

    own_valkey.stop()
    replica = coordinator()
    _record(replica.api, user, upload, 1)  # no session anywhere but PostgreSQL
    started_meanwhile = initiate(replica.api, user, PART)
    put_parts(started_meanwhile)
    record_parts(replica.api, user, started_meanwhile)

    own_valkey.start()
    _record(replica.api, user, upload, 2)
    first.api.CompleteUpload(completion(upload), metadata=user.metadata)
    replica.api.CompleteUpload(completion(started_meanwhile), metadata=user.metadata)
    for done in (upload, started_meanwhile):
        assert _stored(s3, fault_bucket, done) == done.data


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


def test_a_redis_that_never_answers_delays_calls_by_a_second_at_most(
        coordinator, hanging_redis, user, s3, fault_bucket):
    """Sessions are a cache: each Redis command gives up after a second, unretried (with
    redis-py's defaults a command took 20 s, and a part record on a replica without the
    session two of them: past the gateway's 30 s deadline)."""
    first = coordinator(cloud_rd_uri=hanging_redis)
    replica = coordinator(cloud_rd_uri=hanging_redis)
    durations = []

    def timed(call, *args, **kwargs):
        started = time.monotonic()
        result = call(*args, **kwargs, timeout=15)
        durations.append(time.monotonic() - started)
        return result

    upload = initiate(first.api, user, 2 * PART)
    put_parts(upload)
    for index in range(2):
        timed(replica.api.RecordPart, upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=index, size=PART,
            etag=upload.etags[index].strip('"')), metadata=user.metadata)
    timed(replica.api.CompleteUpload, completion(upload), metadata=user.metadata)
    assert max(durations) < 5, durations
    assert _stored(s3, fault_bucket, upload) == upload.data
