"""The event processor against moto's SQS and S3, where no confirmation is involved or the
upload coordinator is out of reach: test events, messages that can never be processed
(dead-lettered by the redrive policy, never deleted by us), and an unreachable upload
service (messages kept in flight, then left undeleted when the processor stops).

Each test runs its own processor on its own queue (with a dead-letter queue,
maxReceiveCount=2)."""

from __future__ import annotations

import json
import logging

import grpc
import pytest

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from services.events.server import create_server
from services.events.settings import EventsSettings
from services.setup import ensure_bucket, ensure_notification
from tests.conftest import settings_for, wait_until
from tools.processes import free_port

from .helpers import dead_lettered_count, is_empty, messages_of, queue_counts, s3_record, stats


@pytest.fixture
def queue(make_queue):
    return make_queue()


def dead_letters(sqs, dlq_url: str, count: int) -> list[dict]:
    """Waits for `count` messages in the dead-letter queue and returns them."""
    found: dict[str, dict] = {}

    def collect():
        reply = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        )
        for message in reply.get("Messages", []):
            found[message["MessageId"]] = message
        return len(found) >= count

    wait_until(collect, timeout=30, what=f"{count} message(s) in the dead-letter queue")
    return list(found.values())


def test_storage_test_event_is_acknowledged_and_deleted(
    s3, sqs, queue, quiet_bucket, start_processor, make_token
):
    # Configuring a notification makes S3 send its test event to the queue.
    bucket = f"{quiet_bucket}-notified"
    ensure_bucket(s3, bucket, "us-east-1")
    ensure_notification(s3, bucket, queue.arn)
    assert queue_counts(sqs, queue.url)[0] == 1
    processor = start_processor(
        sqs_queue_url=queue.url, s3_bucket=bucket, upload_service_addr=f"127.0.0.1:{free_port()}"
    )
    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 1,
        what="the test event deleted",
    )
    counters = stats(processor.stub, make_token)
    assert counters.messages_received == 1
    assert (counters.messages_rejected, counters.transient_failures) == (0, 0)
    assert counters.last_processed_at.seconds > 0
    assert is_empty(sqs, queue.url) and is_empty(sqs, queue.dlq_url)


def test_records_of_other_buckets_and_removals_are_acknowledged_without_any_call(
    sqs, queue, quiet_bucket, start_processor, make_token
):
    # The upload service is unreachable: acknowledging these must not need it.
    processor = start_processor(
        sqs_queue_url=queue.url,
        s3_bucket=quiet_bucket,
        upload_service_addr=f"127.0.0.1:{free_port()}",
    )
    bodies = [
        {
            "Records": [
                s3_record(
                    "someone-elses-bucket",
                    "users/x/y",
                    size=5,
                    etag="e",
                    event_name="ObjectCreated:Put",
                )
            ]
        },
        {"Records": [s3_record(quiet_bucket, "users/x/y", event_name="ObjectRemoved:Delete")]},
        {"Records": [s3_record(quiet_bucket, "users/x/y", event_name="ObjectRestore:Completed")]},
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(body))
    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 3,
        what="three ignored messages deleted",
    )
    counters = stats(processor.stub, make_token)
    assert (counters.transient_failures, counters.uploads_confirmed) == (0, 0)
    assert is_empty(sqs, queue.url) and is_empty(sqs, queue.dlq_url)


@pytest.mark.slow
def test_unprocessable_messages_reach_the_dead_letter_queue_through_the_redrive_policy(
    sqs, queue, quiet_bucket, start_processor, make_token, caplog
):
    caplog.set_level(logging.WARNING, logger="services.events")
    processor = start_processor(sqs_queue_url=queue.url, s3_bucket=quiet_bucket)
    before = dead_lettered_count()
    not_json = sqs.send_message(QueueUrl=queue.url, MessageBody="this is not json {")
    no_size = sqs.send_message(
        QueueUrl=queue.url,
        MessageBody=json.dumps(
            {
                "Records": [
                    s3_record(quiet_bucket, "users/x/y", event_name="ObjectCreated:Put", etag="abc")
                ]
            }
        ),
    )

    dead = dead_letters(sqs, queue.dlq_url, 2)

    assert {m["MessageId"] for m in dead} == {not_json["MessageId"], no_size["MessageId"]}
    assert {m["Body"] for m in dead} >= {"this is not json {"}
    counters = stats(processor.stub, make_token)
    # Each was received maxReceiveCount (2) times, rejected each time, never deleted.
    assert counters.messages_rejected == 4
    assert counters.messages_received == 4
    assert counters.messages_deleted == 0
    assert is_empty(sqs, queue.url)
    # Left undeleted at their second receive: counted as dead letters, once each.
    assert dead_lettered_count() == before + 2
    for message_id, reason in (
        (not_json["MessageId"], "not valid JSON"),
        (no_size["MessageId"], "Records[0].s3.object.size"),
    ):
        lines = messages_of(caplog, f"rejecting message {message_id}")
        assert len(lines) == 2, lines
        assert all(reason in line and "dead-letter queue" in line for line in lines)


@pytest.mark.slow
def test_an_unreachable_upload_service_keeps_the_message_in_flight_until_stopped(
    s3, sqs, queue, quiet_bucket, start_processor, make_token
):
    # Nothing listens there: every ConfirmUpload is UNAVAILABLE. Visibility is short so
    # that, without the heartbeat, the message would come back and soon be dead-lettered.
    processor = start_processor(
        sqs_queue_url=queue.url,
        s3_bucket=quiet_bucket,
        upload_service_addr=f"127.0.0.1:{free_port()}",
        sqs_visibility_timeout_seconds=2,
    )
    body = json.dumps(
        {
            "Records": [
                s3_record(
                    quiet_bucket, "users/u/f", size=3, etag="e1", event_name="ObjectCreated:Put"
                )
            ]
        }
    )
    sent = sqs.send_message(QueueUrl=queue.url, MessageBody=body)

    # Retries span several visibility timeouts (backoff tops out at 1s in tests).
    wait_until(
        lambda: stats(processor.stub, make_token).transient_failures >= 8,
        timeout=30,
        what="repeated transient failures",
    )
    counters = stats(processor.stub, make_token)
    assert counters.messages_received == 1  # never delivered again meanwhile
    assert (counters.messages_deleted, counters.messages_rejected) == (0, 0)
    assert queue_counts(sqs, queue.url) == (0, 1)
    assert is_empty(sqs, queue.dlq_url)

    processor.stop()

    # Left undeleted, and made visible for the next consumer at once.
    assert queue_counts(sqs, queue.url) == (1, 0)
    assert is_empty(sqs, queue.dlq_url)
    reply = sqs.receive_message(
        QueueUrl=queue.url, MessageSystemAttributeNames=["All"], VisibilityTimeout=30
    )
    [message] = reply["Messages"]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "2"


@pytest.mark.slow
def test_a_stopped_processor_receives_nothing_more(
    sqs, queue, quiet_bucket, start_processor, make_token
):
    processor = start_processor(sqs_queue_url=queue.url, s3_bucket=quiet_bucket)
    sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    wait_until(
        lambda: stats(processor.stub, make_token).messages_deleted == 1,
        what="the first test event deleted",
    )

    processor.stop()

    sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"Event": "s3:TestEvent"}))
    assert queue_counts(sqs, queue.url) == (1, 0)  # nobody is receiving any more


@pytest.mark.slow
def test_without_a_queue_there_is_no_poller_but_stats_still_serve(common_settings, make_token):
    from services.events.reconciler import Reconciler
    from services.events.watch import FileEventHub

    settings = settings_for(EventsSettings, common_settings, sqs_queue_url=None)
    handle = create_server(settings, port=0)
    # No QueuePoller: the reconciler only (on a thread), and the live-status hub on the
    # server's event loop.
    assert [type(worker) for worker in handle.workers] == [Reconciler]
    assert [type(worker) for worker in handle.loop_workers] == [FileEventHub]
    handle.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            reply = events_pb2_grpc.EventsServiceStub(channel).GetStats(
                events_pb2.GetStatsRequest(), metadata=[("authorization", f"Bearer {make_token()}")]
            )
        assert reply.messages_received == 0
        assert not reply.HasField("last_processed_at")
    finally:
        handle.stop(0).wait()


def test_messages_are_processed_concurrently_and_only_as_many_are_received_as_slots_allow(
    sqs, queue, quiet_bucket, start_processor, make_token, caplog
):
    # With the upload service unreachable every message holds its slot, retrying: two run
    # at once, and the third waits in the queue, unreceived (no receive count burnt).
    caplog.set_level(logging.WARNING, logger="services.events")
    processor = start_processor(
        sqs_queue_url=queue.url,
        s3_bucket=quiet_bucket,
        upload_service_addr=f"127.0.0.1:{free_port()}",
        event_concurrency=2,
    )
    for index in range(3):
        sqs.send_message(
            QueueUrl=queue.url,
            MessageBody=json.dumps(
                {
                    "Records": [
                        s3_record(
                            quiet_bucket,
                            f"users/u/f{index}",
                            size=3,
                            etag="e1",
                            event_name="ObjectCreated:Put",
                        )
                    ]
                }
            ),
        )

    wait_until(
        lambda: stats(processor.stub, make_token).transient_failures >= 6,
        timeout=30,
        what="transient failures",
    )
    assert stats(processor.stub, make_token).messages_received == 2
    assert queue_counts(sqs, queue.url) == (1, 2)
    retried = {
        key
        for key in ("users/u/f0", "users/u/f1", "users/u/f2")
        if messages_of(caplog, f"confirming {key} failed transiently")
    }
    assert len(retried) == 2  # both in hand are retried side by side, not one after the other
