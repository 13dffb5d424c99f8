"""The SQL of ListFiles: one page of a user's files, newest first, by keyset.

A page is one statement, run again while the database is unreachable
(`Database.retrying`). Unfiltered pages, the common case, are statements PostgreSQL
prepared once per connection (`PreparedStatement`, on the autocommit pool: no BEGIN/COMMIT,
no planning, no SQLAlchemy per row); a filtered one runs in a transaction of its own (see
below). It reads the columns a listing shows, never ORM objects, the creation time as
whole microseconds since the epoch (EXTRACT gives a numeric, exact: what the page token
and the protobuf Timestamp need, without a datetime per row), and one row more than the
page holds, which tells whether there is a next page. A page of 1,000 costs ~4 ms here.

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
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.db import Database, PreparedStatement

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_COLUMNS = (
    "id::text, file_name, mime_type, size, s3_key, status::text, "
    "(EXTRACT(EPOCH FROM created_at) * 1000000)::bigint, sha256"
)
_ORDER = "ORDER BY created_at DESC, id DESC"

# Unfiltered pages: from the newest, and after a position.
_FIRST_PAGE = PreparedStatement(
    "list_files_first",
    [("user_id", "uuid"), ("limit", "integer")],
    f"SELECT {_COLUMNS} FROM files WHERE user_id = $1 {_ORDER} LIMIT $2",
)
_NEXT_PAGE = PreparedStatement(
    "list_files_after",
    [("user_id", "uuid"), ("limit", "integer"), ("after_at", "timestamptz"), ("after_id", "uuid")],
    f"SELECT {_COLUMNS} FROM files WHERE user_id = $1 AND (created_at, id) < ($3, $4) "
    f"{_ORDER} LIMIT $2",
)
# Filtered pages, planned for their pattern each time (a generic plan cannot tell a rare
# text from a common one).
_FILTERED = {
    after: text(
        f"SELECT {_COLUMNS} FROM files WHERE user_id = :user_id"
        + (" AND (created_at, id) < (:after_at, :after_id)" if after else "")
        + f" AND file_name ILIKE :pattern ESCAPE '\\' {_ORDER} LIMIT :limit"
    )
    for after in (False, True)
}
# For this transaction only: a user's files are read through their indexes, never by
# reading every user's.
_NO_SEQUENTIAL_SCAN = text("SET LOCAL enable_seqscan = off")


class ListedRow(NamedTuple):
    """A file as a listing shows it."""

    file_id: str
    file_name: str
    mime_type: str
    size: int
    s3_key: str
    status: str  # the file_status enum's name: UPLOADING, UPLOADED, FAILED
    created_us: int  # microseconds since the epoch
    sha256: str | None


@dataclass(frozen=True)
class Position:
    """Where a page starts: after the file (created_us, file_id), in listing order."""

    created_us: int
    file_id: uuid.UUID

    @property
    def created_at(self) -> datetime:
        return _EPOCH + self.created_us * _MICROSECOND


def like_pattern(substring: str) -> str:
    """An ILIKE pattern (ESCAPE '\\') matching names that contain `substring` literally."""
    escaped = substring.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class ListingStore:
    def __init__(self, db: Database, *, autocommit: Engine) -> None:
        """`autocommit`: an engine in AUTOCOMMIT mode, without pre-ping, on the same
        database (the one UploadStore records parts and reads single statements on)."""
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
        params: dict[str, Any] = {"user_id": str(user_id), "limit": limit}
        if after is not None:
            params["after_at"] = after.created_at
            params["after_id"] = str(after.file_id)
        if name_contains:
            params["pattern"] = like_pattern(name_contains)
            statement = _FILTERED[after is not None]
            rows = self._db.retrying(lambda: self._filtered(statement, params), what="a read")
        else:
            prepared = _FIRST_PAGE if after is None else _NEXT_PAGE
            rows = self._db.retrying(lambda: prepared.rows(self._autocommit, params), what="a read")
        return [ListedRow._make(row) for row in rows]

    def _filtered(self, statement: Any, params: Mapping[str, Any]) -> Sequence[Any]:
        with self._db.session() as session:
            session.execute(_NO_SEQUENTIAL_SCAN)
            return session.execute(statement, params).all()
