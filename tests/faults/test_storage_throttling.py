"""S3 answering 503 SlowDown (or 500 InternalError) to the upload coordinator's calls:
retried (botocore's standard retries) when it passes, UNAVAILABLE with RetryInfo when it
lasts, never INTERNAL; and the same uploads complete once storage answers again."""

from __future__ import annotations

import pytest

from tests.upload.helpers import PART, completion, error_of, initiate, put_parts, record_parts

from .conftest import assert_unavailable
from .s3_fault_proxy import S3FaultProxy
from .test_database_restart import _stored

pytestmark = pytest.mark.slow

CREATE_MULTIPART = r"\?uploads"
LIST_PARTS = r"\?uploadId="  # GET: ListParts
COMPLETE = r"\?uploadId="  # POST: CompleteMultipartUpload


@pytest.fixture
def throttled(coordinator, moto_endpoint):
    """A coordinator whose S3 calls go through a fault proxy (clients PUT parts to moto
    directly: the presigned URLs are signed for it)."""
    proxy = S3FaultProxy(moto_endpoint).start()
    try:
        yield proxy, coordinator(aws_endpoint_url=proxy.url, s3_public_endpoint_url=moto_endpoint)
    finally:
        proxy.close()


@pytest.mark.parametrize("status", [503, 500])
def test_storage_refusing_once_is_retried(throttled, user, s3, fault_bucket, status):
    proxy, upload_service = throttled
    api = upload_service.api
    proxy.fail("POST", CREATE_MULTIPART, status=status, times=1)
    upload = initiate(api, user, 2 * PART)
    proxy.fail("GET", LIST_PARTS, status=status, times=1)
    proxy.fail("POST", COMPLETE, status=status, times=1)
    put_parts(upload)
    record_parts(api, user, upload)
    api.CompleteUpload(completion(upload), metadata=user.metadata)
    assert proxy.count("POST", CREATE_MULTIPART, injected=True) == 1
    assert proxy.count("POST", COMPLETE, injected=True) == 1
    assert _stored(s3, fault_bucket, upload) == upload.data


def test_storage_slowing_down_for_long_is_unavailable_and_loses_nothing(
    throttled, user, s3, fault_bucket
):
    proxy, upload_service = throttled
    api = upload_service.api
    upload = initiate(api, user, 2 * PART)
    put_parts(upload)
    record_parts(api, user, upload)
    new_id = "6f1c2a4e-0000-4000-8000-00000000beef"

    proxy.fail("POST", CREATE_MULTIPART)
    proxy.fail("GET", LIST_PARTS)
    assert_unavailable(error_of(initiate, api, user, PART, file_id=new_id))
    assert_unavailable(error_of(api.CompleteUpload, completion(upload), metadata=user.metadata))
    proxy.clear()
    proxy.fail("POST", COMPLETE)
    assert_unavailable(error_of(api.CompleteUpload, completion(upload), metadata=user.metadata))
    proxy.clear()

    api.CompleteUpload(completion(upload), metadata=user.metadata)
    late = initiate(api, user, PART, file_id=new_id)  # the refused initiation left nothing
    put_parts(late)
    record_parts(api, user, late)
    api.CompleteUpload(completion(late), metadata=user.metadata)
    for done in (upload, late):
        assert _stored(s3, fault_bucket, done) == done.data
