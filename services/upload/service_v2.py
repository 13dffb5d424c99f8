"""The v2 upload rules, beside v1's (service.py): the server chooses the part size, no URL
is presigned until the client asks for a batch (service.Uploads.part_urls, with each part's
checksum), an upload can be resumed from the parts storage holds, and each user's quota is
enforced before any byte is written.

Mixed into service.Uploads, whose helpers and collaborators (store, storage, sessions) it
shares: one domain object serves both API versions, so v1 and v2 uploads of one file id
follow the same rules once they are started."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.logs import log_fields

from . import service as v1  # its cleaning helpers (imported both ways: used at call time)
from .checksums import ChecksumAlgorithm, clean_sha256_hex
from .models import File, FileStatus
from .parts import choose_part_size, part_count
from .quota import Quota, Usage, human_bytes
from .resume import ResumablePart, reconcile
from .storage import UploadGone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CreatedUpload:
    file_id: str
    upload_id: str
    s3_key: str
    part_size: int
    part_count: int
    checksum_algorithm: ChecksumAlgorithm


class UploadState:
    RECEIVING_PARTS = "RECEIVING_PARTS"
    COMPLETED = "COMPLETED"
    UPLOADED = "UPLOADED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class UploadView:
    """Where an upload stands, for a client about to resume it."""

    state: str  # an UploadState
    file: File
    stored_parts: list[ResumablePart]


class UploadsV2:
    """Needs from its host class (service.Uploads): _store, _storage, _sessions, _quota,
    _min_part_size, _v2_max_file_size, _owned(), _start_upload() and
    _settle_vanished_upload()."""

    def create_upload(
        self,
        *,
        user_id: uuid.UUID,
        file_id: str,
        file_name: str,
        mime_type: str,
        file_size: int,
        checksum_algorithm: ChecksumAlgorithm | None,
        sha256: str = "",
    ) -> CreatedUpload:
        fid = v1.parse_file_id(file_id) if file_id else uuid.uuid4()
        name = v1.clean_file_name(file_name)
        mime = v1.clean_mime_type(mime_type)
        digest = clean_sha256_hex(sha256)
        algorithm = checksum_algorithm or ChecksumAlgorithm.SHA256
        if file_size < 0:
            raise InvalidArgument("file_size must be 0 or more bytes")
        if file_size > self._v2_max_file_size:
            raise InvalidArgument(
                f"file_size {file_size} exceeds the limit of {self._v2_max_file_size} bytes "
                f"({human_bytes(self._v2_max_file_size)})",
                reason="FILE_TOO_LARGE",
            )
        size_of_parts = choose_part_size(file_size, min_part_size=self._min_part_size)
        count = part_count(file_size, size_of_parts)
        file = File(
            id=fid,
            user_id=user_id,
            file_name=name,
            mime_type=mime,
            size=file_size,
            s3_key=v1.storage_key(user_id, fid),
            part_size=size_of_parts,
            part_count=count,
            status=FileStatus.UPLOADING,
            checksum_algorithm=algorithm.value,
            sha256=digest,
        )
        self._start_upload(file)
        log.info(
            "upload created",
            extra=log_fields(
                file_id=str(fid), size=file_size, parts=count, part_size=size_of_parts
            ),
        )
        return CreatedUpload(
            file_id=str(fid),
            upload_id=file.upload_id or "",
            s3_key=file.s3_key,
            part_size=size_of_parts,
            part_count=count,
            checksum_algorithm=algorithm,
        )

    def upload_view(self, *, user_id: uuid.UUID, file_id: str) -> UploadView:
        """The upload's layout and state; while it takes parts, the parts storage holds
        (all of ListParts' pages), after correcting the recorded chunks to agree."""
        fid = v1.parse_file_id(file_id)
        file = self._owned(fid, user_id)
        if file.status is FileStatus.FAILED:
            return UploadView(UploadState.FAILED, file, [])
        if file.status is FileStatus.UPLOADED:
            return UploadView(UploadState.UPLOADED, file, [])
        if v1._is_complete(file):
            return UploadView(UploadState.COMPLETED, file, [])
        try:
            stored = self._storage.list_parts(file.s3_key, upload_id=file.upload_id or "")
        except UploadGone:
            # Completed meanwhile (recorded now), or gone for good (an error says so).
            self._settle_vanished_upload(file)
            return UploadView(UploadState.COMPLETED, self._owned(fid, user_id), [])
        plan = reconcile(
            stored=stored,
            recorded=self._store.chunks_of(fid),
            size=file.size,
            part_size=file.part_size,
            part_count=file.part_count,
        )
        if plan.changes_anything:
            applied = self._store.reconcile_chunks(
                file_id=fid,
                upload_id=file.upload_id or "",
                upserts=plan.upserts,
                deletes=plan.deletes,
            )
            if not applied:  # aborted or completed while we looked: describe that instead
                return self.upload_view(user_id=user_id, file_id=file_id)
            log.info(
                "recorded parts reconciled with storage",
                extra=log_fields(
                    file_id=str(fid), recorded=len(plan.upserts), forgotten=len(plan.deletes)
                ),
            )
        # The Redis session may have been lost (flushed, expired): rebuild it now, so the
        # parts about to be recorded take the fast path.
        self._sessions.put(v1._session_of(file))
        return UploadView(UploadState.RECEIVING_PARTS, file, plan.stored)

    def get_file(self, *, user_id: uuid.UUID, file_id: str) -> File:
        return self._owned(v1.parse_file_id(file_id), user_id)

    def quota_of(self, *, user_id: uuid.UUID) -> tuple[Usage, Quota]:
        return self._store.usage_of(user_id), self._quota

    def _check_quota_at_completion(self, file: File, real_size: int) -> None:
        """Completion counts the bytes storage really holds, against the quota as it is
        now (it may have been lowered since the upload began)."""
        if self._quota.unlimited:
            return
        with self._store.locked_usage(file.user_id, excluding=file.id) as usage:
            self._quota.admit(usage, real_size)

    def _refuse_checksums_of_v1(self, file: File, checksums) -> None:
        if checksums and not file.checksum_algorithm:
            raise FailedPrecondition(
                "this upload was started without part checksums (v1); "
                "ask for its URLs without checksums",
                reason="NO_CHECKSUMS",
            )
