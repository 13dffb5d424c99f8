"""Integrity against a store that checks it: SeaweedFS (started for this session with
credentials of its own) verifies every presigned request's signature and expiry and every
part's checksum, which moto does not. A corrupted part is refused by storage itself; so is
a URL that was tampered with or has expired; a whole v2 upload goes through and completes
with its part checksums, which this store does not report back (ListParts)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import grpc
import pytest

from dropfile.upload.v1 import upload_pb2
from services.upload.checksums import ChecksumAlgorithm
from services.upload.settings import UploadSettings
from services.upload.storage import Storage
from tests.conftest import settings_for
from tests.fixtures.stores import S3Store, aws_credentials

from .helpers import MIB, RunningUpload, assert_code, running_upload_server
from .v2_helpers import CRC32C, complete, create, get_upload, part_urls, put, send_parts, sha256_b64

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def on_seaweedfs(common_settings, seaweedfs: S3Store, redis_url) -> Iterator[RunningUpload]:
    bucket = seaweedfs.bucket()
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=bucket,
        aws_endpoint_url=seaweedfs.endpoint,
        user_quota_bytes=0,
    )
    with (
        aws_credentials(seaweedfs.access_key, seaweedfs.secret_key),
        running_upload_server(settings) as running,
    ):
        yield running


def error_code(response) -> str:
    text = response.text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else text


def test_a_corrupted_part_is_refused_by_storage(on_seaweedfs, alice):
    api = on_seaweedfs.stub
    upload = create(api, alice, 64 * 1024)
    [part] = part_urls(api, alice, upload, 1, 1).values()
    corrupted = bytearray(upload.part(1))
    corrupted[1234] ^= 0x01  # one bit flipped on the way

    refused = put(part, bytes(corrupted))
    assert refused.status_code == 400 and error_code(refused) == "BadDigest", refused.text
    # Nor can the client swap in a checksum of the corrupted bytes: the header is signed.
    swapped = put(
        upload_pb2.PartUrl(
            part_number=1,
            url=part.url,
            headers={"x-amz-checksum-sha256": sha256_b64(bytes(corrupted))},
        ),
        bytes(corrupted),
    )
    assert swapped.status_code == 403 and error_code(swapped) == "SignatureDoesNotMatch"
    # Without the header at all: refused too.
    bare = put(upload_pb2.PartUrl(part_number=1, url=part.url), upload.part(1))
    assert bare.status_code == 403

    state = api.GetUpload(
        upload_pb2.GetUploadRequest(file_id=upload.file_id), metadata=alice.metadata
    )
    assert list(state.stored_parts) == []  # nothing of it was kept
    assert put(part, upload.part(1)).status_code == 200  # the intact bytes go through


def test_a_tampered_url_is_refused(on_seaweedfs, alice):
    api = on_seaweedfs.stub
    upload = create(api, alice, 2 * 64 * 1024)
    urls = part_urls(api, alice, upload, 1, 1)
    url = urls[1].url
    for tampered in (
        url.replace("partNumber=1", "partNumber=2"),
        url.replace("X-Amz-Expires=3600", "X-Amz-Expires=604800"),
        url[:-4] + ("0000" if not url.endswith("0000") else "1111"),
    ):
        response = put(
            upload_pb2.PartUrl(part_number=1, url=tampered, headers=dict(urls[1].headers)),
            upload.part(1),
        )
        assert response.status_code == 403, response.text
        assert error_code(response) in ("SignatureDoesNotMatch", "AccessDenied")


def test_an_expired_url_is_refused(on_seaweedfs, seaweedfs, alice):
    """Presigned by the coordinator's own Storage, for one second."""
    api = on_seaweedfs.stub
    upload = create(api, alice, 1000)
    with aws_credentials(seaweedfs.access_key, seaweedfs.secret_key):
        storage = Storage(seaweedfs.client(), on_seaweedfs.settings.s3_bucket)
        url = storage.part_urls.presign_part(
            f"users/{alice.user_id}/{upload.file_id}",
            upload_id=upload.upload_id,
            part_number=1,
            length=1000,
            ttl=1,
            checksum=(ChecksumAlgorithm.SHA256, upload.checksum(1)),
        )
    time.sleep(2)
    response = put(
        upload_pb2.PartUrl(
            part_number=1, url=url, headers={"x-amz-checksum-sha256": upload.checksum(1)}
        ),
        upload.part(1),
    )
    assert response.status_code == 403
    assert "expired" in response.text.lower()


def test_a_whole_v2_upload_completes_with_its_checksums(on_seaweedfs, seaweedfs, alice):
    api = on_seaweedfs.stub
    data = os.urandom(5 * MIB + 4321)
    upload = create(api, alice, data)
    send_parts(api, alice, upload, [2, 1])
    complete(api, alice, upload, sha256=hashlib.sha256(data).hexdigest())
    stored = seaweedfs.client().get_object(
        Bucket=on_seaweedfs.settings.s3_bucket, Key=f"users/{alice.user_id}/{upload.file_id}"
    )
    assert stored["Body"].read() == data


def test_crc32c_part_checksums_are_verified_too(on_seaweedfs, seaweedfs, alice):
    api = on_seaweedfs.stub
    data = os.urandom(100_000)
    upload = create(api, alice, data, algorithm=CRC32C)
    assert upload.reply.checksum_algorithm == CRC32C
    [part] = part_urls(api, alice, upload, 1, 1).values()
    assert set(part.headers) == {"x-amz-checksum-crc32c"}
    refused = put(part, data[:-1] + bytes([data[-1] ^ 0xFF]))
    assert refused.status_code == 400 and error_code(refused) == "BadDigest", refused.text
    send_parts(api, alice, upload, [1])
    complete(api, alice, upload)
    stored = seaweedfs.client().get_object(
        Bucket=on_seaweedfs.settings.s3_bucket, Key=f"users/{alice.user_id}/{upload.file_id}"
    )
    assert stored["Body"].read() == data


def test_a_part_stored_but_never_recorded_needs_its_checksum_recorded(
    on_seaweedfs, seaweedfs, alice
):
    """The client died between storage's answer and recording: resuming finds the part in
    storage, but this store does not say its checksum, which completion must name. The
    refusal says so (not a storage error), and recording the part makes it complete."""
    api = on_seaweedfs.stub
    data = os.urandom(5 * MIB + 99)
    upload = create(api, alice, data)
    send_parts(api, alice, upload, [1])
    send_parts(api, alice, upload, [2], record=False)
    state = get_upload(api, alice, upload.file_id)
    assert [part.part_number for part in state.stored_parts] == [1, 2]
    assert state.stored_parts[1].checksum == ""  # unknown: SeaweedFS does not report it
    refused = assert_code(grpc.StatusCode.FAILED_PRECONDITION, complete, api, alice, upload)
    assert refused.details() == (
        "part 2: its SHA256 checksum is not known; record the part with its checksum"
    )
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id,
            chunk_index=1,
            size=len(upload.part(2)),
            etag=upload.etags[2],
            checksum=upload.checksum(2),
        ),
        metadata=alice.metadata,
    )
    complete(api, alice, upload)
    stored = seaweedfs.client().get_object(
        Bucket=on_seaweedfs.settings.s3_bucket, Key=f"users/{alice.user_id}/{upload.file_id}"
    )
    assert stored["Body"].read() == data


def test_a_part_recorded_with_another_checksum_is_refused_at_completion(on_seaweedfs, alice):
    """Storage checks the checksums completion names against the parts it holds: a record
    that lies about one makes storage refuse, answered as a refusal (not a server error),
    and the upload is still there to fix."""
    api = on_seaweedfs.stub
    upload = create(api, alice, 100)
    send_parts(api, alice, upload, [1], record=False)
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id,
            chunk_index=0,
            size=100,
            etag=upload.etags[1],
            checksum=sha256_b64(b"other bytes"),
        ),
        metadata=alice.metadata,
    )
    refused = assert_code(grpc.StatusCode.FAILED_PRECONDITION, complete, api, alice, upload)
    assert refused.details().startswith("storage refused the parts (")
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id,
            chunk_index=0,
            size=100,
            etag=upload.etags[1],
            checksum=upload.checksum(1),
        ),
        metadata=alice.metadata,
    )
    complete(api, alice, upload)


def test_the_etag_completion_records_is_the_one_storage_reports(
    on_seaweedfs, seaweedfs, alice, db_engine, service_token
):
    """Where storage sends no events (SeaweedFS, `make run`), the reconciler confirms with
    HEAD's ETag: it must be the one CompleteMultipartUpload answered, which completion
    recorded, or no upload would ever be confirmed there."""
    from sqlalchemy import text

    api = on_seaweedfs.stub
    data = os.urandom(5 * MIB + 99)
    upload = create(api, alice, data)
    send_parts(api, alice, upload, [1, 2])
    complete(api, alice, upload)
    key = f"users/{alice.user_id}/{upload.file_id}"
    head = seaweedfs.client().head_object(Bucket=on_seaweedfs.settings.s3_bucket, Key=key)
    with db_engine.connect() as conn:
        recorded = conn.execute(
            text("select etag from files where id = :id"), {"id": upload.file_id}
        ).scalar_one()
    assert recorded == head["ETag"].strip('"').lower()
    reply = on_seaweedfs.internal_stub.ConfirmUpload(
        upload_pb2.ConfirmUploadRequest(s3_key=key, size=head["ContentLength"], etag=head["ETag"]),
        metadata=[("x-dropfile-service-token", service_token)],
    )
    assert reply.outcome == upload_pb2.ConfirmUploadResponse.OUTCOME_CONFIRMED
