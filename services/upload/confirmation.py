"""What the internal service (UploadInternalService) needs: ConfirmUpload, storage's word
that it holds an object, and the completed uploads still waiting for it, for a reconciler
to check (ListPendingConfirmations)."""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.errors import InvalidArgument
from services.common.logs import log_fields

from .core import UploadCore, now
from .metrics import EVENT_LAG, UPLOADS_CONFIRMED
from .models import File, FileStatus
from .storage import normalize_etag

log = logging.getLogger(__name__)


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "CONFIRMED"
    ALREADY_CONFIRMED = "ALREADY_CONFIRMED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    REJECTED = "REJECTED"
    NOT_COMPLETED = "NOT_COMPLETED"
    STALE = "STALE"


@dataclass(frozen=True)
class PendingConfirmation:
    """A completed upload that storage has not confirmed yet."""

    file_id: str
    s3_key: str
    size: int
    completed_at: datetime


@dataclass(frozen=True)
class Verdict:
    """What a confirmation decided under the file's row lock, for settle() after it."""

    outcome: ConfirmOutcome
    why: str
    file_id: uuid.UUID | None
    single_put: bool
    # (owner, new status, size) when the status changed.
    change: tuple[uuid.UUID, FileStatus, int] | None


def is_recorded_object(file: File, *, size: int, etag: str) -> bool:
    """Whether storage's word (size, bare ETag) describes the object completion recorded.
    Rows completed before ETags were recorded have none: their size alone is compared."""
    return size == file.size and (file.etag is None or etag == file.etag)


def _judge(file: File | None, *, size: int, etag: str) -> tuple[ConfirmOutcome, str]:
    """What storage's word means for the (locked) file; a CONFIRMED file is marked so."""
    if file is None:
        return ConfirmOutcome.UNKNOWN_KEY, "no file has this key"
    if file.status is FileStatus.FAILED:
        return ConfirmOutcome.REJECTED, "the upload was aborted"
    if not is_recorded_object(file, size=size, etag=etag):
        return ConfirmOutcome.STALE, (
            f"object is {size} bytes, ETag {etag or '-'}; completion recorded "
            f"{file.size} bytes, ETag {file.etag or '-'}"
        )
    if file.status is FileStatus.UPLOADED:
        return ConfirmOutcome.ALREADY_CONFIRMED, "already uploaded"
    if file.completed_at is None:
        if file.single_put:
            # The client's PUT made the object: CompleteUpload comes next, and confirms.
            return ConfirmOutcome.NOT_COMPLETED, "single PUT not completed yet"
        # Someone else's object at the key (a forged message, or a PUT by whoever got at
        # storage), or storage's event overtook CompleteUpload's commit.
        return ConfirmOutcome.NOT_COMPLETED, "CompleteUpload has not succeeded"
    file.status = FileStatus.UPLOADED
    file.etag = etag or file.etag
    file.uploaded_at = now()
    return ConfirmOutcome.CONFIRMED, "confirmed"


class Confirmation:
    def __init__(self, core: UploadCore) -> None:
        self._core = core

    def confirm(
        self, *, s3_key: str, size: int, etag: str, event_time: datetime | None = None
    ) -> ConfirmOutcome:
        """Storage says it holds an object at `s3_key` (an event, or a reconciler's HEAD).
        Events can be stale, duplicated, reordered or forged, so they are believed only for
        what CompleteUpload itself did: a file is confirmed when its completion succeeded
        and the object is the one completion recorded (size, and ETag where storage named
        one). Anything else changes nothing. Serialized per file by a row lock, so
        concurrent duplicate confirmations confirm once."""
        if not s3_key:
            raise InvalidArgument("s3_key is required")
        if size < 0:
            raise InvalidArgument("size must be 0 or more bytes")
        etag = normalize_etag(etag)
        with self._core.store.files.locked_file_by_key(s3_key) as file:
            verdict = self.judge_locked(file, size=size, etag=etag)
        self.settle(verdict, s3_key=s3_key, event_time=event_time)
        if verdict.outcome is ConfirmOutcome.UNKNOWN_KEY:
            self._delete_if_tombstoned(s3_key)
        return verdict.outcome

    def _delete_if_tombstoned(self, s3_key: str) -> None:
        """No file has the key: an object there that a tombstone names was PUT through the
        URL of a removed single PUT, and is deleted now, as a FAILED file's is (REJECTED),
        rather than when the reaper sweeps the key. The tombstone stays (the URL may PUT
        again); errors propagate, so the event is retried. Other keys are not ours to
        delete (a row deleted by hand, an object not Dropfile's): left to the audit."""
        with self._core.store.tombstones.held(s3_key) as tombstoned:
            if tombstoned:
                self._core.storage.delete_object(s3_key)
                log.info(
                    "object of a removed upload deleted; its key is tombstoned",
                    extra=log_fields(s3_key=s3_key),
                )

    def judge_locked(self, file: File | None, *, size: int, etag: str) -> Verdict:
        """What storage's word (size, bare ETag) means for `file`, whose row the caller
        holds locked (a CONFIRMED file is marked so); settle() after the commit."""
        status_before = file.status if file is not None else None
        outcome, why = _judge(file, size=size, etag=etag)
        return Verdict(
            outcome=outcome,
            why=why,
            file_id=file.id if file is not None else None,
            single_put=file is not None and file.single_put,
            change=(
                (file.user_id, file.status, file.size)
                if file is not None and file.status is not status_before
                else None
            ),
        )

    def settle(self, verdict: Verdict, *, s3_key: str, event_time: datetime | None = None) -> None:
        """A verdict's effects, once its transaction committed: the owner's live status,
        metrics, the log, a stray object's deletion, the Redis session."""
        core = self._core
        outcome, why, file_id = verdict.outcome, verdict.why, verdict.file_id
        if verdict.change is not None:  # committed: the owner's live status hears of it now
            owner, status, stored_size = verdict.change
            core.status_events.changed(
                user_id=owner, file_id=str(file_id), status=status.value, size=stored_size
            )
        fields: dict[str, object] = {"s3_key": s3_key, "outcome": outcome.value, "why": why}
        lag = None if event_time is None else round((now() - event_time).total_seconds(), 3)
        if lag is not None:
            fields["event_lag_seconds"] = lag
        if outcome is ConfirmOutcome.CONFIRMED:
            UPLOADS_CONFIRMED.inc()
            if lag is not None:
                # Storage's clock may run a little ahead of ours: never a negative lag.
                EVENT_LAG.observe(max(lag, 0.0))
        if outcome is ConfirmOutcome.NOT_COMPLETED and verdict.single_put:
            log.info("upload confirmation: nothing changed", extra=log_fields(**fields))
        elif outcome in (ConfirmOutcome.NOT_COMPLETED, ConfirmOutcome.STALE):
            log.warning("upload confirmation refused: nothing changed", extra=log_fields(**fields))
        elif outcome is ConfirmOutcome.REJECTED:
            log.warning("upload confirmation rejected", extra=log_fields(**fields))
            # A FAILED file holds no object: the stray one goes (errors propagate, so the
            # event is retried and this runs again).
            core.storage.delete_object(s3_key)
        else:
            log.info("upload confirmation", extra=log_fields(**fields))
        if file_id is not None and outcome in (ConfirmOutcome.CONFIRMED, ConfirmOutcome.REJECTED):
            core.sessions.delete(file_id)

    def pending_confirmations(
        self, *, completed_at_least_seconds_ago: int, limit: int
    ) -> list[PendingConfirmation]:
        """Completed uploads storage has not confirmed yet, for a reconciler to check."""
        if completed_at_least_seconds_ago < 0:
            raise InvalidArgument("completed_at_least_seconds_ago must be 0 or more")
        limit = limit or 100
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        before = now() - timedelta(seconds=completed_at_least_seconds_ago)
        return [
            PendingConfirmation(
                file_id=str(file.id),
                s3_key=file.s3_key,
                size=file.size,
                completed_at=file.completed_at,
            )
            for file in self._core.store.files.pending_confirmations(
                completed_before=before, limit=limit
            )
            if file.completed_at is not None  # always: the query asks for completed ones
        ]
