"""bcrypt runs on threads of its own, at a lower scheduling priority than the rest of the
process, and at most one per core unless configured: a sign-in storm must not take the
CPU from requests that need a millisecond of it."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.auth.passwords import PasswordHasher


def _nice_of_threads(hasher: PasswordHasher) -> dict[int, int]:
    """Nice value of each of the hasher's threads, as the kernel reports it (`ps -L`)."""
    found = {}
    for tid in hasher.thread_ids:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        # Fields after the command's closing parenthesis; nice is the 19th field.
        found[tid] = int(stat.rsplit(")", 1)[1].split()[16])
    return found


def test_hashing_threads_run_niced_and_hashes_verify():
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hasher = PasswordHasher(10, threads=2, niceness=7)
    try:
        hashed = hasher.hash("correct horse battery")
        assert hashed.startswith("$2b$10$")
        assert hasher.verify("correct horse battery", hashed)
        assert not hasher.verify("wrong horse battery", hashed)
        assert not hasher.verify("anything at all", None)  # the decoy path
        niced = _nice_of_threads(hasher)
        assert niced, "no bcrypt thread found"
        assert set(niced.values()) == {min(own + 7, 19)}
        # The caller's own thread keeps its priority.
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
    finally:
        hasher.close()


@pytest.mark.slow
def test_at_most_the_configured_number_of_hashes_run_at_once():
    hasher = PasswordHasher(10, threads=1, niceness=0)
    try:
        with ThreadPoolExecutor(max_workers=4) as callers:
            hashes = list(callers.map(hasher.hash, [f"password {i}" for i in range(4)]))
        assert len(set(hashes)) == 4
        assert len(hasher.thread_ids) == 1  # four callers, one hashing thread
        assert all(hasher.verify(f"password {i}", h) for i, h in enumerate(hashes))
    finally:
        hasher.close()


def test_niceness_zero_keeps_the_priority():
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    hasher = PasswordHasher(10, threads=1, niceness=0)
    try:
        hasher.hash("some password")
        assert set(_nice_of_threads(hasher).values()) == {own}
    finally:
        hasher.close()
