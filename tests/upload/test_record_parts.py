"""RecordParts: many callers' RecordPart in one call, each record authenticated by its own
token and answered as RecordPart would have answered it."""

from __future__ import annotations

import grpc
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2
from services.upload.servicer import MAX_RECORDS_PER_CALL

from .helpers import assert_code, initiate, put_parts

PART = 5 * 1024 * 1024


def token_of(user) -> str:
    return dict(user.metadata)["authorization"].removeprefix("Bearer ")


def record(
    user,
    upload,
    index: int = 0,
    *,
    size: int | None = None,
    etag: str | None = None,
    token: str | None = None,
) -> upload_pb2.PartRecord:
    if size is None:
        size = min(upload.reply.part_size, len(upload.data) - index * upload.reply.part_size)
    return upload_pb2.PartRecord(
        access_token=token_of(user) if token is None else token,
        request_id=f"req-{index}",
        part=upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=index, size=size, etag=etag or "a" * 32
        ),
    )


def recorded(db_engine, file_id: str) -> dict[int, str]:
    with db_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT chunk_index, etag FROM chunks WHERE file_id = :f"), {"f": file_id}
        )
        return {row.chunk_index: row.etag for row in rows}


def codes(reply) -> list[grpc.StatusCode]:
    by_value = {code.value[0]: code for code in grpc.StatusCode}
    return [by_value[result.code] for result in reply.results]


def test_parts_of_several_users_are_recorded_in_one_call_without_call_credentials(
    api, alice, bob, db_engine
):
    first, second = initiate(api, alice, 2 * PART + 10), initiate(api, bob, 100)
    reply = api.RecordParts(
        upload_pb2.RecordPartsRequest(
            records=[
                record(alice, first, 0, etag="b" * 32),
                record(bob, second, 0, etag="c" * 32),
                record(alice, first, 2, etag="d" * 32),
            ]
        )
    )
    assert codes(reply) == [grpc.StatusCode.OK] * 3
    assert recorded(db_engine, first.file_id) == {0: "b" * 32, 2: "d" * 32}
    assert recorded(db_engine, second.file_id) == {0: "c" * 32}


def test_each_record_gets_its_own_refusal_and_the_others_are_recorded(
    api, alice, bob, db_engine, make_token
):
    mine, theirs = initiate(api, alice, 2 * PART), initiate(api, bob, 100)
    aborted = initiate(api, alice, 100)
    api.AbortUpload(
        upload_pb2.AbortUploadRequest(file_id=aborted.file_id, upload_id=aborted.upload_id),
        metadata=alice.metadata,
    )
    expired = make_token(user_id=alice.user_id, exp=1)
    records = [
        record(alice, mine, 0),  # recorded
        record(alice, theirs, 0),  # bob's file: NOT_FOUND for alice
        record(alice, mine, 1, size=7),  # wrong size
        record(alice, mine, 5),  # beyond the last part
        record(alice, aborted, 0),  # aborted upload
        record(alice, mine, 1, token=""),  # no token
        record(alice, mine, 1, token=expired),  # expired token
        record(alice, mine, 1, token="not-a-jwt"),  # garbage
        upload_pb2.PartRecord(
            access_token=token_of(alice),
            part=upload_pb2.RecordPartRequest(
                file_id="not-a-uuid", chunk_index=0, size=1, etag="a" * 32
            ),
        ),
        record(alice, mine, 1),  # recorded
    ]
    reply = api.RecordParts(upload_pb2.RecordPartsRequest(records=records))
    assert codes(reply) == [
        grpc.StatusCode.OK,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OK,
    ]
    results = reply.results
    assert results[1].message == "file not found"
    assert "must be" in results[2].message and "bytes" in results[2].message
    assert results[4].reason == "UPLOAD_ABORTED"
    assert results[5].reason == "ACCESS_TOKEN_MISSING"
    assert results[6].reason == results[7].reason == "ACCESS_TOKEN_INVALID"
    assert recorded(db_engine, mine.file_id) == {0: "a" * 32, 1: "a" * 32}
    assert recorded(db_engine, theirs.file_id) == {}
    assert recorded(db_engine, aborted.file_id) == {}
    # The refusals are what RecordPart itself answers for the same requests.
    for position in (1, 2, 4):
        err = assert_code(
            codes(reply)[position], api.RecordPart, records[position].part, metadata=alice.metadata
        )
        assert err.details() == results[position].message


def test_the_same_part_twice_in_one_call_keeps_the_later_one(api, alice, db_engine):
    upload = initiate(api, alice, 100)
    reply = api.RecordParts(
        upload_pb2.RecordPartsRequest(
            records=[
                record(alice, upload, 0, etag="1" * 32),
                record(alice, upload, 0, etag="2" * 32),
            ]
        )
    )
    assert codes(reply) == [grpc.StatusCode.OK] * 2
    assert recorded(db_engine, upload.file_id) == {0: "2" * 32}


def test_recorded_parts_complete_the_upload(api, alice, db_engine):
    upload = initiate(api, alice, PART + 3)
    etags = put_parts(upload)
    reply = api.RecordParts(
        upload_pb2.RecordPartsRequest(
            records=[
                record(alice, upload, index, etag=etag.strip('"'))
                for index, etag in enumerate(etags)
            ]
        )
    )
    assert codes(reply) == [grpc.StatusCode.OK] * 2
    api.CompleteUpload(
        upload_pb2.CompleteUploadRequest(
            file_id=upload.file_id, upload_id=upload.upload_id, use_recorded_parts=True
        ),
        metadata=alice.metadata,
    )


def test_a_part_of_a_file_recreated_under_the_same_id_is_recorded_on_the_new_upload(
    api, alice, db_engine
):
    first = initiate(api, alice, 100)
    api.RecordParts(upload_pb2.RecordPartsRequest(records=[record(alice, first, 0)]))
    api.DeleteFile(upload_pb2.DeleteFileRequest(file_id=first.file_id), metadata=alice.metadata)
    again = initiate(api, alice, 200, file_id=first.file_id)
    reply = api.RecordParts(
        upload_pb2.RecordPartsRequest(
            records=[
                record(alice, again, 0, etag="e" * 32),
                record(alice, initiate(api, alice, 50), 0),
            ]
        )
    )
    assert codes(reply) == [grpc.StatusCode.OK] * 2
    with db_engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT size FROM chunks WHERE file_id = :f"), {"f": again.file_id}
            ).scalar_one()
            == 200
        )


def test_an_empty_call_records_nothing_and_an_oversized_one_is_refused(api, alice):
    assert list(api.RecordParts(upload_pb2.RecordPartsRequest()).results) == []
    upload = initiate(api, alice, 100)
    too_many = [record(alice, upload, 0)] * (MAX_RECORDS_PER_CALL + 1)
    err = assert_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        api.RecordParts,
        upload_pb2.RecordPartsRequest(records=too_many),
    )
    assert str(MAX_RECORDS_PER_CALL) in err.details()


def test_record_part_still_needs_its_call_credentials(api, alice):
    upload = initiate(api, alice, 100)
    assert_code(
        grpc.StatusCode.UNAUTHENTICATED,
        api.RecordPart,
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=0, size=100, etag="a" * 32
        ),
    )
