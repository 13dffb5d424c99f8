"""Barriers made of PostgreSQL locks: a test takes a lock with a connection of its own
(a row lock, the per-user quota lock...) and holds it, so the code under test stops at the
known statement that needs it; the test waits until exactly the expected calls are blocked
there (pg_blocking_pids), acts, then lets them go. Races become deterministic, with no
sleeps and no hooks in the code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from services.upload.store import QUOTA_LOCK_NAMESPACE
from tests.conftest import wait_until


class HeldLock:
    def __init__(self, engine: Engine, conn: Connection, pid: int) -> None:
        self._engine = engine
        self.conn = conn
        self.pid = pid

    def waiters(self) -> int:
        """Backends blocked, directly, by this lock's holder."""
        with self._engine.connect() as conn:
            return conn.execute(
                text(
                    "select count(*) from pg_stat_activity where :pid = any(pg_blocking_pids(pid))"
                ),
                {"pid": self.pid},
            ).scalar_one()

    def wait_for_waiters(self, count: int, what: str) -> None:
        wait_until(lambda: self.waiters() >= count, timeout=30, what=what)


@contextmanager
def holding(engine: Engine, sql: str, params: dict | None = None) -> Iterator[HeldLock]:
    """Runs `sql` (which takes locks) in a transaction of the test's own, held for the
    block, rolled back (the locks released) when it ends."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(text(sql), params or {})
            pid = conn.execute(text("select pg_backend_pid()")).scalar_one()
            yield HeldLock(engine, conn, pid)
        finally:
            transaction.rollback()


def holding_quota_lock(engine: Engine, user_id: str):
    """The per-user lock under which initiations (and completion's quota check) decide."""
    return holding(
        engine,
        "select pg_advisory_xact_lock(:namespace, hashtext(:user))",
        {"namespace": QUOTA_LOCK_NAMESPACE, "user": user_id},
    )
