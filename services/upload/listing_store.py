"""The SQL of ListFiles: one page of a user's files, newest first, by keyset.

A page is one statement on the autocommit pool (no BEGIN/COMMIT around it; a filtered
one, see below, in a transaction of its own), run again while the database is unreachable
(`Database.retrying`). It reads the columns a listing shows, never ORM objects (1,000 of
them cost more CPU than the query), and one row more than the page holds, which tells
whether there is a next page.

The order is (created_at DESC, id DESC): ids break ties between files created in the same
microsecond, so the order is total and a page continues exactly after the last row of the
previous one, `(created_at, id) < (last.created_at, last.id)`: no file is listed twice or
skipped, whatever is created or deleted meanwhile. New files are newer than the cursor (but
one whose creation was in flight as the first page was read), so they show on a first
page, never on later ones. The index ix_files_user_created_id
(user_id, created_at DESC, id DESC; migration 0006) serves the order and the cursor with
one range scan, however deep the page.

The name filter is `file_name ILIKE '%text%' ESCAPE '\\'` with the text's `\\`, `%` and
`_` escaped: a case-insensitive literal substring. The GIN index ix_files_user_name_trgm
(user_id, file_name's trigrams) finds a user's names holding a text of 3 characters or
more without reading the user's other files; a common text is found faster by walking the
user's files in order until the page is full, which PostgreSQL chooses by itself. A text
too short for trigrams that matches few names costs a walk of the user's files (~50 ms per
100,000), and PostgreSQL, which cannot estimate such a filter, would rather read every
user's files (the whole table, ~700 ms for a million): filtered pages are read in a
transaction of their own with `enable_seqscan` off, so that it never does."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import TextClause

from services.common.db import Database

_COLUMNS = "id, file_name, mime_type, size, s3_key, status, created_at, sha256"
_ORDER = "ORDER BY created_at DESC, id DESC LIMIT :limit"
_AFTER = "(created_at, id) < (:after_created_at, :after_id)"
_NAME = "file_name ILIKE :pattern ESCAPE '\\'"


def _statement(*conditions: str) -> TextClause:
    where = " AND ".join(("user_id = :user_id", *conditions))
    return text(f"SELECT {_COLUMNS} FROM files WHERE {where} {_ORDER}")


# (after a cursor?, with a name filter?) -> the statement: each a plan of its own.
_STATEMENTS = {
    (False, False): _statement(),
    (True, False): _statement(_AFTER),
    (False, True): _statement(_NAME),
    (True, True): _statement(_AFTER, _NAME),
}


# For this transaction only: a user's files are read through their indexes, never by
# reading every user's.
_NO_SEQUENTIAL_SCAN = text("SET LOCAL enable_seqscan = off")


@dataclass(frozen=True)
class ListedRow:
    """A file as a listing shows it."""

    id: uuid.UUID
    file_name: str
    mime_type: str
    size: int
    s3_key: str
    status: str  # the file_status enum's name: UPLOADING, UPLOADED, FAILED
    created_at: datetime
    sha256: str | None


@dataclass(frozen=True)
class Position:
    """Where a page starts: after the file (created_at, id), in listing order."""

    created_at: datetime
    file_id: uuid.UUID


def like_pattern(substring: str) -> str:
    """An ILIKE pattern (ESCAPE '\\') matching names that contain `substring` literally."""
    escaped = substring.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class ListingStore:
    def __init__(self, db: Database, *, autocommit: Engine) -> None:
        """`autocommit`: an engine in AUTOCOMMIT mode on the same database (the one
        UploadStore reads single statements on)."""
        self._db = db
        self._autocommit = autocommit

    def page(
        self,
        user_id: uuid.UUID,
        *,
        limit: int,
        after: Position | None = None,
        name_contains: str = "",
    ) -> list[ListedRow]:
        """At most `limit` of the user's files, newest first, after `after` (from the
        newest when None), whose names contain `name_contains` (any case; all when
        empty)."""
        params: dict[str, Any] = {"user_id": user_id, "limit": limit}
        if after is not None:
            params["after_created_at"] = after.created_at
            params["after_id"] = after.file_id
        if name_contains:
            params["pattern"] = like_pattern(name_contains)
        statement = _STATEMENTS[(after is not None, bool(name_contains))]
        read = self._filtered_rows if name_contains else self._rows
        rows = self._db.retrying(lambda: read(statement, params), what="a read")
        return [ListedRow(*row) for row in rows]

    def _rows(self, statement: TextClause, params: Mapping[str, Any]) -> Sequence[Any]:
        with self._autocommit.connect() as connection:
            return connection.execute(statement, params).all()

    def _filtered_rows(self, statement: TextClause, params: Mapping[str, Any]) -> Sequence[Any]:
        with self._db.session() as session:
            session.execute(_NO_SEQUENTIAL_SCAN)
            return session.execute(statement, params).all()
