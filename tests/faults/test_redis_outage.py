"""Redis holds upload sessions, a cache of PostgreSQL: stopped mid-upload, restarted, or
flushed, it costs no upload. A second coordinator (a replica that never saw the upload,
so has no session of its own in memory) carries on where the first started."""
from __future__ import annotations

import redis

from tests.upload.helpers import PART, completion, initiate, put_parts, record_parts

from .test_database_restart import _record, _stored


def test_uploads_go_on_while_redis_is_down_and_after_it_restarts(coordinator, own_valkey,
                                                                 user, s3, fault_bucket):
    first = coordinator()
    upload = initiate(first.api, user, 3 * PART)
    put_parts(upload)
    _record(first.api, user, upload, 0)

    own_valkey.stop()
    replica = coordinator()
    _record(replica.api, user, upload, 1)  # no session anywhere but PostgreSQL
    started_meanwhile = initiate(replica.api, user, PART)
    put_parts(started_meanwhile)
    record_parts(replica.api, user, started_meanwhile)

    own_valkey.start()
    _record(replica.api, user, upload, 2)
    first.api.CompleteUpload(completion(upload), metadata=user.metadata)
    replica.api.CompleteUpload(completion(started_meanwhile), metadata=user.metadata)
    for done in (upload, started_meanwhile):
        assert _stored(s3, fault_bucket, done) == done.data


def test_a_flushed_redis_loses_no_upload(coordinator, own_valkey, user, s3, fault_bucket):
    first = coordinator()
    upload = initiate(first.api, user, 3 * PART)
    put_parts(upload)
    _record(first.api, user, upload, 0)
    sessions = redis.Redis.from_url(own_valkey.url)
    assert sessions.keys("dropfile:upload:*")

    own_valkey.flushall()
    assert not sessions.keys("*")
    replica = coordinator()
    _record(replica.api, user, upload, 1)
    _record(first.api, user, upload, 2)
    replica.api.CompleteUpload(completion(upload), metadata=user.metadata)
    assert _stored(s3, fault_bucket, upload) == upload.data
