"""Every RPC refuses bad input with INVALID_ARGUMENT (or FAILED_PRECONDITION when the input
is well-formed but contradicts what was stored), with a message that says what is wrong."""

from __future__ import annotations

import uuid

import grpc
import pytest

from dropfile.upload.v1 import upload_pb2

from .helpers import MIB, PART, assert_code, completion, initiate, put_part, put_parts, record_parts

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def _initiate(**fields):
    values = {"file_id": str(uuid.uuid4()), "file_name": "a.bin", "mime_type": "", "file_size": 10}
    values.update(fields)
    return upload_pb2.InitiateUploadRequest(**values)


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"file_id": ""}, "file_id is required"),
        ({"file_id": "not-a-uuid"}, "file_id must be a UUID"),
        ({"file_id": "../../etc/passwd"}, "file_id must be a UUID"),
        ({"file_name": ""}, "file_name is required"),
        ({"file_name": "\n\t "}, "file_name is required"),
        ({"file_name": "x" * 1025}, "1024"),
        ({"mime_type": "pdf"}, "type/subtype"),
        ({"mime_type": "text/html\r\nSet-Cookie: a=b"}, "type/subtype"),
        ({"file_size": -1}, "0 or more"),
        ({"file_size": 1024**3 + 1}, "limit of 1073741824 bytes (1 GiB)"),
        ({"file_size": 2**62}, "limit"),
    ],
)
def test_initiate_upload_refuses(api, alice, fields, needle):
    err = assert_code(INVALID, api.InitiateUpload, _initiate(**fields), metadata=alice.metadata)
    assert needle in err.details()


def test_initiate_upload_refuses_an_existing_file_id(api, alice):
    upload = initiate(api, alice, 10)
    err = assert_code(
        grpc.StatusCode.ALREADY_EXISTS,
        api.InitiateUpload,
        _initiate(file_id=upload.file_id),
        metadata=alice.metadata,
    )
    assert "already exists" in err.details()


def test_the_storage_key_holds_ids_only(api, alice):
    upload = initiate(api, alice, 10, name="../../../etc/passwd", mime="text/plain")
    assert upload.s3_key == f"users/{alice.user_id}/{upload.file_id}"


@pytest.fixture
def two_part_upload(api, alice):
    """A file of one full part and 10 bytes more, nothing stored yet."""
    return initiate(api, alice, PART + 10)


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"file_id": "nope"}, "file_id must be a UUID"),
        ({"chunk_index": -1}, "chunk_index -1 is outside 0..1"),
        ({"chunk_index": 2}, "chunk_index 2 is outside 0..1"),
        ({"size": 0}, f"part 0 must be {PART} bytes, not 0"),
        ({"size": -5}, f"part 0 must be {PART} bytes"),
        ({"size": PART + 1}, f"part 0 must be {PART} bytes"),
        ({"chunk_index": 1, "size": PART}, "part 1 must be 10 bytes"),
        ({"etag": ""}, "etag is required"),
        ({"etag": '""'}, "etag is required"),
        ({"etag": "has space"}, "not a valid ETag"),
    ],
)
def test_record_part_refuses(api, alice, two_part_upload, fields, needle):
    values = {"file_id": two_part_upload.file_id, "chunk_index": 0, "size": PART, "etag": '"abc"'}
    values.update(fields)
    err = assert_code(
        INVALID, api.RecordPart, upload_pb2.RecordPartRequest(**values), metadata=alice.metadata
    )
    assert needle in err.details()


def _parts(*pairs):
    return [upload_pb2.CompletedPart(part_number=n, etag=e) for n, e in pairs]


@pytest.fixture
def stored_two_parts(api, alice):
    """A file of two parts, both PUT and recorded, not completed."""
    upload = initiate(api, alice, PART + 10)
    put_parts(upload)
    record_parts(api, alice, upload)
    return upload


def test_complete_upload_refuses_bad_requests(api, alice, stored_two_parts):
    upload = stored_two_parts
    e1, e2 = upload.etags
    cases = [
        (dict(upload_id=""), "upload_id is required"),
        (dict(upload_id="someone-elses-upload"), "not this file's upload"),
        (dict(file_id="nope"), "file_id must be a UUID"),
        (dict(parts=[]), "missing from the request: 1, 2"),
        (dict(parts=_parts((1, e1))), "missing from the request: 2"),
        (dict(parts=_parts((1, e1), (2, e2), (2, e2))), "part 2 is listed more than once"),
        (dict(parts=_parts((0, e1), (1, e1), (2, e2))), "part number 0 is outside 1..2"),
        (dict(parts=_parts((1, e1), (2, e2), (3, e2))), "part number 3 is outside 1..2"),
        (dict(parts=_parts((1, e1), (2, ""))), "ETag of part 2 is required"),
    ]
    for fields, needle in cases:
        request = completion(upload)
        for name, value in fields.items():
            if name == "parts":
                del request.parts[:]
                request.parts.extend(value)
            else:
                setattr(request, name, value)
        err = assert_code(INVALID, api.CompleteUpload, request, metadata=alice.metadata)
        assert needle in err.details(), (fields, err.details())
    # Still completable after all that.
    api.CompleteUpload(completion(upload), metadata=alice.metadata)


def test_complete_upload_refuses_an_etag_that_differs_from_the_recorded_one(
    api, alice, stored_two_parts
):
    wrong = completion(stored_two_parts, etags=[stored_two_parts.etags[0], "f" * 32])
    err = assert_code(PRECONDITION, api.CompleteUpload, wrong, metadata=alice.metadata)
    assert "part 2" in err.details() and "recorded" in err.details()


def test_complete_upload_refuses_a_recorded_etag_that_storage_does_not_hold(api, alice):
    upload = initiate(api, alice, PART + 10)
    put_parts(upload)
    fake = "0" * 32
    record_parts(api, alice, upload)
    api.RecordPart(
        upload_pb2.RecordPartRequest(file_id=upload.file_id, chunk_index=1, size=10, etag=fake),
        metadata=alice.metadata,
    )
    err = assert_code(
        PRECONDITION,
        api.CompleteUpload,
        completion(upload, etags=[upload.etags[0], fake]),
        metadata=alice.metadata,
    )
    assert "part 2: storage holds" in err.details()


def test_complete_upload_refuses_unrecorded_and_unstored_parts(api, alice):
    upload = initiate(api, alice, PART + 10)
    put_parts(upload)
    err = assert_code(PRECONDITION, api.CompleteUpload, completion(upload), metadata=alice.metadata)
    assert "part 1 was never recorded" in err.details()

    other = initiate(api, alice, 10)
    api.RecordPart(
        upload_pb2.RecordPartRequest(file_id=other.file_id, chunk_index=0, size=10, etag="a" * 32),
        metadata=alice.metadata,
    )
    err = assert_code(
        PRECONDITION,
        api.CompleteUpload,
        completion(other, etags=["a" * 32]),
        metadata=alice.metadata,
    )
    assert "part 1 is not in storage" in err.details()


def test_complete_upload_refuses_a_part_of_the_wrong_size_in_storage(api, alice):
    """The client recorded the right size but PUT fewer bytes: storage has the last word."""
    upload = initiate(api, alice, PART + 10)
    short = put_part(upload.reply.part_urls[0], upload.data[: PART - MIB])
    last = put_part(upload.reply.part_urls[1], upload.data[PART:])
    upload.etags = [short, last]
    record_parts(api, alice, upload)
    err = assert_code(PRECONDITION, api.CompleteUpload, completion(upload), metadata=alice.metadata)
    assert f"part 1 is {PART - MIB} bytes in storage; expected {PART}" in err.details()


def test_abort_upload_refuses_bad_requests(api, alice):
    upload = initiate(api, alice, 10)
    for request, needle in [
        (upload_pb2.AbortUploadRequest(file_id=upload.file_id), "upload_id is required"),
        (
            upload_pb2.AbortUploadRequest(file_id=upload.file_id, upload_id="other"),
            "not this file's upload",
        ),
        (
            upload_pb2.AbortUploadRequest(file_id="", upload_id=upload.upload_id),
            "file_id is required",
        ),
    ]:
        err = assert_code(INVALID, api.AbortUpload, request, metadata=alice.metadata)
        assert needle in err.details()
    assert_code(
        PRECONDITION,
        api.GetDownloadUrl,
        upload_pb2.GetDownloadUrlRequest(s3_key=upload.s3_key),
        metadata=alice.metadata,
    )


def test_get_download_url_and_delete_refuse_bad_requests(api, alice):
    assert_code(
        INVALID, api.GetDownloadUrl, upload_pb2.GetDownloadUrlRequest(), metadata=alice.metadata
    )
    assert_code(
        grpc.StatusCode.NOT_FOUND,
        api.GetDownloadUrl,
        upload_pb2.GetDownloadUrlRequest(s3_key="x" * 5000),
        metadata=alice.metadata,
    )
    assert_code(
        INVALID,
        api.DeleteFile,
        upload_pb2.DeleteFileRequest(file_id="nope"),
        metadata=alice.metadata,
    )
    assert_code(INVALID, api.DeleteFile, upload_pb2.DeleteFileRequest(), metadata=alice.metadata)
