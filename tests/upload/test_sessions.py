"""Redis holds upload sessions, PostgreSQL the truth: losing Redis (flushed, or down) must
not fail an upload."""

from __future__ import annotations

import logging
from contextlib import closing
from urllib.parse import urlparse

import grpc
import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2
from tests.conftest import settings_for
from tests.tcp_proxy import TcpProxy

from .helpers import (
    PART,
    completion,
    error_of,
    initiate,
    put_parts,
    record_parts,
    running_upload_server,
)


def _record(api, user, upload, index):
    size = upload.reply.part_size
    body = upload.data[index * size : (index + 1) * size]
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=index, size=len(body), etag=upload.etags[index]
        ),
        metadata=user.metadata,
    )


@pytest.mark.slow
def test_flushdb_mid_upload_then_record_and_complete_still_work(
    api, alice, sessions_redis, s3, bucket, isolated_settings
):
    upload = initiate(api, alice, 3 * PART + 7)
    put_parts(upload)
    _record(api, alice, upload, 0)
    sessions_redis.flushdb()
    # A coordinator that has not seen this upload (another replica) rebuilds the session
    # from PostgreSQL, into Redis.
    with running_upload_server(isolated_settings) as replica:
        _record(replica.stub, alice, upload, 1)
    session = sessions_redis.hgetall(f"dropfile:upload:{upload.file_id}")
    assert session["user_id"] == alice.user_id and session["upload_id"] == upload.upload_id
    assert sessions_redis.ttl(f"dropfile:upload:{upload.file_id}") > 0
    sessions_redis.flushdb()
    # The first coordinator remembers the session: no Redis read, nothing rebuilt.
    _record(api, alice, upload, 2)
    assert not sessions_redis.exists(f"dropfile:upload:{upload.file_id}")
    _record(api, alice, upload, 3)
    sessions_redis.flushdb()
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert s3.get_object(Bucket=bucket, Key=upload.s3_key)["Body"].read() == upload.data


def test_a_wrong_session_is_corrected_from_the_database(
    api, alice, sessions_redis, isolated_settings
):
    """A session left over from an earlier upload of the same id (or corrupted) must not
    decide: the database's upload id wins and the part is recorded."""
    upload = initiate(api, alice, 10)
    put_parts(upload)
    sessions_redis.hset(f"dropfile:upload:{upload.file_id}", "upload_id", "stale-upload")
    # A replica that has not seen the upload reads the wrong session from Redis.
    with running_upload_server(isolated_settings) as replica:
        record_parts(replica.stub, alice, upload)
    assert sessions_redis.hget(f"dropfile:upload:{upload.file_id}", "upload_id") == upload.upload_id
    api.CompleteUpload(completion(upload), metadata=alice.metadata)


@pytest.mark.slow
def test_a_session_remembered_by_a_replica_does_not_outlive_an_abort_elsewhere(
    api, alice, isolated_settings, db_engine
):
    """One coordinator remembers the session; the upload is aborted through another: the
    first must refuse the next part, not record it on the strength of its memory."""
    upload = initiate(api, alice, 2 * PART)
    put_parts(upload)
    _record(api, alice, upload, 0)
    with running_upload_server(isolated_settings) as replica:
        replica.stub.AbortUpload(
            upload_pb2.AbortUploadRequest(file_id=upload.file_id, upload_id=upload.upload_id),
            metadata=alice.metadata,
        )
    err = error_of(_record, api, alice, upload, 1)
    assert err.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND), (
        err.code(),
        err.details(),
    )
    with db_engine.connect() as conn:
        recorded = (
            conn.execute(
                text("SELECT chunk_index FROM chunks WHERE file_id = :id"), {"id": upload.file_id}
            )
            .scalars()
            .all()
        )
    assert 1 not in recorded


@pytest.mark.slow
def test_a_redis_outage_does_not_fail_uploads(common_settings, isolated_bucket, alice, s3, caplog):
    from services.upload.settings import UploadSettings

    # Redis behind a proxy that drops every connection and refuses new ones once cut.
    target = urlparse(common_settings["cloud_rd_uri"])
    redis_proxy = TcpProxy(target.hostname, target.port).start()
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=isolated_bucket,
        cloud_rd_uri=f"redis://127.0.0.1:{redis_proxy.port}{target.path}",
    )
    caplog.set_level(logging.WARNING, logger="services.upload.sessions")
    with running_upload_server(settings) as running, closing(redis_proxy):
        # The caller's session is checked (not signed out) before Redis goes away.
        running.stub.ListFiles(upload_pb2.ListFilesRequest(), metadata=alice.metadata)
        redis_proxy.cut()
        upload = initiate(running.stub, alice, PART + 3)
        put_parts(upload)
        record_parts(running.stub, alice, upload)
        running.stub.CompleteUpload(completion(upload), metadata=alice.metadata)
        files = running.stub.ListFiles(upload_pb2.ListFilesRequest(), metadata=alice.metadata).files
        # Abort and delete clean up sessions too; with Redis down they still succeed.
        aborted = initiate(running.stub, alice, 5)
        running.stub.AbortUpload(
            upload_pb2.AbortUploadRequest(file_id=aborted.file_id, upload_id=aborted.upload_id),
            metadata=alice.metadata,
        )
        running.stub.DeleteFile(
            upload_pb2.DeleteFileRequest(file_id=aborted.file_id), metadata=alice.metadata
        )
    assert s3.get_object(Bucket=isolated_bucket, Key=upload.s3_key)["Body"].read() == upload.data
    assert [f.file_id for f in files if f.file_id == upload.file_id] == [upload.file_id]
    assert any("upload session" in r.getMessage() for r in caplog.records)
