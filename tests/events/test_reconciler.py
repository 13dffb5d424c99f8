"""The reconciler: confirming completed uploads by asking storage, without any event."""

from __future__ import annotations

import uuid

import grpc
import pytest

from dropfile.upload.v1 import upload_pb2
from services.events.settings import EventsSettings
from tests.conftest import settings_for, wait_until

from .helpers import bearer, file_status, upload_file


def test_without_a_queue_a_completed_upload_is_confirmed_by_asking_storage(
    start_processor, quiet_upload, quiet_bucket, make_token
):
    token = make_token()
    start_processor(
        sqs_queue_url=None,
        s3_bucket=quiet_bucket,
        upload_service_addr=quiet_upload.address,
        reconcile_interval_seconds=0.2,
    )
    uploaded = upload_file(quiet_upload.stub, token, size=6 * 1024 * 1024)
    wait_until(
        lambda: file_status(quiet_upload.stub, token, uploaded.file_id) == "FILE_STATUS_UPLOADED",
        timeout=10,
        what="the reconciler to confirm",
    )
    [listed] = [
        f
        for f in quiet_upload.stub.ListFiles(
            upload_pb2.ListFilesRequest(), metadata=bearer(token)
        ).files
        if f.file_id == uploaded.file_id
    ]
    assert listed.size == uploaded.size


def test_an_upload_not_completed_is_left_alone(
    start_processor, quiet_upload, quiet_bucket, make_token
):
    token = make_token()
    start_processor(
        sqs_queue_url=None,
        s3_bucket=quiet_bucket,
        upload_service_addr=quiet_upload.address,
        reconcile_interval_seconds=0.2,
    )
    file_id = str(uuid.uuid4())
    quiet_upload.stub.InitiateUpload(
        upload_pb2.InitiateUploadRequest(file_id=file_id, file_name="draft.txt", file_size=10),
        metadata=bearer(token),
    )
    confirmed = upload_file(quiet_upload.stub, token, size=1024)  # a marker that it ran
    wait_until(
        lambda: file_status(quiet_upload.stub, token, confirmed.file_id) == "FILE_STATUS_UPLOADED",
        timeout=10,
        what="a reconciliation round",
    )
    assert file_status(quiet_upload.stub, token, file_id) == "FILE_STATUS_UPLOADING"


def test_pending_confirmations_need_the_service_credential_and_honour_the_grace(
    quiet_upload, make_token, service_token
):
    token = make_token()
    uploaded = upload_file(quiet_upload.stub, token, size=2048)
    request = upload_pb2.ListPendingConfirmationsRequest(limit=1000)
    with pytest.raises(grpc.RpcError) as info:
        quiet_upload.internal_stub.ListPendingConfirmations(request, metadata=bearer(token))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    service = [("x-dropfile-service-token", service_token)]
    keys = {
        u.s3_key
        for u in quiet_upload.internal_stub.ListPendingConfirmations(
            request, metadata=service
        ).uploads
    }
    assert uploaded.s3_key in keys
    recent_excluded = {
        u.s3_key
        for u in quiet_upload.internal_stub.ListPendingConfirmations(
            upload_pb2.ListPendingConfirmationsRequest(
                completed_at_least_seconds_ago=3600, limit=1000
            ),
            metadata=service,
        ).uploads
    }
    assert uploaded.s3_key not in recent_excluded
    with pytest.raises(grpc.RpcError) as info:
        quiet_upload.internal_stub.ListPendingConfirmations(
            upload_pb2.ListPendingConfirmationsRequest(limit=5000), metadata=service
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_reconciler_defaults_follow_the_queue(common_settings):
    without_queue = settings_for(EventsSettings, common_settings, sqs_queue_url=None)
    with_queue = settings_for(EventsSettings, common_settings)
    assert (without_queue.reconcile_every, without_queue.reconcile_after) == (1.0, 0)
    assert with_queue.reconcile_every > 1 and with_queue.reconcile_after > 0


def test_an_object_put_at_the_key_of_an_upload_never_completed_is_not_confirmed(
    start_processor, quiet_upload, quiet_bucket, make_token, s3, service_token
):
    """The reconciler HEADs only completed uploads, and ConfirmUpload believes no HEAD (nor
    event) for an upload whose CompleteUpload never succeeded, whatever sits at its key."""
    token = make_token()
    start_processor(
        sqs_queue_url=None,
        s3_bucket=quiet_bucket,
        upload_service_addr=quiet_upload.address,
        reconcile_interval_seconds=0.2,
    )
    file_id = str(uuid.uuid4())
    started = quiet_upload.stub.InitiateUpload(
        upload_pb2.InitiateUploadRequest(file_id=file_id, file_name="victim.txt", file_size=10),
        metadata=bearer(token),
    )
    s3.put_object(Bucket=quiet_bucket, Key=started.s3_key, Body=b"0123456789")
    confirmed = upload_file(quiet_upload.stub, token, size=1024)  # a marker that it ran
    wait_until(
        lambda: file_status(quiet_upload.stub, token, confirmed.file_id) == "FILE_STATUS_UPLOADED",
        timeout=10,
        what="a reconciliation round",
    )
    assert file_status(quiet_upload.stub, token, file_id) == "FILE_STATUS_UPLOADING"
    # What the reconciler would send, were it asked: refused.
    head = s3.head_object(Bucket=quiet_bucket, Key=started.s3_key)
    reply = quiet_upload.internal_stub.ConfirmUpload(
        upload_pb2.ConfirmUploadRequest(
            s3_key=started.s3_key, size=head["ContentLength"], etag=head["ETag"]
        ),
        metadata=[("x-dropfile-service-token", service_token)],
    )
    assert reply.outcome == upload_pb2.ConfirmUploadResponse.OUTCOME_NOT_COMPLETED
    assert file_status(quiet_upload.stub, token, file_id) == "FILE_STATUS_UPLOADING"


def test_a_burst_of_completions_is_confirmed_without_waiting_a_round_per_batch(
    start_processor, quiet_upload, quiet_bucket, make_token, service_token
):
    """Rounds of a few uploads each, checked several at a time, follow each other at once
    while each finds its batch full and confirms some: twelve uploads in batches of five
    are confirmed long before a second interval (a minute) could pass."""
    token = make_token()
    uploads = [upload_file(quiet_upload.stub, token, size=1024) for _ in range(12)]
    ours = {u.s3_key for u in uploads}
    # Completions other tests left unconfirmed (their objects are in other buckets) come
    # first, oldest first, in every round: the batch holds them and five of ours.
    pending = quiet_upload.internal_stub.ListPendingConfirmations(
        upload_pb2.ListPendingConfirmationsRequest(limit=1000),
        metadata=[("x-dropfile-service-token", service_token)],
    ).uploads
    left_by_others = sum(u.s3_key not in ours for u in pending)
    assert left_by_others + 5 <= 1000, "too many unconfirmed uploads left in the database"
    start_processor(
        sqs_queue_url=None,
        s3_bucket=quiet_bucket,
        upload_service_addr=quiet_upload.address,
        reconcile_interval_seconds=60,
        reconcile_batch_size=left_by_others + 5,
        reconcile_concurrency=4,
    )
    wait_until(
        lambda: all(
            file_status(quiet_upload.stub, token, u.file_id) == "FILE_STATUS_UPLOADED"
            for u in uploads
        ),
        timeout=20,
        what="every upload of the burst to be confirmed",
    )
