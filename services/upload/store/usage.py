"""A user's usage (quota.py), and the transaction that creates a file: the id checked, the
usage read under the per-user quota lock, the row inserted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql import Select

from services.common.db import Database

from ..models import File, FileStatus, StorageTombstone
from ..quota import Usage
from .reads import Reads

# First key of the per-user advisory lock that serializes quota decisions (the second is
# a hash of the user id): a namespace of our own among PostgreSQL's advisory locks.
QUOTA_LOCK_NAMESPACE = 0x0D0F_0001


class FileIdTaken(Exception):
    """Another file (anyone's) already has this id."""


def _usage_query(user_id: Any, excluding: uuid.UUID | None) -> Select[int, int]:
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


def _id_taken() -> ColumnElement[bool]:
    """EXISTS (a file, anyone's, with the id `file_id`), on an alias so that it stays
    uncorrelated when it is a column of a query on files; or a tombstone on the key
    `s3_key`: a URL of a removed upload may still PUT there, and the reaper will delete
    what is there (store/tombstones.py), so the key is not reused before."""
    other = aliased(File)
    file = select(literal(True)).select_from(other).where(other.id == bindparam("file_id"))
    tombstone = select(literal(True)).where(StorageTombstone.s3_key == bindparam("s3_key"))
    return or_(file.exists(), tombstone.exists())


# Statements of every initiation, built once with bound parameters: building a statement
# and its cache key costs CPU on every call.
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
_INSERT_FILE = insert(cast(Table, File.__table__))


class FileCreation:
    """What UsageStore.file_creation checked, and the insert that ends it."""

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


def _lock_quota(session: Session, user_id: uuid.UUID) -> None:
    """The per-user quota lock, held until the transaction ends. A statement of its own:
    the usage must be read by a later statement, whose snapshot sees what the previous
    holder committed."""
    session.execute(_LOCK_QUOTA, {"user_key": str(user_id)})


def _usage(session: Session, user_id: uuid.UUID, excluding: uuid.UUID | None) -> Usage:
    used, in_progress = session.execute(_usage_query(user_id, excluding)).one()
    return Usage(used_bytes=int(used), uploading_bytes=int(in_progress))


class UsageStore:
    def __init__(self, db: Database, reads: Reads) -> None:
        self._db = db
        self._reads = reads

    @contextmanager
    def file_creation(
        self, file_id: uuid.UUID, user_id: uuid.UUID, *, s3_key: str, with_usage: bool
    ) -> Iterator[FileCreation]:
        """One transaction (one connection) that creates a file: it tells whether the id is
        taken (or `s3_key` has a tombstone) and, `with_usage`, the owner's usage (bytes and
        uploads in progress) read under the per-user quota lock; the block decides, may
        call storage, then inserts; the insert commits when the block ends, and the lock
        goes with it. Two concurrent creations by one user are decided one after the
        other, each seeing the other's file."""

        def check(session: Session) -> tuple[bool, Usage | None]:
            if with_usage:
                _lock_quota(session, user_id)
                used, in_progress, uploads, id_taken = session.execute(
                    _ADMISSION, {"user_id": user_id, "file_id": file_id, "s3_key": s3_key}
                ).one()
                return bool(id_taken), Usage(
                    used_bytes=int(used),
                    uploading_bytes=int(in_progress),
                    uploads_in_progress=int(uploads),
                )
            return bool(session.scalar(_ID_TAKEN, {"file_id": file_id, "s3_key": s3_key})), None

        with self._db.session_from(check) as (session, (id_taken, usage)):
            yield FileCreation(session, id_taken=id_taken, usage=usage)

    def usage_of(self, user_id: uuid.UUID, *, excluding: uuid.UUID | None = None) -> Usage:
        return self._reads.run(lambda session: _usage(session, user_id, excluding))

    @contextmanager
    def locked_usage(
        self, user_id: uuid.UUID, *, excluding: uuid.UUID | None = None
    ) -> Iterator[Usage]:
        """The user's usage (without the file `excluding`), with the per-user quota lock
        held for the block."""

        def locked(session: Session) -> Usage:
            _lock_quota(session, user_id)
            return _usage(session, user_id, excluding)

        with self._db.session_from(locked) as (_, usage):
            yield usage
