"""Storage tombstones against SeaweedFS (no events): a single PUT's URL stays valid after its
upload was aborted, deleted or reaped, and storage takes a PUT through it; the reaper
deletes that key once the URL's TTL (and the slack) has passed, then the tombstone. Seen
as an attacker would: the URLs are the ones the coordinator handed out, the PUTs are real.
The reaper's clock is moved past the tombstones' due moment instead of sleeping through
PRESIGNED_URL_TTL_SECONDS (60 s at least)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import func, select

from dropfile.upload.v1 import upload_pb2
from services.common.clients import redis_client
from services.common.db import Database
from services.upload.core import URL_EXPIRY_SLACK_SECONDS
from services.upload.models import StorageTombstone
from services.upload.reaper import Reaper
from services.upload.sessions import UploadSessions
from services.upload.settings import UploadSettings
from services.upload.status_events import StatusEvents
from services.upload.storage import BucketUploads
from services.upload.store import ReaperStore, TombstoneStore, record_tombstone
from tests.conftest import settings_for
from tests.fixtures.stores import S3Store, aws_credentials
from tools.processes import free_port

from .helpers import RunningUpload, assert_code, running_upload_server
from .test_single_put_seaweedfs import complete, create_single, file_of, stored
from .v2_helpers import SHA256, put, sha256_b64

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def on_seaweedfs(common_settings, seaweedfs: S3Store, redis_url) -> Iterator[RunningUpload]:
    """An upload coordinator on SeaweedFS (as test_single_put_seaweedfs.py's), its own
    reaper off: the tests run rounds themselves, with their clocks."""
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=seaweedfs.bucket(),
        aws_endpoint_url=seaweedfs.endpoint,
        user_quota_bytes=0,
        reaper_enabled=False,
    )
    with (
        aws_credentials(seaweedfs.access_key, seaweedfs.secret_key),
        running_upload_server(settings) as running,
    ):
        yield running


def real_now() -> datetime:
    return datetime.now(UTC)


def reaper_for(
    running: RunningUpload,
    s3,
    db_engine,
    *,
    clock: Callable[[], datetime] = real_now,
    batch_size: int = 10,
    sessions: UploadSessions | None = None,
) -> Reaper:
    settings = running.settings
    return Reaper(
        store=ReaperStore(Database(db_engine)),
        tombstones=TombstoneStore(Database(db_engine)),
        uploads=BucketUploads(s3, settings.s3_bucket),
        sessions=sessions or UploadSessions(None, ttl_seconds=60),  # unused but by expiry
        status_events=StatusEvents(),
        idle_ttl_seconds=settings.upload_idle_ttl_seconds,
        url_ttl_seconds=settings.presigned_url_ttl_seconds,
        interval_seconds=300,
        batch_size=batch_size,
        clock=clock,
    )


def after_the_urls_expired(running: RunningUpload) -> Callable[[], datetime]:
    """A clock past every tombstone recorded now: the URL TTL and the slack, and a bit."""
    ahead = timedelta(
        seconds=running.settings.presigned_url_ttl_seconds + URL_EXPIRY_SLACK_SECONDS + 5
    )
    return lambda: real_now() + ahead


def tombstone_of(db_engine, key: str) -> datetime | None:
    with Database(db_engine).session() as session:
        return session.scalar(
            select(StorageTombstone.delete_after).where(StorageTombstone.s3_key == key)
        )


def create_with_id(api, user, file_id: str, data: bytes) -> upload_pb2.CreateUploadResponse:
    return api.CreateUpload(
        upload_pb2.CreateUploadRequest(
            file_id=file_id,
            file_name="small.bin",
            file_size=len(data),
            checksum_algorithm=SHA256,
            single_put=True,
            part_checksum=sha256_b64(data),
        ),
        metadata=user.metadata,
    )


def assert_due_in_about_the_url_ttl(running: RunningUpload, delete_after: datetime | None) -> None:
    assert delete_after is not None
    expected = real_now() + timedelta(
        seconds=running.settings.presigned_url_ttl_seconds + URL_EXPIRY_SLACK_SECONDS
    )
    assert abs((delete_after - expected).total_seconds()) < 30


def test_a_put_through_an_aborted_uploads_url_is_deleted_once_the_url_expired(
    on_seaweedfs, seaweedfs: S3Store, db_engine, alice
):
    api = on_seaweedfs.stub
    data = os.urandom(4000)
    created = create_single(api, alice, data)
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=created.file_id, upload_id=created.upload_id),
        metadata=alice.metadata,
    )
    assert_due_in_about_the_url_ttl(on_seaweedfs, tombstone_of(db_engine, created.s3_key))

    # The attacker's PUT: the URL is still valid, storage takes it; no file accounts for it.
    assert put(created.put_url, data).status_code == 200
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_FAILED

    s3 = seaweedfs.client()
    # Not due yet: the URL may still PUT, so the key is left (and the tombstone kept).
    reaper_for(on_seaweedfs, s3, db_engine).run_once()
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data
    assert tombstone_of(db_engine, created.s3_key) is not None

    later = reaper_for(on_seaweedfs, s3, db_engine, clock=after_the_urls_expired(on_seaweedfs))
    assert later.sweep_tombstones() >= 1
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert tombstone_of(db_engine, created.s3_key) is None
    assert later.sweep_tombstones() == 0  # nothing left: a second round changes nothing


def test_a_put_through_a_deleted_files_url_is_deleted_and_its_id_waits_till_then(
    on_seaweedfs, seaweedfs: S3Store, db_engine, alice
):
    api = on_seaweedfs.stub
    data = os.urandom(3000)
    file_id = str(uuid.uuid4())
    created = create_with_id(api, alice, file_id, data)
    assert put(created.put_url, data).status_code == 200
    complete(api, alice, file_id)
    assert file_of(api, alice, file_id).status == upload_pb2.FILE_STATUS_UPLOADED
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=file_id), metadata=alice.metadata)
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert_due_in_about_the_url_ttl(on_seaweedfs, tombstone_of(db_engine, created.s3_key))

    assert put(created.put_url, data).status_code == 200  # the URL outlived the file
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data
    assert_code(grpc.StatusCode.NOT_FOUND, file_of, api, alice, file_id)
    # The key is not handed to a new file while a tombstone says it will be deleted.
    assert_code(grpc.StatusCode.ALREADY_EXISTS, create_with_id, api, alice, file_id, data)

    later = reaper_for(
        on_seaweedfs, seaweedfs.client(), db_engine, clock=after_the_urls_expired(on_seaweedfs)
    )
    assert later.run_once().tombstones_swept >= 1
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert tombstone_of(db_engine, created.s3_key) is None

    # Swept: the id is free again, and its new upload is not touched by the old tombstone.
    again = create_with_id(api, alice, file_id, data)
    assert put(again.put_url, data).status_code == 200
    complete(api, alice, file_id)
    assert later.sweep_tombstones() == 0
    assert stored(seaweedfs, on_seaweedfs, again.s3_key) == data
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=file_id), metadata=alice.metadata)


def test_an_idle_single_put_failed_by_the_reaper_gets_a_tombstone(
    on_seaweedfs, seaweedfs: S3Store, db_engine, redis_url, alice
):
    api = on_seaweedfs.stub
    data = os.urandom(2000)
    created = create_single(api, alice, data)
    assert put(created.put_url, data).status_code == 200
    s3 = seaweedfs.client()
    idle_ttl = timedelta(seconds=on_seaweedfs.settings.upload_idle_ttl_seconds)
    idle_later = reaper_for(
        on_seaweedfs,
        s3,
        db_engine,
        clock=lambda: real_now() + idle_ttl * 2,
        # It forgets the upload's session, in the coordinator's Redis.
        sessions=UploadSessions(redis_client(redis_url), ttl_seconds=60),
    )
    assert idle_later.expire_idle_uploads() >= 1
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_FAILED
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert_due_in_about_the_url_ttl(on_seaweedfs, tombstone_of(db_engine, created.s3_key))

    assert put(created.put_url, data).status_code == 200
    later = reaper_for(on_seaweedfs, s3, db_engine, clock=after_the_urls_expired(on_seaweedfs))
    assert later.sweep_tombstones() >= 1
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert tombstone_of(db_engine, created.s3_key) is None


def test_storage_down_keeps_the_tombstone_for_the_next_round(
    on_seaweedfs, seaweedfs: S3Store, db_engine, alice
):
    """Storage really unreachable: a client of the same bucket at a port nothing listens on
    (the session's SeaweedFS serves every other test, so it is not stopped)."""
    api = on_seaweedfs.stub
    data = os.urandom(1000)
    created = create_single(api, alice, data)
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=created.file_id, upload_id=created.upload_id),
        metadata=alice.metadata,
    )
    assert put(created.put_url, data).status_code == 200
    future = after_the_urls_expired(on_seaweedfs)

    down = S3Store(f"http://127.0.0.1:{free_port()}", seaweedfs.access_key, seaweedfs.secret_key)
    unreachable = reaper_for(on_seaweedfs, down.client(), db_engine, clock=future)
    assert unreachable.sweep_tombstones() == 0  # ends quietly: nothing deleted, nothing lost
    assert tombstone_of(db_engine, created.s3_key) is not None
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data

    back = reaper_for(on_seaweedfs, seaweedfs.client(), db_engine, clock=future)
    assert back.sweep_tombstones() >= 1
    assert tombstone_of(db_engine, created.s3_key) is None
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None


def test_two_replicas_sweeping_at_once_delete_every_key_once(
    on_seaweedfs, seaweedfs: S3Store, db_engine
):
    s3 = seaweedfs.client()
    bucket = on_seaweedfs.settings.s3_bucket
    keys = [f"users/{uuid.uuid4()}/{uuid.uuid4()}" for _ in range(35)]
    with Database(db_engine).session() as session:
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
            record_tombstone(session, key, seconds=60)
    future = after_the_urls_expired(on_seaweedfs)
    with Database(db_engine).session() as session:
        due = session.scalar(
            select(func.count())
            .select_from(StorageTombstone)
            .where(StorageTombstone.delete_after < future())
        )

    reapers = [
        reaper_for(on_seaweedfs, seaweedfs.client(), db_engine, clock=future, batch_size=4)
        for _ in range(2)
    ]
    start = threading.Barrier(2)
    swept: list[int] = []
    errors: list[BaseException] = []

    def sweep(reaper: Reaper) -> None:
        start.wait()
        try:
            swept.append(reaper.sweep_tombstones())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(reaper,)) for reaper in reapers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(swept) == due  # each tombstone swept by one replica, none twice or lost
    assert all(tombstone_of(db_engine, key) is None for key in keys)
    assert all(stored(seaweedfs, on_seaweedfs, key) is None for key in keys)


def test_storages_event_for_a_tombstoned_key_deletes_the_object_at_once(
    on_seaweedfs, seaweedfs: S3Store, db_engine, alice, service_metadata
):
    """Where storage sends events, an ObjectCreated of a deleted file's key is no file's
    (UNKNOWN_KEY): with a tombstone on the key it is deleted at once, as a FAILED file's
    object is; an unknown key without one is left alone (not known to be ours)."""
    api = on_seaweedfs.stub
    data = os.urandom(1500)
    created = create_single(api, alice, data)
    assert put(created.put_url, data).status_code == 200
    complete(api, alice, created.file_id)
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=created.file_id), metadata=alice.metadata)
    again = put(created.put_url, data)
    assert again.status_code == 200
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data

    def event(key: str, etag: str) -> int:
        return on_seaweedfs.internal_stub.ConfirmUpload(
            upload_pb2.ConfirmUploadRequest(s3_key=key, size=len(data), etag=etag),
            metadata=service_metadata,
        ).outcome

    unknown = upload_pb2.ConfirmUploadResponse.OUTCOME_UNKNOWN_KEY
    assert event(created.s3_key, again.headers["ETag"]) == unknown
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert tombstone_of(db_engine, created.s3_key) is not None  # the URL may PUT again

    s3 = seaweedfs.client()
    stranger = f"users/{uuid.uuid4()}/{uuid.uuid4()}"
    put_reply = s3.put_object(Bucket=on_seaweedfs.settings.s3_bucket, Key=stranger, Body=data)
    assert event(stranger, put_reply["ETag"]) == unknown
    assert stored(seaweedfs, on_seaweedfs, stranger) == data
