"""PostgreSQL engine and sessions. Pooled connections are checked before use (a ping),
so a database restart costs one failed ping, not a failed request; a hot path may skip
the ping and retry its statement on a connection found dead instead.

A database that is briefly unreachable (restarting, failing over) is waited for where
that is safe: `Database.retrying` runs an idempotent unit of work again, and
`Database.session_from` the first statements of a transaction (its reads and locks,
before the block did anything), with backoff, for up to `retry_seconds` in all. What is
still failing then, or fails later in a transaction, propagates as a transient error:
UNAVAILABLE with RetryInfo (services/common/transient.py), never INTERNAL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from .settings import UrlSetting, url_text
from .transient import retry_transient


class Base(DeclarativeBase):
    """Base of every service's models (one metadata, so one Alembic history)."""


def sqlalchemy_url(uri: str | UrlSetting) -> str:
    """Accepts the usual `postgres://` and `postgresql://` forms; psycopg2 is the driver."""
    uri = url_text(uri)
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg2://" + uri[len(prefix) :]
    return uri


T = TypeVar("T")


def make_engine(
    uri: str | UrlSetting,
    *,
    pool_size: int = 10,
    isolation_level: str | None = None,
    pre_ping: bool = True,
) -> Engine:
    """`isolation_level="AUTOCOMMIT"` makes an engine for single-statement writes: set once
    per connection, where `execution_options` would set and reset it (two extra round
    trips) on every checkout. `pre_ping=False` saves a round trip per checkout; its
    callers must retry (`Database.retrying`) a statement that met a dead connection."""
    options = {"isolation_level": isolation_level} if isolation_level else {}
    engine = create_engine(
        sqlalchemy_url(uri),
        **options,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )
    event.listen(engine, "handle_error", _replace_connections_to_a_standby)
    return engine


# SQLSTATE of a write refused by a server that is (now) a read-only standby.
READ_ONLY_SQL_TRANSACTION = "25006"


def on_read_only_server(exc: BaseException) -> bool:
    """After a failover, the old primary may stay up as a standby: its connections answer
    every write with this, and a ping does not tell (reads still work)."""
    return getattr(exc, "pgcode", None) == READ_ONLY_SQL_TRANSACTION


def _replace_connections_to_a_standby(context: ExceptionContext) -> None:
    """Counts a write refused as read-only as a dropped connection: SQLAlchemy then
    discards the pool's connections, and a retry (or the caller's next call) connects
    afresh, to wherever the database's address leads now, instead of meeting the standby
    on every pooled connection until they are recycled (30 min)."""
    if on_read_only_server(context.original_exception):
        context.is_disconnect = True


class PreparedStatement:
    """One statement that PostgreSQL parses and plans once per connection (PREPARE), then
    only runs (EXECUTE), sent on the pooled connection's psycopg2 cursor directly. For the
    hottest path alone (recording parts): skipping the planning and SQLAlchemy's
    per-execution work saves ~0.2 ms of the statement's ~0.5 ms. Run it on an AUTOCOMMIT
    engine (each run commits by itself) without pre-ping, inside `Database.retrying`: like
    SQLAlchemy's own execution, a connection found dead discards the pool's connections
    and raises DBAPIError(connection_invalidated=True), and a connection that cannot be
    made (the server is down, starting or shutting down) raises SQLAlchemy's
    OperationalError, never the driver's own."""

    def __init__(self, name: str, parameters: Sequence[tuple[str, str]], sql: str) -> None:
        """`parameters`: (name, PostgreSQL type) of $1, $2, ... in `sql`, in order."""
        self.name = name
        self._names = [parameter for parameter, _ in parameters]
        types = [pg_type for _, pg_type in parameters]
        self._prepare = f"PREPARE {name} ({', '.join(types)}) AS {sql}"
        # psycopg2 sends values as literals: cast, as a list of str is text[] to PostgreSQL.
        self._execute = f"EXECUTE {name} ({', '.join(f'%s::{t}' for t in types)})"

    def rows(self, engine: Engine, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        arguments = [values[name] for name in self._names]
        dbapi_error = engine.dialect.loaded_dbapi.Error
        try:
            connection = engine.raw_connection()
        except dbapi_error as exc:
            # The pool's connect is not wrapped by SQLAlchemy on this path.
            raise DBAPIError.instance(
                None, None, exc, dbapi_error, dialect=engine.dialect
            ) from None
        cursor = None
        try:
            # The connection's info lives as long as its PostgreSQL session, and so do
            # the statements prepared in it.
            prepared = connection.info.setdefault("prepared_statements", set())
            cursor = connection.cursor()
            if self.name not in prepared:
                cursor.execute(self._prepare)
                prepared.add(self.name)
            cursor.execute(self._execute, arguments)
            # psycopg2 answers a list of tuples (the DB-API's type says a sequence).
            return cast("list[tuple[Any, ...]]", cursor.fetchall())
        except dbapi_error as exc:
            dropped = engine.dialect.is_disconnect(
                exc, connection.dbapi_connection, cursor
            ) or on_read_only_server(exc)
            if dropped:
                # A dead connection (or a standby) means the database restarted or failed
                # over: so did the pool's other connections.
                connection.invalidate(exc)
                engine.dispose()
            raise DBAPIError.instance(
                self._execute,
                arguments,
                exc,
                dbapi_error,
                connection_invalidated=dropped,
                dialect=engine.dialect,
            ) from None
        finally:
            if cursor is not None:
                cursor.close()
            connection.close()


# How long a unit of work waits for an unreachable database, by default: a restart or a
# failover takes seconds; well inside a caller's deadline (the gateway's is 30 s).
DEFAULT_RETRY_SECONDS = 5.0


class Database:
    def __init__(self, engine: Engine, *, retry_seconds: float = DEFAULT_RETRY_SECONDS) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on error. Not
        retried: see `retrying` and `session_from`."""
        with self._sessions() as session, session.begin():
            yield session

    def retrying(self, run: Callable[[], T], *, what: str = "a statement") -> T:
        """`run()`, run again while the database is unreachable (up to retry_seconds in
        all). `run` must be safe to repeat: a read, an idempotent write, or a transaction
        of its own whose outcome is the same if it ran twice."""
        return retry_transient(run, deadline_seconds=self.retry_seconds, what=what)

    @contextmanager
    def session_from(self, start: Callable[[Session], T]) -> Iterator[tuple[Session, T]]:
        """A unit of work that begins with `start(session)` (reads, row and advisory
        locks: nothing that leaves a trace outside the transaction); yields the session and
        what `start` returned; commits when the block ends, rolls back on error. `start`
        is retried on a fresh session while the database is unreachable; the block is not
        (it may have called storage): its failures propagate."""

        def begin() -> tuple[Session, T]:
            session = self._sessions()
            try:
                session.begin()
                return session, start(session)
            except BaseException:
                session.close()
                raise

        session, value = self.retrying(begin, what="a transaction's first statements")
        with session:
            try:
                yield session, value
            except BaseException:
                session.rollback()
                raise
            session.commit()
