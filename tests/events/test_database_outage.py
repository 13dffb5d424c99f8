"""The upload coordinator's database goes away while an event is being processed: the
event is retried (kept in flight, never acknowledged, never dead-lettered) until the
database is back, and then confirms the upload. The database is cut with a TCP proxy
between a dedicated upload coordinator and PostgreSQL; its pool recovers on its own
(pool_pre_ping)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tests.conftest import wait_until

from .helpers import created_event, file_status, is_empty, queue_counts, stats, upload_file

pytestmark = pytest.mark.slow


def status_in_database(db_engine, file_id: str) -> str:
    with db_engine.connect() as conn:  # directly, not through the proxy
        return conn.execute(
            text("select status::text from files where id = :id"), {"id": file_id}
        ).scalar_one()


def test_an_event_outlives_a_database_outage_and_then_confirms_the_upload(
    database_proxy,
    proxied_upload,
    quiet_bucket,
    make_queue,
    start_processor,
    make_token,
    s3,
    sqs,
    db_engine,
):
    proxy, _ = database_proxy
    queue = make_queue()
    token = make_token(str(uuid.uuid4()))
    uploaded = upload_file(proxied_upload.stub, token, size=2500)
    event = created_event(s3, quiet_bucket, uploaded.s3_key)
    # A short visibility timeout: without the heartbeat the message would be received
    # again within seconds, and dead-lettered on its third receive (maxReceiveCount=2).
    processor = start_processor(
        sqs_queue_url=queue.url,
        s3_bucket=quiet_bucket,
        upload_service_addr=proxied_upload.address,
        sqs_visibility_timeout_seconds=2,
    )

    proxy.cut()
    try:
        sqs.send_message(QueueUrl=queue.url, MessageBody=event)
        wait_until(
            lambda: stats(processor.stub, make_token).transient_failures >= 8,
            timeout=60,
            what="repeated transient failures while the database is down",
        )
        during = stats(processor.stub, make_token)
        assert during.messages_received == 1  # kept in flight, not delivered again
        assert (during.messages_deleted, during.messages_rejected) == (0, 0)
        assert during.uploads_confirmed == 0
        assert queue_counts(sqs, queue.url) == (0, 1)
        assert is_empty(sqs, queue.dlq_url)
        assert status_in_database(db_engine, uploaded.file_id) == "UPLOADING"
    finally:
        proxy.restore()

    wait_until(
        lambda: status_in_database(db_engine, uploaded.file_id) == "UPLOADED",
        timeout=30,
        what="the file UPLOADED once the database is back",
    )
    wait_until(lambda: is_empty(sqs, queue.url), what="the message deleted")
    after = stats(processor.stub, make_token)
    assert (after.messages_received, after.messages_deleted) == (1, 1)
    assert after.uploads_confirmed == 1
    assert is_empty(sqs, queue.dlq_url)
    assert file_status(proxied_upload.stub, token, uploaded.file_id) == "FILE_STATUS_UPLOADED"
