"""Storage tombstones (models.StorageTombstone, migration 0008): keys whose object must be
deleted once the last presigned URL that could PUT there has expired.

They are recorded in the transaction that removes the upload (abort, delete, the reaper
failing it), on PostgreSQL's clock, and swept by the reaper: due ones are claimed with
SELECT ... FOR UPDATE SKIP LOCKED, so replicas sweeping at once take different keys, and
each is dropped only once storage deleted its key, in the claim's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.common.db import Database

from ..models import File, FileStatus, StorageTombstone

_NEW = pg_insert(StorageTombstone).values(
    s3_key=bindparam("s3_key"),
    delete_after=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, bindparam("seconds")),
)
# A key tombstoned already (an abort retried, a FAILED upload then deleted): the later
# moment holds.
_RECORD = _NEW.on_conflict_do_update(
    index_elements=[StorageTombstone.s3_key],
    set_={"delete_after": func.greatest(StorageTombstone.delete_after, _NEW.excluded.delete_after)},
)


def record_tombstone(session: Session, s3_key: str, *, seconds: int) -> None:
    """In `session`'s transaction: `s3_key` is deleted from storage `seconds` from now (on
    PostgreSQL's clock) or later."""
    session.execute(_RECORD, {"s3_key": s3_key, "seconds": seconds})


class TombstoneClaim:
    """Due tombstones locked for one transaction: `swept(key)` for each whose key storage
    deleted; those are dropped when the claim's block ends, the others stay."""

    def __init__(self, session: Session, keys: list[str], live: set[str]) -> None:
        self._session = session
        self.keys = keys
        # Keys a file that is not FAILED holds: its object is that file's (see the reaper).
        self.live = live

    def swept(self, key: str) -> None:
        self._session.execute(delete(StorageTombstone).where(StorageTombstone.s3_key == key))


class TombstoneStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def held(self, s3_key: str) -> Iterator[bool]:
        """Whether `s3_key` has a tombstone, kept (locked FOR SHARE) for the block: no
        reaper sweeps it, so no file can be created at the key meanwhile, and deleting
        the key's object in the block deletes nobody's file."""
        with self._db.session() as session:
            yield (
                session.scalar(
                    select(StorageTombstone.s3_key)
                    .where(StorageTombstone.s3_key == s3_key)
                    .with_for_update(read=True)
                )
                is not None
            )

    @contextmanager
    def claim_due(self, *, now: datetime, limit: int) -> Iterator[TombstoneClaim]:
        """Up to `limit` tombstones due before `now`, oldest first, locked for the block;
        ones another transaction holds (a reaper elsewhere) are skipped, not waited for."""
        with self._db.session() as session:
            keys = list(
                session.scalars(
                    select(StorageTombstone.s3_key)
                    .where(StorageTombstone.delete_after < now)
                    .order_by(StorageTombstone.delete_after)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            live = (
                set(
                    session.scalars(
                        select(File.s3_key).where(
                            File.s3_key.in_(keys), File.status != FileStatus.FAILED
                        )
                    )
                )
                if keys
                else set()
            )
            yield TombstoneClaim(session, keys, live)
