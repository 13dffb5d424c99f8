"""Checksums of an upload: each part's SHA-256 (base64, as storage takes it in
`x-amz-checksum-sha256`, so storage refuses bytes that changed on the way) and the whole
file's SHA-256 (hex, recorded by the server and checked after a download).

One pass over the file in part order makes both: parts are hashed just before their URLs
are asked for, and the whole-file digest grows as the pass goes, so a 5 TiB upload starts
without reading the file first. Memory stays one block."""
from __future__ import annotations

import base64
import hashlib
import os
import queue
import threading

from .errors import DropfileError
from .parts import Part

READ_SIZE = 1024 * 1024


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class FileHasher:
    """Hashes the parts of an open file in order, once each. Thread-safe."""

    def __init__(self, fd: int, parts: list[Part], *, file_label: str) -> None:
        self._fd = fd
        self._parts = parts
        self._label = file_label
        self._whole = hashlib.sha256()
        self._checksums: dict[int, str] = {}
        self._next = 0  # index in `parts` of the next part to hash
        self._lock = threading.Lock()

    def checksum(self, number: int) -> str:
        """The base64 SHA-256 of part `number` (1-based), hashing up to it if needed."""
        with self._lock:
            while number not in self._checksums:
                self._hash_next()
            return self._checksums[number]

    def file_sha256(self) -> str:
        """The whole file's SHA-256 (hex), hashing what is left."""
        with self._lock:
            while self._next < len(self._parts):
                self._hash_next()
            return self._whole.hexdigest()

    def _hash_next(self) -> None:
        part = self._parts[self._next]
        digest = hashlib.sha256()
        offset, remaining = part.offset, part.size
        while remaining:
            block = os.pread(self._fd, min(READ_SIZE, remaining), offset)
            if not block:
                raise DropfileError(f"{self._label} got shorter while it was being uploaded")
            digest.update(block)
            self._whole.update(block)
            offset += len(block)
            remaining -= len(block)
        self._checksums[part.number] = base64.b64encode(digest.digest()).decode()
        self._next += 1


class Sha256Writer:
    """Hashes what is written through it (a download being saved) on a thread of its own:
    hashlib releases the GIL, so hashing overlaps the network reads instead of following
    each of them. `close()` (or `hexdigest()`) ends the thread."""

    def __init__(self, *, depth: int = 8) -> None:
        self._digest = hashlib.sha256()
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._blocks.get()) is not None:
            self._digest.update(block)

    def update(self, block: bytes) -> None:
        self._blocks.put(block)

    def close(self) -> None:
        if self._thread.is_alive():
            self._blocks.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._digest.hexdigest()
