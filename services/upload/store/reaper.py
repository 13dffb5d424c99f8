"""The reaper's queries (services/upload/reaper.py) on files and their parts.

Several replicas run the reaper at once. Idle uploads are claimed with SELECT ... FOR UPDATE
SKIP LOCKED, so each is handled by one replica while the others take other rows or none;
the orphan scan of storage runs under a transaction-level advisory lock, so one replica at a
time does it and the others skip that part of their round.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import ScalarSelect, delete, func, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from services.common.db import Database

from ..models import File, FileStatus, Part
from .tombstones import record_tombstone

# The advisory lock of the orphan scan: any constant no other Dropfile code uses
# (the ASCII of "dfreaper").
ORPHAN_SCAN_LOCK = 0x6466726561706572


def _last_part_at(file_id: InstrumentedAttribute[uuid.UUID]) -> ScalarSelect[datetime]:
    return select(func.max(Part.created_at)).where(Part.file_id == file_id).scalar_subquery()


class IdleClaim:
    """Idle uploads locked for one transaction: mark the ones cleaned up in storage with
    `failed()`; everything is committed when the claim's block ends."""

    def __init__(self, session: Session, files: list[File]) -> None:
        self._session = session
        self.files = files

    def failed(self, file: File, *, tombstone_seconds: int | None = None) -> None:
        """The upload is over: FAILED, its recorded parts gone; with `tombstone_seconds`
        (a single PUT, whose URL may still PUT the object), its key is deleted from
        storage again that long from now (store/tombstones.py)."""
        file.status = FileStatus.FAILED
        self._session.execute(delete(Part).where(Part.file_id == file.id))
        if tombstone_seconds is not None:
            record_tombstone(self._session, file.s3_key, seconds=tombstone_seconds)

    def completed(self, file: File, *, etag: str) -> None:
        """Storage completed the upload, its record of it was lost: recorded now with the
        object's ETag (the status stays UPLOADING until storage's confirmation, as after
        any completion)."""
        file.completed_at = func.now()
        file.etag = etag or None


class ReaperStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def claim_idle(self, *, idle_before: datetime, limit: int) -> Iterator[IdleClaim]:
        """Up to `limit` uploads still taking parts (UPLOADING, not completed) whose file and
        parts have not changed since `idle_before`, oldest first, locked for the block.
        Rows another transaction holds (a reaper elsewhere, a part being recorded) are
        skipped, not waited for."""
        with self._db.session() as session:
            candidates = list(
                session.scalars(
                    select(File)
                    .where(
                        File.status == FileStatus.UPLOADING,
                        File.completed_at.is_(None),
                        File.updated_at < idle_before,
                        func.coalesce(_last_part_at(File.id), File.updated_at) < idle_before,
                    )
                    .order_by(File.updated_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=File)
                )
            )
            if candidates:
                # Looked again now that the rows are locked: a part recorded just before the
                # lock (committed after the statement above took its snapshot) counts, and
                # none can be recorded while the lock is held (RecordPart reads the file
                # FOR SHARE).
                recent = set(
                    session.scalars(
                        select(Part.file_id)
                        .where(Part.file_id.in_([file.id for file in candidates]))
                        .group_by(Part.file_id)
                        .having(func.max(Part.created_at) >= idle_before)
                    )
                )
                candidates = [file for file in candidates if file.id not in recent]
            yield IdleClaim(session, candidates)

    def live_uploads(self, keys: list[str]) -> set[tuple[str, str]]:
        """(s3_key, upload_id) of the uploads among `keys` that a file still expects parts
        for: the multipart uploads that are not orphans."""
        if not keys:
            return set()
        with self._db.session() as session:
            return {
                (key, upload_id)
                for key, upload_id in session.execute(
                    select(File.s3_key, File.upload_id).where(
                        File.s3_key.in_(keys),
                        File.status == FileStatus.UPLOADING,
                        File.completed_at.is_(None),
                        File.upload_id.is_not(None),
                    )
                )
                if upload_id is not None  # always: the query asks for uploads with an id
            }

    @contextmanager
    def orphan_scan_turn(self) -> Iterator[bool]:
        """True inside the block when this replica holds the orphan scan's lock (until the
        block ends); False when another replica is scanning now."""
        with self._db.session() as session:
            yield bool(
                session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ORPHAN_SCAN_LOCK}
                )
            )
