"""The v2 upload API over real gRPC, PostgreSQL, Redis and moto's S3: server-chosen part
sizes, URLs presigned lazily in batches with each part's checksum, a 5 TiB upload started
without sending a byte, resume from the parts storage holds (past 1,000 parts, after the
client forgot what it sent, after Redis lost every session), and whole-file checksums."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import grpc
import httpx
import pytest
import redis
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2
from services.upload.settings import UploadSettings
from tests.conftest import settings_for
from tests.fixtures.stores import SMALL_PART_MIN_SIZE, aws_credentials

from .helpers import MIB, RunningUpload, assert_code, initiate, race, running_upload_server
from .v2_helpers import SHA256, complete, create, get_upload, part_urls, put, send_parts, sha256_b64

TIB = 1024**4
RECEIVING = upload_pb2.GetUploadResponse.STATE_RECEIVING_PARTS


@pytest.fixture(scope="session")
def v2(common_settings, isolated_bucket, isolated_redis_url) -> Iterator[RunningUpload]:
    """A coordinator without a quota (a 5 TiB upload fits), on the upload tests' bucket."""
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=isolated_bucket,
        cloud_rd_uri=isolated_redis_url,
        user_quota_bytes=0,
    )
    with running_upload_server(settings) as running:
        yield running


@pytest.fixture(scope="session")
def small_parts(common_settings, small_parts_moto, private_valkey) -> Iterator[RunningUpload]:
    """A coordinator whose store takes 1 KiB parts, with a Redis of its own (FLUSHALL)."""
    bucket = small_parts_moto.bucket("small-parts")
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=bucket,
        aws_endpoint_url=small_parts_moto.endpoint,
        cloud_rd_uri=private_valkey,
        user_quota_bytes=0,
        min_part_size_bytes=SMALL_PART_MIN_SIZE,
    )
    with aws_credentials("testing", "testing"), running_upload_server(settings) as running:
        yield running


def stored_numbers(reply: upload_pb2.GetUploadResponse) -> list[int]:
    return [part.part_number for part in reply.stored_parts]


def test_a_5_tib_upload_starts_and_its_first_and_last_urls_come_without_any_data(
    v2, alice, s3, bucket
):
    api = v2.stub
    reply = api.CreateUpload(
        upload_pb2.CreateUploadRequest(file_name="huge.img", file_size=5 * TIB),
        metadata=alice.metadata,
    )
    assert (reply.part_size, reply.part_count) == (640 * MIB, 8192)
    assert reply.checksum_algorithm == SHA256  # the default
    uuid.UUID(reply.file_id)  # the server made one
    quota = api.GetQuota(upload_pb2.GetQuotaRequest(), metadata=alice.metadata)
    assert (quota.limit_bytes, quota.used_bytes) == (0, 5 * TIB)  # 0: unlimited

    checksum = sha256_b64(b"the first part's bytes, never sent")
    for number in (1, 8192):
        urls = api.GetPartUrls(
            upload_pb2.GetPartUrlsRequest(
                file_id=reply.file_id,
                first_part_number=number,
                last_part_number=number,
                checksums=[checksum],
            ),
            metadata=alice.metadata,
        )
        [part] = urls.parts
        query = parse_qs(urlparse(part.url).query)
        assert part.part_number == number and query["partNumber"] == [str(number)]
        assert query["uploadId"] == [reply.upload_id]
        assert query["X-Amz-SignedHeaders"] == ["content-length;host;x-amz-checksum-sha256"]
        assert dict(part.headers) == {"x-amz-checksum-sha256": checksum}
    assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.GetPartUrls,
        upload_pb2.GetPartUrlsRequest(
            file_id=reply.file_id,
            first_part_number=8193,
            last_part_number=8193,
            checksums=[checksum],
        ),
        metadata=alice.metadata,
    )

    state = get_upload(api, alice, reply.file_id)
    assert state.state == RECEIVING and list(state.stored_parts) == []
    assert (state.file.size, state.part_count) == (5 * TIB, 8192)
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"users/{alice.user_id}/")
    assert [u["UploadId"] for u in uploads["Uploads"]] == [reply.upload_id]
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=reply.file_id, upload_id=reply.upload_id),
        metadata=alice.metadata,
    )


def test_the_v2_size_limit_and_the_v1_one(v2, alice):
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        v2.stub.CreateUpload,
        upload_pb2.CreateUploadRequest(file_name="x", file_size=5 * TIB + 1),
        metadata=alice.metadata,
    )
    assert "exceeds the limit" in err.details()
    # v1 keeps its limit (1 GiB).
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        v2.stub.InitiateUpload,
        upload_pb2.InitiateUploadRequest(
            file_id=str(uuid.uuid4()), file_name="x", file_size=1024 * MIB + 1
        ),
        metadata=alice.metadata,
    )
    assert "exceeds the limit" in err.details()


def multipart_upload_ids(s3, bucket, user) -> list[str]:
    listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"users/{user.user_id}/")
    return [upload["UploadId"] for upload in listing.get("Uploads", [])]


def test_a_taken_file_id_is_refused_and_leaves_nothing_in_storage(v2, alice, bob, s3, bucket):
    first = create(v2.stub, alice, 10)
    for user in (alice, bob):  # file ids are unique across users
        err = assert_code(
            grpc.StatusCode.ALREADY_EXISTS, create, v2.stub, user, 10, file_id=first.file_id
        )
        assert "already exists" in err.details()
    assert multipart_upload_ids(s3, bucket, alice) == [first.upload_id]
    assert multipart_upload_ids(s3, bucket, bob) == []


def test_concurrent_creations_of_one_file_id_leave_one_upload(v2, new_user, s3, bucket, db_engine):
    """Every creation finds the id free, starts a multipart upload, and only one insert
    wins: the others are ALREADY_EXISTS and their multipart uploads are aborted."""
    file_id = str(uuid.uuid4())
    users = [new_user() for _ in range(6)]
    results = race([lambda user=user: create(v2.stub, user, 10, file_id=file_id) for user in users])
    [winner] = [r for r in results if not isinstance(r, grpc.StatusCode)]
    assert [r for r in results if r is not winner] == [grpc.StatusCode.ALREADY_EXISTS] * (
        len(users) - 1
    )
    assert [upload for user in users for upload in multipart_upload_ids(s3, bucket, user)] == [
        winner.upload_id
    ]
    with db_engine.connect() as conn:
        owners = (
            conn.execute(text("SELECT user_id::text FROM files WHERE id = :id"), {"id": file_id})
            .scalars()
            .all()
        )
    assert owners == [user.user_id for user, result in zip(users, results) if result is winner]


def test_a_whole_upload_with_checked_parts_and_a_whole_file_checksum(
    v2, alice, s3, bucket, internal, service_metadata, db_engine
):
    api = v2.stub
    data = os.urandom(5 * MIB + 777)
    digest = hashlib.sha256(data).hexdigest()
    upload = create(api, alice, data, name="pair.bin")
    assert (upload.reply.part_size, upload.reply.part_count) == (5 * MIB, 2)

    send_parts(api, alice, upload, [1, 2])  # one batch of URLs for both parts
    with db_engine.connect() as conn:
        recorded = conn.execute(
            text("select chunk_index, checksum from chunks where file_id = :id order by 1"),
            {"id": upload.file_id},
        ).all()
    assert recorded == [(0, upload.checksum(1)), (1, upload.checksum(2))]
    complete(api, alice, upload, sha256=digest)
    complete(api, alice, upload, sha256=digest)  # a retry is fine

    key = f"users/{alice.user_id}/{upload.file_id}"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    internal.ConfirmUpload(
        upload_pb2.ConfirmUploadRequest(s3_key=key, size=len(data), etag=etag),
        metadata=service_metadata,
    )
    file = api.GetFile(
        upload_pb2.GetFileRequest(file_id=upload.file_id), metadata=alice.metadata
    ).file
    assert (file.status, file.sha256, file.size) == (
        upload_pb2.FILE_STATUS_UPLOADED,
        digest,
        len(data),
    )
    listed = api.ListFiles(upload_pb2.ListFilesRequest(), metadata=alice.metadata).files
    assert [f.sha256 for f in listed if f.file_id == upload.file_id] == [digest]
    assert (
        get_upload(api, alice, upload.file_id).state == upload_pb2.GetUploadResponse.STATE_UPLOADED
    )


def test_part_checksums_are_required_well_formed_and_only_for_v2_uploads(v2, alice, bob):
    api = v2.stub
    upload = create(api, alice, 3 * 1024)

    def ask(checksums, user=alice, file_id=upload.file_id):
        return api.GetPartUrls(
            upload_pb2.GetPartUrlsRequest(
                file_id=file_id, first_part_number=1, last_part_number=1, checksums=checksums
            ),
            metadata=user.metadata,
        )

    for bad, message in [
        ([], "one SHA256 checksum per part"),
        (["not base64!"], "must be base64"),
        ([sha256_b64(b"x")[:-4]], "SHA256 digest"),
        ([sha256_b64(b"a"), sha256_b64(b"b")], "one SHA256 checksum per part"),
    ]:
        err = assert_code(grpc.StatusCode.INVALID_ARGUMENT, ask, bad)
        assert message in err.details(), err.details()
    assert_code(grpc.StatusCode.NOT_FOUND, ask, [upload.checksum(1)], user=bob)

    v1 = initiate(api, alice, 1000)
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION, ask, [upload.checksum(1)], file_id=v1.file_id
    )
    assert "without part checksums" in err.details()
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.RecordPart,
        upload_pb2.RecordPartRequest(
            file_id=v1.file_id, chunk_index=0, size=1000, etag="abc", checksum=sha256_b64(b"x")
        ),
        metadata=alice.metadata,
    )
    assert "without part checksums" in err.details()


def test_a_whole_file_checksum_must_agree_with_the_declared_one(v2, alice):
    data = os.urandom(2000)
    upload = create(v2.stub, alice, data, sha256=hashlib.sha256(data).hexdigest())
    send_parts(v2.stub, alice, upload, [1])
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        complete,
        v2.stub,
        alice,
        upload,
        sha256=hashlib.sha256(b"other").hexdigest(),
    )
    assert "differs from" in err.details()
    assert_code(grpc.StatusCode.INVALID_ARGUMENT, create, v2.stub, alice, 10, sha256="abc")
    complete(v2.stub, alice, upload)


def test_completing_before_every_part_is_there_names_the_missing_ones(v2, alice):
    upload = create(v2.stub, alice, 5 * MIB + 10)
    send_parts(v2.stub, alice, upload, [2])
    err = assert_code(grpc.StatusCode.FAILED_PRECONDITION, complete, v2.stub, alice, upload)
    assert "parts not recorded yet: 1 (this file has 2)" in err.details()


def test_resume_reports_parts_storage_holds_even_when_never_recorded(v2, alice, db_engine):
    """A client that died between storage's answer and recording the part loses nothing:
    asking for the upload finds the part in storage (and records it)."""
    api = v2.stub
    upload = create(api, alice, 3 * 5 * MIB)
    send_parts(api, alice, upload, [1])
    send_parts(api, alice, upload, [3], record=False)  # stored, then the client died
    # A part storage holds with the wrong size (Content-Length is not signed) is not stored.
    wrong = part_urls(api, alice, upload, 2, 2, checksums=[sha256_b64(b"short")])[2]
    assert put(wrong, b"short").status_code == 200

    state = get_upload(api, alice, upload.file_id)
    assert state.state == RECEIVING
    assert stored_numbers(state) == [1, 3]
    assert [part.etag for part in state.stored_parts] == [upload.etags[1], upload.etags[3]]
    assert state.stored_parts[0].checksum == upload.checksum(1)
    with db_engine.connect() as conn:
        indexes = (
            conn.execute(
                text("select chunk_index from chunks where file_id = :id order by 1"),
                {"id": upload.file_id},
            )
            .scalars()
            .all()
        )
    assert indexes == [0, 2]  # part 3 recorded from storage

    send_parts(api, alice, upload, [2])  # only the missing part
    complete(api, alice, upload)
    assert (
        get_upload(api, alice, upload.file_id).state == upload_pb2.GetUploadResponse.STATE_COMPLETED
    )


def test_resume_of_another_users_or_an_unknown_file_is_not_found(v2, alice, bob):
    upload = create(v2.stub, alice, 10)
    for user, file_id in [(bob, upload.file_id), (alice, str(uuid.uuid4()))]:
        assert_code(grpc.StatusCode.NOT_FOUND, get_upload, v2.stub, user, file_id)
    assert_code(grpc.StatusCode.INVALID_ARGUMENT, get_upload, v2.stub, alice, "nope")


def test_an_aborted_upload_resumes_as_failed(v2, alice):
    upload = create(v2.stub, alice, 10)
    v2.stub.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=upload.file_id, upload_id=upload.upload_id),
        metadata=alice.metadata,
    )
    assert (
        get_upload(v2.stub, alice, upload.file_id).state
        == upload_pb2.GetUploadResponse.STATE_FAILED
    )


@pytest.mark.slow
def test_more_than_1000_parts_resume_and_complete(small_parts, alice, small_parts_moto):
    """1,100 parts of 1 KiB: the stored parts come from every page of ListParts."""
    api = small_parts.stub
    data = os.urandom(1100 * 1024 + 5)
    upload = create(api, alice, data)
    assert (upload.reply.part_size, upload.reply.part_count) == (1024, 1101)
    sent = [n for n in range(1, 1102) if n % 7]  # all but every 7th part
    with httpx.Client() as client:
        send_parts(api, alice, upload, sent, client=client, batch=250)

        state = get_upload(api, alice, upload.file_id)
        assert stored_numbers(state) == sent
        missing = [n for n in range(1, 1102) if n not in set(stored_numbers(state))]
        send_parts(api, alice, upload, missing, client=client)
    complete(api, alice, upload, sha256=hashlib.sha256(data).hexdigest())
    stored = small_parts_moto.client().get_object(
        Bucket=small_parts.settings.s3_bucket, Key=f"users/{alice.user_id}/{upload.file_id}"
    )
    assert stored["Body"].read() == data


def test_resume_after_redis_lost_every_session(small_parts, alice, private_valkey):
    api = small_parts.stub
    data = os.urandom(3 * 1024 + 1)
    upload = create(api, alice, data)
    send_parts(api, alice, upload, [1, 2])
    assert redis.Redis.from_url(private_valkey).exists(f"dropfile:upload:{upload.file_id}")

    redis.Redis.from_url(private_valkey).flushall()

    state = get_upload(api, alice, upload.file_id)
    assert stored_numbers(state) == [1, 2]
    send_parts(api, alice, upload, [3, 4])  # recorded without a session to start with
    complete(api, alice, upload)
    stored = small_parts.settings
    assert small_parts_moto_object(stored, alice, upload) == data


def small_parts_moto_object(settings: UploadSettings, user, upload) -> bytes:
    from services.common.clients import aws_client

    with aws_credentials("testing", "testing"):
        s3 = aws_client("s3", region=settings.aws_region, endpoint_url=settings.s3_endpoint)
    return s3.get_object(Bucket=settings.s3_bucket, Key=f"users/{user.user_id}/{upload.file_id}")[
        "Body"
    ].read()
