"""The rules of the event processor: what one SQS message leads to.

A message is read (`notifications`), each record of our bucket that created an object is
confirmed through the upload coordinator, and the message gets a verdict the poller carries
out in the queue. Confirmation is idempotent on the upload side, so duplicate and
out-of-order events are harmless: the first created event confirms, later ones find the
file confirmed already; records that are not ours are acknowledged and forgotten. The
upload side believes an event only for an upload whose CompleteUpload succeeded, and only
when it names the object completion recorded: a stale or forged one changes nothing and
is acknowledged; one for an upload not completed (yet) is deferred, since storage's event
can overtake CompleteUpload's commit, and a message deferred maxReceiveCount times (a
forged one) ends in the dead-letter queue.

Failures never lose an event: a transient one (upload service or its database down, a
deadline exceeded) is retried here with exponential backoff while the poller keeps the
message in flight, until it succeeds or the process stops.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.logs import log_fields, request_id_var

from .notifications import (
    Ignored,
    ObjectCreated,
    StorageTestEvent,
    UnprocessableMessage,
    read_message,
)
from .stats import ProcessingStats
from .upload_client import (
    ConfirmationError,
    ConfirmationRefused,
    ConfirmOutcome,
    TransientConfirmationError,
)

log = logging.getLogger(__name__)


# Pauses before asking again about an upload not completed, before deferring its message.
NOT_COMPLETED_WAITS = (0.25, 0.5, 1.0)


class Verdict(enum.Enum):
    # Processed: delete it from the queue.
    DELETE = "delete"
    # Can never be processed: make it visible again at once, so the queue's redrive
    # policy moves it to the dead-letter queue after maxReceiveCount receives.
    REJECT = "reject"
    # Failed unexpectedly: leave it; SQS delivers it again after the visibility timeout.
    RETRY_LATER = "retry_later"
    # The process is stopping while the message waits for a transient failure to pass:
    # leave it undeleted for the next consumer.
    RELEASE = "release"
    # An upload it names is not completed yet: visible again after a short delay that
    # grows with its receive count; maxReceiveCount deferrals dead-letter it.
    DEFER = "defer"


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    body: str
    # SQS's ApproximateReceiveCount: 1 on the first delivery.
    receive_count: int


class Confirmer(Protocol):
    def confirm(self, created: ObjectCreated, *, request_id: str) -> ConfirmOutcome: ...


@dataclass(frozen=True)
class RetryPolicy:
    initial_seconds: float
    max_seconds: float

    def delays(self) -> Iterator[float]:
        """Exponential backoff, each delay jittered down to half so that many messages
        failing together do not retry in lockstep."""
        attempt = 0
        while True:
            ceiling = min(self.max_seconds, self.initial_seconds * (2 ** min(attempt, 32)))
            yield random.uniform(ceiling / 2, ceiling)
            attempt += 1


class _Stopped(Exception):
    """The process stopped while a confirmation waited to be retried."""


class EventProcessor:
    def __init__(
        self, *, bucket: str, confirmer: Confirmer, stats: ProcessingStats, retry: RetryPolicy
    ) -> None:
        self._bucket = bucket
        self._confirmer = confirmer
        self._stats = stats
        self._retry = retry

    def process(self, message: QueueMessage, *, stopping: threading.Event) -> Verdict:
        # The message id is the request id of everything done for this message: it is on
        # this process's log lines and goes with ConfirmUpload, so upload's lines carry it.
        token = request_id_var.set(message.message_id)
        try:
            return self._process(message, stopping)
        finally:
            request_id_var.reset(token)

    def _process(self, message: QueueMessage, stopping: threading.Event) -> Verdict:
        fields = {"message_id": message.message_id, "receive_count": message.receive_count}
        try:
            notification = read_message(message.body, bucket=self._bucket)
        except UnprocessableMessage as exc:
            log.warning(
                "rejecting message %s (receive %d): %s; leaving it for the dead-letter queue",
                message.message_id,
                message.receive_count,
                exc,
                extra=log_fields(**fields, reason=str(exc)),
            )
            return Verdict.REJECT
        if isinstance(notification, StorageTestEvent):
            log.info(
                "storage test event for bucket %s acknowledged",
                notification.bucket,
                extra=log_fields(**fields),
            )
            return Verdict.DELETE
        deferred = False
        for record in notification:
            if isinstance(record, Ignored):
                log.info(
                    "ignoring %s record: %s",
                    record.event_name,
                    record.reason,
                    extra=log_fields(**fields, s3_key=record.key),
                )
                continue
            try:
                outcome = self._confirm_once_completed(record, message, stopping)
            except _Stopped:
                return Verdict.RELEASE
            except ConfirmationRefused as exc:
                log.warning(
                    "rejecting message %s: the upload service refused %s: %s; "
                    "leaving it for the dead-letter queue",
                    message.message_id,
                    record.key,
                    exc,
                    extra=log_fields(**fields, s3_key=record.key),
                )
                return Verdict.REJECT
            except ConfirmationError as exc:
                log.error(
                    "confirming %s failed: %s; SQS will deliver message %s again",
                    record.key,
                    exc,
                    message.message_id,
                    extra=log_fields(**fields, s3_key=record.key),
                )
                return Verdict.RETRY_LATER
            self._report(outcome, record, fields)
            deferred = deferred or outcome is ConfirmOutcome.NOT_COMPLETED
        return Verdict.DEFER if deferred else Verdict.DELETE

    def _confirm_once_completed(
        self, record: ObjectCreated, message: QueueMessage, stopping: threading.Event
    ) -> ConfirmOutcome:
        """_confirm, asked again a few times over about two seconds while the upload is not
        completed: storage's event usually overtakes CompleteUpload's commit by milliseconds,
        and waiting here costs no receive of the message (the queue's deferral does)."""
        outcome = self._confirm(record, message, stopping)
        for delay in NOT_COMPLETED_WAITS:
            if outcome is not ConfirmOutcome.NOT_COMPLETED:
                break
            if stopping.wait(delay):
                raise _Stopped()
            outcome = self._confirm(record, message, stopping)
        return outcome

    def _confirm(
        self, record: ObjectCreated, message: QueueMessage, stopping: threading.Event
    ) -> ConfirmOutcome:
        delays = self._retry.delays()
        while True:
            try:
                return self._confirmer.confirm(record, request_id=message.message_id)
            except TransientConfirmationError as exc:
                self._stats.transient_failure()
                delay = next(delays)
                log.warning(
                    "confirming %s failed transiently (%s); retrying in %.1fs with "
                    "the message kept in flight",
                    record.key,
                    exc,
                    delay,
                    extra=log_fields(message_id=message.message_id, s3_key=record.key),
                )
                if stopping.wait(delay):
                    log.info(
                        "stopping: message %s left undeleted for the next consumer",
                        message.message_id,
                        extra=log_fields(message_id=message.message_id, s3_key=record.key),
                    )
                    raise _Stopped() from None

    def _report(
        self, outcome: ConfirmOutcome, record: ObjectCreated, fields: dict[str, Any]
    ) -> None:
        extra = log_fields(
            **fields,
            s3_key=record.key,
            outcome=outcome.value,
            size=record.size,
            event_name=record.event_name,
        )
        if outcome is ConfirmOutcome.CONFIRMED:
            self._stats.upload_confirmed()
            log.info("upload confirmed: %s", record.key, extra=extra)
        elif outcome is ConfirmOutcome.ALREADY_CONFIRMED:
            log.info("duplicate event: %s was confirmed already", record.key, extra=extra)
        elif outcome is ConfirmOutcome.UNKNOWN_KEY:
            log.warning(
                "no file has key %s (deleted, or not Dropfile's); event acknowledged",
                record.key,
                extra=extra,
            )
        elif outcome is ConfirmOutcome.NOT_COMPLETED:
            log.warning(
                "the upload of %s is not completed: nothing changed; the message "
                "comes back later (receive %d)",
                record.key,
                fields["receive_count"],
                extra=extra,
            )
        elif outcome is ConfirmOutcome.STALE:
            self._stats.stale_event()
            log.warning(
                "event for %s names an object (size %d, ETag %s) other than the one "
                "completion recorded: nothing changed; event acknowledged",
                record.key,
                record.size,
                record.etag,
                extra=extra,
            )
        else:
            log.warning(
                "%s belongs to an aborted upload; the upload service removed the object",
                record.key,
                extra=extra,
            )
