"""UploadInternalService.ConfirmUpload: storage's word moves a file to UPLOADED, once."""
from __future__ import annotations

import threading

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2

from .helpers import (assert_code, completion, confirm_request, initiate, listed, put_parts,
                      record_parts, upload_file)

Outcome = upload_pb2.ConfirmUploadResponse


def status_of(db_engine, file_id: str) -> tuple:
    with db_engine.connect() as conn:
        return tuple(conn.execute(text(
            "select status, size, etag, uploaded_at is not null, completed_at is not null "
            "from files where id = :id"), {"id": file_id}).one())


def test_confirm_then_duplicate(api, internal, alice, db_engine, service_metadata):
    upload = upload_file(api, alice, 1000)
    event_time = Timestamp()
    event_time.GetCurrentTime()
    request = upload_pb2.ConfirmUploadRequest(s3_key=upload.s3_key, size=1000,
                                              etag='"abc-1"', event_time=event_time)
    assert internal.ConfirmUpload(request, metadata=service_metadata).outcome == \
        Outcome.OUTCOME_CONFIRMED
    assert status_of(db_engine, upload.file_id) == ("UPLOADED", 1000, "abc-1", True, True)
    assert internal.ConfirmUpload(request, metadata=service_metadata).outcome == \
        Outcome.OUTCOME_ALREADY_CONFIRMED
    # Completing again changes nothing: UPLOADED never moves back.
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert status_of(db_engine, upload.file_id)[0] == "UPLOADED"


def test_unknown_key_is_an_outcome_not_an_error(internal, service_metadata):
    reply = internal.ConfirmUpload(upload_pb2.ConfirmUploadRequest(
        s3_key="users/nobody/nothing", size=1), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_UNKNOWN_KEY


def test_a_size_mismatch_rejects_the_file_and_removes_the_object(
        api, internal, alice, s3, bucket, db_engine, service_metadata):
    upload = upload_file(api, alice, 1000)
    reply = internal.ConfirmUpload(confirm_request(upload, size=999), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_REJECTED
    assert status_of(db_engine, upload.file_id)[:2] == ("FAILED", 1000)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=upload.s3_key)["KeyCount"] == 0
    # Once rejected, always rejected.
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_REJECTED


def test_an_aborted_upload_is_rejected(api, internal, alice, db_engine, service_metadata):
    upload = initiate(api, alice, 10)
    api.AbortUpload(upload_pb2.AbortUploadRequest(upload_id=upload.upload_id,
                                                  file_id=upload.file_id), metadata=alice.metadata)
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_REJECTED
    assert status_of(db_engine, upload.file_id)[0] == "FAILED"


def test_confirmation_before_complete_upload_recorded_completion(
        api, internal, alice, s3, bucket, db_engine, service_metadata):
    """Storage's event can overtake CompleteUpload's reply: the object exists but the row
    has no completed_at yet. The file is confirmed, and the late completion succeeds
    without moving it back."""
    upload = initiate(api, alice, 5000)
    put_parts(upload)
    record_parts(api, alice, upload)
    s3.complete_multipart_upload(Bucket=bucket, Key=upload.s3_key, UploadId=upload.upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": upload.etags[0]}]})
    assert status_of(db_engine, upload.file_id)[4] is False  # no completed_at yet
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == Outcome.OUTCOME_CONFIRMED
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert status_of(db_engine, upload.file_id)[0] == "UPLOADED"
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADED


def test_complete_after_storage_completed_but_the_row_was_not_updated(
        api, alice, s3, bucket, db_engine):
    """A completion whose storage call succeeded but whose row update was lost (crash):
    the retry finds storage's multipart upload gone and the object whole, and records it."""
    upload = initiate(api, alice, 5000)
    put_parts(upload)
    record_parts(api, alice, upload)
    s3.complete_multipart_upload(Bucket=bucket, Key=upload.s3_key, UploadId=upload.upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": upload.etags[0]}]})
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert status_of(db_engine, upload.file_id)[0::4] == ("UPLOADING", True)


def test_concurrent_duplicate_confirmations_confirm_once(api, internal, alice, db_engine,
                                                         service_metadata):
    upload = upload_file(api, alice, 1000)
    callers = 8
    barrier = threading.Barrier(callers)
    outcomes = []

    def confirm():
        barrier.wait()
        outcomes.append(internal.ConfirmUpload(confirm_request(upload),
                                               metadata=service_metadata).outcome)

    threads = [threading.Thread(target=confirm) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted([Outcome.OUTCOME_CONFIRMED]
                                      + [Outcome.OUTCOME_ALREADY_CONFIRMED] * (callers - 1))
    assert status_of(db_engine, upload.file_id)[0] == "UPLOADED"


def test_confirm_refuses_user_tokens_and_missing_credentials(internal, alice):
    request = upload_pb2.ConfirmUploadRequest(s3_key="users/x/y", size=1)
    for metadata in (alice.metadata, [], [("x-dropfile-service-token", "wrong" * 10)]):
        assert_code(grpc.StatusCode.PERMISSION_DENIED, internal.ConfirmUpload, request,
                    metadata=metadata)


def test_confirm_validates_its_input(internal, service_metadata):
    for request in (upload_pb2.ConfirmUploadRequest(size=1),
                    upload_pb2.ConfirmUploadRequest(s3_key="users/x/y", size=-1)):
        assert_code(grpc.StatusCode.INVALID_ARGUMENT, internal.ConfirmUpload, request,
                    metadata=service_metadata)
