"""PostgreSQL restarts (fast or immediate shutdown) in the middle of the upload
coordinator's calls: each call either waits it out (retried) or answers UNAVAILABLE with
RetryInfo, never INTERNAL, and the same uploads complete byte-exact afterwards."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import psycopg2
import pytest

from dropfile.upload.v1 import upload_pb2
from tests.upload.helpers import PART, completion, error_of, initiate, put_parts, record_parts

from .conftest import assert_unavailable

pytestmark = pytest.mark.slow

DOWN_SECONDS = 1.0


@contextmanager
def database_restarting(postgres, *, mode: str, down_seconds: float = DOWN_SECONDS):
    """PostgreSQL is stopped (`mode`) before the block and started again `down_seconds`
    later, while the block runs."""
    postgres.stop(mode)
    restart = threading.Timer(down_seconds, postgres.start)
    restart.start()
    try:
        yield
    finally:
        restart.join()


def _record(api, user, upload, index):
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id,
            chunk_index=index,
            size=PART,
            etag=upload.etags[index].strip('"'),
        ),
        metadata=user.metadata,
    )


def _record_batch(api, user, upload, indexes):
    token = dict(user.metadata)["authorization"].removeprefix("Bearer ")
    reply = api.RecordParts(
        upload_pb2.RecordPartsRequest(
            records=[
                upload_pb2.PartRecord(
                    access_token=token,
                    part=upload_pb2.RecordPartRequest(
                        file_id=upload.file_id,
                        chunk_index=index,
                        size=PART,
                        etag=upload.etags[index].strip('"'),
                    ),
                )
                for index in indexes
            ]
        )
    )
    assert [result.code for result in reply.results] == [0] * len(indexes), reply


def _stored(s3, bucket, upload) -> bytes:
    return s3.get_object(Bucket=bucket, Key=upload.s3_key)["Body"].read()


def _ready_to_complete(api, user, size=2 * PART):
    upload = initiate(api, user, size)
    put_parts(upload)
    record_parts(api, user, upload)
    return upload


@pytest.mark.parametrize(
    "operation,mode",
    [
        ("initiate", "fast"),
        ("record", "immediate"),
        ("record_batch", "fast"),
        ("complete", "immediate"),
        ("list", "fast"),
    ],
)
def test_each_call_waits_out_a_database_restart(
    coordinator, own_postgres, user, s3, fault_bucket, operation, mode
):
    api = coordinator().api
    upload = None
    if operation in ("record", "record_batch"):
        upload = initiate(api, user, 3 * PART)
        put_parts(upload)
        _record(api, user, upload, 0)  # the pools hold connections the restart kills
    elif operation in ("complete", "list"):
        upload = _ready_to_complete(api, user)
        if operation == "list":
            api.CompleteUpload(completion(upload), metadata=user.metadata)

    started = time.monotonic()
    with database_restarting(own_postgres, mode=mode):
        if operation == "initiate":
            upload = initiate(api, user, 2 * PART)
        elif operation == "record":
            _record(api, user, upload, 1)
        elif operation == "record_batch":
            _record_batch(api, user, upload, [1, 2])
        elif operation == "complete":
            api.CompleteUpload(completion(upload), metadata=user.metadata)
        else:
            files = api.ListFiles(upload_pb2.ListFilesRequest(), metadata=user.metadata).files
            assert [f.file_id for f in files] == [upload.file_id]
    assert time.monotonic() - started >= DOWN_SECONDS * 0.8  # it did meet the outage

    if operation == "initiate":
        put_parts(upload)
        record_parts(api, user, upload)
    elif operation == "record":
        _record(api, user, upload, 2)
    if operation in ("initiate", "record", "record_batch"):
        api.CompleteUpload(completion(upload), metadata=user.metadata)
    assert _stored(s3, fault_bucket, upload) == upload.data


def test_an_outage_longer_than_the_retries_is_unavailable_and_loses_nothing(
    coordinator, own_postgres, user, s3, fault_bucket
):
    api = coordinator(database_retry_seconds=0.3).api
    recording = initiate(api, user, 2 * PART)
    put_parts(recording)
    _record(api, user, recording, 0)
    completing = _ready_to_complete(api, user)
    new_id = "6f1c2a4e-0000-4000-8000-00000000f00d"

    own_postgres.stop("immediate")
    calls = {
        "initiate": lambda: initiate(api, user, PART, file_id=new_id),
        "record": lambda: _record(api, user, recording, 1),
        "record_batch": lambda: api.RecordParts(
            upload_pb2.RecordPartsRequest(
                records=[
                    upload_pb2.PartRecord(
                        access_token=dict(user.metadata)["authorization"].removeprefix("Bearer "),
                        part=upload_pb2.RecordPartRequest(
                            file_id=recording.file_id,
                            chunk_index=index,
                            size=PART,
                            etag=recording.etags[index].strip('"'),
                        ),
                    )
                    for index in (0, 1)
                ]
            )
        ),
        "complete": lambda: api.CompleteUpload(completion(completing), metadata=user.metadata),
        "list": lambda: api.ListFiles(upload_pb2.ListFilesRequest(), metadata=user.metadata),
        "get": lambda: api.GetUpload(
            upload_pb2.GetUploadRequest(file_id=recording.file_id), metadata=user.metadata
        ),
    }
    for name, call in calls.items():
        delay = assert_unavailable(error_of(call))
        assert delay > 0, name
    own_postgres.start()

    _record(api, user, recording, 1)
    api.CompleteUpload(completion(recording), metadata=user.metadata)
    api.CompleteUpload(completion(completing), metadata=user.metadata)
    late = initiate(api, user, PART, file_id=new_id)  # the refused initiation left nothing
    put_parts(late)
    record_parts(api, user, late)
    api.CompleteUpload(completion(late), metadata=user.metadata)
    for upload in (recording, completing, late):
        assert _stored(s3, fault_bucket, upload) == upload.data


def test_a_database_shutting_down_is_unavailable_not_internal(
    coordinator, own_postgres, user, s3, fault_bucket
):
    """ "the database system is shutting down": what a new connection meets while
    PostgreSQL waits for its sessions to end (a smart shutdown, a held session). A fresh
    coordinator has no connection yet, so its part record (the prepared statement's raw
    connection) must connect, and is refused."""
    first = coordinator()
    upload = initiate(first.api, user, 2 * PART)  # the session is in Redis
    put_parts(upload)
    held = psycopg2.connect(own_postgres.url)
    try:
        own_postgres.begin_stop("smart")  # waits for `held` to end: shutting down
        time.sleep(0.3)
        fresh = coordinator(database_retry_seconds=0.3)
        err = error_of(_record, fresh.api, user, upload, 0)
        assert_unavailable(err)
        with pytest.raises(psycopg2.OperationalError, match="shutting down"):
            psycopg2.connect(own_postgres.url)
    finally:
        held.close()
    own_postgres.stop("fast")
    own_postgres.start()
    _record(fresh.api, user, upload, 0)
    _record(fresh.api, user, upload, 1)
    fresh.api.CompleteUpload(completion(upload), metadata=user.metadata)
    assert _stored(s3, fault_bucket, upload) == upload.data


def test_retries_end_before_the_caller_stops_waiting(coordinator, own_postgres, user):
    """A caller with a short deadline gets UNAVAILABLE (with RetryInfo) within it, not
    DEADLINE_EXCEEDED after the coordinator kept retrying for DATABASE_RETRY_SECONDS: an
    outage does not pile up workers retrying for callers that are gone."""
    api = coordinator(database_retry_seconds=20).api
    api.ListFiles(upload_pb2.ListFilesRequest(), metadata=user.metadata)
    own_postgres.stop("fast")
    started = time.monotonic()
    assert_unavailable(
        error_of(api.ListFiles, upload_pb2.ListFilesRequest(), metadata=user.metadata, timeout=1.5)
    )
    assert time.monotonic() - started < 1.5
