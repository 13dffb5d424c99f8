"""UploadInternalService.ConfirmUpload: storage's word moves a file to UPLOADED, once."""

from __future__ import annotations

import threading

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2

from .helpers import (
    assert_code,
    completion,
    confirm_request,
    initiate,
    listed,
    put_parts,
    record_parts,
    upload_file,
)

Outcome = upload_pb2.ConfirmUploadResponse


def status_of(db_engine, file_id: str) -> tuple:
    with db_engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "select status, size, etag, uploaded_at is not null, completed_at is not null "
                    "from files where id = :id"
                ),
                {"id": file_id},
            ).one()
        )


def test_confirm_then_duplicate(api, internal, alice, s3, bucket, db_engine, service_metadata):
    upload = upload_file(api, alice, 1000)
    stored_etag = s3.head_object(Bucket=bucket, Key=upload.s3_key)["ETag"].strip('"')
    # CompleteUpload recorded the object's ETag: events are checked against it.
    assert status_of(db_engine, upload.file_id) == ("UPLOADING", 1000, stored_etag, False, True)
    event_time = Timestamp()
    event_time.GetCurrentTime()
    request = confirm_request(upload, etag=f'"{stored_etag}"')
    request.event_time.CopyFrom(event_time)
    assert (
        internal.ConfirmUpload(request, metadata=service_metadata).outcome
        == Outcome.OUTCOME_CONFIRMED
    )
    assert status_of(db_engine, upload.file_id) == ("UPLOADED", 1000, stored_etag, True, True)
    assert (
        internal.ConfirmUpload(request, metadata=service_metadata).outcome
        == Outcome.OUTCOME_ALREADY_CONFIRMED
    )
    # Completing again changes nothing: UPLOADED never moves back.
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert status_of(db_engine, upload.file_id)[0] == "UPLOADED"


def test_unknown_key_is_an_outcome_not_an_error(internal, service_metadata):
    reply = internal.ConfirmUpload(
        upload_pb2.ConfirmUploadRequest(s3_key="users/nobody/nothing", size=1),
        metadata=service_metadata,
    )
    assert reply.outcome == Outcome.OUTCOME_UNKNOWN_KEY


@pytest.mark.parametrize("lie", ["size", "etag"])
def test_an_event_that_does_not_describe_the_completed_object_changes_nothing(
    lie, api, internal, alice, s3, bucket, db_engine, service_metadata
):
    upload = upload_file(api, alice, 1000)
    before = status_of(db_engine, upload.file_id)
    request = (
        confirm_request(upload, size=999)
        if lie == "size"
        else confirm_request(upload, etag="0123456789abcdef0123456789abcdef-1")
    )
    for _ in range(2):
        reply = internal.ConfirmUpload(request, metadata=service_metadata)
        assert reply.outcome == Outcome.OUTCOME_STALE
    assert status_of(db_engine, upload.file_id) == before  # UPLOADING, completed
    assert s3.list_objects_v2(Bucket=bucket, Prefix=upload.s3_key)["KeyCount"] == 1
    # The true event still confirms it; a lie after that changes nothing either.
    assert (
        internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata).outcome
        == Outcome.OUTCOME_CONFIRMED
    )
    assert (
        internal.ConfirmUpload(request, metadata=service_metadata).outcome == Outcome.OUTCOME_STALE
    )
    assert status_of(db_engine, upload.file_id)[:3] == ("UPLOADED", 1000, before[2])


def test_an_aborted_upload_is_rejected(api, internal, alice, db_engine, service_metadata):
    upload = initiate(api, alice, 10)
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(upload_id=upload.upload_id, file_id=upload.file_id),
        metadata=alice.metadata,
    )
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_REJECTED
    assert status_of(db_engine, upload.file_id)[0] == "FAILED"


def test_an_object_at_the_key_of_an_upload_never_completed_confirms_nothing(
    api, internal, alice, s3, bucket, db_engine, service_metadata
):
    """Whoever can write at the key (a PUT outside Dropfile, or a forged message naming the
    object's true size and ETag) cannot make an upload that was never completed UPLOADED."""
    upload = initiate(api, alice, 5000)
    put_parts(upload)
    record_parts(api, alice, upload)
    put = s3.put_object(Bucket=bucket, Key=upload.s3_key, Body=upload.data)
    forged = confirm_request(upload, etag=put["ETag"])
    for _ in range(3):
        assert (
            internal.ConfirmUpload(forged, metadata=service_metadata).outcome
            == Outcome.OUTCOME_NOT_COMPLETED
        )
    assert status_of(db_engine, upload.file_id) == ("UPLOADING", 5000, None, False, False)
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADING


def test_an_event_that_overtakes_the_recorded_completion_confirms_once_it_is_recorded(
    api, internal, alice, s3, bucket, db_engine, service_metadata
):
    """Storage's event can overtake CompleteUpload's commit: the object exists but the row
    has no completed_at yet. Nothing changes until completion is recorded; the same event,
    delivered again, then confirms the file."""
    upload = initiate(api, alice, 5000)
    put_parts(upload)
    record_parts(api, alice, upload)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=upload.s3_key,
        UploadId=upload.upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": upload.etags[0]}]},
    )
    assert status_of(db_engine, upload.file_id)[4] is False  # no completed_at yet
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_NOT_COMPLETED
    api.CompleteUpload(completion(upload), metadata=alice.metadata)  # finds storage's object
    assert status_of(db_engine, upload.file_id)[::4] == ("UPLOADING", True)
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_CONFIRMED
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADED


def test_an_old_event_for_a_deleted_file_whose_id_was_created_again_changes_nothing(
    api, internal, alice, s3, bucket, db_engine, service_metadata
):
    first = upload_file(api, alice, 3000)
    old_event = confirm_request(first)
    assert (
        internal.ConfirmUpload(old_event, metadata=service_metadata).outcome
        == Outcome.OUTCOME_CONFIRMED
    )
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=first.file_id), metadata=alice.metadata)
    # The same id again (same key): other bytes of the same size.
    again = initiate(api, alice, 3000, file_id=first.file_id)
    assert again.s3_key == first.s3_key
    assert (
        internal.ConfirmUpload(old_event, metadata=service_metadata).outcome
        == Outcome.OUTCOME_NOT_COMPLETED
    )  # while it uploads
    put_parts(again)
    record_parts(api, alice, again)
    api.CompleteUpload(completion(again), metadata=alice.metadata)
    assert (
        internal.ConfirmUpload(old_event, metadata=service_metadata).outcome
        == Outcome.OUTCOME_STALE
    )  # once completed: not this object
    assert status_of(db_engine, again.file_id)[0] == "UPLOADING"
    assert (
        internal.ConfirmUpload(confirm_request(again), metadata=service_metadata).outcome
        == Outcome.OUTCOME_CONFIRMED
    )


def test_complete_after_storage_completed_but_the_row_was_not_updated(
    api, alice, s3, bucket, db_engine
):
    """A completion whose storage call succeeded but whose row update was lost (crash):
    the retry finds storage's multipart upload gone and the object whole, and records it."""
    upload = initiate(api, alice, 5000)
    put_parts(upload)
    record_parts(api, alice, upload)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=upload.s3_key,
        UploadId=upload.upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": upload.etags[0]}]},
    )
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert status_of(db_engine, upload.file_id)[0::4] == ("UPLOADING", True)


def test_concurrent_duplicate_confirmations_confirm_once(
    api, internal, alice, db_engine, service_metadata
):
    upload = upload_file(api, alice, 1000)
    callers = 8
    barrier = threading.Barrier(callers)
    outcomes = []

    def confirm():
        barrier.wait()
        outcomes.append(
            internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata).outcome
        )

    threads = [threading.Thread(target=confirm) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted(
        [Outcome.OUTCOME_CONFIRMED] + [Outcome.OUTCOME_ALREADY_CONFIRMED] * (callers - 1)
    )
    assert status_of(db_engine, upload.file_id)[0] == "UPLOADED"


def test_confirm_refuses_user_tokens_and_missing_credentials(internal, alice):
    request = upload_pb2.ConfirmUploadRequest(s3_key="users/x/y", size=1)
    for metadata in (alice.metadata, [], [("x-dropfile-service-token", "wrong" * 10)]):
        assert_code(
            grpc.StatusCode.PERMISSION_DENIED, internal.ConfirmUpload, request, metadata=metadata
        )


def test_confirm_validates_its_input(internal, service_metadata):
    for request in (
        upload_pb2.ConfirmUploadRequest(size=1),
        upload_pb2.ConfirmUploadRequest(s3_key="users/x/y", size=-1),
    ):
        assert_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            internal.ConfirmUpload,
            request,
            metadata=service_metadata,
        )
