"""Resuming an upload (v2's GetUpload): which parts storage already holds, and how the
recorded parts must change to agree with it.

Storage (ListParts) is the truth about parts: a client may have PUT a part and died before
recording it, or recorded it in a database that since lost nothing but whose storage lost
the part. A stored part counts only with the exact size its number must have; a recorded
part storage does not hold (or holds with another ETag) is corrected. The Redis session is
rebuilt on the way, so a client that lost its session or its token sends only what is
missing, and records it on the fast path."""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass

from services.common.logs import log_fields

from .core import UploadCore, is_complete, session_of
from .models import File, FileStatus, Part
from .parts import expected_part_size
from .storage import StoredPart, UploadGone
from .validation import parse_file_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumablePart:
    part_number: int  # 1-based
    size: int
    etag: str
    checksum: str | None


@dataclass(frozen=True)
class Reconciliation:
    """Parts storage holds (in part order), and the part rows to write and to delete."""

    stored: list[ResumablePart]
    upserts: list[Part]
    deletes: list[int]  # 0-based part indexes

    @property
    def changes_anything(self) -> bool:
        return bool(self.upserts or self.deletes)


def reconcile(
    *,
    stored: dict[int, StoredPart],
    recorded: dict[int, Part],
    size: int,
    part_size: int,
    part_count: int,
) -> Reconciliation:
    """`stored` by 1-based part number (ListParts), `recorded` by 0-based part index."""
    usable: list[ResumablePart] = []
    upserts: list[Part] = []
    for number in sorted(stored):
        part = stored[number]
        if not 1 <= number <= part_count:
            continue  # not a part of this layout: completion will not name it
        if part.size != expected_part_size(number - 1, size=size, part_size=part_size):
            continue  # the client must send this part again (its PUT replaces it)
        known = recorded.get(number - 1)
        same = known is not None and known.etag == part.etag and known.size == part.size
        # Storage's checksum where it reports one, else the one recorded for these bytes.
        checksum = part.checksum or (known.checksum if known is not None and same else None)
        usable.append(ResumablePart(number, part.size, part.etag, checksum))
        if not same or (checksum and known is not None and known.checksum != checksum):
            upserts.append(
                Part(part_index=number - 1, size=part.size, etag=part.etag, checksum=checksum)
            )
    held = {part.part_number - 1 for part in usable}
    deletes = sorted(index for index in recorded if index not in held)
    return Reconciliation(stored=usable, upserts=upserts, deletes=deletes)


class UploadState(str, enum.Enum):
    RECEIVING_PARTS = "RECEIVING_PARTS"
    COMPLETED = "COMPLETED"
    UPLOADED = "UPLOADED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class UploadView:
    """Where an upload stands, for a client about to resume it."""

    state: UploadState
    file: File
    stored_parts: list[ResumablePart]


class Resumption:
    def __init__(self, core: UploadCore) -> None:
        self._core = core

    def upload_view(self, *, user_id: uuid.UUID, file_id: str) -> UploadView:
        """The upload's layout and state; while it takes parts, the parts storage holds
        (all of ListParts' pages), after correcting the recorded parts to agree."""
        core = self._core
        fid = parse_file_id(file_id)
        file = core.owned(fid, user_id)
        if file.status is FileStatus.FAILED:
            return UploadView(UploadState.FAILED, file, [])
        if file.status is FileStatus.UPLOADED:
            return UploadView(UploadState.UPLOADED, file, [])
        if is_complete(file):
            return UploadView(UploadState.COMPLETED, file, [])
        if file.single_put:
            # Resuming a single PUT is PUTting it again: nothing stored is worth listing.
            return UploadView(UploadState.RECEIVING_PARTS, file, [])
        try:
            stored = core.storage.list_parts(file.s3_key, upload_id=file.upload_id or "")
        except UploadGone:
            # Completed meanwhile (recorded now), or gone for good (an error says so).
            core.settle_vanished_upload(file)
            return UploadView(UploadState.COMPLETED, core.owned(fid, user_id), [])
        plan = reconcile(
            stored=stored,
            recorded=core.store.parts.parts_of(fid),
            size=file.size,
            part_size=file.part_size,
            part_count=file.part_count,
        )
        if plan.changes_anything:
            applied = core.store.parts.reconcile_parts(
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
        core.sessions.put(session_of(file))
        return UploadView(UploadState.RECEIVING_PARTS, file, plan.stored)
