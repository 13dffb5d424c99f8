"""The reaper over real PostgreSQL, Redis and moto's S3: uploads idle past the TTL end FAILED
with nothing left in the bucket, multipart uploads no file knows are aborted, and several
reapers at once each do a part of the work, never the same part twice; and the setup
command's lifecycle rule, the reaper's backstop in storage.

Uploads are made idle by moving their rows' times back (moto cannot age a multipart upload:
it says every one was initiated in 2010, which makes each orphan old enough). Every test here
uses a bucket of its own, so the orphan scans touch no other test's uploads."""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
import redis
from botocore.exceptions import ClientError
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2
from services.common.clients import aws_client
from services.common.file_events import FileStatusChange, channel_of
from services.setup import LIFECYCLE_RULE_ID, ensure_lifecycle, lifecycle_days
from services.upload.metrics import REAPER_ACTIONS
from services.upload.reaper import EXPIRED, ORPHAN_ABORTED, create_reaper
from services.upload.settings import UploadSettings
from tests.conftest import settings_for, wait_until

from .helpers import PART, assert_code, initiate, listed, put_part, running_upload_server

IDLE_SQL = """
    UPDATE files SET updated_at = now() - make_interval(hours => :hours) WHERE id = :id;
    UPDATE chunks SET created_at = now() - make_interval(hours => :hours) WHERE file_id = :id;
"""


@pytest.fixture(scope="module")
def reaper_bucket(s3) -> str:
    name = f"dropfile-reaper-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def reaper_settings(common_settings, reaper_bucket, isolated_redis_url) -> UploadSettings:
    return settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=reaper_bucket,
        cloud_rd_uri=isolated_redis_url,
        reaper_batch_size=2,
    )


@pytest.fixture(scope="module")
def coordinator(reaper_settings):
    with running_upload_server(reaper_settings) as running:
        yield running


@pytest.fixture
def reaper(reaper_settings):
    made = []

    def make():
        made.append(create_reaper(reaper_settings))
        return made[-1]

    yield make
    for one in made:
        one.stop()


def make_idle(db_engine, file_id: str, *, hours: int = 25) -> None:
    """The file and its parts last changed `hours` ago (the default TTL is 24 h)."""
    with db_engine.begin() as conn:
        for statement in IDLE_SQL.strip().split(";")[:2]:
            conn.execute(text(statement), {"id": file_id, "hours": hours})


def status_of(db_engine, file_id: str) -> str:
    with db_engine.connect() as conn:
        return conn.execute(
            text("select status from files where id = :id"), {"id": file_id}
        ).scalar_one()


def chunk_count(db_engine, file_id: str) -> int:
    with db_engine.connect() as conn:
        return conn.execute(
            text("select count(*) from chunks where file_id = :id"), {"id": file_id}
        ).scalar_one()


def idle_file_ids(db_engine) -> set[str]:
    """Every upload in the database idle past 24 h: what a round must fail."""
    with db_engine.connect() as conn:
        return {
            str(row[0])
            for row in conn.execute(
                text("""
            select f.id from files f
            where f.status = 'UPLOADING' and f.completed_at is null
              and coalesce((select max(c.created_at) from chunks c where c.file_id = f.id),
                           f.updated_at) < now() - interval '24 hours'
              and f.updated_at < now() - interval '24 hours'""")
            )
        }


def multipart_uploads(s3, bucket: str, prefix: str = "") -> set[tuple[str, str]]:
    reply = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return {(item["Key"], item["UploadId"]) for item in reply.get("Uploads", [])}


def objects(s3, bucket: str, prefix: str) -> list[str]:
    return [
        item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    ]


def started_with_a_part(api, user):
    """An upload of two parts, the first PUT and recorded."""
    upload = initiate(api, user, PART + 100)
    etag = put_part(upload.reply.part_urls[0], upload.data[:PART])
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=0, size=PART, etag=etag.strip('"')
        ),
        metadata=user.metadata,
    )
    upload.etags = [etag]
    return upload


def orphan(s3, bucket: str) -> tuple[str, str]:
    """A multipart upload under users/ with a stored part, that no file row knows."""
    key = f"users/{uuid.uuid4()}/{uuid.uuid4()}"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
    return key, upload_id


def counter(action: str) -> float:
    return REAPER_ACTIONS.labels(action)._value.get()


@contextmanager
def file_events(redis_url: str, user_id: str) -> Iterator[list[FileStatusChange]]:
    """The status changes published for `user_id` while the block runs (read at its end)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.subscribe(channel_of(user_id))
    # Redis confirms once it delivers to us: publications from then on arrive.
    wait_until(
        lambda: (pubsub.get_message(timeout=0.1) or {}).get("type") == "subscribe",
        what="Redis to confirm the subscription",
    )
    seen: list[FileStatusChange] = []
    try:
        yield seen
    finally:
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            if message["type"] == "message":
                seen.append(FileStatusChange.from_json(message["data"]))
        pubsub.close()
        client.close()


@pytest.mark.slow
def test_an_abandoned_upload_past_its_ttl_ends_failed_with_nothing_left_in_the_bucket(
    coordinator, reaper, new_user, s3, reaper_bucket, db_engine, isolated_redis_url
):
    user = new_user()
    api = coordinator.stub
    abandoned = started_with_a_part(api, user)
    active = started_with_a_part(api, user)
    make_idle(db_engine, abandoned.file_id)
    assert (abandoned.s3_key, abandoned.upload_id) in multipart_uploads(s3, reaper_bucket)
    sessions = redis.Redis.from_url(isolated_redis_url)
    assert sessions.exists(f"dropfile:upload:{abandoned.file_id}")
    expired_before = counter(EXPIRED)

    with file_events(isolated_redis_url, user.user_id) as events:
        report = reaper().run_once()

    assert report.expired >= 1
    assert status_of(db_engine, abandoned.file_id) == "FAILED"
    assert listed(api, user, abandoned.file_id).status == upload_pb2.FILE_STATUS_FAILED
    assert multipart_uploads(s3, reaper_bucket, abandoned.s3_key) == set()
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket=reaper_bucket, Key=abandoned.s3_key, UploadId=abandoned.upload_id)
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"
    assert objects(s3, reaper_bucket, abandoned.s3_key) == []
    assert chunk_count(db_engine, abandoned.file_id) == 0
    assert not sessions.exists(f"dropfile:upload:{abandoned.file_id}")
    assert counter(EXPIRED) - expired_before == report.expired
    assert [(e.file_id, e.status) for e in events] == [(abandoned.file_id, "FAILED")]
    # The owner finds it over; nothing more can be added to it.
    assert_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        api.RecordPart,
        upload_pb2.RecordPartRequest(
            file_id=abandoned.file_id, chunk_index=0, size=PART, etag=abandoned.etags[0].strip('"')
        ),
        metadata=user.metadata,
    )
    # The upload still in use is untouched.
    assert status_of(db_engine, active.file_id) == "UPLOADING"
    assert (active.s3_key, active.upload_id) in multipart_uploads(s3, reaper_bucket)
    assert chunk_count(db_engine, active.file_id) == 1


def test_a_part_recorded_within_the_ttl_keeps_an_old_upload_alive(
    coordinator, reaper, new_user, s3, reaper_bucket, db_engine
):
    user = new_user()
    upload = started_with_a_part(api := coordinator.stub, user)
    make_idle(db_engine, upload.file_id)
    etag = put_part(upload.reply.part_urls[1], upload.data[PART:])
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=1, size=100, etag=etag.strip('"')
        ),
        metadata=user.metadata,
    )

    reaper().run_once()

    assert status_of(db_engine, upload.file_id) == "UPLOADING"
    assert (upload.s3_key, upload.upload_id) in multipart_uploads(s3, reaper_bucket)


def test_an_abandoned_single_put_upload_loses_its_object(
    coordinator, reaper, new_user, s3, reaper_bucket, db_engine
):
    """PUT but never completed: no multipart upload to abort; the object goes, the file
    ends FAILED (an upload PUT and completed in time is confirmed, never reaped)."""
    user = new_user()
    api = coordinator.stub
    data = b"abandoned" * 100
    created = api.CreateUpload(
        upload_pb2.CreateUploadRequest(
            file_id=str(uuid.uuid4()), file_name="a.bin", file_size=len(data), single_put=True
        ),
        metadata=user.metadata,
    )
    never_put = api.CreateUpload(
        upload_pb2.CreateUploadRequest(
            file_id=str(uuid.uuid4()), file_name="b.bin", file_size=len(data), single_put=True
        ),
        metadata=user.metadata,
    )
    s3.put_object(Bucket=reaper_bucket, Key=created.s3_key, Body=data)
    for file_id in (created.file_id, never_put.file_id):
        make_idle(db_engine, file_id)

    report = reaper().run_once()

    assert report.expired >= 2
    assert status_of(db_engine, created.file_id) == "FAILED"
    assert status_of(db_engine, never_put.file_id) == "FAILED"
    assert objects(s3, reaper_bucket, created.s3_key) == []
    assert multipart_uploads(s3, reaper_bucket, created.s3_key) == set()


def test_an_orphaned_multipart_upload_with_no_row_is_aborted(
    coordinator, reaper, new_user, s3, reaper_bucket, db_engine
):
    user = new_user()
    live = started_with_a_part(coordinator.stub, user)
    key, upload_id = orphan(s3, reaper_bucket)
    # Not Dropfile's key space: left alone whatever it is.
    foreign = s3.create_multipart_upload(Bucket=reaper_bucket, Key="imports/x.bin")["UploadId"]
    aborted_before = counter(ORPHAN_ABORTED)

    aborted = reaper().abort_orphaned_uploads()

    assert aborted >= 1
    assert counter(ORPHAN_ABORTED) - aborted_before == aborted
    remaining = multipart_uploads(s3, reaper_bucket)
    assert (key, upload_id) not in remaining
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket=reaper_bucket, Key=key, UploadId=upload_id)
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"
    assert (live.s3_key, live.upload_id) in remaining
    assert ("imports/x.bin", foreign) in remaining
    assert status_of(db_engine, live.file_id) == "UPLOADING"


def test_a_multipart_upload_of_a_failed_file_is_an_orphan_too(
    coordinator, reaper, new_user, s3, reaper_bucket, db_engine
):
    """A row that no longer expects parts does not protect a multipart upload of its key
    (a crash between marking the file FAILED and aborting in storage)."""
    user = new_user()
    upload = started_with_a_part(coordinator.stub, user)
    with db_engine.begin() as conn:
        conn.execute(
            text("update files set status = 'FAILED' where id = :id"), {"id": upload.file_id}
        )

    reaper().abort_orphaned_uploads()

    assert multipart_uploads(s3, reaper_bucket, upload.s3_key) == set()


@pytest.mark.slow
def test_two_reapers_at_once_do_no_harm(
    coordinator, reaper, new_user, s3, reaper_bucket, db_engine, isolated_redis_url
):
    user = new_user()
    idle = [started_with_a_part(coordinator.stub, user) for _ in range(7)]
    for upload in idle:
        make_idle(db_engine, upload.file_id)
    active = started_with_a_part(coordinator.stub, user)
    orphans = {orphan(s3, reaper_bucket) for _ in range(3)}
    expected_idle = idle_file_ids(db_engine)
    assert {upload.file_id for upload in idle} <= expected_idle
    first, second = reaper(), reaper()
    start = threading.Barrier(2)
    reports, errors = [], []

    def run(one):
        start.wait()
        try:
            reports.append(one.run_once())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with file_events(isolated_redis_url, user.user_id) as events:
        threads = [threading.Thread(target=run, args=(one,)) for one in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    assert errors == [] and len(reports) == 2
    # Every idle upload failed exactly once, by one reaper or the other.
    assert sum(report.expired for report in reports) == len(expected_idle)
    for upload in idle:
        assert status_of(db_engine, upload.file_id) == "FAILED"
        assert multipart_uploads(s3, reaper_bucket, upload.s3_key) == set()
    failed_events = sorted(e.file_id for e in events if e.status == "FAILED")
    assert failed_events == sorted(upload.file_id for upload in idle)
    # Every orphan aborted once: one reaper scanned, the other skipped or found nothing.
    assert sum(report.orphans_aborted for report in reports) == len(orphans)
    assert not orphans & multipart_uploads(s3, reaper_bucket)
    assert status_of(db_engine, active.file_id) == "UPLOADING"
    assert (active.s3_key, active.upload_id) in multipart_uploads(s3, reaper_bucket)


@pytest.mark.slow
def test_the_reaper_runs_by_itself_in_the_upload_server(
    coordinator, reaper_settings, new_user, s3, reaper_bucket, db_engine
):
    # Made before the server with a reaper starts: moto's multipart uploads all look years
    # old, so a scan between an upload's creation and its row would take it for an orphan.
    upload = started_with_a_part(coordinator.stub, new_user())
    key, upload_id = orphan(s3, reaper_bucket)
    make_idle(db_engine, upload.file_id)
    settings = reaper_settings.model_copy(
        update={"reaper_enabled": True, "reaper_interval_seconds": 0.2}
    )
    with running_upload_server(settings):
        wait_until(
            lambda: status_of(db_engine, upload.file_id) == "FAILED",
            timeout=15,
            what="the server's reaper to fail the idle upload",
        )
        wait_until(
            lambda: (key, upload_id) not in multipart_uploads(s3, reaper_bucket),
            timeout=15,
            what="the server's reaper to abort the orphan",
        )
    assert multipart_uploads(s3, reaper_bucket, upload.s3_key) == set()


def test_reaper_settings_are_validated(common_settings):
    settings = settings_for(UploadSettings, common_settings, reaper_enabled=True)
    assert settings.upload_idle_ttl_seconds == 24 * 3600
    assert settings.reaper_interval_seconds == 300
    for bad in (
        {"upload_idle_ttl_seconds": 10},
        {"reaper_interval_seconds": 0},
        {"reaper_batch_size": 0},
    ):
        with pytest.raises(ValueError):
            settings_for(UploadSettings, common_settings, **bad)


def test_setup_installs_the_lifecycle_rule_and_keeps_the_buckets_other_rules(s3, storage):
    # The session's bucket was made by the setup command (tests/conftest.py).
    rules = s3.get_bucket_lifecycle_configuration(Bucket=storage["bucket"])["Rules"]
    assert [rule for rule in rules if rule["ID"] == LIFECYCLE_RULE_ID] == [
        {
            "ID": LIFECYCLE_RULE_ID,
            "Status": "Enabled",
            "Filter": {"Prefix": "users/"},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]

    bucket = f"dropfile-lifecycle-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "archive",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "archive/"},
                    "Expiration": {"Days": 30},
                }
            ]
        },
    )
    assert ensure_lifecycle(s3, bucket, days=lifecycle_days(3 * 24 * 3600 + 1))
    assert ensure_lifecycle(s3, bucket, days=lifecycle_days(3 * 24 * 3600 + 1))
    rules = {
        rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    }
    assert set(rules) == {"archive", LIFECYCLE_RULE_ID}
    assert rules[LIFECYCLE_RULE_ID]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 4}
    assert lifecycle_days(60) == 1 and lifecycle_days(24 * 3600) == 1


class _NoLifecycleStore(BaseHTTPRequestHandler):
    """An S3 endpoint without lifecycle support, answering as such stores do."""

    def _not_implemented(self) -> None:
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code>"
            b"<Message>A header you provided implies functionality that is not "
            b"implemented</Message></Error>"
        )
        self.send_response(501)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = _not_implemented

    def log_message(self, *args) -> None:  # quiet
        pass


def test_a_store_without_lifecycle_rules_is_skipped_with_a_warning(caplog):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoLifecycleStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s3 = aws_client(
            "s3", region="us-east-1", endpoint_url=f"http://127.0.0.1:{server.server_port}"
        )
        caplog.set_level(logging.WARNING, logger="setup")
        assert ensure_lifecycle(s3, "any-bucket", days=1) is False
    finally:
        server.shutdown()
        server.server_close()
    assert any(
        "no lifecycle rules (NotImplemented)" in record.getMessage() for record in caplog.records
    )
