"""The steps every upload use case shares: who owns a file, the upload session of a file
taking parts, starting an upload, and completing one under its row lock (or settling an
upload storage no longer has). The use cases (initiation.py, creation.py, resume.py,
recording.py, part_urls.py, completion.py, removal.py, files.py, confirmation.py) are
composed around one UploadCore (uploads.py), never derived from it.

Ordering rules that keep storage and the database consistent:
- PostgreSQL is the source of truth; Redis sessions are a cache that may vanish.
- CompleteUpload completes in storage and records it while holding the file's row lock;
  Abort, DeleteFile and the reaper take (or skip) that lock, so each sees the upload either
  before the completion or after it is recorded, never in between (tests/upload/
  test_races.py): whichever wins, no object outlives its file, and no completed upload is
  failed.
- Abort marks the file FAILED before aborting in storage.
- DeleteFile deletes from storage first, under the row lock: if storage fails, the row
  stays and the user can retry, so no object is ever left without a row that names it.
- A single PUT's URL can PUT its object again after the upload was removed (aborted,
  deleted, reaped): each removal records a tombstone on the key in its transaction, and
  the reaper deletes the key once the last URL expired (store/tombstones.py); the key
  takes no new file meanwhile.
- CompleteUpload never changes the status (it records the object's ETag); ConfirmUpload
  (storage's word, believed only about the object a successful completion recorded) makes
  a file UPLOADED, and nothing moves an UPLOADED file back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.common.logs import log_fields

from .checksums import ChecksumAlgorithm
from .metrics import UPLOADS_COMPLETED, UPLOADS_INITIATED
from .models import File, FileStatus
from .parts import part_lengths
from .quota import Quota, UploadsInProgressLimit
from .sessions import UploadSession, UploadSessions
from .status_events import StatusEvents
from .storage import Storage
from .store import FileIdTaken, UploadStore

log = logging.getLogger(__name__)

UPLOAD_ABORTED = "the upload was aborted; start a new upload with a new file_id"
FILE_ID_TAKEN = "a file with this file_id already exists; choose a new one"
ALREADY_COMPLETE = "the upload is already complete"
NO_SUCH_FILE = "file not found"
SINGLE_PUT_UPLOAD_ID_PREFIX = "single-put-"
# Beyond the URLs' TTL, before a removed single PUT's key is deleted again: a URL is signed
# a moment after its upload was read as in progress (part_urls.py reads the row unlocked,
# so a removal may commit in between), and the coordinator's, PostgreSQL's and storage's
# clocks may differ a little.
URL_EXPIRY_SLACK_SECONDS = 60


def tombstone_seconds(url_ttl_seconds: int) -> int:
    """How long after a single-PUT upload's removal its last URL may still PUT the object:
    URLs are signed only while the upload is in progress (creation, GetPartUrls), each
    valid for the TTL from its signing."""
    return url_ttl_seconds + URL_EXPIRY_SLACK_SECONDS


def now() -> datetime:
    return datetime.now(UTC)


def session_of(file: File) -> UploadSession:
    return UploadSession(
        file_id=file.id,
        user_id=file.user_id,
        upload_id=file.upload_id or "",
        s3_key=file.s3_key,
        part_size=file.part_size,
        part_count=file.part_count,
        size=file.size,
        checksum_algorithm=file.checksum_algorithm or "",
    )


def single_put_upload_id() -> str:
    """The upload id of a single-PUT upload: ours, as storage has no multipart upload to
    name; clients pass it back (to abort, to complete) as they pass storage's."""
    return f"{SINGLE_PUT_UPLOAD_ID_PREFIX}{uuid.uuid4().hex}"


def is_complete(file: File) -> bool:
    return file.status is FileStatus.UPLOADED or file.completed_at is not None


def record_completion(file: File, *, etag: str, sha256: str | None = None) -> None:
    """Storage completed the upload: the (locked) row says so, with the object's ETag
    (which confirmation requires events to match); the status is untouched, storage's
    confirmation makes it UPLOADED."""
    file.completed_at = now()
    file.etag = etag or None
    if sha256 and not file.sha256:
        file.sha256 = sha256


def refuse_unless_receiving_parts(file: File) -> None:
    if file.status is FileStatus.FAILED:
        raise FailedPrecondition(UPLOAD_ABORTED, reason="UPLOAD_ABORTED")
    if is_complete(file):
        raise FailedPrecondition(
            f"{ALREADY_COMPLETE}; it takes no more parts", reason="UPLOAD_COMPLETE"
        )


class UploadCore:
    """The collaborators every use case shares (store, storage, sessions, status events,
    the per-user limits, the presigned URLs' lifetime) and the steps of an upload's life
    that more than one use case takes."""

    def __init__(
        self,
        *,
        store: UploadStore,
        storage: Storage,
        sessions: UploadSessions,
        url_ttl_seconds: int,
        status_events: StatusEvents | None = None,
        quota: Quota | None = None,
        uploads_limit: UploadsInProgressLimit | None = None,
    ) -> None:
        """`quota` and `uploads_limit` (uploads in progress per user) apply to v1 and v2
        alike (unlimited when None)."""
        self.store = store
        self.storage = storage
        self.sessions = sessions
        # Each status change is published for the owner's live view (status_events.py).
        self.status_events = status_events or StatusEvents()
        self.url_ttl = url_ttl_seconds
        self.quota = quota or Quota(0)
        self.uploads_limit = uploads_limit or UploadsInProgressLimit(0)

    def owned(self, file_id: uuid.UUID, user_id: uuid.UUID) -> File:
        file = self.store.files.owned_file(file_id, user_id)
        if file is None:
            raise NotFound(NO_SUCH_FILE)
        return file

    def session_for(self, file_id: uuid.UUID, user_id: uuid.UUID) -> UploadSession:
        """The upload session from Redis, or rebuilt from PostgreSQL when Redis lost it."""
        session = self.sessions.get(file_id)
        if session is not None:
            if session.user_id != user_id:
                raise NotFound(NO_SUCH_FILE)
            return session
        file = self.owned(file_id, user_id)
        refuse_unless_receiving_parts(file)
        session = session_of(file)
        self.sessions.put(session)
        return session

    def start(self, file: File, *, presign_every_part: bool = False) -> Iterable[str]:
        """Starts the multipart upload of `file` (a new UPLOADING row, all but its upload
        id) and inserts the row, in one transaction: the id, then (with a quota or a limit
        of uploads in progress) the owner's usage under the owner's quota lock, are
        checked before storage is touched;
        the insert commits with the lock, so concurrent starts by one user are decided one
        after the other (each waits for the previous one's storage call). Whatever fails
        after storage has the multipart upload aborts it. `presign_every_part` (v1): the
        URLs of every part are returned, all that can fail in making them done before the
        row is committed."""
        algorithm = ChecksumAlgorithm(file.checksum_algorithm) if file.checksum_algorithm else None
        key, upload_id = file.s3_key, None
        urls: Iterable[str] = ()
        try:
            limited = not (self.quota.unlimited and self.uploads_limit.unlimited)
            with self.store.usage.file_creation(
                file.id, file.user_id, s3_key=key, with_usage=limited
            ) as creation:
                if creation.id_taken:
                    raise AlreadyExists(FILE_ID_TAKEN)
                if creation.usage is not None:
                    self.quota.admit(creation.usage, file.size)
                    self.uploads_limit.admit(creation.usage)
                if file.single_put:
                    # Nothing in storage until the client's PUT: nothing to undo on failure.
                    file.upload_id = single_put_upload_id()
                else:
                    upload_id = self.storage.create_multipart_upload(
                        key, content_type=file.mime_type, checksum_algorithm=algorithm
                    )
                    if presign_every_part:
                        numbers = range(1, file.part_count + 1)
                        urls = self.storage.part_urls.presign_parts_lazily(
                            key,
                            upload_id=upload_id,
                            part_numbers=numbers,
                            lengths=part_lengths(numbers, size=file.size, part_size=file.part_size),
                            ttl=self.url_ttl,
                        )
                    file.upload_id = upload_id
                creation.insert(file)
        except FileIdTaken:
            # Lost a race for this id: our multipart upload must not linger.
            self.abort_quietly(key, upload_id or "")
            raise AlreadyExists(FILE_ID_TAKEN) from None
        except BaseException:
            if upload_id is not None:  # failed after storage was touched
                self.abort_quietly(key, upload_id)
            raise
        self.sessions.put(session_of(file))
        UPLOADS_INITIATED.inc()
        self.status_events.changed(
            user_id=file.user_id, file_id=file.id, status="UPLOADING", size=file.size
        )
        return urls

    def abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            self.storage.abort_multipart_upload(key, upload_id=upload_id)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            log.warning(
                "could not abort multipart upload after a failed initiate: %s",
                type(exc).__name__,
                extra=log_fields(s3_key=key),
            )

    @contextmanager
    def locked_for_completion(self, file: File, upload_id: str) -> Iterator[File | None]:
        """The file's row locked (SELECT ... FOR UPDATE) for the block, in which storage
        completes the upload and the completion is recorded, committed when the block
        ends; None when it is complete already. Whoever else would change the upload meets
        the lock: a second completion waits, then finds it complete; an abort waits, then
        refuses; RecordPart waits (and the upload takes no more parts); ConfirmUpload
        waits until the completion is recorded; the reaper skips locked rows, so it never
        fails, or deletes the object of, an upload being completed. Refused here, before
        storage is asked, when the upload was aborted, reaped or deleted meanwhile."""
        with self.store.files.locked_owned_file(file.id, file.user_id) as current:
            if current is None:
                raise NotFound(NO_SUCH_FILE)
            if current.upload_id != upload_id:
                raise InvalidArgument("upload_id is not this file's upload")
            if current.status is FileStatus.FAILED:
                raise FailedPrecondition(UPLOAD_ABORTED, reason="UPLOAD_ABORTED")
            yield None if is_complete(current) else current

    def stored_object_etag(self, file: File) -> str:
        """Storage no longer has the multipart upload: fine when it holds the finished
        object (a completion went through, its reply or our row update was lost), whose
        ETag this returns."""
        stored = self.storage.stored_object(file.s3_key)
        if stored is None or stored[0] != file.size:
            raise FailedPrecondition(
                "storage no longer has this upload (expired or aborted); "
                "start a new upload with a new file_id",
                reason="UPLOAD_GONE",
            )
        return stored[1]

    def completed(self, file: File, *, newly: bool) -> None:
        """After the completion is committed."""
        if newly:
            UPLOADS_COMPLETED.inc()
        self.sessions.delete(file.id)
        log.info("upload completed", extra=log_fields(file_id=str(file.id)))

    def settle_vanished_upload(self, file: File) -> None:
        """Storage no longer has the multipart upload. If it holds the finished object, an
        earlier completion succeeded (its reply or our row update was lost): record it."""
        with self.locked_for_completion(file, file.upload_id or "") as current:
            if current is None:
                return self.completed(file, newly=False)
            record_completion(current, etag=self.stored_object_etag(current))
        self.completed(file, newly=True)
