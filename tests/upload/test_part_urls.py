"""GetPartUrls: fresh presigned PUT URLs for parts of an upload in progress (the ones
InitiateUpload gave expire), for the caller's UPLOADING, not yet completed files only."""

from __future__ import annotations

import os
import time
import uuid
from urllib.parse import parse_qs, urlparse

import grpc
import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2

from .helpers import (
    PART,
    assert_code,
    completion,
    confirm_request,
    initiate,
    listed,
    put_part,
    put_parts,
    record_parts,
    upload_file,
)


def part_urls(api, user, file_id: str, first: int, last: int) -> upload_pb2.GetPartUrlsResponse:
    return api.GetPartUrls(
        upload_pb2.GetPartUrlsRequest(
            file_id=file_id, first_part_number=first, last_part_number=last
        ),
        metadata=user.metadata,
    )


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlparse(url).query).items()}


def test_fresh_urls_upload_the_parts_they_name(api, alice, isolated_settings):
    data = os.urandom(2 * PART + 10)
    upload = initiate(api, alice, data)
    reply = part_urls(api, alice, upload.file_id, 2, 3)

    assert [part.part_number for part in reply.parts] == [2, 3]
    assert reply.expires_in_seconds == isolated_settings.presigned_url_ttl_seconds
    for part in reply.parts:
        query = query_of(part.url)
        assert query["partNumber"] == str(part.part_number)
        assert query["uploadId"] == upload.upload_id
        assert f"/users/{alice.user_id}/{upload.file_id}" in urlparse(part.url).path

    # Part 1 through the URL InitiateUpload gave, parts 2 and 3 through the fresh ones:
    # storage takes them all and the upload completes.
    upload.etags = [
        put_part(upload.reply.part_urls[0], data[:PART]),
        put_part(reply.parts[0].url, data[PART : 2 * PART]),
        put_part(reply.parts[1].url, data[2 * PART :]),
    ]
    record_parts(api, alice, upload)
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADING


def test_one_part_and_the_whole_file_are_both_valid_ranges(api, alice):
    upload = initiate(api, alice, 3 * PART + 1)
    assert [p.part_number for p in part_urls(api, alice, upload.file_id, 4, 4).parts] == [4]
    assert [p.part_number for p in part_urls(api, alice, upload.file_id, 1, 4).parts] == [
        1,
        2,
        3,
        4,
    ]


@pytest.mark.slow
def test_a_fresh_url_is_signed_anew(api, alice):
    """A URL signed a second later differs from the first (a new X-Amz-Date and
    signature), so it is not the expired one again."""
    upload = initiate(api, alice, 10)
    first = query_of(upload.reply.part_urls[0])
    time.sleep(1.1)  # SigV4 dates have one-second resolution
    fresh = query_of(part_urls(api, alice, upload.file_id, 1, 1).parts[0].url)
    assert fresh["X-Amz-Date"] > first["X-Amz-Date"]
    assert fresh["X-Amz-Signature"] != first["X-Amz-Signature"]


@pytest.mark.parametrize(
    "first,last,message",
    [
        (0, 1, "first_part_number must be 1 or more"),
        (-3, 1, "first_part_number must be 1 or more"),
        (3, 2, "last_part_number must not be less than first_part_number"),
        (1, 1001, "at most 1000 parts per call"),
        (1, 5, "last_part_number 5 is beyond this file's 4 parts"),
    ],
)
def test_bad_ranges_are_invalid_arguments(api, alice, first, last, message):
    upload = initiate(api, alice, 3 * PART + 1)
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT, part_urls, api, alice, upload.file_id, first, last
    )
    assert message in err.details()


@pytest.mark.parametrize("file_id", ["", "not-a-uuid"])
def test_file_ids_must_be_uuids(api, alice, file_id):
    assert_code(grpc.StatusCode.INVALID_ARGUMENT, part_urls, api, alice, file_id, 1, 1)


def test_another_users_file_and_an_unknown_file_are_not_found(api, alice, bob):
    upload = initiate(api, alice, 10)
    for user, file_id in [(bob, upload.file_id), (alice, str(uuid.uuid4()))]:
        err = assert_code(grpc.StatusCode.NOT_FOUND, part_urls, api, user, file_id, 1, 1)
        assert err.details() == "file not found"
    # Bob's out-of-range request learns nothing either: the range is checked after the owner.
    assert_code(grpc.StatusCode.NOT_FOUND, part_urls, api, bob, upload.file_id, 1, 2)


def test_completed_uploads_take_no_more_urls(api, internal, alice, service_metadata):
    upload = upload_file(api, alice, 10)
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION, part_urls, api, alice, upload.file_id, 1, 1
    )
    assert "already complete" in err.details()
    internal.ConfirmUpload(confirm_request(upload), metadata=service_metadata)
    assert listed(api, alice, upload.file_id).status == upload_pb2.FILE_STATUS_UPLOADED
    assert_code(grpc.StatusCode.FAILED_PRECONDITION, part_urls, api, alice, upload.file_id, 1, 1)


def test_aborted_uploads_take_no_more_urls(api, alice):
    upload = initiate(api, alice, 10)
    put_parts(upload)
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(upload_id=upload.upload_id, file_id=upload.file_id),
        metadata=alice.metadata,
    )
    err = assert_code(
        grpc.StatusCode.FAILED_PRECONDITION, part_urls, api, alice, upload.file_id, 1, 1
    )
    assert "aborted" in err.details()


def test_urls_survive_connections_dropped_by_the_database(api, alice, db_engine):
    """The file is read on connections that are not pinged before use: one that PostgreSQL
    dropped (a restart, a failover) costs a retry on a fresh one, not a failed call."""
    upload = initiate(api, alice, 2 * PART)
    assert len(part_urls(api, alice, upload.file_id, 1, 2).parts) == 2
    with db_engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
        conn.commit()
    assert ended >= 1
    assert len(part_urls(api, alice, upload.file_id, 1, 2).parts) == 2


def test_an_access_token_is_required(api, make_token):
    request = upload_pb2.GetPartUrlsRequest(
        file_id=str(uuid.uuid4()), first_part_number=1, last_part_number=1
    )
    assert_code(grpc.StatusCode.UNAUTHENTICATED, api.GetPartUrls, request)
    now = int(time.time())
    expired = [("authorization", f"Bearer {make_token(iat=now - 3600, exp=now - 60)}")]
    assert_code(grpc.StatusCode.UNAUTHENTICATED, api.GetPartUrls, request, metadata=expired)
