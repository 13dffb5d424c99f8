"""The reconciler: confirms completed uploads by asking storage whether their object exists.
It is the only confirmation path where storage sends no events (SeaweedFS, `make run`'s
embedded engine) and a safety net for lost events where it does. ConfirmUpload is idempotent,
so the reconciler and the event queue can confirm the same upload without harm, and several
replicas can run it at once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.common.logs import log_fields, request_id_var

from .stats import ProcessingStats
from .storage import STORAGE_ERRORS, StoredObjects
from .upload_client import ConfirmationError, ConfirmOutcome, UploadConfirmer

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
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        self._confirmer = confirmer
        self._storage = storage
        self._interval = interval
        self._grace = grace_seconds
        self._batch = batch_size
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
        while not self._stopping.is_set():
            try:
                self.reconcile_once()
            except (ConfirmationError, *STORAGE_ERRORS) as exc:
                # The next round retries; nothing is lost while the upload stays UPLOADING.
                log.warning("reconciliation round failed: %s", exc)
            self._stopping.wait(self._interval)

    def reconcile_once(self) -> int:
        """Checks one batch of unconfirmed completions; returns how many got confirmed."""
        confirmed = 0
        for upload in self._confirmer.pending(
            completed_at_least_seconds_ago=self._grace, limit=self._batch
        ):
            if self._stopping.is_set():
                break
            created = self._storage.created(upload.s3_key)
            if created is None:
                continue  # not visible yet: the next round looks again
            request_id_var.set(f"reconcile-{upload.file_id}")
            outcome = self._confirmer.confirm(created, request_id=request_id_var.get())
            if outcome is ConfirmOutcome.CONFIRMED:
                confirmed += 1
                self._stats.upload_confirmed()
            log.info(
                "reconciled upload", extra=log_fields(file_id=upload.file_id, outcome=outcome.value)
            )
        return confirmed
