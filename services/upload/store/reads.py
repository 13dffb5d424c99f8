"""One-statement reads shared by the stores: in a transaction of their own, or on the
autocommit pool, run again while the database is unreachable."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Select

from services.common.db import Database

T = TypeVar("T")


class Reads:
    def __init__(self, db: Database, *, autocommit: Engine) -> None:
        """`autocommit`: an engine in AUTOCOMMIT mode, without pre-ping, on the same
        database, for single-statement reads (no BEGIN and COMMIT around them)."""
        self._db = db
        # Sessions whose only statement needs no BEGIN/COMMIT around it.
        self._sessions = sessionmaker(autocommit, expire_on_commit=False)

    def first(self, query: Select[T], params: Mapping[str, Any]) -> T | None:
        """The first row of a one-statement read, on the autocommit pool (no BEGIN and
        COMMIT around it; that pool pings no connection before use, so the read is retried
        once on a connection found dead)."""

        def read() -> T | None:
            with self._sessions() as session:
                return session.scalar(query, params)

        return self._db.retrying(read, what="a read")

    def run(self, query: Callable[[Session], T]) -> T:
        """`query(session)` in a transaction of its own, run again while the database
        is unreachable."""

        def read() -> T:
            with self._db.session() as session:
                return query(session)

        return self._db.retrying(read, what="a read")
