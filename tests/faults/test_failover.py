"""A failover that leaves the old primary up as a standby: the pooled connections still
answer pings and reads, but every write is refused "read-only" (SQLSTATE 25006), until
the pool connects afresh. Caused for real: the database's new sessions start read-only
(ALTER DATABASE ... SET default_transaction_read_only), the coordinator's pools fill
with such sessions, then new sessions are writable again, as if the address now led to
the new primary: the calls answer UNAVAILABLE meanwhile, and then succeed, because a
connection that met a standby is discarded with the pool's others."""

from __future__ import annotations

import time
from contextlib import closing

import grpc
import psycopg2
import pytest

from dropfile.upload.v1 import upload_pb2
from tests.upload.helpers import PART, completion, error_of, initiate, put_parts

from .conftest import assert_unavailable
from .test_database_restart import _record, _stored

pytestmark = pytest.mark.slow


def _set_new_sessions_read_only(postgres, read_only: bool) -> None:
    with closing(psycopg2.connect(postgres.admin_url)) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(
                "ALTER DATABASE dropfile SET default_transaction_read_only = "
                + ("on" if read_only else "off")
            )


def _until_served(call, *args, timeout: float = 5, **kwargs):
    """The call, again while it answers UNAVAILABLE (what a client does)."""
    give_up = time.monotonic() + timeout
    while True:
        try:
            return call(*args, **kwargs)
        except grpc.RpcError as err:
            assert_unavailable(err)
            if time.monotonic() > give_up:
                raise
            time.sleep(0.1)


def test_connections_to_a_standby_are_replaced(coordinator, own_postgres, user, s3, fault_bucket):
    writer = coordinator()
    upload = initiate(writer.api, user, 2 * PART)
    put_parts(upload)
    try:
        _set_new_sessions_read_only(own_postgres, True)
        standby_side = coordinator(database_retry_seconds=0.3)  # its pools: standby sessions
        standby_side.api.ListFiles(upload_pb2.ListFilesRequest(), metadata=user.metadata)
        assert_unavailable(error_of(_record, standby_side.api, user, upload, 0))
    finally:
        _set_new_sessions_read_only(own_postgres, False)  # the address leads to a primary

    _until_served(_record, standby_side.api, user, upload, 0)
    _until_served(_record, standby_side.api, user, upload, 1)
    _until_served(standby_side.api.CompleteUpload, completion(upload), metadata=user.metadata)
    assert _stored(s3, fault_bucket, upload) == upload.data
