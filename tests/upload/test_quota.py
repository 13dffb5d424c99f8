"""Per-user storage quotas over real gRPC and PostgreSQL: an initiation over quota is
refused before anything reaches storage, concurrent initiations cannot together exceed it
(v1 and v2 alike), failed uploads free their share, and completion checks again."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2
from services.upload.settings import UploadSettings
from tests.conftest import settings_for

from .helpers import MIB, RunningUpload, assert_code, running_upload_server
from .v2_helpers import complete, create, send_parts

QUOTA = 10 * MIB


def quota_settings(common_settings, bucket, redis_url, quota: int) -> UploadSettings:
    return settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=bucket,
        cloud_rd_uri=redis_url,
        user_quota_bytes=quota,
    )


@pytest.fixture(scope="session")
def limited(common_settings, isolated_bucket, isolated_redis_url) -> Iterator[RunningUpload]:
    with running_upload_server(
        quota_settings(common_settings, isolated_bucket, isolated_redis_url, QUOTA)
    ) as running:
        yield running


def quota_of(api, user) -> upload_pb2.GetQuotaResponse:
    return api.GetQuota(upload_pb2.GetQuotaRequest(), metadata=user.metadata)


def multipart_uploads(s3, bucket, user) -> list[str]:
    listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"users/{user.user_id}/")
    return [upload["UploadId"] for upload in listing.get("Uploads", [])]


def file_rows(db_engine, user) -> int:
    with db_engine.connect() as conn:
        return conn.execute(
            text("select count(*) from files where user_id = :u"), {"u": user.user_id}
        ).scalar_one()


def test_an_initiation_over_quota_is_refused_before_anything_is_written(
    limited, alice, s3, bucket, db_engine
):
    api = limited.stub
    assert (quota_of(api, alice).used_bytes, quota_of(api, alice).limit_bytes) == (0, QUOTA)

    err = assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, create, api, alice, QUOTA + 1)
    assert "storage quota exceeded" in err.details() and "10 MiB" in err.details()
    err = assert_code(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        api.InitiateUpload,
        upload_pb2.InitiateUploadRequest(
            file_id=str(uuid.uuid4()), file_name="v1.bin", file_size=QUOTA + 1
        ),
        metadata=alice.metadata,
    )
    assert "storage quota exceeded" in err.details()
    # Nothing reached storage or the database.
    assert multipart_uploads(s3, bucket, alice) == []
    assert file_rows(db_engine, alice) == 0

    upload = create(api, alice, QUOTA)  # exactly the quota fits
    usage = quota_of(api, alice)
    assert (usage.used_bytes, usage.uploading_bytes) == (QUOTA, QUOTA)
    assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, create, api, alice, 1)
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=upload.file_id, upload_id=upload.upload_id),
        metadata=alice.metadata,
    )
    assert quota_of(api, alice).used_bytes == 0  # a failed upload holds nothing
    create(api, alice, 1)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_concurrent_initiations_cannot_together_exceed_the_quota(
    limited, new_user, s3, bucket, db_engine, version
):
    api = limited.stub
    user = new_user()
    size = 3 * MIB  # three fit in 10 MiB, four do not
    attempts = 8
    start = threading.Barrier(attempts)
    outcomes: list[grpc.StatusCode | None] = []
    lock = threading.Lock()

    def initiate_one() -> None:
        start.wait()
        try:
            if version == "v2":
                api.CreateUpload(
                    upload_pb2.CreateUploadRequest(file_name="race.bin", file_size=size),
                    metadata=user.metadata,
                )
            else:
                api.InitiateUpload(
                    upload_pb2.InitiateUploadRequest(
                        file_id=str(uuid.uuid4()), file_name="race.bin", file_size=size
                    ),
                    metadata=user.metadata,
                )
            outcome = None
        except grpc.RpcError as exc:
            outcome = exc.code()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=initiate_one) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count(None) == 3, outcomes
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == attempts - 3, outcomes
    assert quota_of(api, user).used_bytes == 3 * size
    assert file_rows(db_engine, user) == 3
    # The refused ones left no multipart upload behind.
    assert len(multipart_uploads(s3, bucket, user)) == 3


def test_completion_checks_the_quota_again(
    limited, common_settings, isolated_bucket, isolated_redis_url, alice
):
    """Started within the quota, completed after it was lowered: refused, and the upload
    stays there to be completed once there is room (or aborted)."""
    upload = create(limited.stub, alice, 6 * MIB)
    send_parts(limited.stub, alice, upload, [1, 2])
    with running_upload_server(
        quota_settings(common_settings, isolated_bucket, isolated_redis_url, 5 * MIB)
    ) as lowered:
        err = assert_code(grpc.StatusCode.RESOURCE_EXHAUSTED, complete, lowered.stub, alice, upload)
        assert "storage quota exceeded" in err.details()
    complete(limited.stub, alice, upload)  # within the original quota: fine
    assert quota_of(limited.stub, alice).used_bytes == 6 * MIB


def test_the_quota_is_per_user(limited, alice, bob):
    create(limited.stub, alice, QUOTA)
    create(limited.stub, bob, QUOTA)
    assert quota_of(limited.stub, bob).used_bytes == QUOTA


def test_the_default_quota_is_100_gib(api, alice):
    """The default coordinator of these tests has the default quota."""
    assert quota_of(api, alice).limit_bytes == 100 * 1024 * MIB
