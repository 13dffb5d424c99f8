"""The files table: a caller's files read, and locked for the block that changes them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session, object_session

from services.common.db import Database

from ..models import File, FileStatus
from .reads import Reads
from .tombstones import record_tombstone

# Built once with bound parameters: building a statement and its cache key costs CPU on
# every call, and RecordPart's slow path and every part-URL request read a file.
_OWNED_FILE = select(File).where(
    File.id == bindparam("file_id"), File.user_id == bindparam("user_id")
)


class FileDeletion:
    """FileStore.locked_file_deletion's file (None when it is not the caller's), and the
    delete that commits with the block."""

    def __init__(self, session: Session, file: File | None) -> None:
        self.file = file
        self._session = session

    def delete(self) -> None:
        """Deletes the row (its parts cascade) when the block ends."""
        if self.file is not None:
            self._session.execute(delete(File).where(File.id == self.file.id))

    def tombstone(self, *, seconds: int) -> None:
        """The file's key is deleted from storage again `seconds` from now (a URL that can
        still PUT there), committed with the block (store/tombstones.py)."""
        if self.file is not None:
            record_tombstone(self._session, self.file.s3_key, seconds=seconds)


class FileStore:
    def __init__(self, db: Database, reads: Reads) -> None:
        self._db = db
        self._reads = reads

    def owned_file(self, file_id: uuid.UUID, user_id: uuid.UUID) -> File | None:
        return self._reads.first(_OWNED_FILE, {"file_id": file_id, "user_id": user_id})

    def owned_file_by_key(self, s3_key: str, user_id: uuid.UUID) -> File | None:
        return self._reads.run(
            lambda session: session.scalar(
                select(File).where(File.s3_key == s3_key, File.user_id == user_id)
            )
        )

    def pending_confirmations(self, *, completed_before: datetime, limit: int) -> list[File]:
        """UPLOADING files whose multipart upload was completed before the given moment
        (served by the (status, completed_at) index), oldest first."""
        return self._reads.run(
            lambda session: list(
                session.scalars(
                    select(File)
                    .where(
                        File.status == FileStatus.UPLOADING,
                        File.completed_at.is_not(None),
                        File.completed_at <= completed_before,
                    )
                    .order_by(File.completed_at)
                    .limit(limit)
                )
            )
        )

    @contextmanager
    def locked_file_deletion(
        self, file_id: uuid.UUID, user_id: uuid.UUID
    ) -> Iterator[FileDeletion]:
        """The caller's file locked (SELECT ... FOR UPDATE) for the block, to be deleted."""
        with self._db.session_from(
            lambda session: session.scalar(
                select(File).where(File.id == file_id, File.user_id == user_id).with_for_update()
            )
        ) as (session, file):
            yield FileDeletion(session, file)

    @contextmanager
    def locked_owned_file(self, file_id: uuid.UUID, user_id: uuid.UUID) -> Iterator[File | None]:
        """The caller's file, locked (SELECT ... FOR UPDATE) for the block; changes made to
        it are committed when the block ends. None when it is not the caller's."""
        with self._db.session_from(
            lambda session: session.scalar(
                select(File).where(File.id == file_id, File.user_id == user_id).with_for_update()
            )
        ) as (_, file):
            yield file

    def tombstone(self, file: File, *, seconds: int) -> None:
        """`file`'s key is deleted from storage again `seconds` from now, in the transaction
        holding its row (locked_owned_file's block), committed with it."""
        session = object_session(file)
        if session is None:
            raise RuntimeError("tombstone() needs the file of a locked_owned_file block")
        record_tombstone(session, file.s3_key, seconds=seconds)

    @contextmanager
    def locked_file_by_key(self, s3_key: str) -> Iterator[File | None]:
        """Like locked_owned_file, by storage key and for any owner (internal callers)."""
        with self._db.session_from(
            lambda session: session.scalar(
                select(File).where(File.s3_key == s3_key).with_for_update()
            )
        ) as (_, file):
            yield file
