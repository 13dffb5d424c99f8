"""Races around completion and the reaper, made deterministic: each side is stopped at a
known point (tests/storage_gate.py holds a request to storage, before it reaches storage or
after storage did it and before the caller hears; tests/upload/pg_barriers.py holds a
PostgreSQL row lock), the other side acts, then the first is let go. No sleeps, no luck.

Each race must end in one consistent state, and where the user did nothing wrong their file
is intact: an upload being completed is never failed (or its object deleted) by the reaper,
nor is one storage completed whose confirmation is late, or whose completion the
coordinator never recorded. Real PostgreSQL, Redis and moto (through the gate)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2
from services.common.clients import aws_client
from services.upload.reaper import create_reaper
from services.upload.settings import UploadSettings
from tests.conftest import REGION, settings_for, wait_until
from tests.storage_gate import StorageGate

from .helpers import (
    PART,
    RunningUpload,
    completion,
    confirm_request,
    initiate,
    put_parts,
    record_parts,
    running_upload_server,
)
from .pg_barriers import holding

COMPLETE = ("POST", "uploadId=")  # CompleteMultipartUpload (CreateMultipartUpload is ?uploads)
ABORT = ("DELETE", "uploadId=")  # AbortMultipartUpload (DeleteObject has no uploadId)


@pytest.fixture(scope="module")
def gate(moto_endpoint) -> Iterator[StorageGate]:
    gate = StorageGate(moto_endpoint).start()
    yield gate
    gate.stop()


@pytest.fixture(scope="module")
def races_bucket(s3) -> str:
    name = f"dropfile-races-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def races_settings(common_settings, gate, races_bucket, isolated_redis_url) -> UploadSettings:
    """The coordinator and the reapers talk to storage through the gate."""
    return settings_for(
        UploadSettings,
        common_settings,
        aws_endpoint_url=gate.endpoint,
        s3_bucket=races_bucket,
        cloud_rd_uri=isolated_redis_url,
    )


@pytest.fixture(scope="module")
def coordinator(races_settings) -> Iterator[RunningUpload]:
    with running_upload_server(races_settings) as running:
        yield running


@pytest.fixture
def reaper(races_settings):
    one = create_reaper(races_settings)
    yield one
    one.stop()


@pytest.fixture(scope="module")
def side() -> Iterator[Callable[..., Future]]:
    """Runs a call on a thread of its own: side(fn, *args) -> Future."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield pool.submit


def outcome(future: Future) -> grpc.StatusCode | None:
    """None when the call succeeded, else its gRPC status code."""
    try:
        future.result(timeout=60)
    except grpc.RpcError as exc:
        return exc.code()
    return None


def lock_waiters(db_engine) -> int:
    """Backends of this run's database waiting for a lock."""
    with db_engine.connect() as conn:
        return conn.execute(
            text(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock'"
            )
        ).scalar_one()


def wait_blocked(db_engine, future: Future, what: str) -> None:
    """Until the call waits for a lock; fails if it finished without waiting."""
    wait_until(lambda: future.done() or lock_waiters(db_engine) >= 1, timeout=30, what=what)
    assert not future.done(), f"{what}: it went ahead ({outcome(future)})"


def make_idle(db_engine, file_id: str, *, hours: int = 25) -> None:
    """Everything about the upload happened `hours` ago (the default TTL is 24 h)."""
    with db_engine.begin() as conn:
        conn.execute(
            text("""
            update files set updated_at = now() - make_interval(hours => :h),
                             completed_at = completed_at - make_interval(hours => :h)
            where id = :id"""),
            {"id": file_id, "h": hours},
        )
        conn.execute(
            text(
                "update chunks set created_at = now() - make_interval(hours => :h) "
                "where file_id = :id"
            ),
            {"id": file_id, "h": hours},
        )


def row(db_engine, file_id: str) -> dict:
    with db_engine.connect() as conn:
        found = (
            conn.execute(
                text(
                    "select status, completed_at, "
                    "(select count(*) from chunks where file_id = f.id) "
                    "as chunks from files f where id = :id"
                ),
                {"id": file_id},
            )
            .mappings()
            .first()
        )
    return dict(found) if found else {}


def stored(s3, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def multipart_uploads(s3, bucket: str, key: str) -> list[str]:
    return [
        item["UploadId"]
        for item in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
    ]


def ready_to_complete(api, user, size: int = PART + 1000):
    """An upload whose parts are all stored and recorded."""
    upload = initiate(api, user, size)
    put_parts(upload)
    record_parts(api, user, upload)
    return upload


def complete(api, user, upload) -> None:
    api.CompleteUpload(completion(upload), metadata=user.metadata)


def assert_uploaded_once_confirmed(
    coordinator, service_metadata, db_engine, s3, bucket, upload
) -> None:
    """Completed (storage holds the bytes), and storage's confirmation makes it UPLOADED."""
    state = row(db_engine, upload.file_id)
    assert state["status"] == "UPLOADING" and state["completed_at"] is not None, state
    assert stored(s3, bucket, upload.s3_key) == upload.data
    reply = coordinator.internal_stub.ConfirmUpload(
        confirm_request(upload), metadata=service_metadata
    )
    assert reply.outcome == upload_pb2.ConfirmUploadResponse.OUTCOME_CONFIRMED
    assert row(db_engine, upload.file_id)["status"] == "UPLOADED"


# -- two completions ---------------------------------------------------------------------


def test_two_completions_at_once_both_succeed_and_storage_completes_once(
    coordinator, gate, side, alice, s3, races_bucket, db_engine, service_metadata
):
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    with gate.hold(*COMPLETE, after_forwarding=True) as held:
        first = side(complete, api, alice, upload)
        held.wait_arrived()  # storage made the object; the first has not heard yet
        second = side(complete, api, alice, upload)
        wait_blocked(db_engine, second, "the second completion to wait for the first")
    assert (outcome(first), outcome(second)) == (None, None)
    assert held.count == 1  # the second found it complete: storage was asked once
    assert_uploaded_once_confirmed(
        coordinator, service_metadata, db_engine, s3, races_bucket, upload
    )


# -- completion against the reaper --------------------------------------------------------


def test_the_reaper_leaves_an_upload_being_completed_alone(
    coordinator, gate, side, reaper, alice, s3, races_bucket, db_engine, service_metadata
):
    """The upload's last part was recorded just over the TTL ago, and the user completes it
    now: storage completes it while a reaper passes. Before, the reaper failed it and
    deleted the user's object, and the completion answered UPLOAD_ABORTED."""
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    make_idle(db_engine, upload.file_id)
    with gate.hold(*COMPLETE, after_forwarding=True) as held:
        completing = side(complete, api, alice, upload)
        held.wait_arrived()  # the object exists; the completion is not recorded yet
        reaper.expire_idle_uploads()
        assert row(db_engine, upload.file_id)["status"] == "UPLOADING"
        assert stored(s3, races_bucket, upload.s3_key) == upload.data
    assert outcome(completing) is None
    # Completed now: later rounds leave it to storage's confirmation, however late.
    reaper.expire_idle_uploads()
    assert_uploaded_once_confirmed(
        coordinator, service_metadata, db_engine, s3, races_bucket, upload
    )


def test_a_completion_after_the_reaper_claimed_the_upload_is_refused_and_leaves_nothing(
    coordinator, gate, side, reaper, alice, s3, races_bucket, db_engine
):
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    make_idle(db_engine, upload.file_id)
    with gate.hold(*ABORT, after_forwarding=False) as held:
        reaping = side(reaper.expire_idle_uploads)
        held.wait_arrived()  # the reaper holds the row; storage not touched yet
        completing = side(complete, api, alice, upload)
        wait_blocked(db_engine, completing, "the completion to wait for the reaper")
    reaping.result(timeout=60)
    assert outcome(completing) == grpc.StatusCode.FAILED_PRECONDITION
    assert row(db_engine, upload.file_id) == {"status": "FAILED", "completed_at": None, "chunks": 0}
    assert stored(s3, races_bucket, upload.s3_key) is None
    assert multipart_uploads(s3, races_bucket, upload.s3_key) == []


def test_an_abort_during_a_completion_waits_and_is_refused_the_file_intact(
    coordinator, gate, side, alice, s3, races_bucket, db_engine, service_metadata
):
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    with gate.hold(*COMPLETE, after_forwarding=True) as held:
        completing = side(complete, api, alice, upload)
        held.wait_arrived()
        aborting = side(
            api.AbortUpload,
            upload_pb2.AbortUploadRequest(file_id=upload.file_id, upload_id=upload.upload_id),
            metadata=alice.metadata,
        )
        wait_blocked(db_engine, aborting, "the abort to wait for the completion")
    assert outcome(completing) is None
    assert outcome(aborting) == grpc.StatusCode.FAILED_PRECONDITION  # complete: delete it
    assert_uploaded_once_confirmed(
        coordinator, service_metadata, db_engine, s3, races_bucket, upload
    )


def test_a_delete_during_a_completion_leaves_neither_row_nor_object(
    coordinator, gate, side, alice, s3, races_bucket, db_engine
):
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    with gate.hold(*COMPLETE, after_forwarding=True) as held:
        completing = side(complete, api, alice, upload)
        held.wait_arrived()
        deleting = side(
            api.DeleteFile,
            upload_pb2.DeleteFileRequest(file_id=upload.file_id),
            metadata=alice.metadata,
        )
        wait_blocked(db_engine, deleting, "the delete to wait for the completion")
    outcome(completing)  # succeeded, or refused once the file was gone: either is consistent
    assert outcome(deleting) is None
    assert row(db_engine, upload.file_id) == {}
    assert stored(s3, races_bucket, upload.s3_key) is None
    assert multipart_uploads(s3, races_bucket, upload.s3_key) == []


# -- recording a part against the reaper ----------------------------------------------------


def test_a_part_recorded_while_the_reaper_holds_the_upload_is_refused_and_not_kept(
    coordinator, gate, side, reaper, alice, s3, races_bucket, db_engine
):
    api = coordinator.stub
    upload = initiate(api, alice, PART + 1000)
    put_parts(upload)  # stored, not recorded yet
    make_idle(db_engine, upload.file_id)
    with gate.hold(*ABORT, after_forwarding=False) as held:
        reaping = side(reaper.expire_idle_uploads)
        held.wait_arrived()
        recording = side(
            api.RecordPart,
            upload_pb2.RecordPartRequest(
                file_id=upload.file_id, chunk_index=1, size=1000, etag=upload.etags[1].strip('"')
            ),
            metadata=alice.metadata,
        )
        wait_blocked(db_engine, recording, "the record to wait for the reaper")
    reaping.result(timeout=60)
    assert outcome(recording) == grpc.StatusCode.FAILED_PRECONDITION
    assert row(db_engine, upload.file_id) == {"status": "FAILED", "completed_at": None, "chunks": 0}
    assert multipart_uploads(s3, races_bucket, upload.s3_key) == []


def test_a_part_being_recorded_keeps_the_upload_alive(
    coordinator, side, reaper, alice, s3, races_bucket, db_engine
):
    """A retried part (recorded again) is in flight when the reaper passes: the reaper
    skips the upload, and the record counts as activity on the next pass. Before, a part
    recorded again kept its first time, and the next pass failed the upload."""
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    make_idle(db_engine, upload.file_id)
    # The test holds the recorded part's row: the retry stops inside its statement, holding
    # its share lock on the file's row.
    with holding(
        db_engine,
        "select 1 from chunks where file_id = :id and chunk_index = 0 for update",
        {"id": upload.file_id},
    ) as held:
        recording = side(
            api.RecordPart,
            upload_pb2.RecordPartRequest(
                file_id=upload.file_id, chunk_index=0, size=PART, etag=upload.etags[0].strip('"')
            ),
            metadata=alice.metadata,
        )
        held.wait_for_waiters(1, "the record to wait for the part's row")
        reaper.expire_idle_uploads()
        assert row(db_engine, upload.file_id)["status"] == "UPLOADING"
    assert outcome(recording) is None
    reaper.expire_idle_uploads()
    assert row(db_engine, upload.file_id)["status"] == "UPLOADING"
    assert multipart_uploads(s3, races_bucket, upload.s3_key) == [upload.upload_id]
    complete(api, alice, upload)
    assert stored(s3, races_bucket, upload.s3_key) == upload.data


# -- completed, not confirmed --------------------------------------------------------------


def test_a_completed_upload_whose_confirmation_is_late_outlives_the_ttl(
    coordinator, reaper, alice, s3, races_bucket, db_engine, service_metadata
):
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    complete(api, alice, upload)
    make_idle(db_engine, upload.file_id, hours=72)
    reaper.run_once()
    assert_uploaded_once_confirmed(
        coordinator, service_metadata, db_engine, s3, races_bucket, upload
    )


def test_an_upload_storage_completed_without_the_coordinator_recording_it_is_kept(
    coordinator, reaper, alice, moto_endpoint, races_bucket, db_engine, service_metadata
):
    """Storage completed the upload but the coordinator never recorded it (its reply, or
    its commit, was lost) and the client did not retry: the object is the user's file.
    Before, the reaper failed the upload and deleted it."""
    s3 = aws_client("s3", region=REGION, endpoint_url=moto_endpoint)
    api = coordinator.stub
    upload = ready_to_complete(api, alice)
    s3.complete_multipart_upload(
        Bucket=races_bucket,
        Key=upload.s3_key,
        UploadId=upload.upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": number, "ETag": etag} for number, etag in enumerate(upload.etags, 1)
            ]
        },
    )
    make_idle(db_engine, upload.file_id)
    reaper.expire_idle_uploads()
    assert_uploaded_once_confirmed(
        coordinator, service_metadata, db_engine, s3, races_bucket, upload
    )
