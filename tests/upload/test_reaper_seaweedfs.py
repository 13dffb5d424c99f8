"""The reaper's storage side on SeaweedFS, a real S3 server (the store `make run` uses): it
dates multipart uploads truly (moto says 2010 for all), pages ListMultipartUploads its own
way (by upload id, with NextUploadIdMarker only), answers an abort of an aborted upload with
success, and takes the bucket lifecycle rule the setup command installs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.common.db import Database
from services.setup import LIFECYCLE_RULE_ID, ensure_lifecycle, lifecycle_days
from services.upload.reaper import Reaper
from services.upload.sessions import UploadSessions
from services.upload.status_events import StatusEvents
from services.upload.storage import BucketUploads
from services.upload.store import ReaperStore, TombstoneStore
from tests.fixtures.stores import S3Store

from .test_reaper import multipart_uploads

pytestmark = pytest.mark.slow

DAY = timedelta(days=1)


@pytest.fixture
def store_bucket(seaweedfs: S3Store):  # noqa: F811 - the imported fixture
    return seaweedfs.client(), seaweedfs.bucket("reaper")


def reaper_on(s3, bucket: str, db_engine, *, clock, page_size: int = 1000) -> Reaper:
    return Reaper(
        store=ReaperStore(Database(db_engine)),
        tombstones=TombstoneStore(Database(db_engine)),
        uploads=BucketUploads(s3, bucket, page_size=page_size),
        sessions=UploadSessions(None, ttl_seconds=60),  # unused by the orphan scan
        status_events=StatusEvents(),
        idle_ttl_seconds=int(DAY.total_seconds()),
        url_ttl_seconds=3600,
        interval_seconds=300,
        batch_size=10,
        clock=clock,
    )


def orphans(s3, bucket: str, count: int) -> set[tuple[str, str]]:
    made = set()
    for _ in range(count):
        key = f"users/{uuid.uuid4()}/{uuid.uuid4()}"
        made.add((key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]))
    return made


def test_a_young_orphan_is_kept_and_an_old_one_aborted(store_bucket, db_engine):
    s3, bucket = store_bucket
    made = orphans(s3, bucket, 2)

    now = reaper_on(s3, bucket, db_engine, clock=lambda: datetime.now(UTC))
    assert now.abort_orphaned_uploads() == 0  # initiated just now: maybe a row is coming
    assert made <= multipart_uploads(s3, bucket)

    later = reaper_on(s3, bucket, db_engine, clock=lambda: datetime.now(UTC) + 2 * DAY)
    assert later.abort_orphaned_uploads() == 2
    assert not made & multipart_uploads(s3, bucket)


def test_the_orphan_scan_reads_every_page(store_bucket, db_engine):
    s3, bucket = store_bucket
    made = orphans(s3, bucket, 7)
    pages = list(BucketUploads(s3, bucket, page_size=3).pages("users/"))
    assert len(pages) >= 3
    assert {(u.key, u.upload_id) for page in pages for u in page} == made

    later = reaper_on(s3, bucket, db_engine, page_size=3, clock=lambda: datetime.now(UTC) + 2 * DAY)
    assert later.abort_orphaned_uploads() == 7
    assert multipart_uploads(s3, bucket) == set()


def test_the_lifecycle_rule_is_accepted_and_kept_once(store_bucket):
    s3, bucket = store_bucket
    assert ensure_lifecycle(s3, bucket, days=lifecycle_days(36 * 3600))
    assert ensure_lifecycle(s3, bucket, days=lifecycle_days(36 * 3600))  # again: replaced
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] == LIFECYCLE_RULE_ID
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
    assert rule["Filter"] == {"Prefix": "users/"}
