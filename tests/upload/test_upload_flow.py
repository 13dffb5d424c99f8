"""The whole life of a file over real gRPC, PostgreSQL, Redis and moto's S3: initiate, PUT
the parts to the presigned URLs, record them, complete, confirm, download, delete."""

from __future__ import annotations

import os
import uuid
from urllib.parse import parse_qs, urlparse

import grpc
import httpx
import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2

from .helpers import (
    MIB,
    PART,
    assert_code,
    completion,
    confirm_request,
    initiate,
    listed,
    put_parts,
    race,
    record_parts,
    upload_file,
)

OK = upload_pb2.ConfirmUploadResponse


def db_row(db_engine, file_id: str) -> dict | None:
    with db_engine.connect() as conn:
        row = conn.execute(text("select * from files where id = :id"), {"id": file_id}).first()
    return row._asdict() if row else None


def chunk_count(db_engine, file_id: str) -> int:
    with db_engine.connect() as conn:
        return conn.execute(
            text("select count(*) from chunks where file_id = :id"), {"id": file_id}
        ).scalar_one()


@pytest.mark.slow
def test_full_flow_stores_the_exact_bytes_and_leaves_the_file_uploading(
    api, alice, s3, bucket, db_engine, sessions_redis
):
    data = os.urandom(3 * PART + 1234)
    upload = initiate(api, alice, data, name="big.bin", mime="application/x-test")
    assert upload.reply.part_size == PART
    assert upload.s3_key == f"users/{alice.user_id}/{upload.file_id}"
    assert len(upload.reply.part_urls) == 4
    numbers = [parse_qs(urlparse(u).query)["partNumber"][0] for u in upload.reply.part_urls]
    assert numbers == ["1", "2", "3", "4"]
    assert all(
        parse_qs(urlparse(u).query)["X-Amz-Expires"] == ["3600"] for u in upload.reply.part_urls
    )
    session = sessions_redis.hgetall(f"dropfile:upload:{upload.file_id}")
    assert session["upload_id"] == upload.upload_id and session["part_count"] == "4"
    assert 0 < sessions_redis.ttl(f"dropfile:upload:{upload.file_id}") <= 86400

    put_parts(upload)
    record_parts(api, alice, upload)
    assert chunk_count(db_engine, upload.file_id) == 4
    # Clients may send ETags with their quotes, as storage returned them.
    api.CompleteUpload(completion(upload), metadata=alice.metadata)

    stored = s3.get_object(Bucket=bucket, Key=upload.s3_key)
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "application/x-test"
    row = db_row(db_engine, upload.file_id)
    assert row["status"] == "UPLOADING"  # storage has not confirmed it yet
    assert row["completed_at"] is not None and row["uploaded_at"] is None
    assert (row["part_count"], row["part_size"], row["size"]) == (4, PART, len(data))
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADING
    assert_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        api.GetDownloadUrl,
        upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key),
        metadata=alice.metadata,
    )


def test_complete_is_idempotent_and_recording_after_it_is_refused(api, alice):
    upload = upload_file(api, alice, 1000)
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        api.RecordPart,
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=0, size=1000, etag=upload.etags[0]
        ),
        metadata=alice.metadata,
    )
    assert "already complete" in err.details()


def test_re_recording_a_part_overwrites_it(api, alice, db_engine):
    upload = initiate(api, alice, 100)
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=0, size=100, etag="0" * 32
        ),
        metadata=alice.metadata,
    )
    put_parts(upload)
    record_parts(api, alice, upload)  # the retry, with storage's real ETag
    with db_engine.connect() as conn:
        etag = conn.execute(
            text("select etag from chunks where file_id = :id"), {"id": upload.file_id}
        ).scalar_one()
    assert etag == upload.etags[0].strip('"')
    api.CompleteUpload(completion(upload), metadata=alice.metadata)


def test_confirmed_file_downloads_under_its_real_name(api, internal, alice, service_metadata):
    name = 'résumé "final".pdf'
    upload = upload_file(api, alice, 2 * MIB, name=name, mime="application/pdf")
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == OK.OUTCOME_CONFIRMED
    file = listed(api, alice, upload.file_id)
    assert file.status == upload_pb2.FILE_STATUS_UPLOADED
    assert (file.file_name, file.mime_type, file.size) == (name, "application/pdf", 2 * MIB)

    download = api.GetDownloadUrl(
        upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key), metadata=alice.metadata
    )
    assert download.expires_in_seconds == 3600
    response = httpx.get(download.url, timeout=60)
    assert response.status_code == 200
    assert response.content == upload.data
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-disposition"] == (
        'attachment; filename="resume _final_.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
    )


def test_a_zero_byte_file_is_one_empty_part(api, internal, alice, s3, bucket, service_metadata):
    upload = upload_file(api, alice, b"", name="empty.txt", mime="text/plain")
    assert len(upload.reply.part_urls) == 1
    assert s3.head_object(Bucket=bucket, Key=upload.s3_key)["ContentLength"] == 0
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == OK.OUTCOME_CONFIRMED
    url = api.GetDownloadUrl(
        upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key), metadata=alice.metadata
    ).url
    assert httpx.get(url).content == b""


def test_the_size_limit_is_inclusive(api, alice, s3, bucket):
    limit = 1024**3
    upload = api.InitiateUpload(
        upload_pb2.InitiateUploadRequest(
            file_id=str(uuid.uuid4()), file_name="max.bin", file_size=limit
        ),
        metadata=alice.metadata,
    )
    assert len(upload.part_urls) == 205
    s3.abort_multipart_upload(Bucket=bucket, Key=upload.s3_key, UploadId=upload.upload_id)
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.InitiateUpload,
        upload_pb2.InitiateUploadRequest(
            file_id=str(uuid.uuid4()), file_name="big.bin", file_size=limit + 1
        ),
        metadata=alice.metadata,
    )
    assert "1073741824" in err.details()


def test_list_files_is_the_callers_newest_first(api, new_user):
    user = new_user()
    first = initiate(api, user, 10, name="first.txt", mime="text/plain")
    second = initiate(api, user, 20, name="second.txt")
    files = api.ListFiles(upload_pb2.ListFilesRequest(), metadata=user.metadata).files
    assert [f.file_id for f in files] == [second.file_id, first.file_id]
    assert files[1].file_name == "first.txt" and files[1].mime_type == "text/plain"
    assert files[0].mime_type == "application/octet-stream"
    assert files[0].size == 20 and files[0].s3_key == second.s3_key
    assert files[0].created_at.seconds > 0
    assert files[0].created_at.ToDatetime() >= files[1].created_at.ToDatetime()


def test_abort_is_idempotent_and_leaves_no_multipart_upload(
    api, alice, s3, bucket, db_engine, sessions_redis
):
    upload = initiate(api, alice, PART + 10)
    put_parts(upload)
    record_parts(api, alice, upload)
    request = upload_pb2.AbortUploadRequest(upload_id=upload.upload_id, file_id=upload.file_id)
    api.AbortUpload(request, metadata=alice.metadata)
    api.AbortUpload(request, metadata=alice.metadata)

    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=upload.s3_key).get("Uploads", [])
    assert uploads == []
    assert db_row(db_engine, upload.file_id)["status"] == "FAILED"
    assert chunk_count(db_engine, upload.file_id) == 0
    assert not sessions_redis.exists(f"dropfile:upload:{upload.file_id}")
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_FAILED
    for call, req in [
        (
            api.RecordPart,
            upload_pb2.RecordPartRequest(
                file_id=upload.file_id, chunk_index=0, size=PART, etag=upload.etags[0]
            ),
        ),
        (api.CompleteUpload, completion(upload)),
        (api.GetDownloadUrl, upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key)),
    ]:
        assert_code(grpc.StatusCode.FAILED_PRECONDITION, call, req, metadata=alice.metadata)


def test_an_aborted_file_id_is_never_reused(api, alice):
    upload = initiate(api, alice, 10)
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(upload_id=upload.upload_id, file_id=upload.file_id),
        metadata=alice.metadata,
    )
    assert_code(grpc.StatusCode.ALREADY_EXISTS, initiate, api, alice, 10, file_id=upload.file_id)


def test_aborting_a_completed_or_uploaded_file_is_refused(api, internal, alice, service_metadata):
    upload = upload_file(api, alice, 10)
    request = upload_pb2.AbortUploadRequest(upload_id=upload.upload_id, file_id=upload.file_id)
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION, api.AbortUpload, request, metadata=alice.metadata
    )
    assert "delete the file instead" in err.details()
    internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert_code(
        grpc.StatusCode.FAILED_PRECONDITION, api.AbortUpload, request, metadata=alice.metadata
    )
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADED


def test_delete_removes_the_object_and_the_rows(
    api, internal, alice, s3, bucket, db_engine, service_metadata
):
    upload = upload_file(api, alice, 1000)
    internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=upload.file_id), metadata=alice.metadata)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=upload.s3_key).get("KeyCount") == 0
    assert db_row(db_engine, upload.file_id) is None
    assert chunk_count(db_engine, upload.file_id) == 0
    assert listed(api, alice, upload.file_id) is None
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        api.DeleteFile,
        upload_pb2.DeleteFileRequest(file_id=upload.file_id),
        metadata=alice.metadata,
    )
    # A late storage event for the deleted file changes nothing.
    reply = internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert reply.outcome == OK.OUTCOME_UNKNOWN_KEY


def test_deleting_an_upload_in_progress_aborts_it(
    api, alice, s3, bucket, db_engine, sessions_redis
):
    upload = initiate(api, alice, PART + 1)
    put_parts(upload)
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=upload.file_id), metadata=alice.metadata)
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=upload.s3_key).get("Uploads", []) == []
    assert db_row(db_engine, upload.file_id) is None
    assert not sessions_redis.exists(f"dropfile:upload:{upload.file_id}")


@pytest.mark.slow
def test_concurrent_initiates_of_one_file_id_leave_one_upload(api, new_user, s3, bucket):
    file_id = str(uuid.uuid4())
    users = [new_user() for _ in range(6)]
    results = race([lambda user=user: initiate(api, user, 10, file_id=file_id) for user in users])
    winners = [r for r in results if not isinstance(r, grpc.StatusCode)]
    assert len(winners) == 1
    assert all(r == grpc.StatusCode.ALREADY_EXISTS for r in results if r not in winners)
    # Losers' multipart uploads were aborted: only the winner's exists.
    keys = [
        u["Key"]
        for user in users
        for u in s3.list_multipart_uploads(
            Bucket=bucket, Prefix=f"users/{user.user_id}/{file_id}"
        ).get("Uploads", [])
    ]
    assert keys == [winners[0].s3_key]
