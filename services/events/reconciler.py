"""The reconciler: confirms completed uploads by asking storage whether their object exists.
It is the only confirmation path where storage sends no events (SeaweedFS, `make run`'s
embedded engine) and a safety net for lost events where it does. ConfirmUpload is idempotent,
so the reconciler and the event queue can confirm the same upload without harm, and several
replicas can run it at once.

A round checks its batch (the oldest completions) several at a time
(`reconcile_concurrency`: each check is a HEAD then a ConfirmUpload, both waiting on
another process), and a round that found its batch full and confirmed something is
followed at once by the next: a burst of completions is confirmed as fast as storage and
the coordinator answer, not a batch per interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from services.common.logs import log_fields, request_id_var

from .stats import ProcessingStats
from .storage import STORAGE_ERRORS, StoredObjects
from .upload_client import ConfirmationError, ConfirmOutcome, PendingUpload, UploadConfirmer

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        *,
        confirmer: UploadConfirmer,
        storage: StoredObjects,
        interval: float,
        grace_seconds: int,
        batch_size: int,
        stats: ProcessingStats,
        concurrency: int = 1,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        self._confirmer = confirmer
        self._storage = storage
        self._interval = interval
        self._grace = grace_seconds
        self._batch = batch_size
        self._concurrency = concurrency
        self._stats = stats
        self._on_stopped = on_stopped
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        log.info("reconciling completed uploads with storage every %.1f s", self._interval)
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._on_stopped:
            self._on_stopped()

    def _loop(self) -> None:
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="reconcile") as pool:
            while not self._stopping.is_set():
                checked, confirmed = 0, 0
                try:
                    checked, confirmed = self._round(pool)
                except (ConfirmationError, *STORAGE_ERRORS) as exc:
                    # The next round retries; nothing is lost while the upload stays UPLOADING.
                    log.warning("reconciliation round failed: %s", exc)
                # A full batch that made progress: more may be waiting behind it.
                if not (checked == self._batch and confirmed):
                    self._stopping.wait(self._interval)

    def reconcile_once(self) -> int:
        """Checks one batch of unconfirmed completions; returns how many got confirmed."""
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="reconcile") as pool:
            return self._round(pool)[1]

    def _round(self, pool: ThreadPoolExecutor) -> tuple[int, int]:
        """One batch (the oldest completions), `concurrency` checks at a time; returns how
        many it held and how many got confirmed. The first failure is raised once every
        check has ended."""
        uploads = self._confirmer.pending(
            completed_at_least_seconds_ago=self._grace, limit=self._batch
        )
        outcomes = list(pool.map(self._check, uploads))
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return len(uploads), sum(o is ConfirmOutcome.CONFIRMED for o in outcomes)

    def _check(self, upload: PendingUpload) -> ConfirmOutcome | Exception | None:
        """One pending upload: HEAD, then ConfirmUpload when storage has the object (None
        while it has not: the next round looks again). A failure is returned, not raised."""
        if self._stopping.is_set():
            return None
        try:
            created = self._storage.created(upload.s3_key)
            if created is None:
                return None
            request_id_var.set(f"reconcile-{upload.file_id}")
            outcome = self._confirmer.confirm(created, request_id=request_id_var.get())
        except (ConfirmationError, *STORAGE_ERRORS) as exc:
            return exc
        if outcome is ConfirmOutcome.CONFIRMED:
            self._stats.upload_confirmed()
        log.info(
            "reconciled upload", extra=log_fields(file_id=upload.file_id, outcome=outcome.value)
        )
        return outcome
