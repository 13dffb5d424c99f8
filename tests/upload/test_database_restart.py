"""RecordPart's connections are not pinged before use (a round trip saved on every
part): a connection PostgreSQL dropped (a restart, a failover, an idle timeout) must still
cost no failed call: the upsert is retried once on a fresh connection."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dropfile.upload.v1 import upload_pb2

from .helpers import PART, completion, initiate, put_parts, race


def _record(api, user, upload, index):
    size = upload.reply.part_size
    body = upload.data[index * size : (index + 1) * size]
    api.RecordPart(
        upload_pb2.RecordPartRequest(
            file_id=upload.file_id, chunk_index=index, size=len(body), etag=upload.etags[index]
        ),
        metadata=user.metadata,
    )


def _drop_every_other_connection(db_engine) -> int:
    """What a PostgreSQL restart does to the pools: every other session of this
    database is ended."""
    with db_engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
        conn.commit()
    return ended


@pytest.mark.slow
def test_record_part_survives_connections_dropped_by_the_database(
    api, alice, db_engine, s3, bucket
):
    upload = initiate(api, alice, 3 * PART)
    put_parts(upload)
    _record(api, alice, upload, 0)
    assert _drop_every_other_connection(db_engine) >= 1
    _record(api, alice, upload, 1)  # met a dead connection, retried on a new one
    _drop_every_other_connection(db_engine)
    _record(api, alice, upload, 2)
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert s3.get_object(Bucket=bucket, Key=upload.s3_key)["Body"].read() == upload.data


@pytest.mark.slow
def test_a_restart_costs_no_call_when_many_connections_died_at_once(
    api, alice, db_engine, s3, bucket
):
    """Several connections in the pool, all dead: the first call to meet one discards
    them all, so no call fails for having met a second dead connection on its retry."""
    upload = initiate(api, alice, 8 * PART)
    put_parts(upload)
    # Concurrent calls leave several connections in the pool.
    assert race([lambda i=i: _record(api, alice, upload, i) for i in range(4)]) == [None] * 4
    assert _drop_every_other_connection(db_engine) >= 2
    assert race([lambda i=i: _record(api, alice, upload, i) for i in range(4, 8)]) == [None] * 4
    _drop_every_other_connection(db_engine)
    # RecordParts' many-row statement retries the same way.
    reply = api.RecordParts(
        upload_pb2.RecordPartsRequest(
            records=[
                upload_pb2.PartRecord(
                    access_token=dict(alice.metadata)["authorization"].removeprefix("Bearer "),
                    part=upload_pb2.RecordPartRequest(
                        file_id=upload.file_id,
                        chunk_index=index,
                        size=PART,
                        etag=upload.etags[index],
                    ),
                )
                for index in (0, 1)
            ]
        )
    )
    assert [result.code for result in reply.results] == [0, 0]
    api.CompleteUpload(completion(upload), metadata=alice.metadata)
    assert s3.get_object(Bucket=bucket, Key=upload.s3_key)["Body"].read() == upload.data
