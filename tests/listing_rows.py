"""File rows written straight into the files table, for the listing tests: many files in
one statement, with the creation times a test chooses (ties included), as an upload
through the API would leave them (UPLOADED, with an ETag and a storage key)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

_INSERT = text(
    """
INSERT INTO files (id, user_id, file_name, mime_type, size, s3_key, upload_id, part_size,
                   part_count, status, etag, created_at, updated_at, completed_at, uploaded_at)
VALUES (:id, :user_id, :file_name, :mime_type, :size, :s3_key, :upload_id, 5242880, 1,
        'UPLOADED', 'etag', :created_at, :created_at, :created_at, :created_at)
"""
)


@dataclass(frozen=True)
class Row:
    file_id: str
    file_name: str
    created_at: datetime
    size: int
    mime_type: str


def insert_files(
    engine,
    user_id: str,
    names: list[str],
    *,
    start: datetime | None = None,
    step: timedelta = timedelta(seconds=1),
    ties: int = 1,
) -> list[Row]:
    """One file per name, the first the oldest: every `ties` consecutive files share a
    creation time, each group `step` newer than the previous. Returns them newest first,
    ties by id descending: the order ListFiles answers."""
    start = start or datetime(2020, 1, 1, tzinfo=UTC)
    rows = []
    for index, name in enumerate(names):
        file_id = uuid.uuid4()
        rows.append(
            {
                "id": file_id,
                "user_id": uuid.UUID(user_id),
                "file_name": name,
                "mime_type": "text/plain" if index % 2 else "application/octet-stream",
                "size": 1000 + index,
                "s3_key": f"users/{user_id}/{file_id}",
                "upload_id": f"upload-{file_id}",
                "created_at": start + step * (index // ties),
            }
        )
    if rows:
        with engine.begin() as connection:
            connection.execute(_INSERT, rows)
    listed = [
        Row(str(r["id"]), r["file_name"], r["created_at"], r["size"], r["mime_type"]) for r in rows
    ]
    return sorted(listed, key=lambda r: (r.created_at, uuid.UUID(r.file_id)), reverse=True)
