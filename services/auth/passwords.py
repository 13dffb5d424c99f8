"""Password hashing with bcrypt, on threads of its own that yield the CPU to everything else.

A cost-12 hash is ~0.25 s of one core. pyca/bcrypt releases the GIL while hashing, so
hashes run in parallel; but a storm of sign-ins would then take every core from the other
services sharing the machine (the gateway, the upload coordinator, PostgreSQL) and stall
requests that need a millisecond. So hashes run on at most one thread per core, and those
threads lower their own scheduling priority (a Linux thread's nice value is its own):
sign-ins still get every idle cycle, other requests go first.

The queue in front of those threads is bounded too. A caller waiting for its hash holds one
of the server's RPC threads; an unbounded queue let a flood of sign-ins hold all of them,
and Refresh or Authenticate waited seconds for a thread. So at most `max_pending` sign-ins
and sign-ups are admitted at once (hashing or waiting to); one more is refused at once with
UNAVAILABLE and Retry-After (`admission()`), before it counts against any limit."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import bcrypt

from services.common.errors import Unavailable

from .metrics import PASSWORD_HASHES, PASSWORD_HASHING_REFUSED

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything longer; refuse rather than truncate
HASHING_THREAD_NAME = "bcrypt"
# Sent with a refusal when the queue is full: a few hashes' time.
BUSY_RETRY_AFTER_SECONDS = 1.0


def usable_cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def _start_hashing_thread(thread_ids: set[int], niceness: int) -> None:
    thread_ids.add(threading.get_native_id())
    if niceness <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        # PRIO_PROCESS with a thread id sets that thread's nice value only (Linux).
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), current + niceness)
    except OSError as exc:
        log.warning("bcrypt threads keep their priority: %s", exc)


class PasswordHasher:
    def __init__(
        self,
        rounds: int,
        *,
        threads: int | None = None,
        niceness: int = 10,
        max_pending: int | None = None,
    ) -> None:
        self._rounds = rounds
        threads = threads or usable_cores()
        # The operating system's ids of the hashing threads (as `top -H` lists them).
        self.thread_ids: set[int] = set()
        # Callers admitted at once (hashing or waiting for a thread); None: no bound.
        self.max_pending = max_pending
        self._places = threading.BoundedSemaphore(max_pending) if max_pending else None
        self._admitted = threading.local()  # whether this thread holds a place already
        self._pool = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix=HASHING_THREAD_NAME,
            initializer=_start_hashing_thread,
            initargs=(self.thread_ids, niceness),
        )
        # Compared against when the email is unknown, so both paths cost one bcrypt check
        # and response time does not reveal whether an account exists.
        self._decoy_hash = self._pool.submit(
            bcrypt.hashpw, b"decoy-password", bcrypt.gensalt(rounds)
        ).result()

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Holds one of the `max_pending` places for the block (a whole sign-in: its limits
        are checked and its hash runs inside), or raises Unavailable at once when none is
        free. Hashes made inside use the place already held."""
        if self._places is None or getattr(self._admitted, "held", False):
            yield
            return
        if not self._places.acquire(blocking=False):
            PASSWORD_HASHING_REFUSED.inc()
            raise Unavailable(
                "too many sign-ins at once; retry shortly",
                reason="AUTH_BUSY",
                retry_after=BUSY_RETRY_AFTER_SECONDS,
            )
        self._admitted.held = True
        try:
            yield
        finally:
            self._admitted.held = False
            self._places.release()

    def _run(self, operation: str, function: Callable[[bytes, bytes], T], *args: bytes) -> T:
        with self.admission():
            result = self._pool.submit(function, *args).result()
        PASSWORD_HASHES.labels(operation).inc()
        return result

    def hash(self, password: str) -> str:
        return self._run(
            "hash", bcrypt.hashpw, password.encode(), bcrypt.gensalt(self._rounds)
        ).decode()

    def verify(self, password: str, password_hash: str | None) -> bool:
        candidate = password.encode()[:MAX_PASSWORD_BYTES]
        if password_hash is None:
            self._run("check", bcrypt.checkpw, candidate, self._decoy_hash)
            return False
        return self._run("check", bcrypt.checkpw, candidate, password_hash.encode())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
