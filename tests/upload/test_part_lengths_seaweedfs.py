"""Storage takes only the declared bytes: every presigned part URL, v1 and v2, is signed for
its part's exact length (content-length is a signed header), so a store that checks
signatures (SeaweedFS here, S3 alike) refuses a body of any other length, or of no declared
length at all (chunked), and keeps nothing of it. Before, an upload declared as 1 byte took
24 MiB through its one URL, and the user's quota counted 1 byte."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from services.upload.settings import UploadSettings
from tests.conftest import settings_for
from tests.fixtures.stores import S3Store, aws_credentials

from .helpers import (
    MIB,
    PART,
    RunningUpload,
    completion,
    initiate,
    record_parts,
    running_upload_server,
)
from .v2_helpers import complete, create, part_urls, put, send_parts, sha256_b64

pytestmark = pytest.mark.slow

BIG = 24 * MIB


@pytest.fixture(scope="module")
def store(common_settings, seaweedfs: S3Store, redis_url) -> Iterator[RunningUpload]:
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


def _code(response: httpx.Response) -> str:
    text = response.text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else text


def _put(url: str, body, headers: dict | None = None) -> httpx.Response:
    return httpx.put(
        url,
        content=body,
        timeout=120,
        headers={"Content-Type": "application/octet-stream", **(headers or {})},
    )


def _stored_parts(store: RunningUpload, seaweedfs: S3Store, key: str, upload_id: str):
    reply = seaweedfs.client().list_parts(
        Bucket=store.settings.s3_bucket, Key=key, UploadId=upload_id
    )
    return [(part["PartNumber"], part["Size"]) for part in reply.get("Parts", [])]


def _stored_object(store: RunningUpload, seaweedfs: S3Store, key: str) -> bytes:
    return seaweedfs.client().get_object(Bucket=store.settings.s3_bucket, Key=key)["Body"].read()


def test_v1_a_url_takes_its_parts_length_and_nothing_else(store, seaweedfs, alice):
    api = store.stub
    upload = initiate(api, alice, 1)
    [url] = upload.reply.part_urls
    assert "X-Amz-SignedHeaders=content-length%3Bhost&" in url

    refused = _put(url, os.urandom(BIG))
    assert refused.status_code == 403 and _code(refused) in (
        "SignatureDoesNotMatch",
        "AccessDenied",
    ), refused.text
    # Without a length (chunked): refused as well.
    chunked = _put(url, iter([upload.data]))
    assert chunked.status_code == 403, chunked.text
    assert _stored_parts(store, seaweedfs, upload.s3_key, upload.upload_id) == []

    accepted = _put(url, upload.data)  # the declared byte goes through
    assert accepted.status_code == 200, accepted.text
    upload.etags = [accepted.headers["ETag"]]
    record_parts(api, alice, upload)
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert _stored_object(store, seaweedfs, upload.s3_key) == upload.data


def test_v1_every_part_of_a_larger_file_is_signed_for_its_own_length(store, seaweedfs, alice):
    api = store.stub
    upload = initiate(api, alice, PART + 100)
    first, last = upload.reply.part_urls
    assert _put(last, os.urandom(PART)).status_code == 403  # the short last part's URL
    assert _put(first, os.urandom(100)).status_code == 403  # less is refused too
    assert _stored_parts(store, seaweedfs, upload.s3_key, upload.upload_id) == []
    upload.etags = [
        _put(url, body).headers["ETag"]
        for url, body in ((first, upload.data[:PART]), (last, upload.data[PART:]))
    ]
    record_parts(api, alice, upload)
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert _stored_object(store, seaweedfs, upload.s3_key) == upload.data


def test_v2_a_url_asked_for_with_a_bigger_parts_checksum_still_takes_only_the_declared_length(
    store, seaweedfs, alice
):
    api = store.stub
    upload = create(api, alice, 1)
    big = os.urandom(BIG)
    [part] = part_urls(api, alice, upload, 1, 1, checksums=[sha256_b64(big)]).values()
    assert "content-length%3Bhost%3Bx-amz-checksum-sha256" in part.url
    assert set(part.headers) == {"x-amz-checksum-sha256"}  # the length is the body's own

    refused = put(part, big)
    assert refused.status_code == 403 and _code(refused) in (
        "SignatureDoesNotMatch",
        "AccessDenied",
    ), refused.text
    assert (
        _stored_parts(store, seaweedfs, f"users/{alice.user_id}/{upload.file_id}", upload.upload_id)
        == []
    )

    send_parts(api, alice, upload, [1])  # a URL for the declared byte works
    complete(api, alice, upload)
    assert (
        _stored_object(store, seaweedfs, f"users/{alice.user_id}/{upload.file_id}") == upload.data
    )


def test_v2_batches_sign_each_parts_length(store, seaweedfs, alice):
    api = store.stub
    upload = create(api, alice, 2 * PART + 4321)
    urls = part_urls(api, alice, upload, 1, 3)  # the first signed by botocore, the rest re-signed
    assert all(
        "X-Amz-SignedHeaders=content-length%3Bhost%3Bx-amz-checksum-sha256&" in part.url
        for part in urls.values()
    )
    # Part 3's URL (4,321 bytes) with the bytes it was asked for plus more: refused.
    longer = put(urls[3], upload.part(3) + b"\0")
    assert longer.status_code in (400, 403), longer.text
    send_parts(api, alice, upload, [1, 2, 3])
    complete(api, alice, upload)
    assert (
        _stored_object(store, seaweedfs, f"users/{alice.user_id}/{upload.file_id}") == upload.data
    )


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_an_empty_file_is_signed_for_zero_bytes_and_completes(store, seaweedfs, alice, version):
    api = store.stub
    if version == "v1":
        upload = initiate(api, alice, b"")
        [url] = upload.reply.part_urls
        assert _put(url, b"x").status_code == 403
        response = _put(url, b"")
        assert response.status_code == 200, response.text
        upload.etags = [response.headers["ETag"]]
        record_parts(api, alice, upload)
        api.CompleteUpload(completion(upload), metadata=alice.metadata)
        key = upload.s3_key
    else:
        upload = create(api, alice, b"")
        [part] = part_urls(api, alice, upload, 1, 1).values()
        assert put(part, b"x").status_code == 403
        send_parts(api, alice, upload, [1])
        complete(api, alice, upload)
        key = f"users/{alice.user_id}/{upload.file_id}"
    assert _stored_object(store, seaweedfs, key) == b""
