"""Persistence of files and chunks (PostgreSQL, the source of truth). Every query the
upload coordinator runs lives here; service.py decides, this module reads and writes."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

from sqlalchemy import delete, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError

from services.common.db import Database

from .models import Chunk, ChunkStatus, File, FileStatus


class FileIdTaken(Exception):
    """Another file (anyone's) already has this id."""


class UploadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def file_id_taken(self, file_id: uuid.UUID) -> bool:
        with self._db.session() as session:
            return session.scalar(select(literal(True)).where(File.id == file_id)) is not None

    def insert_file(self, file: File) -> None:
        try:
            with self._db.session() as session:
                session.add(file)
        except IntegrityError:
            raise FileIdTaken(str(file.id)) from None

    def owned_file(self, file_id: uuid.UUID, user_id: uuid.UUID) -> File | None:
        with self._db.session() as session:
            return session.scalar(select(File).where(File.id == file_id,
                                                     File.user_id == user_id))

    def owned_file_by_key(self, s3_key: str, user_id: uuid.UUID) -> File | None:
        with self._db.session() as session:
            return session.scalar(select(File).where(File.s3_key == s3_key,
                                                     File.user_id == user_id))

    def files_of(self, user_id: uuid.UUID) -> list[File]:
        """Newest first (ties broken by id, so the order is stable)."""
        with self._db.session() as session:
            return list(session.scalars(
                select(File).where(File.user_id == user_id)
                .order_by(File.created_at.desc(), File.id.desc())
            ))

    def chunks_of(self, file_id: uuid.UUID) -> dict[int, Chunk]:
        with self._db.session() as session:
            return {chunk.chunk_index: chunk for chunk in session.scalars(
                select(Chunk).where(Chunk.file_id == file_id,
                                    Chunk.status == ChunkStatus.COMPLETED))}

    def record_chunk(self, *, file_id: uuid.UUID, user_id: uuid.UUID, upload_id: str,
                     chunk_index: int, size: int, etag: str) -> bool:
        """Upserts a COMPLETED chunk in one statement, only if the file is the caller's,
        has this upload id and is still being uploaded (not completed). False otherwise.

        The file row is read FOR SHARE, so a concurrent abort either waits for this
        insert or makes it find the file FAILED: no chunk outlives an abort. One statement
        on an autocommit connection keeps the hot path to a single round trip."""
        source = (
            select(File.id, literal(chunk_index), literal(size), literal(etag),
                   literal(ChunkStatus.COMPLETED.value).cast(Chunk.__table__.c.status.type))
            .where(File.id == file_id, File.user_id == user_id, File.upload_id == upload_id,
                   File.status == FileStatus.UPLOADING, File.completed_at.is_(None))
            .with_for_update(read=True)
        )
        statement = pg_insert(Chunk).from_select(
            ["file_id", "chunk_index", "size", "etag", "status"], source)
        statement = statement.on_conflict_do_update(
            index_elements=[Chunk.file_id, Chunk.chunk_index],
            # A retried part replaces what was recorded before.
            set_={"size": statement.excluded.size, "etag": statement.excluded.etag,
                  "status": statement.excluded.status},
        ).returning(Chunk.chunk_index)
        with self._db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return conn.execute(statement).first() is not None

    def delete_chunks(self, file_id: uuid.UUID) -> None:
        with self._db.session() as session:
            session.execute(delete(Chunk).where(Chunk.file_id == file_id))

    def delete_file(self, file_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Deletes the row (its chunks cascade). False when it was not there."""
        with self._db.session() as session:
            deleted = session.execute(
                delete(File).where(File.id == file_id, File.user_id == user_id)
                .returning(File.id)
            ).first()
        return deleted is not None

    @contextmanager
    def locked_owned_file(self, file_id: uuid.UUID, user_id: uuid.UUID
                          ) -> Iterator[File | None]:
        """The caller's file, locked (SELECT ... FOR UPDATE) for the block; changes made to
        it are committed when the block ends. None when it is not the caller's."""
        with self._db.session() as session:
            yield session.scalar(select(File).where(File.id == file_id, File.user_id == user_id)
                                 .with_for_update())

    def pending_confirmations(self, *, completed_before: datetime, limit: int) -> list[File]:
        """UPLOADING files whose multipart upload was completed before the given moment
        (served by the (status, completed_at) index), oldest first."""
        with self._db.session() as session:
            return list(session.scalars(
                select(File)
                .where(File.status == FileStatus.UPLOADING, File.completed_at.is_not(None),
                       File.completed_at <= completed_before)
                .order_by(File.completed_at).limit(limit)))

    @contextmanager
    def locked_file_by_key(self, s3_key: str) -> Iterator[File | None]:
        """Like locked_owned_file, by storage key and for any owner (internal callers)."""
        with self._db.session() as session:
            yield session.scalar(select(File).where(File.s3_key == s3_key).with_for_update())
