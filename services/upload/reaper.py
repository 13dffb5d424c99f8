"""The reaper: a worker of the upload coordinator that cleans up what clients abandon.

Every round it
1. marks uploads idle longer than the TTL (no change to the file and no part recorded since)
   FAILED, after aborting their multipart upload and deleting any object, so a FAILED file
   holds nothing in storage; except an upload storage completed whose completion was never
   recorded (the coordinator's reply or commit was lost): its object is the user's file, so
   the completion is recorded instead and storage's confirmation follows as usual. A
   single-PUT upload (no multipart upload) loses the object it may have: never completed,
   it was abandoned. A completion in progress holds the row (core.py), so it is skipped,
   never failed; and
2. sweeps storage tombstones (store/tombstones.py): the key of a single-PUT upload that was
   removed (aborted, deleted, failed here) is deleted from storage once the last URL that
   could PUT it has expired, so an object PUT through that URL after the removal, which
   no file accounts for, does not stay. A tombstone is dropped only once storage deleted
   its key: a storage outage leaves it for the next round; and
3. lists the bucket's multipart uploads under `users/` and aborts the ones no file expects
   parts for (a crash between creating one and writing its row, a row deleted by hand...)
   once they were initiated longer than the TTL ago: younger ones may belong to an upload
   whose row is being written right now.

Several replicas may run it at once (store/reaper.py: rows claimed with SKIP LOCKED, one
orphan scan at a time under an advisory lock; tombstones claimed with SKIP LOCKED), and
aborting an upload or deleting an object that is already gone is harmless. The bucket's
AbortIncompleteMultipartUpload lifecycle rule (services/setup.py) is the backstop where
storage supports one.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.exc import SQLAlchemyError

from services.common.clients import aws_client, redis_client
from services.common.db import Database, make_engine
from services.common.logs import log_fields, request_id_var

from .core import tombstone_seconds
from .metrics import REAPER_ACTIONS
from .sessions import UploadSessions
from .settings import UploadSettings
from .status_events import StatusEvents, publisher_client
from .storage import BucketUploads
from .store import ReaperStore, TombstoneStore

log = logging.getLogger(__name__)

# Every storage key Dropfile writes starts so (`users/<user_id>/<file_id>`).
KEY_PREFIX = "users/"
EXPIRED = "upload_expired"
COMPLETION_RECOVERED = "completion_recovered"
ORPHAN_ABORTED = "orphan_aborted"
TOMBSTONE_SWEPT = "tombstone_swept"
ROUND_ERRORS = (SQLAlchemyError, BotoCoreError, ClientError, redis.RedisError)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RoundReport:
    """What one round did."""

    expired: int = 0  # uploads marked FAILED
    orphans_aborted: int = 0  # multipart uploads without a file, aborted
    orphan_scan_skipped: bool = False  # another replica was scanning
    tombstones_swept: int = 0  # keys deleted from storage once their last URL expired


class Reaper:
    """A server worker (start/stop); `run_once()` is one round, for callers of their own."""

    def __init__(
        self,
        *,
        store: ReaperStore,
        tombstones: TombstoneStore,
        uploads: BucketUploads,
        sessions: UploadSessions,
        status_events: StatusEvents,
        idle_ttl_seconds: int,
        url_ttl_seconds: int,
        interval_seconds: float,
        batch_size: int,
        clock: Callable[[], datetime] = _now,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._tombstones = tombstones
        # A single PUT failed here: how long its URL may still PUT the object.
        self._tombstone_seconds = tombstone_seconds(url_ttl_seconds)
        self._uploads = uploads
        self._sessions = sessions
        self._status_events = status_events
        self._ttl = timedelta(seconds=idle_ttl_seconds)
        self._interval = interval_seconds
        self._batch = batch_size
        self._clock = clock
        self._on_stopped = on_stopped
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- worker ------------------------------------------------------------------------

    def start(self) -> None:
        log.info("reaping uploads idle for %s every %.0f s", self._ttl, self._interval)
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._on_stopped is not None:
            self._on_stopped()

    def _loop(self) -> None:
        # Replicas started together spread their rounds out.
        self._stopping.wait(random.uniform(0, min(self._interval, 60.0)))
        while not self._stopping.is_set():
            try:
                self.run_once()
            except ROUND_ERRORS as exc:
                # Nothing is lost: what was not cleaned up now is found again next round.
                log.warning("reaper round failed: %s: %s", type(exc).__name__, exc)
            except Exception:  # noqa: BLE001 - a bug must not end the worker
                log.exception("reaper round crashed")
            self._stopping.wait(self._interval * random.uniform(0.9, 1.1))

    # -- rounds ------------------------------------------------------------------------

    def run_once(self) -> RoundReport:
        request_id_var.set("reaper")
        expired = self.expire_idle_uploads()
        # Before the orphan scan, which is long and raises when storage fails: a sweep
        # that meets a failure ends quietly, its tombstones kept.
        swept = self.sweep_tombstones()
        aborted = self.abort_orphaned_uploads()
        report = RoundReport(
            expired=expired,
            orphans_aborted=aborted or 0,
            orphan_scan_skipped=aborted is None,
            tombstones_swept=swept,
        )
        if expired or aborted or swept:
            log.info(
                "reaper round: %d idle uploads failed, %d orphaned multipart uploads aborted, "
                "%d tombstoned keys deleted",
                expired,
                aborted or 0,
                swept,
                extra=log_fields(
                    expired=expired, orphans_aborted=aborted or 0, tombstones_swept=swept
                ),
            )
        return report

    def expire_idle_uploads(self) -> int:
        """Marks every upload idle past the TTL FAILED (or completed, when storage holds its
        object), a batch per transaction; returns how many this replica failed."""
        done = 0
        while not self._stopping.is_set():
            idle_before = self._clock() - self._ttl
            failed, recovered = [], []
            with self._store.claim_idle(idle_before=idle_before, limit=self._batch) as claim:
                for file in claim.files:
                    try:
                        completed_etag = self._settle_storage(
                            file.s3_key,
                            # A single PUT has no multipart upload; an object there was PUT
                            # but never completed: abandoned, so deleted like parts are.
                            None if file.single_put else file.upload_id,
                            file.size,
                        )
                    except ROUND_ERRORS as exc:
                        # This one stays UPLOADING and comes back next round.
                        log.warning(
                            "could not clean up idle upload: %s",
                            type(exc).__name__,
                            extra=log_fields(file_id=str(file.id)),
                        )
                        continue
                    if completed_etag is not None:
                        claim.completed(file, etag=completed_etag)
                        recovered.append(file.id)
                        continue
                    claim.failed(
                        file,
                        # Its URL may still PUT the object: deleted again once it expired.
                        tombstone_seconds=self._tombstone_seconds if file.single_put else None,
                    )
                    failed.append((file.id, file.user_id, file.size))
                claimed = len(claim.files)
            # Committed: tell the owners, forget the sessions.
            for file_id in recovered:
                REAPER_ACTIONS.labels(COMPLETION_RECOVERED).inc()
                log.info(
                    "idle upload found completed in storage; completion recorded",
                    extra=log_fields(file_id=str(file_id)),
                )
            for file_id, user_id, size in failed:
                self._sessions.delete(file_id)
                self._status_events.changed(
                    user_id=user_id, file_id=file_id, status="FAILED", size=size
                )
                REAPER_ACTIONS.labels(EXPIRED).inc()
                log.info("idle upload failed", extra=log_fields(file_id=str(file_id)))
            done += len(failed)
            if claimed < self._batch or not (failed or recovered):
                return done
        return done

    def _settle_storage(self, key: str, upload_id: str | None, size: int) -> str | None:
        """The object's ETag when storage completed the upload (no multipart upload left,
        the object there at the declared size): the user's file, kept. Else None, and no
        parts and no object are left under `key` (an object of another size is no file of
        this upload's)."""
        if upload_id and not self._uploads.abort(key, upload_id):
            stored = self._uploads.stored_object(key)
            if stored is not None and stored[0] == size:
                return stored[1]
        self._uploads.delete_object(key)
        return None

    def abort_orphaned_uploads(self) -> int | None:
        """Aborts the multipart uploads no file expects parts for, initiated longer than the
        TTL ago; returns how many, or None when another replica holds the scan."""
        with self._store.orphan_scan_turn() as my_turn:
            if not my_turn:
                return None
            initiated_before = self._clock() - self._ttl
            aborted = 0
            for page in self._uploads.pages(KEY_PREFIX):
                if self._stopping.is_set():
                    break
                old = [upload for upload in page if upload.initiated < initiated_before]
                live = self._store.live_uploads(sorted({upload.key for upload in old}))
                for upload in old:
                    if (upload.key, upload.upload_id) in live:
                        continue  # an idle upload of a file: expire_idle_uploads' business
                    if self._uploads.abort(upload.key, upload.upload_id):
                        aborted += 1
                        REAPER_ACTIONS.labels(ORPHAN_ABORTED).inc()
                        log.info(
                            "orphaned multipart upload aborted", extra=log_fields(s3_key=upload.key)
                        )
            return aborted

    def sweep_tombstones(self) -> int:
        """Deletes from storage the keys whose tombstone is due (their last URL expired), a
        batch per transaction, and drops those tombstones; returns how many. A storage
        failure ends the sweep: the tombstones not swept stay for the next round."""
        done = 0
        while not self._stopping.is_set():
            swept = 0
            failure: Exception | None = None
            with self._tombstones.claim_due(now=self._clock(), limit=self._batch) as claim:
                for key in claim.keys:
                    if key in claim.live:
                        # A file in progress or uploaded holds the key (no file can be
                        # created at a tombstoned key, so this is a bug or a hand edit):
                        # its object is that file's. Its own removal records a new one.
                        log.warning(
                            "tombstone on a live file's key dropped, object kept",
                            extra=log_fields(s3_key=key),
                        )
                        claim.swept(key)
                        continue
                    try:
                        self._uploads.delete_object(key)
                    except (BotoCoreError, ClientError) as exc:
                        failure = exc
                        break
                    claim.swept(key)
                    swept += 1
                claimed = len(claim.keys)
            # Committed: the swept tombstones are gone.
            REAPER_ACTIONS.labels(TOMBSTONE_SWEPT).inc(swept)
            done += swept
            if failure is not None:
                log.warning(
                    "could not delete tombstoned keys; kept for the next round: %s",
                    type(failure).__name__,
                )
                return done
            if claimed < self._batch:
                return done
        return done


def create_reaper(settings: UploadSettings, *, clock: Callable[[], datetime] = _now) -> Reaper:
    """A reaper with clients of its own (a small database pool, S3, Redis), closed when it
    stops."""
    engine = make_engine(settings.cloud_db_uri, pool_size=2)
    sessions_redis = redis_client(settings.cloud_rd_uri)
    events_redis = publisher_client(settings.cloud_rd_uri)

    def close() -> None:
        engine.dispose()
        sessions_redis.close()
        events_redis.close()

    return Reaper(
        store=ReaperStore(Database(engine)),
        tombstones=TombstoneStore(Database(engine)),
        uploads=BucketUploads(
            aws_client("s3", region=settings.aws_region, endpoint_url=settings.s3_endpoint),
            settings.s3_bucket,
        ),
        sessions=UploadSessions(sessions_redis, ttl_seconds=settings.upload_session_ttl_seconds),
        status_events=StatusEvents(events_redis),
        idle_ttl_seconds=settings.upload_idle_ttl_seconds,
        url_ttl_seconds=settings.presigned_url_ttl_seconds,
        interval_seconds=settings.reaper_interval_seconds,
        batch_size=settings.reaper_batch_size,
        clock=clock,
        on_stopped=close,
    )
