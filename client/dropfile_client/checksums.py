"""Checksums of an upload: each part's checksum (CRC32C by default, or SHA-256; base64, as
storage takes it in `x-amz-checksum-<algorithm>`, so storage refuses bytes that changed on
the way) and the whole file's SHA-256 (hex, recorded by the server and checked after a
download).

One pass over the file in part order, on a thread of its own, makes both from each block
it reads (FileHasher), keeping ahead of the parts being sent, so a 5 TiB upload starts
without reading the file first. Memory stays one block. CRC32C (google-crc32c's C
extension, ~4 GiB/s on one core here) costs a fraction of SHA-256 (~0.7 GiB/s): with
SHA-256 parts every byte is hashed twice, which on a machine whose store is CPU-bound is
upload throughput lost.

A download's SHA-256 is computed as its ranges land in the file (PrefixHasher)."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import warnings
from collections.abc import Callable
from typing import Protocol

from .errors import DropfileError
from .parts import Cancelled, Part

with warnings.catch_warnings():
    # Without its C extension google-crc32c warns, and is slow: SHA-256 is the default then.
    warnings.simplefilter("ignore", RuntimeWarning)
    import google_crc32c

READ_SIZE = 1024 * 1024
# How far the upload's hashing pass reads beyond the furthest part asked about: the next
# batch of URLs finds its checksums ready, and the bytes are still cached when sent.
READ_AHEAD = 256 * 1024 * 1024
# Part checksum algorithms, as the v2 API names them.
PART_CHECKSUMS = ("CRC32C", "SHA256")
DEFAULT_PART_CHECKSUM = "CRC32C" if google_crc32c.implementation == "c" else "SHA256"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def part_checksum_algorithm(name: str) -> str:
    """`name` ("crc32c", "SHA256"...) as the API spells it; ValueError for another."""
    algorithm = str(name).upper().replace("-", "")
    if algorithm not in PART_CHECKSUMS:
        raise ValueError(f"unknown part checksum {name!r}: use one of {', '.join(PART_CHECKSUMS)}")
    return algorithm


class PartDigest(Protocol):
    """What a part checksum uses of a digest: hashlib's and google-crc32c's both have it."""

    def update(self, data: bytes, /) -> object: ...

    def digest(self) -> bytes: ...


def new_part_digest(algorithm: str) -> PartDigest:
    """A hashlib-like digest (update, digest) of a part checksum algorithm."""
    return google_crc32c.Checksum() if algorithm == "CRC32C" else hashlib.sha256()


class FileHasher:
    """Hashes an open file's parts on a thread of its own, in one pass in part order: each
    block is read once (pread) and updates both the part's checksum and the whole file's
    SHA-256. Callers wait only until the pass has gone past the part they ask about, and
    the pass reads at most READ_AHEAD past the furthest part asked about (so the bytes are
    still cached when the part is sent). hashlib, google-crc32c and pread release the GIL
    on these blocks: the pass runs beside the part threads, not in turn with them.
    Thread-safe; close() stops the pass (an upload that ended, failed or was interrupted)."""

    def __init__(self, fd: int, parts: list[Part], *, algorithm: str, file_label: str) -> None:
        self.algorithm = part_checksum_algorithm(algorithm)
        self._fd = fd
        self._parts = parts
        self._label = file_label
        self._whole = hashlib.sha256()
        self._checksums: dict[int, str] = {}
        self._wanted_end = 0  # where the furthest part asked about ends
        self._finished = False
        self._closed = False
        self._failure: str | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="dropfile-hash", daemon=True)
        self._thread.start()

    def checksum(self, number: int) -> str:
        """The base64 checksum of part `number` (1-based), once the pass has reached it."""
        part = self._parts[number - 1]
        self._wait(part.offset + part.size, lambda: number in self._checksums)
        return self._checksums[number]

    def file_sha256(self) -> str:
        """The whole file's SHA-256 (hex), once the pass is over."""
        last = self._parts[-1]
        self._wait(last.offset + last.size, lambda: self._finished)
        return self._whole.hexdigest()

    def close(self) -> None:
        """Stops the pass, and waits for it (at most one block): the caller may then close
        the file descriptor."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> FileHasher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _wait(self, end: int, done: Callable[[], bool]) -> None:
        with self._changed:
            if end > self._wanted_end:
                self._wanted_end = end
                self._changed.notify_all()
            self._changed.wait_for(lambda: done() or self._failure or self._closed)
            if done():
                return
            if self._failure:
                raise DropfileError(self._failure)
            raise Cancelled()

    # -- on the hashing thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            for part in self._parts:
                with self._changed:
                    self._changed.wait_for(functools.partial(self._may_read, part.offset))
                    if self._closed:
                        return
                checksum = self._hash(part)
                with self._changed:
                    self._checksums[part.number] = checksum
                    self._changed.notify_all()
            failure = None
        except Cancelled:
            return
        except DropfileError as exc:
            failure = exc.message
        except Exception as exc:  # noqa: BLE001 - the waiting callers raise it
            failure = f"{self._label}: {getattr(exc, 'strerror', None) or exc}"
        with self._changed:
            self._finished = failure is None
            self._failure = failure
            self._changed.notify_all()

    def _may_read(self, offset: int) -> bool:
        return self._closed or offset < self._wanted_end + READ_AHEAD

    def _hash(self, part: Part) -> str:
        digest = new_part_digest(self.algorithm)
        offset, remaining = part.offset, part.size
        while remaining:
            if self._closed:
                raise Cancelled()
            block = os.pread(self._fd, min(READ_SIZE, remaining), offset)
            if not block:
                raise DropfileError(f"{self._label} got shorter while it was being uploaded")
            digest.update(block)
            self._whole.update(block)
            offset += len(block)
            remaining -= len(block)
        return base64.b64encode(digest.digest()).decode()


class PrefixHasher:
    """The SHA-256 of a file being written out of order (a download in parallel ranges),
    computed on a thread of its own. Writers report each block they wrote (`written`); the
    thread reads back (os.pread) and hashes the bytes from the start up to the first gap,
    as gaps close. hashlib and pread release the GIL, so hashing overlaps the network
    reads, and memory stays one read block whatever the order the ranges arrive in.
    `hexdigest()` (once every byte was written) or `close()` ends the thread."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._digest = hashlib.sha256()
        self._hashed = 0  # bytes hashed so far
        self._prefix = 0  # bytes from the start written without a gap
        self._pieces: dict[int, int] = {}  # written beyond the prefix: start -> end
        self._ends: dict[int, int] = {}  # the same pieces, end -> start (to extend them)
        self._stopped = False
        self._failure: BaseException | None = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def written(self, offset: int, length: int) -> None:
        """Bytes [offset, offset + length) are in the file. Thread-safe."""
        end = offset + length
        with self._changed:
            if offset != self._prefix:
                start = self._ends.pop(offset, offset)  # extends the piece ending here
                self._pieces[start] = end
                self._ends[end] = start
                return
            self._prefix = end
            while self._prefix in self._pieces:  # the gap closed: absorb what follows
                self._prefix = self._pieces.pop(self._prefix)
                del self._ends[self._prefix]
            if self._ready():
                self._changed.notify()

    def _ready(self) -> bool:
        # Wakes the thread per read block, not per network chunk.
        waiting = self._prefix - self._hashed
        return waiting >= READ_SIZE or (waiting > 0 and self._prefix == self._size)

    def _run(self) -> None:
        # One buffer read into again and again: a fresh 1 MiB bytes per read costs as much
        # in page faults as a third of the hashing.
        buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        try:
            while self._hashed < self._size:
                with self._changed:
                    while not self._stopped and not self._ready():
                        self._changed.wait()
                    if self._stopped:
                        return
                    position, end = self._hashed, self._prefix
                while position < end:
                    if self._stopped:
                        return
                    count = os.preadv(self._fd, [view[: min(READ_SIZE, end - position)]], position)
                    if not count:
                        raise DropfileError("the download's temporary file got shorter")
                    self._digest.update(view[:count])
                    position += count
                with self._changed:
                    self._hashed = position
        except BaseException as exc:  # noqa: BLE001 - raised by hexdigest()
            self._failure = exc

    def close(self) -> None:
        """Stops the thread (at its next block) and waits for it."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._thread.join()

    def hexdigest(self) -> str:
        """The whole file's SHA-256 (hex), once every byte has been reported written."""
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        if self._hashed != self._size:
            raise DropfileError(f"only {self._hashed} of {self._size} bytes were hashed")
        return self._digest.hexdigest()
