"""The number of uploads each user may have in progress (MAX_UPLOADS_IN_PROGRESS): one more
initiation, v1 or v2, is refused with RESOURCE_EXHAUSTED carrying TOO_MANY_UPLOADS and a
RetryInfo (the gateway's 429 with Retry-After) before anything reaches storage, whatever its
size (0-byte uploads cannot pile up rows either); uploads that end free their place; and
initiations decided at the same moment cannot together exceed the limit, because they are
decided one after the other under the per-user lock (made deterministic here: the test holds
that lock until every initiation waits for it)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2
from gateway.errors import rpc_error_details
from services.upload.quota import UPLOADS_LIMIT_RETRY_AFTER_SECONDS
from services.upload.settings import UploadSettings
from tests.conftest import settings_for

from .helpers import RunningUpload, assert_code, confirm_request, running_upload_server, upload_file
from .pg_barriers import holding_quota_lock

LIMIT = 3


@pytest.fixture(scope="module")
def limited(common_settings, isolated_bucket, isolated_redis_url) -> Iterator[RunningUpload]:
    # No storage quota: the limit alone must take the per-user lock.
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=isolated_bucket,
        cloud_rd_uri=isolated_redis_url,
        user_quota_bytes=0,
        max_uploads_in_progress=LIMIT,
    )
    with running_upload_server(settings) as running:
        yield running


def start(api, user, version: str, size: int = 0):
    if version == "v2":
        return api.CreateUpload(
            upload_pb2.CreateUploadRequest(file_name="empty.bin", file_size=size),
            metadata=user.metadata,
        )
    file_id = str(uuid.uuid4())
    reply = api.InitiateUpload(
        upload_pb2.InitiateUploadRequest(file_id=file_id, file_name="empty.bin", file_size=size),
        metadata=user.metadata,
    )
    return upload_pb2.CreateUploadResponse(file_id=file_id, upload_id=reply.upload_id)


def rows(db_engine, user) -> int:
    with db_engine.connect() as conn:
        return conn.execute(
            text("select count(*) from files where user_id = :u"), {"u": user.user_id}
        ).scalar_one()


def multipart_uploads(s3, bucket, user) -> int:
    listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"users/{user.user_id}/")
    return len(listing.get("Uploads", []))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_one_upload_more_than_the_limit_is_refused_with_a_time_to_retry(
    limited, new_user, s3, bucket, db_engine, version
):
    api, user = limited.stub, new_user()
    started = [start(api, user, version) for _ in range(LIMIT)]  # 0 bytes: no quota to stop them

    err = assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, start, api, user, version)
    assert err.details() == (
        f"too many uploads in progress: you have {LIMIT}, the limit is "
        f"{LIMIT}; complete or abort some before starting another"
    )
    details = rpc_error_details(err)
    assert details.reason == "TOO_MANY_UPLOADS"
    assert details.retry_after == UPLOADS_LIMIT_RETRY_AFTER_SECONDS
    # Refused before storage or the database was written.
    assert rows(db_engine, user) == LIMIT
    assert multipart_uploads(s3, bucket, user) == LIMIT

    # An upload that ends (here aborted: FAILED) frees its place.
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=started[0].file_id, upload_id=started[0].upload_id),
        metadata=user.metadata,
    )
    start(api, user, "v1" if version == "v2" else "v2")  # v1 and v2 count alike
    assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, start, api, user, version)


def test_uploaded_files_do_not_count_and_other_users_are_not_limited(
    limited, new_user, internal, service_metadata
):
    api, user, other = limited.stub, new_user(), new_user()
    done = upload_file(api, user, 1000)
    # Completed but not confirmed by storage yet: still in progress.
    for _ in range(LIMIT - 1):
        start(api, user, "v2")
    assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, start, api, user, "v2")
    internal.ConfirmUpload(confirm_request(done), metadata=service_metadata)
    start(api, user, "v2")  # confirmed: UPLOADED, no longer in progress
    start(api, other, "v1")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_initiations_decided_at_the_same_moment_cannot_together_exceed_the_limit(
    limited, new_user, s3, bucket, db_engine, version
):
    api, user = limited.stub, new_user()
    attempts = LIMIT + 4
    outcomes: list[grpc.StatusCode | None] = []
    lock = threading.Lock()

    def initiate_one() -> None:
        try:
            start(api, user, version)
            outcome = None
        except grpc.RpcError as exc:
            outcome = exc.code()
        with lock:
            outcomes.append(outcome)

    with holding_quota_lock(db_engine, user.user_id) as held:
        threads = [threading.Thread(target=initiate_one) for _ in range(attempts)]
        for thread in threads:
            thread.start()
        # Every initiation is at its decision, none decided yet: they race from here.
        held.wait_for_waiters(attempts, "every initiation to wait for the user's lock")
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes, key=str) == sorted(
        [None] * LIMIT + [grpc.StatusCode.RESOURCE_EXHAUSTED] * (attempts - LIMIT), key=str
    )
    assert rows(db_engine, user) == LIMIT
    assert multipart_uploads(s3, bucket, user) == LIMIT


def test_the_limit_is_a_validated_setting(common_settings):
    assert settings_for(UploadSettings, common_settings).max_uploads_in_progress == 100
    assert (
        settings_for(
            UploadSettings, common_settings, max_uploads_in_progress=0
        ).max_uploads_in_progress
        == 0
    )  # unlimited
    with pytest.raises(ValueError):
        settings_for(UploadSettings, common_settings, max_uploads_in_progress=-1)
