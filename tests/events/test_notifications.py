"""Reading S3 event notifications: test events, key decoding, records that are not ours,
and bodies that can never be processed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.events.notifications import (
    Ignored,
    ObjectCreated,
    StorageTestEvent,
    UnprocessableMessage,
    decode_key,
    read_message,
)

BUCKET = "dropfile-bucket"


def record(
    event_name="ObjectCreated:CompleteMultipartUpload",
    bucket=BUCKET,
    key="users/u1/f1",
    size=1234,
    etag="abc123-2",
    event_time="2024-05-01T12:34:56.789Z",
    sequencer="0062E99A88DC407460",
    **overrides,
):
    obj = {"key": key, "size": size, "eTag": etag, "sequencer": sequencer}
    obj = {k: v for k, v in obj.items() if v is not None}
    raw = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": event_time,
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }
    if event_time is None:
        del raw["eventTime"]
    raw.update(overrides)
    return raw


def body(*records) -> str:
    return json.dumps({"Records": list(records)})


def test_object_created_record_becomes_a_confirmation_with_size_etag_and_time():
    [created] = read_message(body(record()), bucket=BUCKET)
    assert created == ObjectCreated(
        event_name="ObjectCreated:CompleteMultipartUpload",
        bucket=BUCKET,
        key="users/u1/f1",
        size=1234,
        etag="abc123-2",
        event_time=datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC),
        sequencer="0062E99A88DC407460",
    )


@pytest.mark.parametrize(
    "event_name",
    [
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
    ],
)
def test_every_object_created_kind_is_confirmed(event_name):
    [created] = read_message(body(record(event_name=event_name)), bucket=BUCKET)
    assert isinstance(created, ObjectCreated)


def test_quoted_etags_lose_their_quotes_and_time_and_sequencer_are_optional():
    [created] = read_message(
        body(record(etag='"d41d8cd98f00b204e9800998ecf8427e"', event_time=None, sequencer=None)),
        bucket=BUCKET,
    )
    assert created.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert created.event_time is None and created.sequencer is None


@pytest.mark.parametrize(
    "encoded,decoded",
    [
        ("users/u1/f1", "users/u1/f1"),
        ("my+file+name.txt", "my file name.txt"),
        ("a%2Bb%20c", "a+b c"),
        ("caf%C3%A9+%26+cr%C3%A8me%3F.pdf", "café & crème?.pdf"),
        ("dir%2Fsub/x%25y", "dir/sub/x%y"),
    ],
)
def test_keys_are_url_decoded_with_plus_for_spaces(encoded, decoded):
    assert decode_key(encoded) == decoded
    [created] = read_message(body(record(key=encoded)), bucket=BUCKET)
    assert created.key == decoded


def test_s3_test_event_is_recognised():
    message = json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2024-05-01T12:00:00.000Z",
            "Bucket": BUCKET,
            "RequestId": "X",
            "HostId": "Y",
        }
    )
    assert read_message(message, bucket=BUCKET) == StorageTestEvent(bucket=BUCKET)


def test_s3_test_event_of_another_bucket_is_still_just_a_test_event():
    message = json.dumps({"Event": "s3:TestEvent", "Bucket": "elsewhere"})
    assert read_message(message, bucket=BUCKET) == StorageTestEvent(bucket="elsewhere")


@pytest.mark.parametrize(
    "event_name",
    [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "ObjectRestore:Completed",
        "ObjectTagging:Put",
        "ObjectAcl:Put",
        "LifecycleExpiration:Delete",
    ],
)
def test_events_that_create_nothing_are_ignored_even_without_size_or_etag(event_name):
    [ignored] = read_message(
        body(record(event_name=event_name, size=None, etag=None, key="users/u1/my+file")),
        bucket=BUCKET,
    )
    assert isinstance(ignored, Ignored)
    assert ignored.event_name == event_name
    assert ignored.key == "users/u1/my file"
    assert "does not create an object" in ignored.reason


def test_records_of_other_buckets_are_ignored_whatever_they_hold():
    other = record(bucket="someone-else", size="not a number")
    del other["s3"]["object"]
    [ignored] = read_message(body(other), bucket=BUCKET)
    assert ignored == Ignored(
        event_name="ObjectCreated:CompleteMultipartUpload",
        bucket="someone-else",
        key=None,
        reason="bucket someone-else is not ours",
    )


def test_a_message_with_several_records_reads_each_in_order():
    records = read_message(
        body(
            record(key="users/u1/a"),
            record(bucket="other"),
            record(event_name="ObjectRemoved:Delete", key="users/u1/b"),
            record(key="users/u1/c", size=0),
        ),
        bucket=BUCKET,
    )
    assert [type(r) for r in records] == [ObjectCreated, Ignored, Ignored, ObjectCreated]
    assert records[3].key == "users/u1/c" and records[3].size == 0


def test_an_sns_envelope_is_unwrapped():
    envelope = json.dumps(
        {
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:dropfile",
            "Subject": "Amazon S3 Notification",
            "Message": body(record()),
        }
    )
    [created] = read_message(envelope, bucket=BUCKET)
    assert created.key == "users/u1/f1"


def test_an_sns_wrapped_test_event_is_a_test_event():
    envelope = json.dumps(
        {"Type": "Notification", "Message": json.dumps({"Event": "s3:TestEvent", "Bucket": BUCKET})}
    )
    assert read_message(envelope, bucket=BUCKET) == StorageTestEvent(bucket=BUCKET)


def without(path: str):
    """A record of our bucket with one field (dotted path) removed."""
    raw = record()
    *parents, last = path.split(".")
    target = raw
    for part in parents:
        target = target[part]
    del target[last]
    return raw


@pytest.mark.parametrize(
    "message,reason",
    [
        ("this is not json", "not valid JSON"),
        ("", "not valid JSON"),
        ('{"Records": [', "not valid JSON"),
        ("[1, 2, 3]", "not an object"),
        ('"just a string"', "not an object"),
        ("{}", "not an S3 event notification"),
        ('{"Hello": "world"}', "not an S3 event notification"),
        ('{"Records": []}', "non-empty list"),
        ('{"Records": {"eventName": "ObjectCreated:Put"}}', "non-empty list"),
        ('{"Records": ["x"]}', "Records[0] is not an object"),
        (body(without("eventName")), "Records[0].eventName is missing"),
        (body(record(event_name="")), "Records[0].eventName is missing"),
        (body(without("s3")), "Records[0].s3 is missing"),
        (body(without("s3.bucket")), "Records[0].s3.bucket is missing"),
        (body(without("s3.bucket.name")), "Records[0].s3.bucket.name is missing"),
        (body(without("s3.object")), "Records[0].s3.object is missing"),
        (body(without("s3.object.key")), "Records[0].s3.object.key is missing"),
        (body(record(key="")), "Records[0].s3.object.key is missing"),
        (body(without("s3.object.size")), "Records[0].s3.object.size"),
        (body(record(size="12")), "Records[0].s3.object.size"),
        (body(record(size=-1)), "Records[0].s3.object.size"),
        (body(record(size=True)), "Records[0].s3.object.size"),
        (body(record(size=1.5)), "Records[0].s3.object.size"),
        (body(without("s3.object.eTag")), "Records[0].s3.object.eTag"),
        (body(record(etag='""')), "Records[0].s3.object.eTag"),
        (body(record(event_time="yesterday")), "Records[0].eventTime is not an ISO-8601"),
        (body(record(event_time=12)), "Records[0].eventTime is not a string"),
        (body(record(), without("s3.object.size")), "Records[1].s3.object.size"),
        (json.dumps({"Type": "Notification", "Message": "not json"}), "SNS Message is not valid"),
        (
            json.dumps({"Type": "Notification", "Message": {"Records": []}}),
            "SNS Message is not a string",
        ),
    ],
)
def test_bodies_that_can_never_be_processed_say_why(message, reason):
    with pytest.raises(UnprocessableMessage) as info:
        read_message(message, bucket=BUCKET)
    assert reason in str(info.value)


def test_one_bad_record_makes_the_whole_message_unprocessable_before_anything_is_done():
    # The good first record must not be half-processed: reading fails as a whole.
    with pytest.raises(UnprocessableMessage):
        read_message(body(record(), record(etag=None)), bucket=BUCKET)
