"""The parallel part of a download: N threads GET ranges of the file from its presigned URL
(`Range: bytes=a-b`; a presigned GET URL does not sign that header) and write each at its
offset in the temporary file (os.pwrite: threads share the descriptor), as boto3's
download_file does. A file of one range or less is one plain GET.

Every answer is checked: 206 with the very range asked for, out of a file of the recorded
size. The first range is asked alone; if storage answers it with the whole file (200: the
Range header was ignored, by a proxy for instance), the download goes on as that one
stream. Failures are retried like part uploads (retry.py): network errors, a body cut
short, throttling and 5xx, with backoff, from the byte where the attempt stopped, so no
byte is counted twice. A refused URL (403: expired) is replaced once by a fresh one when
the caller can get one; otherwise, or when the fresh one is refused too, it is final. The
first failure stops every thread at its next block."""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DropfileError, StorageError
from .parts import MIB, Cancelled
from .retry import RETRYABLE_STATUS, RetryPolicy
from .storage_get import Answer, Getter, TransportFailure
from .uploader import ByteCounter

log = logging.getLogger("dropfile_client")

# s3transfer's default chunk size: big enough that a request's round trip is amortised,
# small enough that 4 connections share a file of a few dozen MiB.
DEFAULT_RANGE_SIZE = 8 * MIB

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadUrl:
    """The presigned URL the threads GET; renewed once for all of them when storage
    refuses it (expired), if `renew` can get a fresh one."""

    def __init__(self, url: str, renew: Callable[[], str] | None = None) -> None:
        self._url = url
        self._renew = renew
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        return self._url

    def renew(self, refused: str) -> str | None:
        """A URL other than `refused` (another thread's renewal, or a fresh one), or None
        when none can be had."""
        with self._lock:
            if self._url != refused:
                return self._url
            if self._renew is None:
                return None
            self._url = self._renew()
            log.info("storage refused the download URL; using a fresh one")
            return self._url


@dataclass
class _Piece:
    """A range being fetched: bytes [position, end) are still to be written."""

    position: int
    end: int


class _Retry(Exception):
    """This attempt failed in a way worth another try (the reason is the message)."""


class RangeDownloader:
    def __init__(
        self,
        *,
        getters: Callable[[], Getter],
        url: DownloadUrl,
        fd: int,
        size: int,
        range_size: int,
        parallel: int,
        retry: RetryPolicy,
        progress: ByteCounter,
        on_written: Callable[[int, int], None] | None = None,
    ) -> None:
        """`getters` makes each thread's Getter (storage_get.py); `on_written(offset,
        length)` hears of every block written."""
        if range_size < 1:
            raise ValueError("range_size must be 1 or more")
        self._new_getter = getters
        self._url = url
        self._fd = fd
        self._size = size
        self._retry = retry
        self._progress = progress
        self._on_written = on_written
        self._todo = deque(
            (start, min(start + range_size, size)) for start in range(0, max(size, 1), range_size)
        )
        self._lock = threading.Lock()
        self._first_taken = False
        # Set once the first answer told whether storage serves ranges (or on a failure):
        # until then, only the first range is asked for.
        self._decided = threading.Event()
        self._one_stream = False  # storage ignored Range: the first answer is the file
        self._received = 0
        self._cancel = threading.Event()
        # Writes in progress, so that stop() can promise the descriptor is no longer used.
        self._gate = threading.Condition()
        self._writing = 0
        self._closed = False
        self._results: queue.Queue[BaseException | None] = queue.Queue()
        count = max(1, min(parallel, len(self._todo)))
        self._threads = [
            threading.Thread(target=self._work, name=f"dropfile-range-{i}", daemon=True)
            for i in range(count)
        ]

    def run(self) -> None:
        """Downloads every range; raises the first failure (then call stop())."""
        for thread in self._threads:
            thread.start()
        finished = 0
        while finished < len(self._threads):
            try:
                # A timed wait, so Ctrl-C reaches this thread promptly.
                item = self._results.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                finished += 1
            else:
                raise item
        if self._received != self._size:
            raise StorageError(f"download incomplete: got {self._received} of {self._size} bytes")

    def stop(self) -> None:
        """Cancels the threads (each stops at its next block) and returns once none is
        writing or will write to the file: the caller may close it then. Threads waiting
        on storage are not waited for (they are daemons)."""
        self._cancel.set()
        self._decided.set()
        with self._gate:
            self._closed = True
            self._gate.wait_for(lambda: self._writing == 0)

    # -- in the threads --------------------------------------------------------------------

    def _work(self) -> None:
        getter = None
        try:
            getter = self._new_getter()
            while (piece := self._next_range()) is not None:
                self._fetch(getter, *piece)
        except Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._results.put(exc)
            self._cancel.set()  # after the failure is queued: the others stop now
            self._decided.set()
        finally:
            if getter is not None:
                getter.close()
            self._results.put(None)

    def _next_range(self) -> tuple[int, int] | None:
        with self._lock:
            if not self._first_taken:
                self._first_taken = True
                return self._todo.popleft()
        self._decided.wait()
        with self._lock:
            if self._cancel.is_set() or not self._todo:
                return None
            return self._todo.popleft()

    def _fetch(self, getter: Getter, start: int, end: int) -> None:
        """Writes bytes [start, end) of the file at their offset, retrying what is worth it."""
        piece = _Piece(start, end)
        attempt, renewed, pause, failure = 0, False, False, ""
        started = time.monotonic()
        deadline = self._retry.deadline
        while True:  # until the range is written (an empty file too: one GET)
            attempt += 1
            late = deadline is not None and attempt > 1 and time.monotonic() - started >= deadline
            if attempt > self._retry.attempts or late:
                raise StorageError(
                    f"download of bytes {start}-{end - 1} failed "
                    f"{attempt - 1} times (last: {failure})"
                )
            if pause and self._cancel.wait(self._retry.delay(attempt - 1)):
                raise Cancelled()
            url = self._url.current
            whole_file = piece.position == 0 and piece.end == self._size
            headers = {} if whole_file else {"Range": f"bytes={piece.position}-{piece.end - 1}"}
            try:
                with getter.get(url, headers) as answer:
                    if answer.status == 403:
                        self._refused(answer.error_reason(), url, renewed)
                        renewed, pause, failure = True, False, "URL refused"
                        continue
                    skip = self._check(answer, piece, whole_file)
                    self._copy(answer, piece, skip)
                if piece.position < piece.end:
                    raise _Retry(
                        f"storage sent {piece.end - piece.position} bytes fewer than asked for"
                    )
                return
            except (TransportFailure, _Retry) as exc:
                failure = str(exc)
            pause = True
            if self._cancel.is_set():
                raise Cancelled()
            if attempt < self._retry.attempts:
                log.warning(
                    "bytes %d-%d: %s; retrying from byte %d (attempt %d of %d)",
                    start,
                    piece.end - 1,
                    failure,
                    piece.position,
                    attempt + 1,
                    self._retry.attempts,
                )

    def _refused(self, reason: str, url: str, renewed: bool) -> None:
        """Storage refused the URL (403, expired): returns when a fresh one is there."""
        if renewed or self._url.renew(url) is None:
            raise StorageError(
                f"storage refused the download: {reason} (the download URL "
                "expired or is not valid; ask for the download again)"
            )

    def _check(self, answer: Answer, piece: _Piece, whole_file: bool) -> int:
        """Whether the answer brings what was asked: returns how many bytes of its body to
        skip (and moves the piece's end when the answer is the whole file, as one stream).
        Raises StorageError when final, _Retry when worth another try."""
        status = answer.status
        if status == 206:
            self._check_content_range(answer.header("Content-Range") or "", piece)
            self._decided.set()
            return 0
        if status == 200:  # the whole file
            length = answer.header("Content-Length")
            if length is not None and length.isdigit() and int(length) != self._size:
                raise self._size_differs(int(length))
            if whole_file:
                self._decided.set()
                return 0
            with self._lock:
                if not self._one_stream and not self._decided.is_set():
                    # The first range's answer: storage ignores Range; this is the one stream.
                    log.info("storage ignores Range headers; downloading in one stream")
                    self._one_stream = True
                    self._todo.clear()
                    self._decided.set()
                if self._one_stream:
                    piece.end = self._size
                    return piece.position  # (a retry) what was written already is skipped
            raise StorageError(
                "storage answered a ranged request with the whole file (200 "
                "instead of 206) after answering others with ranges"
            )
        reason = answer.error_reason()
        if status in RETRYABLE_STATUS:
            raise _Retry(reason)
        raise StorageError(f"storage refused the download: {reason}")

    def _check_content_range(self, value: str, piece: _Piece) -> None:
        match = _CONTENT_RANGE.match(value.strip())
        if not match:
            raise StorageError(
                f"storage answered a ranged request with an unreadable "
                f"Content-Range: {value[:100]!r}"
            )
        first, last, total = match.groups()
        if total != "*" and int(total) != self._size:
            raise self._size_differs(int(total))
        if (int(first), int(last)) != (piece.position, piece.end - 1):
            raise StorageError(
                f"storage sent bytes {first}-{last} when asked for {piece.position}-{piece.end - 1}"
            )

    def _size_differs(self, stored: int) -> StorageError:
        return StorageError(
            f"the file in storage is {stored} bytes, not the {self._size} recorded for it"
        )

    def _copy(self, answer: Answer, piece: _Piece, skip: int) -> None:
        """Writes the body at the piece's position onwards, after skipping `skip` bytes of
        it; the piece's position follows what is written (a retry starts there)."""
        for chunk in answer.blocks:
            if self._cancel.is_set():
                raise Cancelled()
            if skip:
                taken = min(skip, len(chunk))
                chunk, skip = chunk[taken:], skip - taken
                if not chunk:
                    continue
            length = len(chunk)
            if length > piece.end - piece.position:
                raise StorageError(
                    f"storage sent more than the {self._size} bytes recorded for the file"
                    if piece.end == self._size
                    else "storage sent more bytes than asked for"
                )
            self._write(chunk, piece.position)
            piece.position += length
            with self._lock:
                self._received += length
            self._progress.add(length)
            if self._on_written:
                self._on_written(piece.position - length, length)

    def _write(self, data: bytes | memoryview, offset: int) -> None:
        with self._gate:
            if self._closed:
                raise Cancelled()
            self._writing += 1
        try:
            view = memoryview(data)
            while view:
                count = os.pwrite(self._fd, view, offset)
                view, offset = view[count:], offset + count
        except OSError as exc:
            raise DropfileError(f"cannot write the download: {exc.strerror or exc}") from None
        finally:
            with self._gate:
                self._writing -= 1
                if not self._writing:
                    self._gate.notify_all()
