"""Persistence of files and chunks (PostgreSQL, the source of truth). Every query the
upload coordinator runs lives here; service.py decides, this module reads and writes.

A database that is briefly unreachable (a restart, a failover) is waited for here, for
up to the Database's retry_seconds: reads and idempotent writes are run again whole; a
transaction that hands its session to the caller's block is retried only up to the
yield (its reads and locks). What still fails is a transient error (UNAVAILABLE)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import String, bindparam, case, delete, func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from services.common.db import Database, PreparedStatement

from .listing_store import ListingStore
from .models import Chunk, ChunkStatus, File, FileStatus
from .quota import Usage

# First key of the per-user advisory lock that serializes quota decisions (the second is
# a hash of the user id): a namespace of our own among PostgreSQL's advisory locks.
QUOTA_LOCK_NAMESPACE = 0x0D0F_0001

T = TypeVar("T")


# record_chunk's upsert: the chunk is written only if the file is the caller's, has this
# upload id and still takes parts; a retried part replaces what was recorded before, and
# its time too (created_at: when it was last recorded, the reaper's sign of activity).
_RECORD_CHUNK = PreparedStatement(
    "record_chunk",
    [
        ("file_id", "uuid"),
        ("user_id", "uuid"),
        ("upload_id", "varchar"),
        ("chunk_index", "integer"),
        ("size", "bigint"),
        ("etag", "varchar"),
        ("checksum", "varchar"),
    ],
    """
INSERT INTO chunks (file_id, chunk_index, size, etag, status, checksum)
SELECT files.id, $4, $5, $6, 'COMPLETED', $7
FROM files
WHERE files.id = $1 AND files.user_id = $2 AND files.upload_id = $3
  AND files.status = 'UPLOADING' AND files.completed_at IS NULL
FOR SHARE OF files
ON CONFLICT (file_id, chunk_index) DO UPDATE
SET size = excluded.size, etag = excluded.etag, status = excluded.status,
    checksum = excluded.checksum, created_at = now()
RETURNING chunk_index""",
)

# record_chunks: many parts in one statement. The records arrive as parallel arrays
# (unnest), so the statement, and PostgreSQL's plan of it, is the same whatever their
# number. Same rules as _RECORD_CHUNK, row by row.
_RECORD_CHUNKS = PreparedStatement(
    "record_chunks",
    [
        ("file_ids", "uuid[]"),
        ("user_ids", "uuid[]"),
        ("upload_ids", "varchar[]"),
        ("chunk_indexes", "integer[]"),
        ("sizes", "bigint[]"),
        ("etags", "varchar[]"),
        ("checksums", "varchar[]"),
    ],
    """
INSERT INTO chunks (file_id, chunk_index, size, etag, status, checksum)
SELECT files.id, record.chunk_index, record.size, record.etag, 'COMPLETED', record.checksum
FROM unnest($1, $2, $3, $4, $5, $6, $7)
     AS record(file_id, user_id, upload_id, chunk_index, size, etag, checksum)
JOIN files ON files.id = record.file_id AND files.user_id = record.user_id
          AND files.upload_id = record.upload_id
WHERE files.status = 'UPLOADING' AND files.completed_at IS NULL
FOR SHARE OF files
ON CONFLICT (file_id, chunk_index) DO UPDATE
SET size = excluded.size, etag = excluded.etag, status = excluded.status,
    checksum = excluded.checksum, created_at = now()
RETURNING file_id, chunk_index""",
)


@dataclass(frozen=True)
class ChunkRecord:
    """One part to record, for UploadStore.record_chunks."""

    file_id: uuid.UUID
    user_id: uuid.UUID
    upload_id: str
    chunk_index: int
    size: int
    etag: str
    checksum: str | None = None


class FileIdTaken(Exception):
    """Another file (anyone's) already has this id."""


def _usage_query(user_id, excluding: uuid.UUID | None):
    """Bytes of the user's UPLOADING and UPLOADED files (FAILED ones hold nothing): one
    row (total, of which uploading). `user_id`: a UUID or a bound parameter."""
    uploading = func.coalesce(
        func.sum(case((File.status == FileStatus.UPLOADING, File.size), else_=0)), 0
    )
    total = func.coalesce(func.sum(File.size), 0)
    query = select(total, uploading).where(
        File.user_id == user_id, File.status.in_([FileStatus.UPLOADING, FileStatus.UPLOADED])
    )
    if excluding is not None:
        query = query.where(File.id != excluding)
    return query


def _id_taken():
    """EXISTS (a file, anyone's, with the id `file_id`), on an alias so that it stays
    uncorrelated when it is a column of a query on files."""
    other = aliased(File)
    return select(literal(True)).select_from(other).where(other.id == bindparam("file_id")).exists()


# Statements of every initiation and part-URL request, built once with bound parameters
# (as _RECORD_CHUNK): building a statement and its cache key costs CPU on every call.
_LOCK_QUOTA = select(
    func.pg_advisory_xact_lock(
        QUOTA_LOCK_NAMESPACE, func.hashtext(bindparam("user_key", type_=String))
    )
)
# An initiation's decision: the owner's usage, uploads in progress, and whether the id is taken.
_ADMISSION = _usage_query(bindparam("user_id"), None).add_columns(
    func.count().filter(File.status == FileStatus.UPLOADING), _id_taken()
)
_ID_TAKEN = select(_id_taken())
_INSERT_FILE = insert(File.__table__)
_OWNED_FILE = select(File).where(
    File.id == bindparam("file_id"), File.user_id == bindparam("user_id")
)


class FileCreation:
    """What UploadStore.file_creation checked, and the insert that ends it."""

    def __init__(self, session: Session, *, id_taken: bool, usage: Usage | None) -> None:
        self.id_taken = id_taken
        self.usage = usage  # None when not asked for
        self._session = session

    def insert(self, file: File) -> None:
        """Inserts `file`'s row (a plain INSERT: the ORM's unit of work costs more CPU
        than the statement; `file` stays detached). FileIdTaken when a concurrent
        creation took the id after it was checked."""
        row = {
            column.key: value
            for column in File.__table__.columns
            if (value := getattr(file, column.key)) is not None
        }  # others: defaults
        try:
            self._session.execute(_INSERT_FILE, row)
        except IntegrityError:
            raise FileIdTaken(str(file.id)) from None


class FileDeletion:
    """UploadStore.locked_file_deletion's file (None when it is not the caller's), and the
    delete that commits with the block."""

    def __init__(self, session: Session, file: File | None) -> None:
        self.file = file
        self._session = session

    def delete(self) -> None:
        """Deletes the row (its chunks cascade) when the block ends."""
        self._session.execute(delete(File).where(File.id == self.file.id))


class UploadStore:
    def __init__(self, db: Database, *, autocommit: Engine) -> None:
        """`autocommit`: an engine in AUTOCOMMIT mode, without pre-ping, on the same
        database, for the single-statement hot path (recording parts, one round trip) and
        single-statement reads (owned_file)."""
        self._db = db
        self._autocommit = autocommit
        # Sessions whose only statement needs no BEGIN/COMMIT around it.
        self._reads = sessionmaker(autocommit, expire_on_commit=False)
        # ListFiles' pages (listing_store.py).
        self.listing = ListingStore(db, autocommit=autocommit)

    @contextmanager
    def file_creation(
        self, file_id: uuid.UUID, user_id: uuid.UUID, *, with_usage: bool
    ) -> Iterator[FileCreation]:
        """One transaction (one connection) that creates a file: it tells whether the id is
        taken and, `with_usage`, the owner's usage (bytes and uploads in progress) read
        under the per-user quota lock; the block decides, may call storage, then inserts;
        the insert commits when the block ends, and the lock goes with it. Two concurrent
        creations by one user are decided one after the other, each seeing the other's
        file."""

        def check(session: Session) -> tuple[bool, Usage | None]:
            if with_usage:
                self._lock_quota(session, user_id)
                used, in_progress, uploads, id_taken = session.execute(
                    _ADMISSION, {"user_id": user_id, "file_id": file_id}
                ).one()
                return bool(id_taken), Usage(
                    used_bytes=int(used),
                    uploading_bytes=int(in_progress),
                    uploads_in_progress=int(uploads),
                )
            return bool(session.scalar(_ID_TAKEN, {"file_id": file_id})), None

        with self._db.session_from(check) as (session, (id_taken, usage)):
            yield FileCreation(session, id_taken=id_taken, usage=usage)

    def usage_of(self, user_id: uuid.UUID, *, excluding: uuid.UUID | None = None) -> Usage:
        return self._read(lambda session: self._usage(session, user_id, excluding))

    @contextmanager
    def locked_usage(
        self, user_id: uuid.UUID, *, excluding: uuid.UUID | None = None
    ) -> Iterator[Usage]:
        """The user's usage (without the file `excluding`), with the per-user quota lock
        held for the block."""
        with self._db.session_from(
            lambda session: self._locked_usage(session, user_id, excluding)
        ) as (_, usage):
            yield usage

    def _locked_usage(
        self, session, user_id: uuid.UUID, excluding: uuid.UUID | None = None
    ) -> Usage:
        self._lock_quota(session, user_id)
        return self._usage(session, user_id, excluding)

    @staticmethod
    def _lock_quota(session, user_id: uuid.UUID) -> None:
        """The per-user quota lock, held until the transaction ends. A statement of its own:
        the usage must be read by a later statement, whose snapshot sees what the previous
        holder committed."""
        session.execute(_LOCK_QUOTA, {"user_key": str(user_id)})

    @staticmethod
    def _usage(session, user_id: uuid.UUID, excluding: uuid.UUID | None) -> Usage:
        used, in_progress = session.execute(_usage_query(user_id, excluding)).one()
        return Usage(used_bytes=int(used), uploading_bytes=int(in_progress))

    def owned_file(self, file_id: uuid.UUID, user_id: uuid.UUID) -> File | None:
        return self._read_one(_OWNED_FILE, {"file_id": file_id, "user_id": user_id})

    def _read_one(self, query, params: dict):
        """The first row of a one-statement read, on the autocommit pool (no BEGIN and
        COMMIT around it; that pool pings no connection before use, so the read is retried
        once on a connection found dead)."""

        def read():
            with self._reads() as session:
                return session.scalar(query, params)

        return self._db.retrying(read, what="a read")

    def _read(self, query: Callable[[Session], T]) -> T:
        """`query(session)` in a transaction of its own, run again while the database
        is unreachable."""

        def read() -> T:
            with self._db.session() as session:
                return query(session)

        return self._db.retrying(read, what="a read")

    def owned_file_by_key(self, s3_key: str, user_id: uuid.UUID) -> File | None:
        return self._read(
            lambda session: session.scalar(
                select(File).where(File.s3_key == s3_key, File.user_id == user_id)
            )
        )

    def files_of(self, user_id: uuid.UUID) -> list[File]:
        """Newest first (ties broken by id, so the order is stable)."""
        return self._read(
            lambda session: list(
                session.scalars(
                    select(File)
                    .where(File.user_id == user_id)
                    .order_by(File.created_at.desc(), File.id.desc())
                )
            )
        )

    def chunks_of(self, file_id: uuid.UUID) -> dict[int, Chunk]:
        return self._read(
            lambda session: {
                chunk.chunk_index: chunk
                for chunk in session.scalars(
                    select(Chunk).where(
                        Chunk.file_id == file_id, Chunk.status == ChunkStatus.COMPLETED
                    )
                )
            }
        )

    def record_chunk(
        self,
        *,
        file_id: uuid.UUID,
        user_id: uuid.UUID,
        upload_id: str,
        chunk_index: int,
        size: int,
        etag: str,
        checksum: str | None = None,
    ) -> bool:
        """Upserts a COMPLETED chunk in one statement, only if the file is the caller's,
        has this upload id and is still being uploaded (not completed). False otherwise.

        The file row is read FOR SHARE, so a concurrent abort either waits for this
        insert or makes it find the file FAILED: no chunk outlives an abort. One prepared
        statement on an autocommit connection keeps the hot path to a single round trip
        (that pool pings no connection before use: the upsert, idempotent, is run again
        if it met a dead connection or an unreachable database)."""
        values = {
            "file_id": str(file_id),
            "user_id": str(user_id),
            "upload_id": upload_id,
            "chunk_index": chunk_index,
            "size": size,
            "etag": etag,
            "checksum": checksum,
        }
        return bool(
            self._db.retrying(
                lambda: _RECORD_CHUNK.rows(self._autocommit, values), what="recording a part"
            )
        )

    def record_chunks(self, records: list[ChunkRecord]) -> set[tuple[uuid.UUID, int]]:
        """record_chunk for many parts in one statement and one commit: the (file id,
        chunk index) of those recorded. Each is recorded only on record_chunk's conditions;
        the others are left out. No two records may name the same chunk (PostgreSQL
        refuses to upsert one row twice in a statement)."""
        if not records:
            return set()
        if len(records) == 1:  # the single-row statement: PostgreSQL plans it faster
            record = records[0]
            recorded = self.record_chunk(
                file_id=record.file_id,
                user_id=record.user_id,
                upload_id=record.upload_id,
                chunk_index=record.chunk_index,
                size=record.size,
                etag=record.etag,
                checksum=record.checksum,
            )
            return {(record.file_id, record.chunk_index)} if recorded else set()
        values = {
            "file_ids": [str(r.file_id) for r in records],
            "user_ids": [str(r.user_id) for r in records],
            "upload_ids": [r.upload_id for r in records],
            "chunk_indexes": [r.chunk_index for r in records],
            "sizes": [r.size for r in records],
            "etags": [r.etag for r in records],
            "checksums": [r.checksum for r in records],
        }
        return {
            (uuid.UUID(str(file_id)), chunk_index)
            for file_id, chunk_index in self._db.retrying(
                lambda: _RECORD_CHUNKS.rows(self._autocommit, values), what="recording parts"
            )
        }

    def reconcile_chunks(
        self, *, file_id: uuid.UUID, upload_id: str, upserts: list[Chunk], deletes: list[int]
    ) -> bool:
        """Makes the recorded chunks agree with storage: `upserts` recorded (replacing
        what was there), chunk indexes in `deletes` forgotten. Only while the file still
        takes parts of this upload (its row read FOR SHARE, as record_chunk does); False
        when it no longer does and nothing was changed. The same changes twice are the
        same changes: run again while the database is unreachable."""
        return self._db.retrying(
            lambda: self._reconcile_chunks(
                file_id=file_id, upload_id=upload_id, upserts=upserts, deletes=deletes
            ),
            what="reconciling parts",
        )

    def _reconcile_chunks(
        self, *, file_id: uuid.UUID, upload_id: str, upserts: list[Chunk], deletes: list[int]
    ) -> bool:
        with self._db.session() as session:
            receiving = session.scalar(
                select(File.id)
                .where(
                    File.id == file_id,
                    File.upload_id == upload_id,
                    File.status == FileStatus.UPLOADING,
                    File.completed_at.is_(None),
                )
                .with_for_update(read=True)
            )
            if receiving is None:
                return False
            if deletes:
                session.execute(
                    delete(Chunk).where(Chunk.file_id == file_id, Chunk.chunk_index.in_(deletes))
                )
            if upserts:
                statement = pg_insert(Chunk).values(
                    [
                        {
                            "file_id": file_id,
                            "chunk_index": chunk.chunk_index,
                            "size": chunk.size,
                            "etag": chunk.etag,
                            "status": ChunkStatus.COMPLETED,
                            "checksum": chunk.checksum,
                        }
                        for chunk in upserts
                    ]
                )
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=[Chunk.file_id, Chunk.chunk_index],
                        set_={
                            "size": statement.excluded.size,
                            "etag": statement.excluded.etag,
                            "status": statement.excluded.status,
                            "checksum": statement.excluded.checksum,
                            "created_at": func.now(),
                        },
                    )
                )
        return True

    def delete_chunks(self, file_id: uuid.UUID) -> None:
        def run() -> None:
            with self._db.session() as session:
                session.execute(delete(Chunk).where(Chunk.file_id == file_id))

        self._db.retrying(run, what="deleting parts")

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

    def pending_confirmations(self, *, completed_before: datetime, limit: int) -> list[File]:
        """UPLOADING files whose multipart upload was completed before the given moment
        (served by the (status, completed_at) index), oldest first."""
        return self._read(
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
    def locked_file_by_key(self, s3_key: str) -> Iterator[File | None]:
        """Like locked_owned_file, by storage key and for any owner (internal callers)."""
        with self._db.session_from(
            lambda session: session.scalar(
                select(File).where(File.s3_key == s3_key).with_for_update()
            )
        ) as (_, file):
            yield file
