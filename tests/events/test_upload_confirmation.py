"""Storage events confirm uploads through the real upload coordinator.

The first tests use the session stack: a real multipart upload on the shared bucket, whose
events reach the shared queue and the session processor (`events_server`). The others run
their own processor on their own queue, against an upload coordinator on a bucket that
sends no events (`quiet_upload`), so the test alone decides which events arrive and when.
"""

from __future__ import annotations

import json
import logging
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from dropfile.events.v1 import events_pb2
from dropfile.upload.v1 import upload_pb2
from services.events.server import SERVICE_NAME
from tests.conftest import wait_until

from .helpers import (
    bearer,
    created_event,
    dead_lettered_count,
    file_status,
    is_empty,
    messages_of,
    removed_event,
    s3_record,
    stats,
    upload_file,
)

MIB = 1024 * 1024
UPLOADED, UPLOADING = "FILE_STATUS_UPLOADED", "FILE_STATUS_UPLOADING"


def stored_etag(db_engine, file_id: str) -> str | None:
    with db_engine.connect() as conn:
        return conn.execute(
            text("select etag from files where id = :id"), {"id": file_id}
        ).scalar_one()


# -- the session stack ----------------------------------------------------------------------


def test_health_is_serving_and_stats_need_a_user_token(
    events_server, events_channel, events_stub, make_token
):
    health = health_pb2_grpc.HealthStub(events_channel)
    for service in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        events_stub.GetStats(events_pb2.GetStatsRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        events_stub.GetStats(
            events_pb2.GetStatsRequest(), metadata=[("authorization", "Bearer forged")]
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    counters = stats(events_stub, make_token)
    assert counters.messages_received >= counters.messages_deleted >= 0


@pytest.mark.slow
def test_a_completed_multipart_upload_becomes_uploaded_through_its_storage_events(
    events_server, events_stub, upload_stub, make_token, s3, sqs, storage, db_engine
):
    # Earlier tests' events are done with, so the counters move for this upload only.
    wait_until(lambda: is_empty(sqs, storage["queue_url"]), timeout=30)
    before = stats(events_stub, make_token)
    token = make_token(str(uuid.uuid4()))
    uploaded = upload_file(upload_stub, token, size=5 * MIB + 1234, file_name="two parts.bin")

    wait_until(
        lambda: file_status(upload_stub, token, uploaded.file_id) == UPLOADED,
        timeout=30,
        what="the file UPLOADED",
    )

    head = s3.head_object(Bucket=storage["bucket"], Key=uploaded.s3_key)
    assert stored_etag(db_engine, uploaded.file_id) == head["ETag"].strip('"')
    assert head["ETag"].strip('"').endswith("-2")  # a two-part multipart object
    # moto sends two events for one completion (Put and CompleteMultipartUpload): the
    # duplicate finds the file confirmed; both messages are deleted.
    wait_until(
        lambda: is_empty(sqs, storage["queue_url"]), timeout=30, what="the session queue drained"
    )
    after = stats(events_stub, make_token)
    assert after.uploads_confirmed == before.uploads_confirmed + 1
    assert after.messages_deleted >= before.messages_deleted + 2
    assert after.messages_rejected == before.messages_rejected
    assert is_empty(sqs, storage["dlq_url"])


def test_an_object_no_file_owns_is_acknowledged_and_logged(
    events_server, events_stub, s3, sqs, storage, make_token, caplog
):
    caplog.set_level(logging.INFO, logger="services.events")
    key = f"strays/{uuid.uuid4()}/a stray + file.txt"
    s3.put_object(Bucket=storage["bucket"], Key=key, Body=b"not uploaded through Dropfile")

    wait_until(
        lambda: messages_of(caplog, f"no file has key {key}"),
        timeout=30,
        what="the unknown key logged",
    )
    wait_until(
        lambda: is_empty(sqs, storage["queue_url"]), timeout=30, what="the session queue drained"
    )
    assert is_empty(sqs, storage["dlq_url"])


# -- a processor of its own -----------------------------------------------------------------


@pytest.fixture
def pipeline(make_queue, quiet_bucket, quiet_upload, start_processor):
    """A queue and a processor of this test's own, confirming through `quiet_upload`."""
    queue = make_queue()
    processor = start_processor(
        sqs_queue_url=queue.url, s3_bucket=quiet_bucket, upload_service_addr=quiet_upload.address
    )
    return queue, processor


@pytest.mark.slow
def test_duplicate_events_confirm_once_and_are_all_deleted(
    pipeline, quiet_upload, quiet_bucket, make_token, s3, sqs, db_engine
):
    queue, processor = pipeline
    token = make_token(str(uuid.uuid4()))
    uploaded = upload_file(quiet_upload.stub, token, size=1000)
    event = created_event(s3, quiet_bucket, uploaded.s3_key)
    assert file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADING

    for _ in range(4):
        sqs.send_message(QueueUrl=queue.url, MessageBody=event)

    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 4,
        timeout=30,
        what="four duplicates deleted",
    )
    counters = stats(processor.stub, make_token)
    assert counters.uploads_confirmed == 1
    assert (counters.messages_rejected, counters.messages_failed) == (0, 0)
    assert file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADED
    assert is_empty(sqs, queue.url) and is_empty(sqs, queue.dlq_url)


def test_a_removal_seen_before_the_creation_does_not_stop_the_confirmation(
    pipeline, quiet_upload, quiet_bucket, make_token, s3, sqs
):
    queue, processor = pipeline
    token = make_token(str(uuid.uuid4()))
    uploaded = upload_file(quiet_upload.stub, token, size=2000)

    sqs.send_message(
        QueueUrl=queue.url,
        MessageBody=removed_event(quiet_bucket, uploaded.s3_key, sequencer="0055AED6DCD90281E6"),
    )
    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 1,
        what="the removal acknowledged",
    )
    assert file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADING

    sqs.send_message(
        QueueUrl=queue.url,
        MessageBody=created_event(
            s3, quiet_bucket, uploaded.s3_key, sequencer="0055AED6DCD90281E5"
        ),
    )
    wait_until(
        lambda: file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADED,
        timeout=30,
        what="the file UPLOADED",
    )
    wait_until(lambda: is_empty(sqs, queue.url), what="the queue drained")
    assert stats(processor.stub, make_token).uploads_confirmed == 1


@pytest.mark.slow
def test_creations_in_reverse_sequencer_order_confirm_once(
    pipeline, quiet_upload, quiet_bucket, make_token, s3, sqs, db_engine
):
    queue, processor = pipeline
    token = make_token(str(uuid.uuid4()))
    uploaded = upload_file(quiet_upload.stub, token, size=3000)
    etag = s3.head_object(Bucket=quiet_bucket, Key=uploaded.s3_key)["ETag"].strip('"')

    later = created_event(
        s3,
        quiet_bucket,
        uploaded.s3_key,
        sequencer="0062E99A88DC407461",
        event_name="ObjectCreated:CompleteMultipartUpload",
    )
    earlier = created_event(
        s3,
        quiet_bucket,
        uploaded.s3_key,
        sequencer="0062E99A88DC407460",
        event_name="ObjectCreated:Put",
    )
    sqs.send_message(QueueUrl=queue.url, MessageBody=later)
    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 1,
        what="the later event processed",
    )
    sqs.send_message(QueueUrl=queue.url, MessageBody=earlier)
    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 2,
        what="the earlier event processed",
    )

    assert file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADED
    assert stored_etag(db_engine, uploaded.file_id) == etag
    assert stats(processor.stub, make_token).uploads_confirmed == 1


@pytest.mark.parametrize("lie", ["size", "etag"])
def test_an_event_naming_another_object_is_acknowledged_and_changes_nothing(
    lie, pipeline, quiet_upload, quiet_bucket, make_token, s3, sqs, caplog
):
    caplog.set_level(logging.INFO, logger="services.events")
    queue, processor = pipeline
    token = make_token(str(uuid.uuid4()))
    uploaded = upload_file(quiet_upload.stub, token, size=4000)
    etag = s3.head_object(Bucket=quiet_bucket, Key=uploaded.s3_key)["ETag"].strip('"')
    size, etag = (3999, etag) if lie == "size" else (4000, "0123456789abcdef0123456789abcdef")
    before = dead_lettered_count()
    sqs.send_message(
        QueueUrl=queue.url,
        MessageBody=json.dumps(
            {
                "Records": [
                    s3_record(
                        quiet_bucket,
                        uploaded.s3_key,
                        event_name="ObjectCreated:Put",
                        size=size,
                        etag=etag,
                    )
                ]
            }
        ),
    )

    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 1,
        timeout=30,
        what="the stale event acknowledged",
    )
    assert file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADING
    assert messages_of(caplog, f"event for {uploaded.s3_key} names an object")
    assert stats(processor.stub, make_token).uploads_confirmed == 0
    assert s3.head_object(Bucket=quiet_bucket, Key=uploaded.s3_key)["ContentLength"] == 4000
    assert dead_lettered_count() == before
    # The true event still confirms it.
    sqs.send_message(
        QueueUrl=queue.url, MessageBody=created_event(s3, quiet_bucket, uploaded.s3_key)
    )
    wait_until(
        lambda: file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADED,
        timeout=30,
        what="the file UPLOADED",
    )


@pytest.mark.slow
def test_a_forged_message_for_an_upload_never_completed_changes_nothing_and_is_dead_lettered(
    pipeline, quiet_upload, quiet_bucket, make_token, s3, sqs, caplog
):
    """Someone who can write to the bucket, or send to the queue, puts an object at the key
    of an upload still receiving parts and sends the event S3 would send for it."""
    caplog.set_level(logging.INFO, logger="services.events")
    queue, processor = pipeline  # maxReceiveCount 2
    token = make_token(str(uuid.uuid4()))
    file_id = str(uuid.uuid4())
    started = quiet_upload.stub.InitiateUpload(
        upload_pb2.InitiateUploadRequest(file_id=file_id, file_name="victim.bin", file_size=10),
        metadata=bearer(token),
    )
    s3.put_object(Bucket=quiet_bucket, Key=started.s3_key, Body=b"0123456789")
    before = dead_lettered_count()
    sent = sqs.send_message(
        QueueUrl=queue.url, MessageBody=created_event(s3, quiet_bucket, started.s3_key)
    )

    def dead_letters():
        return sqs.receive_message(
            QueueUrl=queue.dlq_url, WaitTimeSeconds=0, VisibilityTimeout=60
        ).get("Messages")

    [dead] = wait_until(dead_letters, timeout=30, what="the forged message dead-lettered")
    assert dead["MessageId"] == sent["MessageId"]
    assert file_status(quiet_upload.stub, token, file_id) == UPLOADING
    counters = stats(processor.stub, make_token)
    assert (counters.uploads_confirmed, counters.messages_deleted) == (0, 0)
    assert counters.messages_received == 2  # deferred on each receive, never deleted
    assert len(messages_of(caplog, f"the upload of {started.s3_key} is not completed")) == 2
    assert dead_lettered_count() == before + 1
    assert is_empty(sqs, queue.url)


def test_a_late_event_of_a_deleted_file_whose_id_was_created_again_changes_nothing(
    pipeline, quiet_upload, quiet_bucket, make_token, s3, sqs, db_engine
):
    queue, processor = pipeline
    token = make_token(str(uuid.uuid4()))
    first = upload_file(quiet_upload.stub, token, size=3000)
    old_event = created_event(s3, quiet_bucket, first.s3_key)
    sqs.send_message(QueueUrl=queue.url, MessageBody=old_event)
    wait_until(
        lambda: file_status(quiet_upload.stub, token, first.file_id) == UPLOADED,
        timeout=30,
        what="the first file UPLOADED",
    )
    quiet_upload.stub.DeleteFile(
        upload_pb2.DeleteFileRequest(file_id=first.file_id), metadata=bearer(token)
    )
    again = upload_file(
        quiet_upload.stub, token, size=3000, file_id=first.file_id, first_byte=7
    )  # same id, same key, other bytes
    assert again.s3_key == first.s3_key

    sqs.send_message(QueueUrl=queue.url, MessageBody=old_event)  # late, or redelivered
    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 2,
        timeout=30,
        what="the late event acknowledged",
    )
    assert file_status(quiet_upload.stub, token, again.file_id) == UPLOADING
    assert stats(processor.stub, make_token).uploads_confirmed == 1
    sqs.send_message(QueueUrl=queue.url, MessageBody=created_event(s3, quiet_bucket, again.s3_key))
    wait_until(
        lambda: file_status(quiet_upload.stub, token, again.file_id) == UPLOADED,
        timeout=30,
        what="the new object's own event confirming it",
    )
    assert stored_etag(db_engine, again.file_id) == s3.head_object(
        Bucket=quiet_bucket, Key=again.s3_key
    )["ETag"].strip('"')


@pytest.mark.slow
def test_a_refused_service_credential_is_never_acknowledged(
    make_queue, quiet_bucket, quiet_upload, start_processor, make_token, s3, sqs, caplog
):
    caplog.set_level(logging.WARNING, logger="services.events")
    queue = make_queue()
    processor = start_processor(
        sqs_queue_url=queue.url,
        s3_bucket=quiet_bucket,
        upload_service_addr=quiet_upload.address,
        service_token="not-the-stack-service-token-" + "x" * 8,
        sqs_visibility_timeout_seconds=2,
    )
    token = make_token(str(uuid.uuid4()))
    uploaded = upload_file(quiet_upload.stub, token, size=1500)
    sent = sqs.send_message(
        QueueUrl=queue.url, MessageBody=created_event(s3, quiet_bucket, uploaded.s3_key)
    )

    # PERMISSION_DENIED is nobody's transient failure nor the message's fault: the message
    # is left for SQS to deliver again, and the redrive policy dead-letters it in the end.
    def dead_lettered():
        reply = sqs.receive_message(QueueUrl=queue.dlq_url, WaitTimeSeconds=0)
        return reply.get("Messages")

    [dead] = wait_until(dead_lettered, timeout=30, what="the message dead-lettered")
    assert dead["MessageId"] == sent["MessageId"]
    counters = stats(processor.stub, make_token)
    assert counters.messages_failed == 2
    assert (counters.messages_deleted, counters.uploads_confirmed) == (0, 0)
    assert file_status(quiet_upload.stub, token, uploaded.file_id) == UPLOADING
    assert messages_of(caplog, "PERMISSION_DENIED")
