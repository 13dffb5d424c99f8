"""Recording parts (RecordPart, RecordParts): the hot path, once per part of every upload.
When all is well a part costs one SQL statement: the upload session is cached (in this
process, else Redis), and the upsert's WHERE re-checks the upload id and status in
PostgreSQL, so a stale session is harmless. Only a refusal reads the file, to say why."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.common.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound

from .checksums import ChecksumAlgorithm, clean_part_checksum
from .core import NO_SUCH_FILE, UploadCore, refuse_unless_receiving_parts, session_of
from .metrics import UPLOAD_BYTES, UPLOAD_PARTS
from .parts import expected_part_size
from .sessions import UploadSession
from .store import PartRecord
from .validation import clean_etag, parse_file_id


@dataclass(frozen=True)
class PartToRecord:
    """One caller's RecordPart, inside a batch (PartRecording.record_parts)."""

    user_id: uuid.UUID
    file_id: str
    part_index: int  # 0-based (the v1 contract's chunk_index)
    size: int
    etag: str
    checksum: str = ""


def check_part(session: UploadSession, part_index: int, size: int) -> None:
    """The part's index and exact size, against its upload's layout."""
    if not 0 <= part_index < session.part_count:
        raise InvalidArgument(f"chunk_index {part_index} is outside 0..{session.part_count - 1}")
    expected = expected_part_size(part_index, size=session.size, part_size=session.part_size)
    if size != expected:
        raise InvalidArgument(f"part {part_index} must be {expected} bytes, not {size}")


def part_record(
    session: UploadSession, *, part_index: int, size: int, etag: str, checksum: str
) -> PartRecord:
    """The part as the store records it, once checked against its upload session."""
    check_part(session, part_index, size)
    if checksum and not session.checksum_algorithm:
        raise InvalidArgument("checksum: this upload was started without part checksums (v1)")
    cleaned = (
        clean_part_checksum(
            checksum,
            ChecksumAlgorithm(session.checksum_algorithm),
            what=f"the checksum of part {part_index + 1}",
        )
        if checksum
        else None
    )
    return PartRecord(
        file_id=session.file_id,
        user_id=session.user_id,
        upload_id=session.upload_id,
        part_index=part_index,
        size=size,
        etag=etag,
        checksum=cleaned,
    )


class PartRecording:
    def __init__(self, core: UploadCore) -> None:
        self._core = core
        self._parts = core.store.parts

    def record_part(
        self,
        *,
        user_id: uuid.UUID,
        file_id: str,
        part_index: int,
        size: int,
        etag: str,
        checksum: str = "",
    ) -> None:
        """The hot path: one SQL statement when all is well (the session is cached)."""
        fid = parse_file_id(file_id)
        etag = clean_etag(etag)
        session = self._core.session_for(fid, user_id)
        for _attempt in range(2):
            record = part_record(
                session, part_index=part_index, size=size, etag=etag, checksum=checksum
            )
            if self._parts.record_part(record):
                UPLOAD_PARTS.inc()
                UPLOAD_BYTES.inc(size)
                return
            # Refused: find out why (the slow path runs only for errors and stale sessions).
            file = self._core.store.files.owned_file(fid, user_id)
            if file is None:
                self._core.sessions.delete(fid)
                raise NotFound(NO_SUCH_FILE)
            refuse_unless_receiving_parts(file)
            # The session described another upload of this id (deleted and re-created):
            # refresh it from the database and try once more.
            session = session_of(file)
            self._core.sessions.put(session)
        raise FailedPrecondition("the upload changed while recording the part; retry")

    def record_parts(self, parts: list[PartToRecord]) -> list[DomainError | None]:
        """record_part for many parts (of any users), in one statement and one commit for
        all that pass the checks. One result per part, in order: None when recorded, else
        the refusal record_part would have raised."""
        results: list[DomainError | None] = [None] * len(parts)
        batch: dict[tuple[uuid.UUID, int], tuple[int, PartRecord]] = {}
        one_by_one: list[int] = []
        for index, part in enumerate(parts):
            try:
                fid = parse_file_id(part.file_id)
                record = part_record(
                    self._core.session_for(fid, part.user_id),
                    part_index=part.part_index,
                    size=part.size,
                    etag=clean_etag(part.etag),
                    checksum=part.checksum,
                )
            except DomainError as exc:
                results[index] = exc
                continue
            if (fid, part.part_index) in batch:
                # The same part twice (a client's retry): recorded after the first, as
                # separate calls would have been; one statement may not upsert a row twice.
                one_by_one.append(index)
            else:
                batch[(fid, part.part_index)] = (index, record)
        recorded = self._parts.record_parts([record for _, record in batch.values()])
        for key, (index, record) in batch.items():
            if key in recorded:
                UPLOAD_PARTS.inc()
                UPLOAD_BYTES.inc(record.size)
            else:
                one_by_one.append(index)  # refused: record_part finds out why, or retries
        for index in sorted(one_by_one):
            part = parts[index]
            try:
                self.record_part(
                    user_id=part.user_id,
                    file_id=part.file_id,
                    part_index=part.part_index,
                    size=part.size,
                    etag=part.etag,
                    checksum=part.checksum,
                )
            except DomainError as exc:
                results[index] = exc
        return results
