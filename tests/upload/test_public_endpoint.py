"""S3_PUBLIC_ENDPOINT_URL: clients reach storage at another address than the upload
coordinator does (a kind cluster's moto is `moto:5000` inside, `localhost:5000` on the
host). Here a TCP forwarder is that second address: URLs are signed for it, and parts PUT
and downloads GET through it work, while the coordinator itself talks to storage directly."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pydantic
import pytest

from dropfile.upload.v1 import upload_pb2
from services.upload.settings import UploadSettings
from tests.conftest import settings_for
from tests.tcp_proxy import TcpProxy

from .helpers import PART, completion, initiate, put_parts, record_parts, running_upload_server


@pytest.fixture(scope="module")
def front_door(storage):
    """Another address of the same storage, as a published node port is."""
    internal = urlsplit(storage["endpoint"])
    proxy = TcpProxy(internal.hostname, internal.port).start()
    yield f"http://127.0.0.1:{proxy.port}"
    proxy.close()


@pytest.fixture(scope="module")
def public_api(common_settings, isolated_bucket, isolated_redis_url, front_door):
    settings = settings_for(
        UploadSettings,
        common_settings,
        s3_bucket=isolated_bucket,
        cloud_rd_uri=isolated_redis_url,
        s3_public_endpoint_url=front_door,
    )
    with running_upload_server(settings) as running:
        yield running


@pytest.mark.slow
def test_urls_are_signed_for_the_public_endpoint_and_work_through_it(
    public_api, front_door, storage, s3, isolated_bucket, alice, service_metadata
):
    api = public_api.stub
    upload = initiate(api, alice, PART + 4321)
    assert len(upload.reply.part_urls) == 2
    for url in upload.reply.part_urls:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == front_door  # not the internal endpoint
        # SigV4 signs the host (the address the client connects to) and the part's length.
        assert parse_qs(parts.query)["X-Amz-SignedHeaders"] == ["content-length;host"]

    put_parts(upload)  # through the front door
    record_parts(api, alice, upload)
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    stored = s3.head_object(Bucket=isolated_bucket, Key=upload.s3_key)
    assert stored["ContentLength"] == len(upload.data)

    confirmed = public_api.internal_stub.ConfirmUpload(
        upload_pb2.ConfirmUploadRequest(
            s3_key=upload.s3_key, size=len(upload.data), etag=stored["ETag"]
        ),
        metadata=service_metadata,
    )
    assert confirmed.outcome == upload_pb2.ConfirmUploadResponse.OUTCOME_CONFIRMED
    download = api.GetDownloadUrl(
        upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key), metadata=alice.metadata
    )
    assert download.url.startswith(front_door + "/")
    fetched = httpx.get(download.url, timeout=60)
    assert fetched.status_code == 200
    assert fetched.content == upload.data


def test_without_a_public_endpoint_urls_name_the_storage_endpoint(api, storage, alice):
    upload = initiate(api, alice, 10)
    (url,) = upload.reply.part_urls
    assert url.startswith(storage["endpoint"] + "/")


@pytest.mark.parametrize("value", ["localhost:5000", "ftp://storage", "http://", ""])
def test_a_public_endpoint_must_be_an_http_url(value):
    with pytest.raises(pydantic.ValidationError):
        UploadSettings(_env_file=None, s3_public_endpoint_url=value)
