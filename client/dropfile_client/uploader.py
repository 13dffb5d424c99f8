"""The parallel part of an upload: N threads PUT parts straight from disk to their presigned
URLs (asked for in batches, each signed for its part's checksum, CRC32C or SHA-256, which
the PUT carries so that storage refuses bytes that changed on the way), skip the parts
storage already holds (a resumed upload), retry what is worth retrying (network errors,
timeouts, throttling, 5xx) under the client's retry policy (retry.py), fetch fresh URLs
when storage refuses an expired one (403), and record the stored parts with the
gateway (from a recorder thread, so PUTs never wait for it, in batches: one request for the
parts stored within a quarter of a second; a single PUT records nothing). Completing or
aborting the upload is the caller's (client.py) job.

The threads are daemons: on Ctrl-C the main thread stops waiting, cancels them (a part
being sent stops at its next block) and aborts the upload without waiting for a PUT that
storage is slow to answer."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .api import Gateway
from .checksums import FileHasher
from .errors import DropfileError, RetriesExhausted, StorageError
from .parts import Cancelled, Part, read_blocks
from .retry import RetryPolicy
from .storage import classify_put, transport_failure

log = logging.getLogger("dropfile_client")

# The gateway gives at most this many URLs per call, and records at most this many parts.
MAX_URLS_PER_CALL = 1000
MAX_PARTS_PER_RECORD = 100
# How long a stored part may wait for others to be recorded with it. Recording each part
# on its own cost the stack ~200 requests per GiB of 5 MiB parts, ~6 % of the 2-core
# machine's CPU while the store needed all of it; batched, ~30. Progress on record lags
# by this much at most; the last parts are recorded as soon as every PUT is done.
RECORD_WINDOW_SECONDS = 0.25

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class StoredPart:
    """A part storage already holds (from GET /api/v2/files/{id}/upload)."""

    etag: str
    size: int
    checksum: str | None  # base64, of the upload's algorithm, when the server knows it


@dataclass(frozen=True)
class PartTarget:
    """Where and how to PUT one part: its presigned URL and the signed headers to send."""

    url: str
    headers: dict[str, str]
    checksum: str


class PartUrlBook:
    """The presigned URLs of the parts, asked for lazily in batches of `batch` parts from
    POST /api/v2/files/{id}/part-urls with each part's checksum (hashed just before), so a
    huge upload starts at once. When storage refuses a URL (expired), fresh ones come the
    same way, once for all the threads that hit the same expiry."""

    def __init__(
        self,
        gateway: Gateway,
        file_id: str,
        parts: list[Part],
        hasher: FileHasher,
        *,
        stored: dict[int, StoredPart] | None = None,
        batch: int = 16,
        targets: dict[int, PartTarget] | None = None,
    ) -> None:
        """`targets`: URLs the caller holds already (a single PUT's, from its creation)."""
        self._gateway = gateway
        self._file_id = file_id
        self._count = len(parts)
        self._hasher = hasher
        self._stored = stored or {}
        self._batch = max(1, min(batch, MAX_URLS_PER_CALL))
        self._targets: dict[int, PartTarget] = dict(targets or {})
        self._lock = threading.Lock()
        # Set when the upload is cancelled: a retry's wait for URLs ends then.
        self.cancel: threading.Event | None = None

    def stored_etag(self, part: Part) -> str | None:
        """The ETag of the part when storage already holds these very bytes: the right size,
        and the same checksum where the server knows it. None: the part must be sent."""
        stored = self._stored.get(part.number)
        if stored is None or stored.size != part.size:
            return None
        if stored.checksum and stored.checksum != self._hasher.checksum(part.number):
            log.info("part %d: storage holds other bytes; sending it again", part.number)
            return None
        return stored.etag

    def checksum_to_record(self, part: Part) -> str | None:
        """For a part storage already holds: its checksum when the server does not know it
        (the part was stored but never recorded, and storage does not report checksums),
        so that it gets recorded: completion names every part's checksum."""
        stored = self._stored.get(part.number)
        if stored is None or stored.checksum:
            return None
        return self._hasher.checksum(part.number)

    def target(self, number: int) -> PartTarget:
        with self._lock:
            if number not in self._targets:
                self._fetch(number)
            return self._targets[number]

    def renew(self, number: int, refused_url: str) -> PartTarget:
        """A URL for part `number` other than the refused one if another thread renewed it
        already, else fresh ones from the gateway."""
        with self._lock:
            current = self._targets.get(number)
            if current is not None and current.url != refused_url:
                return current
            self._fetch(number)
            log.info("fresh URL for part %d", number)
            return self._targets[number]

    def _fetch(self, first: int) -> None:
        """URLs for `first` and the parts after it that are still to be sent."""
        last = first
        while last < min(self._count, first + self._batch - 1) and (last + 1) not in self._stored:
            last += 1
        checksums = [self._hasher.checksum(number) for number in range(first, last + 1)]
        reply = self._gateway.call(
            "POST",
            f"/api/v2/files/{self._file_id}/part-urls",
            idempotent=True,
            cancel=self.cancel,
            json={"first_part": first, "last_part": last, "checksums": checksums},
        )
        for entry in reply.get("parts", []):
            number = entry.get("partNumber") if isinstance(entry, dict) else None
            if (
                isinstance(number, int)
                and first <= number <= last
                and isinstance(entry.get("url"), str)
            ):
                headers = entry.get("headers") if isinstance(entry.get("headers"), dict) else {}
                self._targets[number] = PartTarget(
                    entry["url"],
                    {str(k): str(v) for k, v in headers.items()},
                    checksums[number - first],
                )
        if first not in self._targets:
            raise DropfileError(f"the server sent no URL for part {first}")


class ByteCounter:
    """Bytes sent so far across threads, reported as (done, total). A failed attempt's
    bytes are taken back, so progress never counts a part twice."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.done += count
            if self._callback:
                self._callback(self.done, self.total)


class PartUploader:
    def __init__(
        self,
        *,
        gateway: Gateway,
        storage: httpx.Client,
        fd: int,
        file_label: str,
        file_id: str,
        parts: list[Part],
        urls: PartUrlBook,
        parallel: int,
        retry: RetryPolicy,
        progress: ByteCounter,
        record: bool = True,
    ) -> None:
        """`record`: record the stored parts with the gateway (a single PUT has none to
        record: completion finds the object itself)."""
        self._gateway = gateway
        self._storage = storage
        self._fd = fd
        self._label = file_label
        self._file_id = file_id
        self._parts = parts
        self._urls = urls
        self._retry = retry
        self._progress = progress
        self._cancel = threading.Event()
        urls.cancel = self._cancel
        self._todo: queue.Queue[Part] = queue.Queue()
        self._results: queue.Queue[tuple[int, str] | BaseException] = queue.Queue()
        count = max(1, min(parallel, len(parts)))
        # The part threads hand the parts they stored to the recorder thread, so that the
        # next PUT starts while the parts make their round trip through the gateway
        # (recorded in between PUTs, that wait was ~9 % of an upload's time).
        self._stored: queue.Queue[tuple[Part, str, str] | None] = queue.Queue()
        self._part_threads = count
        self._threads = [
            threading.Thread(target=self._work, name=f"dropfile-part-{i}", daemon=True)
            for i in range(count)
        ]
        self._recording = record
        if record:
            self._threads.append(
                threading.Thread(target=self._record, name="dropfile-record", daemon=True)
            )

    def run(self) -> list[tuple[int, str]]:
        """Uploads and records every part; returns (part number, ETag) in part order.
        Raises the first failure (the other threads are then cancelled by stop())."""
        for part in self._parts:
            self._todo.put(part)
        for thread in self._threads:
            thread.start()
        etags: dict[int, str] = {}
        while len(etags) < len(self._parts):
            try:
                # A timed wait, so Ctrl-C reaches this thread promptly.
                item = self._results.get(timeout=0.2)
            except queue.Empty:
                if not any(t.is_alive() for t in self._threads) and self._results.empty():
                    raise DropfileError("the part uploads stopped unexpectedly") from None
                continue
            if isinstance(item, BaseException):
                raise item
            number, etag = item
            etags[number] = etag
        return sorted(etags.items())

    def stop(self, grace: float) -> None:
        """Cancels the threads and waits up to `grace` seconds for them to stop."""
        self._cancel.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))

    # -- in the threads --------------------------------------------------------------------

    def _work(self) -> None:
        """PUTs parts until none is left; each stored part goes to the recorder."""
        try:
            while not self._cancel.is_set():
                try:
                    part = self._todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    etag = self._urls.stored_etag(part)
                    if etag is not None:  # resumed: storage holds it already
                        self._progress.add(part.size)
                        checksum = self._urls.checksum_to_record(part)
                        if checksum is None:
                            self._results.put((part.number, etag))
                        else:
                            self._stored.put((part, etag, checksum))
                        continue
                    etag, checksum = self._put(part)
                except Cancelled:
                    return
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self._results.put(exc)
                    return
                if self._recording:
                    self._stored.put((part, etag, checksum))
                else:
                    self._results.put((part.number, etag))
        finally:
            self._stored.put(None)  # this thread is done: no more parts from it

    def _record(self) -> None:
        """Records the stored parts, with their checksums, in batches: a batch is the parts
        stored within the window after its first one (at most MAX_PARTS_PER_RECORD), or
        what is left once every part thread is done."""
        running = self._part_threads
        while running and not self._cancel.is_set():
            batch: list[tuple[Part, str, str]] = []
            deadline: float | None = None
            while running and len(batch) < MAX_PARTS_PER_RECORD:
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    break
                try:
                    item = self._stored.get(timeout=timeout)
                except queue.Empty:
                    break
                if item is None:
                    running -= 1
                    continue
                batch.append(item)
                if deadline is None:
                    deadline = time.monotonic() + RECORD_WINDOW_SECONDS
            if not batch or self._cancel.is_set():
                continue
            try:
                self._gateway.call(
                    "POST",
                    f"/api/v2/files/{self._file_id}/parts/batch",
                    idempotent=True,
                    cancel=self._cancel,
                    json={
                        "parts": [
                            {
                                "partNumber": part.number,
                                "size": part.size,
                                "etag": etag.strip('"'),
                                "checksum": checksum,
                            }
                            for part, etag, checksum in batch
                        ]
                    },
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self._results.put(exc)
                return
            for part, etag, _ in batch:
                self._results.put((part.number, etag))

    def _put(self, part: Part) -> tuple[str, str]:
        """Sends the part; (storage's ETag, the part's checksum). Transient failures are
        retried under the retry policy; once it is spent, RetriesExhausted."""
        target = self._urls.target(part.number)
        backoff = self._retry.start()
        while True:
            sent = 0

            def on_bytes(count: int) -> None:
                nonlocal sent
                sent += count
                self._progress.add(count)

            body = read_blocks(
                self._fd, part, cancel=self._cancel, on_bytes=on_bytes, file_label=self._label
            )
            try:
                response = self._storage.put(
                    target.url,
                    content=body,
                    headers={
                        "Content-Type": "application/octet-stream",
                        # Explicit, so the body is not sent chunked (S3 refuses that).
                        "Content-Length": str(part.size),
                        **target.headers,
                    },
                )
                outcome = classify_put(response)
            except httpx.TransportError as exc:
                outcome = transport_failure(exc)
            if outcome.etag:
                return outcome.etag, target.checksum
            self._progress.add(-sent)
            if not outcome.retryable and not outcome.url_refused:
                raise StorageError(
                    f"storage refused part {part.number}: {outcome.failure}", status=outcome.status
                )
            # An expired URL is renewed at once; other failures wait their turn.
            wait = backoff.next_wait(None if outcome.url_refused else outcome.retry_after)
            if wait is None:
                raise RetriesExhausted(
                    StorageError(f"part {part.number}: {outcome.failure}"), backoff.summary()
                )
            if outcome.url_refused:
                log.warning(
                    "part %d: storage refused its URL (%s); getting a fresh one",
                    part.number,
                    outcome.failure,
                )
                target = self._urls.renew(part.number, target.url)
                continue
            log.warning(
                "part %d: %s; retrying in %.1f s (try %d of %d)",
                part.number,
                outcome.failure,
                wait,
                backoff.tries,
                self._retry.attempts,
            )
            if self._cancel.wait(wait):
                raise Cancelled()
