"""Deleting or aborting never leaves parts or objects behind: whatever point of its life a
file is deleted or aborted at, storage keeps nothing under its key (no multipart upload, so
no parts; no object), and the database keeps no parts of it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2

from .helpers import PART, confirm_request, initiate, put_parts, record_parts, upload_file


def leftovers(s3, bucket: str, key: str) -> dict:
    return {
        "multipart uploads": [
            item["UploadId"]
            for item in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])
        ],
        "objects": [
            item["Key"]
            for item in s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
        ],
    }


def chunk_count(db_engine, file_id: str) -> int:
    with db_engine.connect() as conn:
        return conn.execute(
            text("select count(*) from chunks where file_id = :id"), {"id": file_id}
        ).scalar_one()


def abort(api, user, upload) -> None:
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(upload_id=upload.upload_id, file_id=upload.file_id),
        metadata=user.metadata,
    )


def delete(api, user, upload) -> None:
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=upload.file_id), metadata=user.metadata)


def with_parts_stored(api, user):
    upload = initiate(api, user, 2 * PART + 7)
    put_parts(upload)
    record_parts(api, user, upload)
    return upload


def completed(api, user):
    return upload_file(api, user, PART + 7)  # the object exists, not yet confirmed


def aborted_with_parts(api, internal, user, service_metadata):
    upload = with_parts_stored(api, user)
    abort(api, user, upload)
    return upload


def deleted_while_uploading(api, internal, user, service_metadata):
    upload = with_parts_stored(api, user)
    delete(api, user, upload)
    return upload


def deleted_after_completion_before_confirmation(api, internal, user, service_metadata):
    upload = completed(api, user)
    delete(api, user, upload)
    return upload


def deleted_after_confirmation(api, internal, user, service_metadata):
    upload = completed(api, user)
    internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    delete(api, user, upload)
    return upload


def deleted_after_a_stale_confirmation(api, internal, user, service_metadata):
    # A stale event (wrong size) changes nothing; the file is deleted as any other.
    upload = completed(api, user)
    internal.ConfirmUpload(confirm_request(upload, size=1), metadata=service_metadata)
    delete(api, user, upload)
    return upload


def deleted_after_abort(api, internal, user, service_metadata):
    upload = aborted_with_parts(api, internal, user, service_metadata)
    delete(api, user, upload)
    return upload


@pytest.mark.slow
@pytest.mark.parametrize(
    "life",
    [
        aborted_with_parts,
        deleted_while_uploading,
        deleted_after_completion_before_confirmation,
        deleted_after_confirmation,
        deleted_after_a_stale_confirmation,
        deleted_after_abort,
    ],
    ids=lambda life: life.__name__,
)
def test_storage_keeps_nothing_of_a_deleted_or_aborted_file(
    life, api, internal, alice, s3, bucket, db_engine, service_metadata
):
    upload = life(api, internal, alice, service_metadata)
    assert leftovers(s3, bucket, upload.s3_key) == {"multipart uploads": [], "objects": []}
    assert chunk_count(db_engine, upload.file_id) == 0
