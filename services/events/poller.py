"""The SQS side of the event processor: a worker that long-polls the queue, hands messages
to a thread pool, keeps them in flight while they are processed, and carries out each
message's verdict (delete, reject, leave).

Messages are received only when a pool slot is free, so during an outage (every slot busy
retrying) the rest stay in the queue without being received, which would count towards
the redrive policy's maxReceiveCount. A heartbeat extends the visibility of messages still
being processed, so a long retry never lets one reappear and be received again.

Dead letters: SQS moves a message to the dead-letter queue when it would be received more
than the redrive policy's maxReceiveCount times; nobody is told. What this process sees is
a message received for the maxReceiveCount-th time that it leaves undeleted (rejected,
failed, deferred or released): that one is counted as dead-lettered
(`dropfile_queue_messages_total{outcome="dead_lettered"}`). maxReceiveCount is read from
the queue's RedrivePolicy at start (else SQS_MAX_RECEIVE_COUNT).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from services.common.logs import log_fields

from .processing import EventProcessor, QueueMessage, RetryPolicy, Verdict
from .stats import ProcessingStats

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

SQS_ERRORS = (BotoCoreError, ClientError)
# Slots are awaited in short steps so that stop() is noticed promptly.
SLOT_WAIT_SECONDS = 0.5
MAX_BATCH_ENTRIES = 10  # SQS's limit for the *Batch calls
# Backoff while the queue itself cannot be reached.
RECEIVE_RETRY = RetryPolicy(initial_seconds=1.0, max_seconds=30.0)


@dataclass
class _Lease:
    message_id: str
    visible_until: float  # time.monotonic() when SQS makes the message visible again


class _InFlight:
    """Messages received and not yet finished, by receipt handle (unique per receive, even
    when SQS delivers one message twice), with when their visibility runs out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}

    def add(self, receipt_handle: str, message_id: str, visible_until: float) -> None:
        with self._lock:
            self._leases[receipt_handle] = _Lease(message_id, visible_until)

    def remove(self, receipt_handle: str) -> None:
        with self._lock:
            self._leases.pop(receipt_handle, None)

    def expiring_before(self, moment: float) -> list[tuple[str, str]]:
        """(receipt handle, message id) of the messages whose visibility ends before
        `moment`."""
        with self._lock:
            return [
                (receipt_handle, lease.message_id)
                for receipt_handle, lease in self._leases.items()
                if lease.visible_until < moment
            ]

    def extended(self, receipt_handle: str, visible_until: float) -> None:
        with self._lock:
            lease = self._leases.get(receipt_handle)
            if lease is not None:
                lease.visible_until = visible_until


class QueuePoller:
    """A server worker (start/stop). stop() returns once the poll loop has exited (within
    the long-poll wait) and the messages in hand have finished; a message waiting out a
    transient failure is left undeleted."""

    def __init__(
        self,
        *,
        sqs: SQSClient,
        queue_url: str,
        processor: EventProcessor,
        stats: ProcessingStats,
        wait_time_seconds: int,
        batch_size: int,
        visibility_timeout_seconds: int,
        concurrency: int,
        max_receive_count: int | None = None,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        """`max_receive_count`: the redrive policy's, when the queue's own cannot be read
        (None: no dead-letter queue is assumed then)."""
        self._sqs = sqs
        self._queue_url = queue_url
        self._processor = processor
        self._stats = stats
        self._wait_time = wait_time_seconds
        self._batch_size = batch_size
        self._visibility = visibility_timeout_seconds
        self._concurrency = concurrency
        self._max_receive_count = max_receive_count
        self._on_stopped = on_stopped
        self._slots = threading.Semaphore(concurrency)
        self._in_flight = _InFlight()
        # Held while visibility is changed, so a finished message's verdict (delete,
        # visibility 0) is never overtaken by a heartbeat extension sent just before.
        self._visibility_lock = threading.Lock()
        self._stopping = threading.Event()
        self._heartbeat_stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []

    # -- worker lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="event")
        self._threads = [
            threading.Thread(target=self._poll_loop, name="sqs-poll", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="sqs-heartbeat", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "polling %s (wait %ds, batch %d, concurrency %d)",
            self._queue_url,
            self._wait_time,
            self._batch_size,
            self._concurrency,
        )

    def _redrive_max_receive_count(self) -> int | None:
        """The queue's maxReceiveCount (its RedrivePolicy), else the configured one."""
        try:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["RedrivePolicy"]
            ).get("Attributes", {})
        except SQS_ERRORS as exc:
            log.warning(
                "could not read the redrive policy of %s (%s); assuming maxReceiveCount %s",
                self._queue_url,
                exc,
                self._max_receive_count,
            )
            return self._max_receive_count
        if "RedrivePolicy" not in attributes:
            log.warning(
                "%s has no redrive policy: a message that keeps failing is never dead-lettered",
                self._queue_url,
            )
            return None
        try:
            return int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])
        except (ValueError, KeyError, TypeError):
            return self._max_receive_count

    def stop(self) -> None:
        if self._pool is None:
            return
        self._stopping.set()
        poll_thread, heartbeat_thread = self._threads
        poll_thread.join()
        self._pool.shutdown(wait=True)  # messages in hand finish; retries see _stopping
        self._heartbeat_stopping.set()
        heartbeat_thread.join()
        self._pool = None
        if self._on_stopped is not None:
            self._on_stopped()
        log.info("stopped polling %s", self._queue_url)

    # -- receiving ----------------------------------------------------------------------

    def _poll_loop(self) -> None:
        # Here, not in start(): an unreachable queue must not hold up the server's start.
        self._max_receive_count = self._redrive_max_receive_count()
        failures = RECEIVE_RETRY.delays()
        while not self._stopping.is_set():
            slots = self._take_slots()
            if not slots:
                break
            try:
                messages = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=slots,
                    WaitTimeSeconds=self._wait_time,
                    VisibilityTimeout=self._visibility,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
            except SQS_ERRORS as exc:
                self._give_back(slots)
                delay = next(failures)
                log.warning(
                    "receiving from %s failed (%s); retrying in %.1fs", self._queue_url, exc, delay
                )
                self._stopping.wait(delay)
                continue
            failures = RECEIVE_RETRY.delays()
            self._give_back(slots - len(messages))
            self._dispatch(messages)

    def _dispatch(self, messages: list[MessageTypeDef]) -> None:
        """Hands received messages to the pool; each already holds a slot."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the poller is not running")
        # Visibility started when SQS answered, a moment ago: keep a second of margin.
        visible_until = time.monotonic() + self._visibility - 1
        if messages:
            self._stats.received(len(messages))
        for raw in messages:
            self._in_flight.add(raw["ReceiptHandle"], raw["MessageId"], visible_until)
            pool.submit(self._handle, raw)

    def _take_slots(self) -> int:
        """Waits for one free slot, then takes as many more as a batch may hold; 0 when
        stopping."""
        while not self._slots.acquire(timeout=SLOT_WAIT_SECONDS):
            if self._stopping.is_set():
                return 0
        if self._stopping.is_set():
            self._slots.release()
            return 0
        taken = 1
        while taken < self._batch_size and self._slots.acquire(blocking=False):
            taken += 1
        return taken

    def _give_back(self, slots: int) -> None:
        for _ in range(slots):
            self._slots.release()

    # -- processing ---------------------------------------------------------------------

    def _handle(self, raw: MessageTypeDef) -> None:
        message = QueueMessage(
            message_id=raw["MessageId"],
            body=raw.get("Body", ""),
            receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
        )
        try:
            verdict = self._processor.process(message, stopping=self._stopping)
        except Exception:  # any bug: it must not kill the worker nor lose the event
            log.exception(
                "processing message %s crashed; SQS will deliver it again",
                message.message_id,
                extra=log_fields(message_id=message.message_id),
            )
            verdict = Verdict.RETRY_LATER
        try:
            with self._visibility_lock:
                self._in_flight.remove(raw["ReceiptHandle"])
            self._carry_out(verdict, message, raw["ReceiptHandle"])
        finally:
            self._slots.release()

    def _carry_out(self, verdict: Verdict, message: QueueMessage, receipt_handle: str) -> None:
        if (
            verdict is not Verdict.DELETE
            and self._max_receive_count is not None
            and message.receive_count >= self._max_receive_count
        ):
            self._stats.dead_lettered()
            log.warning(
                "message %s was received %d times and is left undeleted: SQS moves "
                "it to the dead-letter queue",
                message.message_id,
                message.receive_count,
                extra=log_fields(message_id=message.message_id),
            )
        if verdict is Verdict.DELETE:
            deleted = self._call(
                "delete",
                message,
                self._sqs.delete_message,
                QueueUrl=self._queue_url,
                ReceiptHandle=receipt_handle,
            )
            self._stats.finished(deleted=deleted)
        elif verdict is Verdict.REJECT:
            # Visible again at once: each receive brings it closer to maxReceiveCount, and
            # the redrive policy (not us) moves it to the dead-letter queue.
            self._make_visible(message, receipt_handle)
            self._stats.finished(rejected=True)
        elif verdict is Verdict.RETRY_LATER:
            self._stats.finished(failed=True)
        elif verdict is Verdict.DEFER:
            self._stats.deferred()
            self._call(
                "defer",
                message,
                self._sqs.change_message_visibility,
                QueueUrl=self._queue_url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=self._defer_seconds(message.receive_count),
            )
            self._stats.finished()
        else:  # RELEASE: stopping; another consumer may take it now
            self._make_visible(message, receipt_handle)

    def _defer_seconds(self, receive_count: int) -> int:
        """2, 4, 8... seconds, at most the visibility timeout: CompleteUpload's commit
        normally follows storage's event within milliseconds."""
        return min(1 << min(receive_count, 16), self._visibility)

    def _make_visible(self, message: QueueMessage, receipt_handle: str) -> None:
        self._call(
            "make visible",
            message,
            self._sqs.change_message_visibility,
            QueueUrl=self._queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=0,
        )

    def _call(
        self, what: str, message: QueueMessage, operation: Callable[..., object], **params: Any
    ) -> bool:
        try:
            operation(**params)
            return True
        except SQS_ERRORS as exc:
            # Not fatal: the message reappears after its visibility timeout and is
            # processed again, which confirmation's idempotency makes harmless.
            log.warning(
                "could not %s message %s: %s",
                what,
                message.message_id,
                exc,
                extra=log_fields(message_id=message.message_id),
            )
            return False

    # -- heartbeat ----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        tick = min(max(self._visibility / 4, 0.25), 10.0)
        while not self._heartbeat_stopping.wait(tick):
            try:
                self._extend_expiring()
            except Exception:  # any failure: keep beating whatever one round did
                log.exception("visibility heartbeat failed")

    def _extend_expiring(self) -> None:
        """Extends, by a full visibility timeout, messages whose visibility would run out
        within half of one."""
        with self._visibility_lock:
            expiring = self._in_flight.expiring_before(time.monotonic() + self._visibility / 2)
            for start in range(0, len(expiring), MAX_BATCH_ENTRIES):
                chunk = expiring[start : start + MAX_BATCH_ENTRIES]
                visible_until = time.monotonic() + self._visibility - 1
                try:
                    response = self._sqs.change_message_visibility_batch(
                        QueueUrl=self._queue_url,
                        Entries=[
                            {
                                "Id": str(index),
                                "ReceiptHandle": receipt,
                                "VisibilityTimeout": self._visibility,
                            }
                            for index, (receipt, _) in enumerate(chunk)
                        ],
                    )
                except SQS_ERRORS as exc:
                    log.warning(
                        "could not extend the visibility of %d message(s): %s", len(chunk), exc
                    )
                    continue
                for entry in response.get("Successful", []):
                    self._in_flight.extended(chunk[int(entry["Id"])][0], visible_until)
                for entry in response.get("Failed", []):
                    log.warning(
                        "could not extend the visibility of message %s: %s",
                        chunk[int(entry["Id"])][1],
                        entry.get("Message", entry),
                    )
