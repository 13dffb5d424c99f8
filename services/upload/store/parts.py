"""Recorded parts (the `chunks` table): the hot path's upserts, the parts of an upload,
and their reconciliation with storage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from services.common.db import Database, PreparedStatement

from ..models import File, FileStatus, Part, PartStatus
from .reads import Reads

# record_part's upsert: the part is written only if the file is the caller's, has this
# upload id and still takes parts; a retried part replaces what was recorded before, and
# its time too (created_at: when it was last recorded, the reaper's sign of activity).
_RECORD_PART = PreparedStatement(
    "record_part",
    [
        ("file_id", "uuid"),
        ("user_id", "uuid"),
        ("upload_id", "varchar"),
        ("part_index", "integer"),
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

# record_parts: many parts in one statement. The records arrive as parallel arrays
# (unnest), so the statement, and PostgreSQL's plan of it, is the same whatever their
# number. Same rules as _RECORD_PART, row by row.
_RECORD_PARTS = PreparedStatement(
    "record_parts",
    [
        ("file_ids", "uuid[]"),
        ("user_ids", "uuid[]"),
        ("upload_ids", "varchar[]"),
        ("part_indexes", "integer[]"),
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
class PartRecord:
    """One part to record, for PartStore.record_parts."""

    file_id: uuid.UUID
    user_id: uuid.UUID
    upload_id: str
    part_index: int
    size: int
    etag: str
    checksum: str | None = None


class PartStore:
    def __init__(self, db: Database, reads: Reads, *, autocommit: Engine) -> None:
        """`autocommit`: an engine in AUTOCOMMIT mode, without pre-ping, on the same
        database, for the single-statement hot path (recording parts, one round trip)."""
        self._db = db
        self._reads = reads
        self._autocommit = autocommit

    def parts_of(self, file_id: uuid.UUID) -> dict[int, Part]:
        """The recorded parts of a file, by 0-based part index."""
        return self._reads.run(
            lambda session: {
                part.part_index: part
                for part in session.scalars(
                    select(Part).where(Part.file_id == file_id, Part.status == PartStatus.COMPLETED)
                )
            }
        )

    def record_part(self, record: PartRecord) -> bool:
        """Upserts a COMPLETED part in one statement, only if the file is the caller's,
        has this upload id and is still being uploaded (not completed). False otherwise.

        The file row is read FOR SHARE, so a concurrent abort either waits for this
        insert or makes it find the file FAILED: no part outlives an abort. One prepared
        statement on an autocommit connection keeps the hot path to a single round trip
        (that pool pings no connection before use: the upsert, idempotent, is run again
        if it met a dead connection or an unreachable database)."""
        values = {
            "file_id": str(record.file_id),
            "user_id": str(record.user_id),
            "upload_id": record.upload_id,
            "part_index": record.part_index,
            "size": record.size,
            "etag": record.etag,
            "checksum": record.checksum,
        }
        return bool(
            self._db.retrying(
                lambda: _RECORD_PART.rows(self._autocommit, values), what="recording a part"
            )
        )

    def record_parts(self, records: list[PartRecord]) -> set[tuple[uuid.UUID, int]]:
        """record_part for many parts in one statement and one commit: the (file id, part
        index) of those recorded. Each is recorded only on record_part's conditions; the
        others are left out. No two records may name the same part (PostgreSQL refuses to
        upsert one row twice in a statement)."""
        if not records:
            return set()
        if len(records) == 1:  # the single-row statement: PostgreSQL plans it faster
            [record] = records
            return {(record.file_id, record.part_index)} if self.record_part(record) else set()
        values = {
            "file_ids": [str(r.file_id) for r in records],
            "user_ids": [str(r.user_id) for r in records],
            "upload_ids": [r.upload_id for r in records],
            "part_indexes": [r.part_index for r in records],
            "sizes": [r.size for r in records],
            "etags": [r.etag for r in records],
            "checksums": [r.checksum for r in records],
        }
        return {
            (uuid.UUID(str(file_id)), int(part_index))
            for file_id, part_index in self._db.retrying(
                lambda: _RECORD_PARTS.rows(self._autocommit, values), what="recording parts"
            )
        }

    def reconcile_parts(
        self, *, file_id: uuid.UUID, upload_id: str, upserts: list[Part], deletes: list[int]
    ) -> bool:
        """Makes the recorded parts agree with storage: `upserts` recorded (replacing what
        was there), part indexes in `deletes` forgotten. Only while the file still takes
        parts of this upload (its row read FOR SHARE, as record_part does); False when it
        no longer does and nothing was changed. The same changes twice are the same
        changes: run again while the database is unreachable."""
        return self._db.retrying(
            lambda: self._reconcile_parts(
                file_id=file_id, upload_id=upload_id, upserts=upserts, deletes=deletes
            ),
            what="reconciling parts",
        )

    def _reconcile_parts(
        self, *, file_id: uuid.UUID, upload_id: str, upserts: list[Part], deletes: list[int]
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
                    delete(Part).where(Part.file_id == file_id, Part.part_index.in_(deletes))
                )
            if upserts:
                statement = pg_insert(Part).values(
                    [
                        {
                            "file_id": file_id,
                            "part_index": part.part_index,
                            "size": part.size,
                            "etag": part.etag,
                            "status": PartStatus.COMPLETED,
                            "checksum": part.checksum,
                        }
                        for part in upserts
                    ]
                )
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=[Part.file_id, Part.part_index],
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

    def delete_parts(self, file_id: uuid.UUID) -> None:
        def run() -> None:
            with self._db.session() as session:
                session.execute(delete(Part).where(Part.file_id == file_id))

        self._db.retrying(run, what="deleting parts")
