"""Single-PUT uploads (a presigned PutObject of the whole file, no multipart upload) against
SeaweedFS, which checks every presigned PUT's signature, length and checksum (moto checks
none): the URL takes exactly the declared bytes, completion HEADs the object and confirms
the file at once, and an upload given up (aborted, deleted) leaves nothing in storage."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator

import grpc
import httpx
import pytest

from dropfile.upload.v1 import upload_pb2
from gateway.errors import rpc_error_details
from services.upload.creation import SINGLE_PUT_MAX_SIZE
from services.upload.settings import UploadSettings
from tests.conftest import settings_for
from tests.fixtures.stores import S3Store, aws_credentials

from .helpers import MIB, RunningUpload, assert_code, running_upload_server
from .test_integrity_seaweedfs import error_code
from .v2_helpers import CRC32C, SHA256, crc32c_b64, put, sha256_b64

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def on_seaweedfs(common_settings, seaweedfs: S3Store, redis_url) -> Iterator[RunningUpload]:
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=seaweedfs.bucket(),
        aws_endpoint_url=seaweedfs.endpoint,
        user_quota_bytes=0,
    )
    with (
        aws_credentials(seaweedfs.access_key, seaweedfs.secret_key),
        running_upload_server(settings) as running,
    ):
        yield running


def create_single(
    api, user, data: bytes, *, checksum: bool = True, algorithm: int = SHA256, sha256: str = ""
) -> upload_pb2.CreateUploadResponse:
    part_checksum = ""
    if checksum:
        part_checksum = crc32c_b64(data) if algorithm == CRC32C else sha256_b64(data)
    return api.CreateUpload(
        upload_pb2.CreateUploadRequest(
            file_id=str(uuid.uuid4()),
            file_name="small.bin",
            file_size=len(data),
            checksum_algorithm=algorithm,
            single_put=True,
            part_checksum=part_checksum,
            sha256=sha256,
        ),
        metadata=user.metadata,
    )


def complete(api, user, file_id: str, **fields) -> None:
    api.CompleteUpload(
        upload_pb2.CompleteUploadRequest(file_id=file_id, use_recorded_parts=True, **fields),
        metadata=user.metadata,
    )


def file_of(api, user, file_id: str) -> upload_pb2.File:
    return api.GetFile(upload_pb2.GetFileRequest(file_id=file_id), metadata=user.metadata).file


def stored(seaweedfs: S3Store, running: RunningUpload, key: str) -> bytes | None:
    s3 = seaweedfs.client()
    try:
        return s3.get_object(Bucket=running.settings.s3_bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def multipart_uploads(seaweedfs: S3Store, running: RunningUpload, key: str) -> list[str]:
    reply = seaweedfs.client().list_multipart_uploads(Bucket=running.settings.s3_bucket, Prefix=key)
    return [item["UploadId"] for item in reply.get("Uploads", [])]


def test_one_put_then_complete_makes_the_file_uploaded_byte_exact(
    on_seaweedfs, seaweedfs, alice, service_metadata
):
    api = on_seaweedfs.stub
    data = os.urandom(MIB + 17)
    digest = hashlib.sha256(data).hexdigest()
    created = create_single(api, alice, data, sha256=digest)
    assert created.single_put and created.part_count == 1
    assert created.upload_id.startswith("single-put-")
    assert created.put_url.part_number == 1
    assert dict(created.put_url.headers) == {"x-amz-checksum-sha256": sha256_b64(data)}
    assert created.put_url_expires_in_seconds == on_seaweedfs.settings.presigned_url_ttl_seconds
    assert multipart_uploads(seaweedfs, on_seaweedfs, created.s3_key) == []  # none made

    response = put(created.put_url, data)
    assert response.status_code == 200, response.text
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADING
    complete(api, alice, created.file_id, upload_id=created.upload_id)

    # Confirmed by completion itself: no event or reconciler pass needed.
    file = file_of(api, alice, created.file_id)
    assert file.status == upload_pb2.FILE_STATUS_UPLOADED
    assert file.sha256 == digest
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data
    # Storage's own word, later (an event, a reconciler's HEAD), changes nothing.
    confirmed = on_seaweedfs.internal_stub.ConfirmUpload(
        upload_pb2.ConfirmUploadRequest(
            s3_key=created.s3_key, size=len(data), etag=response.headers["ETag"]
        ),
        metadata=service_metadata,
    )
    assert confirmed.outcome == upload_pb2.ConfirmUploadResponse.OUTCOME_ALREADY_CONFIRMED
    complete(api, alice, created.file_id)  # a retry of a completion that succeeded
    download = api.GetDownloadUrl(
        upload_pb2.GetDownloadUrlRequest(s3_key=created.s3_key), metadata=alice.metadata
    )
    assert httpx.get(download.url).content == data


def test_the_url_comes_from_part_urls_when_creation_had_no_checksum(on_seaweedfs, seaweedfs, alice):
    """CRC32C too; and an empty file."""
    api = on_seaweedfs.stub
    for data in (os.urandom(3000), b""):
        created = create_single(api, alice, data, checksum=False, algorithm=CRC32C)
        assert not created.HasField("put_url")
        [part] = api.GetPartUrls(
            upload_pb2.GetPartUrlsRequest(
                file_id=created.file_id,
                first_part_number=1,
                last_part_number=1,
                checksums=[crc32c_b64(data)],
            ),
            metadata=alice.metadata,
        ).parts
        assert dict(part.headers) == {"x-amz-checksum-crc32c": crc32c_b64(data)}
        assert put(part, data).status_code == 200
        complete(api, alice, created.file_id)
        assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADED
        assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data


def test_storage_refuses_other_bytes_or_another_length(on_seaweedfs, seaweedfs, alice):
    api = on_seaweedfs.stub
    data = os.urandom(64 * 1024)
    created = create_single(api, alice, data)
    corrupted = bytearray(data)
    corrupted[100] ^= 0x01
    refused = put(created.put_url, bytes(corrupted))
    assert refused.status_code == 400 and error_code(refused) == "BadDigest", refused.text
    longer = put(created.put_url, data + b"x")  # content-length is signed
    assert longer.status_code == 403, longer.text
    shorter = put(created.put_url, data[:-1])
    assert shorter.status_code == 403, shorter.text
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert put(created.put_url, data).status_code == 200  # the declared bytes go through
    complete(api, alice, created.file_id)
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data


def test_completing_before_the_put_changes_nothing(on_seaweedfs, seaweedfs, alice):
    api = on_seaweedfs.stub
    data = os.urandom(2000)
    created = create_single(api, alice, data)
    err = assert_code(grpc.StatusCode.FAILED_PRECONDITION, complete, api, alice, created.file_id)
    assert rpc_error_details(err).reason == "PART_NOT_STORED"
    assert "not in storage; PUT it" in (err.details() or "")
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADING
    assert put(created.put_url, data).status_code == 200
    complete(api, alice, created.file_id)
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADED


def test_an_object_of_another_size_is_deleted_at_completion(on_seaweedfs, seaweedfs, alice):
    """Something else at the key (not through the signed URL, which storage holds to the
    declared length): completion refuses and deletes it; the right PUT then completes."""
    api = on_seaweedfs.stub
    data = os.urandom(4000)
    created = create_single(api, alice, data)
    seaweedfs.client().put_object(
        Bucket=on_seaweedfs.settings.s3_bucket, Key=created.s3_key, Body=data[:-10]
    )
    err = assert_code(grpc.StatusCode.FAILED_PRECONDITION, complete, api, alice, created.file_id)
    assert rpc_error_details(err).reason == "PART_SIZE_MISMATCH"
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADING
    assert put(created.put_url, data).status_code == 200
    complete(api, alice, created.file_id)
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data


def test_a_named_etag_must_be_the_stored_objects(on_seaweedfs, alice):
    api = on_seaweedfs.stub
    data = os.urandom(500)
    created = create_single(api, alice, data)
    etag = put(created.put_url, data).headers["ETag"].strip('"')
    wrong = upload_pb2.CompletedPart(part_number=1, etag="0" * 32)
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION,
        api.CompleteUpload,
        upload_pb2.CompleteUploadRequest(
            file_id=created.file_id, upload_id=created.upload_id, parts=[wrong]
        ),
        metadata=alice.metadata,
    )
    assert rpc_error_details(err).reason == "PART_ETAG_MISMATCH"
    api.CompleteUpload(
        upload_pb2.CompleteUploadRequest(
            file_id=created.file_id,
            upload_id=created.upload_id,
            parts=[upload_pb2.CompletedPart(part_number=1, etag=etag)],
        ),
        metadata=alice.metadata,
    )
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADED


def test_another_users_upload_is_not_found(on_seaweedfs, alice, bob):
    api = on_seaweedfs.stub
    data = os.urandom(100)
    created = create_single(api, alice, data)
    assert put(created.put_url, data).status_code == 200
    assert_code(grpc.StatusCode.NOT_FOUND, complete, api, bob, created.file_id)
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        api.GetPartUrls,
        upload_pb2.GetPartUrlsRequest(
            file_id=created.file_id,
            first_part_number=1,
            last_part_number=1,
            checksums=[sha256_b64(data)],
        ),
        metadata=bob.metadata,
    )
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        api.AbortUpload,
        upload_pb2.AbortUploadRequest(file_id=created.file_id, upload_id=created.upload_id),
        metadata=bob.metadata,
    )
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADING


def test_opting_in_above_the_limit_is_refused(on_seaweedfs, alice):
    api = on_seaweedfs.stub
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.CreateUpload,
        upload_pb2.CreateUploadRequest(
            file_id=str(uuid.uuid4()),
            file_name="big.bin",
            file_size=SINGLE_PUT_MAX_SIZE + 1,
            single_put=True,
        ),
        metadata=alice.metadata,
    )
    assert rpc_error_details(err).reason == "SINGLE_PUT_TOO_LARGE"
    assert err.details() == (
        f"file_size {SINGLE_PUT_MAX_SIZE + 1} is over the single-PUT limit of "
        f"{SINGLE_PUT_MAX_SIZE} bytes (5 MiB); upload it in parts"
    )
    at_limit = api.CreateUpload(
        upload_pb2.CreateUploadRequest(
            file_id=str(uuid.uuid4()),
            file_name="edge.bin",
            file_size=SINGLE_PUT_MAX_SIZE,
            single_put=True,
        ),
        metadata=alice.metadata,
    )
    assert at_limit.single_put and at_limit.part_count == 1
    assert at_limit.part_size == SINGLE_PUT_MAX_SIZE


def test_abort_and_delete_leave_nothing_in_storage(on_seaweedfs, seaweedfs, alice):
    api = on_seaweedfs.stub
    data = os.urandom(1000)
    aborted = create_single(api, alice, data)
    assert put(aborted.put_url, data).status_code == 200
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=aborted.file_id, upload_id=aborted.upload_id),
        metadata=alice.metadata,
    )
    assert file_of(api, alice, aborted.file_id).status == upload_pb2.FILE_STATUS_FAILED
    assert stored(seaweedfs, on_seaweedfs, aborted.s3_key) is None
    err = assert_code(grpc.StatusCode.FAILED_PRECONDITION, complete, api, alice, aborted.file_id)
    assert rpc_error_details(err).reason == "UPLOAD_ABORTED"

    deleted = create_single(api, alice, data)
    assert put(deleted.put_url, data).status_code == 200
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=deleted.file_id), metadata=alice.metadata)
    assert stored(seaweedfs, on_seaweedfs, deleted.s3_key) is None

    uploaded = create_single(api, alice, data)
    assert put(uploaded.put_url, data).status_code == 200
    complete(api, alice, uploaded.file_id)
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=uploaded.file_id), metadata=alice.metadata)
    assert stored(seaweedfs, on_seaweedfs, uploaded.s3_key) is None


def test_resuming_a_single_put_is_putting_it_again(on_seaweedfs, seaweedfs, alice):
    api = on_seaweedfs.stub
    data = os.urandom(3000)
    created = create_single(api, alice, data)
    assert put(created.put_url, data).status_code == 200
    state = api.GetUpload(
        upload_pb2.GetUploadRequest(file_id=created.file_id), metadata=alice.metadata
    )
    assert state.single_put and state.state == upload_pb2.GetUploadResponse.STATE_RECEIVING_PARTS
    assert list(state.stored_parts) == []
    assert put(created.put_url, data).status_code == 200  # again: the same object
    complete(api, alice, created.file_id)
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) == data


def test_an_object_whose_sha256_is_not_the_declared_one_is_deleted(on_seaweedfs, seaweedfs, alice):
    """The file's SHA-256 declared at creation, against the one SeaweedFS reports for the
    object (the part checksum, signed into the URL, matched the bytes sent)."""
    api = on_seaweedfs.stub
    data = os.urandom(2048)
    other = hashlib.sha256(data + b"!").hexdigest()
    created = create_single(api, alice, data, sha256=other)
    assert put(created.put_url, data).status_code == 200
    err = assert_code(grpc.StatusCode.INVALID_ARGUMENT, complete, api, alice, created.file_id)
    assert f"sha256 {other} differs from the SHA-256 of the object" in (err.details() or "")
    assert stored(seaweedfs, on_seaweedfs, created.s3_key) is None
    assert file_of(api, alice, created.file_id).status == upload_pb2.FILE_STATUS_UPLOADING
