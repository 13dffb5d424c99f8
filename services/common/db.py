"""PostgreSQL engine and sessions. Pooled connections are checked before use (a ping),
so a database restart costs one failed ping, not a failed request; a hot path may skip
the ping and retry its statement once on a connection found dead instead
(`retry_on_dropped_connection`)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Base of every service's models (one metadata, so one Alembic history)."""


def sqlalchemy_url(uri: str) -> str:
    """Accepts the usual `postgres://` and `postgresql://` forms; psycopg2 is the driver."""
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg2://" + uri[len(prefix):]
    return uri


T = TypeVar("T")


def make_engine(uri: str, *, pool_size: int = 10, isolation_level: str | None = None,
                pre_ping: bool = True) -> Engine:
    """`isolation_level="AUTOCOMMIT"` makes an engine for single-statement writes: set once
    per connection, where `execution_options` would set and reset it (two extra round
    trips) on every checkout. `pre_ping=False` saves a round trip per checkout; its
    callers must use `retry_on_dropped_connection`."""
    options = {"isolation_level": isolation_level} if isolation_level else {}
    return create_engine(
        sqlalchemy_url(uri),
        **options,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


def retry_on_dropped_connection(run: Callable[[], T]) -> T:
    """Runs `run` (an idempotent statement on its own connection) and, when it failed on
    a connection that turned out dead (the database restarted: SQLAlchemy then discards
    the pool's connections), once more on a fresh one."""
    try:
        return run()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return run()


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session
