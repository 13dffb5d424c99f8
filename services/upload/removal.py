"""AbortUpload and DeleteFile: an upload given up (FAILED, its parts, or a single PUT's
object, gone from storage) and a file deleted (its object first, then its row), each under
the file's row lock, so a completion in progress is seen before or after, never in
between (core.py). A single PUT's URL outlives its upload: its key gets a tombstone in
the same transaction, so the reaper deletes whatever that URL PUTs there later."""

from __future__ import annotations

import logging
import uuid

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.logs import log_fields

from .core import ALREADY_COMPLETE, NO_SUCH_FILE, UploadCore, is_complete, tombstone_seconds
from .models import FileStatus
from .validation import parse_file_id, require_upload_id

log = logging.getLogger(__name__)


class Removal:
    def __init__(self, core: UploadCore) -> None:
        self._core = core

    def abort(self, *, user_id: uuid.UUID, file_id: str, upload_id: str) -> None:
        core = self._core
        fid = parse_file_id(file_id)
        upload_id = require_upload_id(upload_id)
        with core.store.files.locked_owned_file(fid, user_id) as file:
            if file is None:
                raise NotFound(NO_SUCH_FILE)
            if file.upload_id != upload_id:
                raise InvalidArgument("upload_id is not this file's upload")
            if is_complete(file):
                raise FailedPrecondition(
                    f"{ALREADY_COMPLETE}; delete the file instead", reason="UPLOAD_COMPLETE"
                )
            newly_failed = file.status is not FileStatus.FAILED
            file.status = FileStatus.FAILED  # already FAILED: a retry, storage is re-aborted
            key, size, single_put = file.s3_key, file.size, file.single_put
            if single_put:
                # Its URL can still PUT the object: deleted again once that URL expired.
                core.store.files.tombstone(file, seconds=tombstone_seconds(core.url_ttl))
        # After the row says FAILED, so a racing CompleteUpload sees it (see core.py).
        if single_put:
            core.storage.delete_object(key)  # the object the client may have PUT
        else:
            core.storage.abort_multipart_upload(key, upload_id=upload_id)
        core.store.parts.delete_parts(fid)
        core.sessions.delete(fid)
        if newly_failed:
            core.status_events.changed(user_id=user_id, file_id=fid, status="FAILED", size=size)
        log.info("upload aborted", extra=log_fields(file_id=str(fid)))

    def delete(self, *, user_id: uuid.UUID, file_id: str) -> None:
        core = self._core
        fid = parse_file_id(file_id)
        # Under the row lock: a completion in progress finishes first (its object is then
        # deleted here), and a concurrent delete waits, then finds nothing.
        with core.store.files.locked_file_deletion(fid, user_id) as deletion:
            file = deletion.file
            if file is None:
                raise NotFound(NO_SUCH_FILE)
            if (
                file.status is FileStatus.UPLOADING
                and file.completed_at is None
                and file.upload_id
                and not file.single_put
            ):
                core.storage.abort_multipart_upload(file.s3_key, upload_id=file.upload_id)
            core.storage.delete_object(file.s3_key)  # storage first: never orphan an object
            deletion.delete()
            if file.single_put:
                # Its URL can still PUT the object (until its TTL, if it was in progress;
                # an UPLOADED one's too): deleted again once that URL expired.
                deletion.tombstone(seconds=tombstone_seconds(core.url_ttl))
            size = file.size
        core.sessions.delete(fid)
        core.status_events.changed(user_id=user_id, file_id=fid, status="DELETED", size=size)
        log.info("file deleted", extra=log_fields(file_id=str(fid)))
