"""Password hashing with bcrypt, on threads of its own that yield the CPU to everything else.

A cost-12 hash is ~0.25 s of one core. pyca/bcrypt releases the GIL while hashing, so
hashes run in parallel; but a storm of sign-ins would then take every core from the other
services sharing the machine (the gateway, the upload coordinator, PostgreSQL) and stall
requests that need a millisecond. So hashes run on at most one thread per core, and those
threads lower their own scheduling priority (a Linux thread's nice value is its own):
sign-ins still get every idle cycle, other requests go first."""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import bcrypt

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything longer; refuse rather than truncate
HASHING_THREAD_NAME = "bcrypt"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


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
    def __init__(self, rounds: int, *, threads: int | None = None, niceness: int = 10) -> None:
        self._rounds = rounds
        # The operating system's ids of the hashing threads (as `top -H` lists them).
        self.thread_ids: set[int] = set()
        self._pool = ThreadPoolExecutor(max_workers=threads or usable_cores(),
                                        thread_name_prefix=HASHING_THREAD_NAME,
                                        initializer=_start_hashing_thread,
                                        initargs=(self.thread_ids, niceness))
        # Compared against when the email is unknown, so both paths cost one bcrypt check
        # and response time does not reveal whether an account exists.
        self._decoy_hash = self._run(bcrypt.hashpw, b"decoy-password", bcrypt.gensalt(rounds))

    def _run(self, function, *args):
        return self._pool.submit(function, *args).result()

    def hash(self, password: str) -> str:
        return self._run(bcrypt.hashpw, password.encode(),
                         bcrypt.gensalt(self._rounds)).decode()

    def verify(self, password: str, password_hash: str | None) -> bool:
        candidate = password.encode()[:MAX_PASSWORD_BYTES]
        if password_hash is None:
            self._run(bcrypt.checkpw, candidate, self._decoy_hash)
            return False
        return self._run(bcrypt.checkpw, candidate, password_hash.encode())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
