"""Persistence of share links (PostgreSQL). links.py decides; this module reads and
writes. Validity (not expired, downloads left, the file still UPLOADED) is decided in SQL
against PostgreSQL's clock, and a download is counted by one conditional UPDATE, so
concurrent downloads of a link with a limit never serve more than the limit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Interval,
    String,
    Uuid,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.common.db import Database

from ..models import File, FileStatus, ShareLink


@dataclass(frozen=True)
class LinkRow:
    """One link as stored (its token's hash, never the token)."""

    link_id: uuid.UUID
    file_id: uuid.UUID
    user_id: uuid.UUID
    password_hash: str | None
    created_at: datetime
    expires_at: datetime
    max_downloads: int | None
    download_count: int


@dataclass(frozen=True)
class SharedFile:
    """What a download through a link needs of its file."""

    s3_key: str
    file_name: str
    mime_type: str


def _row(link: ShareLink) -> LinkRow:
    return LinkRow(
        link_id=link.id,
        file_id=link.file_id,
        user_id=link.user_id,
        password_hash=link.password_hash,
        created_at=link.created_at,
        expires_at=link.expires_at,
        max_downloads=link.max_downloads,
        download_count=link.download_count,
    )


def _usable() -> ColumnElement[bool]:
    """The link may serve a download now, and its file is there to serve."""
    return and_(
        ShareLink.expires_at > func.now(),
        or_(
            ShareLink.max_downloads.is_(None),
            ShareLink.download_count < ShareLink.max_downloads,
        ),
        File.id == ShareLink.file_id,
        File.status == FileStatus.UPLOADED,
    )


class ShareStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def uploaded_state(self, file_id: uuid.UUID, user_id: uuid.UUID) -> FileStatus | None:
        """The status of the caller's file; None when it is not the caller's."""

        def read() -> FileStatus | None:
            with self._db.session() as session:
                return session.scalar(
                    select(File.status).where(File.id == file_id, File.user_id == user_id)
                )

        return self._db.retrying(read, what="a read")

    def insert(
        self,
        *,
        link_id: uuid.UUID,
        file_id: uuid.UUID,
        user_id: uuid.UUID,
        token_hash: str,
        password_hash: str | None,
        ttl_seconds: int,
        max_downloads: int | None,
    ) -> LinkRow | None:
        """Inserts the link if its file is still the caller's and UPLOADED (in the same
        statement, so a file deleted meanwhile gets no link); None otherwise. Safe to run
        again: the id is the caller's, a second insert does nothing and the row is read."""

        def run() -> LinkRow | None:
            with self._db.session() as session:
                source = select(
                    literal(link_id, Uuid),
                    File.id,
                    File.user_id,
                    literal(token_hash, String),
                    literal(password_hash, String),
                    func.now() + literal(timedelta(seconds=ttl_seconds), Interval),
                    literal(max_downloads, Integer),
                ).where(
                    File.id == file_id,
                    File.user_id == user_id,
                    File.status == FileStatus.UPLOADED,
                )
                session.execute(
                    pg_insert(ShareLink)
                    .from_select(
                        [
                            "id",
                            "file_id",
                            "user_id",
                            "token_hash",
                            "password_hash",
                            "expires_at",
                            "max_downloads",
                        ],
                        source,
                    )
                    .on_conflict_do_nothing(index_elements=["id"])
                )
                link = session.scalar(
                    select(ShareLink).where(ShareLink.id == link_id, ShareLink.user_id == user_id)
                )
                return None if link is None else _row(link)

        return self._db.retrying(run, what="creating a link")

    def links_of(self, file_id: uuid.UUID, user_id: uuid.UUID) -> list[LinkRow]:
        """The file's links, newest first (ties broken by id)."""

        def read() -> list[LinkRow]:
            with self._db.session() as session:
                links = session.scalars(
                    select(ShareLink)
                    .where(ShareLink.file_id == file_id, ShareLink.user_id == user_id)
                    .order_by(ShareLink.created_at.desc(), ShareLink.id.desc())
                )
                return [_row(link) for link in links]

        return self._db.retrying(read, what="a read")

    def delete(self, link_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        """Deletes the caller's link; False when there is none (idempotent)."""

        def run() -> bool:
            with self._db.session() as session:
                deleted = session.execute(
                    delete(ShareLink)
                    .where(ShareLink.id == link_id, ShareLink.user_id == user_id)
                    .returning(ShareLink.id)
                ).first()
                return deleted is not None

        return self._db.retrying(run, what="revoking a link")

    def usable_link(self, token_hash: str) -> LinkRow | None:
        """The link with this token hash if it may serve a download now."""

        def read() -> LinkRow | None:
            with self._db.session() as session:
                link = session.scalar(
                    select(ShareLink)
                    .join(File, File.id == ShareLink.file_id)
                    .where(ShareLink.token_hash == token_hash, _usable())
                )
                return None if link is None else _row(link)

        return self._db.retrying(read, what="a read")

    def count_download(self, link_id: uuid.UUID) -> SharedFile | None:
        """Counts one download if the link may still serve one (one statement: concurrent
        downloads of a limited link are counted one after the other, never past the
        limit); returns its file, or None when it may not. A retry after a lost answer
        may count one download too many, never one too few."""

        def run() -> SharedFile | None:
            with self._db.session() as session:
                statement: Any = (
                    update(ShareLink)
                    .where(ShareLink.id == link_id, _usable())
                    .values(download_count=ShareLink.download_count + 1)
                    .returning(File.s3_key, File.file_name, File.mime_type)
                )
                row = session.execute(statement).first()
                if row is None:
                    return None
                return SharedFile(s3_key=row[0], file_name=row[1], mime_type=row[2])

        return self._db.retrying(run, what="counting a download")
