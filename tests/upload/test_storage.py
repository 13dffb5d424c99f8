"""The S3 layer against moto's server: ListParts reads every page, gone uploads are told
apart from other failures."""

from __future__ import annotations

import pytest

from services.upload.storage import Storage, UploadGone, normalize_etag


@pytest.fixture
def multipart(s3, bucket):
    key = "storage-test/parts"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = {}
    for number in range(1, 6):
        reply = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=b"x" * number
        )
        etags[number] = normalize_etag(reply["ETag"])
    yield key, upload_id, etags
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


@pytest.mark.parametrize("page_size", [1, 2, 1000])
def test_list_parts_reads_every_page(s3, bucket, multipart, page_size):
    key, upload_id, etags = multipart
    parts = Storage(s3, bucket, list_parts_page_size=page_size).list_parts(key, upload_id=upload_id)
    assert sorted(parts) == [1, 2, 3, 4, 5]
    assert {n: (p.etag, p.size) for n, p in parts.items()} == {
        n: (etags[n], n) for n in range(1, 6)
    }


def test_a_gone_upload_is_upload_gone_and_aborting_it_again_is_fine(s3, bucket):
    storage = Storage(s3, bucket)
    upload_id = storage.create_multipart_upload("storage-test/gone", content_type="text/plain")
    storage.abort_multipart_upload("storage-test/gone", upload_id=upload_id)
    storage.abort_multipart_upload("storage-test/gone", upload_id=upload_id)
    with pytest.raises(UploadGone):
        storage.list_parts("storage-test/gone", upload_id=upload_id)
    # (CompleteMultipartUpload of a gone upload is NoSuchUpload on S3 too, but moto answers
    # it with an internal error, so it is not exercised here.)


def test_stored_object_and_delete(s3, bucket):
    storage = Storage(s3, bucket)
    s3.put_object(Bucket=bucket, Key="storage-test/object", Body=b"12345")
    assert storage.stored_object("storage-test/object") == (
        5,
        "827ccb0eea8a706c4c34a16891f84e7b",
    )  # the MD5 of a single-part object
    storage.delete_object("storage-test/object")
    storage.delete_object("storage-test/object")  # deleting what is gone succeeds
    assert storage.stored_object("storage-test/object") is None


def test_normalize_etag():
    assert normalize_etag(' "ABCdef-3" ') == "abcdef-3"
