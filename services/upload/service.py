"""The rules of uploading: who may touch which file, what a valid part is, and how a file
moves UPLOADING -> UPLOADED (only when storage confirms it) or -> FAILED.

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
- CompleteUpload never changes the status (it records the object's ETag); ConfirmUpload
  (storage's word, believed only about the object a successful completion recorded) makes
  a file UPLOADED, and nothing moves an UPLOADED file back.
"""

from __future__ import annotations

import enum
import logging
import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.common.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.common.logs import log_fields
from services.common.metrics import (
    EVENT_LAG,
    UPLOAD_BYTES,
    UPLOAD_PARTS,
    UPLOADS_COMPLETED,
    UPLOADS_CONFIRMED,
    UPLOADS_INITIATED,
)

from .checksums import ChecksumAlgorithm, clean_part_checksum, clean_sha256_hex
from .listing import FilePage, list_files_page
from .models import File, FileStatus
from .parts import MAX_PARTS, MIN_PART_SIZE, expected_part_size, part_count, part_lengths
from .quota import Quota, UploadsInProgressLimit
from .service_v2 import UploadsV2
from .sessions import UploadSession, UploadSessions
from .status_events import StatusEvents
from .storage import CompletionRefused, Storage, UploadGone, normalize_etag
from .store import ChunkRecord, FileIdTaken, UploadStore

log = logging.getLogger(__name__)

DEFAULT_MIME_TYPE = "application/octet-stream"
MAX_FILE_NAME_CHARS = 1024  # files.file_name
MAX_MIME_TYPE_CHARS = 255  # files.mime_type
MAX_ETAG_CHARS = 200  # chunks.etag
MAX_UPLOAD_ID_CHARS = 1024  # files.upload_id
# Parts per GetPartUrls call: presigning is local CPU work, but a reply stays small.
MAX_PART_URLS_PER_CALL = 1000

_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
# type/subtype (RFC 6838 names), optionally with simple `; name=value` parameters.
MIME_TYPE_PATTERN = re.compile(
    rf"^{_TOKEN}/{_TOKEN}(?:\s*;\s*[a-z0-9!#$&^_.+-]+=[a-z0-9!#$&^_.+-]+)*$", re.IGNORECASE
)
# ETags are opaque but printable ASCII without spaces (S3: hex, optionally "-<parts>").
ETAG_PATTERN = re.compile(r"^[\x21-\x7e]+$")
# Invisible characters that could disguise a name ("harmless\u202Eexe.pdf"): bidi controls.
_BIDI_CONTROLS = {
    "\u061c",
    "\u200e",
    "\u200f",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
}

UPLOAD_ABORTED = "the upload was aborted; start a new upload with a new file_id"
FILE_ID_TAKEN = "a file with this file_id already exists; choose a new one"
ALREADY_COMPLETE = "the upload is already complete"
NO_SUCH_FILE = "file not found"


class ConfirmOutcome(enum.Enum):
    CONFIRMED = "CONFIRMED"
    ALREADY_CONFIRMED = "ALREADY_CONFIRMED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    REJECTED = "REJECTED"
    NOT_COMPLETED = "NOT_COMPLETED"
    STALE = "STALE"


@dataclass(frozen=True)
class InitiatedUpload:
    upload_id: str
    # In part order; made as they are read (Storage.presign_parts_lazily): read them once.
    part_urls: Iterable[str]
    part_size: int
    s3_key: str


@dataclass(frozen=True)
class PartRef:
    """A part of a completion request: 1-based part number and its ETag."""

    part_number: int
    etag: str


@dataclass(frozen=True)
class PartToRecord:
    """One caller's RecordPart, inside a batch (Uploads.record_parts)."""

    user_id: uuid.UUID
    file_id: str
    chunk_index: int
    size: int
    etag: str
    checksum: str = ""


@dataclass(frozen=True)
class FileInfo:
    file_id: str
    file_name: str
    mime_type: str
    size: int
    s3_key: str
    status: FileStatus
    created_at: datetime
    # The whole file's SHA-256 (hex) as declared by a v2 upload; None otherwise.
    sha256: str | None = None


@dataclass(frozen=True)
class PendingConfirmation:
    """A completed upload that storage has not confirmed yet."""

    file_id: str
    s3_key: str
    size: int
    completed_at: datetime


@dataclass(frozen=True)
class PartUrls:
    """Presigned PUT URLs by 1-based part number, in part order."""

    urls: list[tuple[int, str]]
    expires_in_seconds: int
    # v2 uploads: the signed headers each part's PUT must carry, by part number.
    headers: dict[int, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DownloadUrl:
    url: str
    expires_in_seconds: int


def _now() -> datetime:
    return datetime.now(UTC)


def parse_file_id(value: str) -> uuid.UUID:
    if not value:
        raise InvalidArgument("file_id is required")
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument("file_id must be a UUID") from None


def clean_file_name(value: str) -> str:
    """The name without control and bidi characters, NFC-normalized and trimmed."""
    name = "".join(
        ch
        for ch in unicodedata.normalize("NFC", value)
        if unicodedata.category(ch) not in ("Cc", "Cs", "Zl", "Zp") and ch not in _BIDI_CONTROLS
    ).strip()
    if not name:
        raise InvalidArgument("file_name is required")
    if len(name) > MAX_FILE_NAME_CHARS:
        raise InvalidArgument(f"file_name is longer than {MAX_FILE_NAME_CHARS} characters")
    return name


def clean_mime_type(value: str) -> str:
    mime = value.strip()
    if not mime:
        return DEFAULT_MIME_TYPE
    if len(mime) > MAX_MIME_TYPE_CHARS or not MIME_TYPE_PATTERN.match(mime):
        raise InvalidArgument("mime_type must look like type/subtype, e.g. application/pdf")
    type_and_subtype, _, parameters = mime.partition(";")
    return type_and_subtype.strip().lower() + (";" + parameters if parameters else "")


def clean_etag(value: str, *, what: str = "etag") -> str:
    etag = normalize_etag(value)
    if not etag:
        raise InvalidArgument(f"{what} is required")
    if len(etag) > MAX_ETAG_CHARS or not ETAG_PATTERN.match(etag):
        raise InvalidArgument(f"{what} is not a valid ETag")
    return etag


def _require_upload_id(upload_id: str) -> str:
    if not upload_id:
        raise InvalidArgument("upload_id is required")
    if len(upload_id) > MAX_UPLOAD_ID_CHARS:
        raise InvalidArgument("upload_id is too long")
    return upload_id


def _human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


def ordered_parts(parts: list[PartRef], expected_count: int) -> list[tuple[int, str]]:
    """(part number, bare ETag) for 1..expected_count, each exactly once, else
    InvalidArgument naming what is wrong."""
    by_number: dict[int, str] = {}
    for part in parts:
        if not 1 <= part.part_number <= expected_count:
            raise InvalidArgument(f"part number {part.part_number} is outside 1..{expected_count}")
        if part.part_number in by_number:
            raise InvalidArgument(f"part {part.part_number} is listed more than once")
        by_number[part.part_number] = clean_etag(
            part.etag, what=f"the ETag of part {part.part_number}"
        )
    missing = [number for number in range(1, expected_count + 1) if number not in by_number]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise InvalidArgument(
            f"parts missing from the request: {shown} (this file has {expected_count})"
        )
    return sorted(by_number.items())


def storage_key(user_id: uuid.UUID, file_id: uuid.UUID) -> str:
    """Where a file's bytes live: ids only, nothing the user typed."""
    return f"users/{user_id}/{file_id}"


def _session_of(file: File) -> UploadSession:
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


def _info(file: File) -> FileInfo:
    return FileInfo(
        file_id=str(file.id),
        file_name=file.file_name,
        mime_type=file.mime_type,
        size=file.size,
        s3_key=file.s3_key,
        status=file.status,
        created_at=file.created_at,
        sha256=file.sha256,
    )


def _is_complete(file: File) -> bool:
    return file.status is FileStatus.UPLOADED or file.completed_at is not None


def _is_recorded_object(file: File, *, size: int, etag: str) -> bool:
    """Whether storage's word (size, bare ETag) describes the object completion recorded.
    Rows completed before ETags were recorded have none: their size alone is compared."""
    return size == file.size and (file.etag is None or etag == file.etag)


def _record_completion(file: File, *, etag: str, sha256: str | None = None) -> None:
    """Storage completed the upload: the (locked) row says so, with the object's ETag
    (which confirmation requires events to match); the status is untouched, storage's
    confirmation makes it UPLOADED."""
    file.completed_at = _now()
    file.etag = etag or None
    if sha256 and not file.sha256:
        file.sha256 = sha256


def _refuse_unless_receiving_parts(file: File) -> None:
    if file.status is FileStatus.FAILED:
        raise FailedPrecondition(UPLOAD_ABORTED, reason="UPLOAD_ABORTED")
    if _is_complete(file):
        raise FailedPrecondition(
            f"{ALREADY_COMPLETE}; it takes no more parts", reason="UPLOAD_COMPLETE"
        )


class Uploads(UploadsV2):
    def __init__(
        self,
        *,
        store: UploadStore,
        storage: Storage,
        sessions: UploadSessions,
        part_size: int,
        max_file_size: int,
        url_ttl_seconds: int,
        status_events: StatusEvents | None = None,
        v2_max_file_size: int = 5 * 1024**4,
        min_part_size: int = MIN_PART_SIZE,
        quota: Quota | None = None,
        uploads_limit: UploadsInProgressLimit | None = None,
    ) -> None:
        """`part_size`/`max_file_size` are v1's; v2 chooses part sizes from
        `min_part_size` up, for files up to `v2_max_file_size`. `quota` and `uploads_limit`
        (uploads in progress per user) apply to both (unlimited when None)."""
        self._v2_max_file_size = v2_max_file_size
        self._min_part_size = min_part_size
        self._quota = quota or Quota(0)
        self._uploads_limit = uploads_limit or UploadsInProgressLimit(0)
        self._store = store
        self._storage = storage
        self._sessions = sessions
        # Each status change is published for the owner's live view (status_events.py).
        self._status_events = status_events or StatusEvents()
        self._part_size = part_size
        self._max_file_size = max_file_size
        self._url_ttl = url_ttl_seconds

    # -- users -------------------------------------------------------------------------

    def initiate(
        self, *, user_id: uuid.UUID, file_id: str, file_name: str, mime_type: str, file_size: int
    ) -> InitiatedUpload:
        fid = parse_file_id(file_id)
        name = clean_file_name(file_name)
        mime = clean_mime_type(mime_type)
        if file_size < 0:
            raise InvalidArgument("file_size must be 0 or more bytes")
        if file_size > self._max_file_size:
            raise InvalidArgument(
                f"file_size {file_size} exceeds the limit of {self._max_file_size} bytes "
                f"({_human_size(self._max_file_size)})",
                reason="FILE_TOO_LARGE",
            )
        count = part_count(file_size, self._part_size)
        if count > MAX_PARTS:  # settings keep this unreachable; storage would refuse it
            raise InvalidArgument(f"file_size needs {count} parts; storage allows {MAX_PARTS}")
        file = File(
            id=fid,
            user_id=user_id,
            file_name=name,
            mime_type=mime,
            size=file_size,
            s3_key=storage_key(user_id, fid),
            part_size=self._part_size,
            part_count=count,
            status=FileStatus.UPLOADING,
        )
        urls = self._start_upload(file, presign_every_part=True)
        log.info(
            "upload initiated", extra=log_fields(file_id=str(fid), size=file_size, parts=count)
        )
        return InitiatedUpload(
            upload_id=file.upload_id or "",
            part_urls=urls,
            part_size=self._part_size,
            s3_key=file.s3_key,
        )

    def record_part(
        self,
        *,
        user_id: uuid.UUID,
        file_id: str,
        chunk_index: int,
        size: int,
        etag: str,
        checksum: str = "",
    ) -> None:
        """The hot path: one SQL statement when all is well (the session is cached)."""
        fid = parse_file_id(file_id)
        etag = clean_etag(etag)
        session = self._session_for(fid, user_id)
        for _attempt in range(2):
            record = self._chunk_record(
                session, chunk_index=chunk_index, size=size, etag=etag, checksum=checksum
            )
            if self._store.record_chunk(
                file_id=fid,
                user_id=user_id,
                upload_id=record.upload_id,
                chunk_index=chunk_index,
                size=size,
                etag=etag,
                checksum=record.checksum,
            ):
                UPLOAD_PARTS.inc()
                UPLOAD_BYTES.inc(size)
                return
            # Refused: find out why (the slow path runs only for errors and stale sessions).
            file = self._store.owned_file(fid, user_id)
            if file is None:
                self._sessions.delete(fid)
                raise NotFound(NO_SUCH_FILE)
            _refuse_unless_receiving_parts(file)
            # The session described another upload of this id (deleted and re-created):
            # refresh it from the database and try once more.
            session = _session_of(file)
            self._sessions.put(session)
        raise FailedPrecondition("the upload changed while recording the part; retry")

    def record_parts(self, parts: list[PartToRecord]) -> list[DomainError | None]:
        """record_part for many parts (of any users), in one statement and one commit for
        all that pass the checks. One result per part, in order: None when recorded, else
        the refusal record_part would have raised."""
        results: list[DomainError | None] = [None] * len(parts)
        batch: dict[tuple[uuid.UUID, int], tuple[int, ChunkRecord]] = {}
        one_by_one: list[int] = []
        for index, part in enumerate(parts):
            try:
                fid = parse_file_id(part.file_id)
                record = self._chunk_record(
                    self._session_for(fid, part.user_id),
                    chunk_index=part.chunk_index,
                    size=part.size,
                    etag=clean_etag(part.etag),
                    checksum=part.checksum,
                )
            except DomainError as exc:
                results[index] = exc
                continue
            if (fid, part.chunk_index) in batch:
                # The same part twice (a client's retry): recorded after the first, as
                # separate calls would have been; one statement may not upsert a row twice.
                one_by_one.append(index)
            else:
                batch[(fid, part.chunk_index)] = (index, record)
        recorded = self._store.record_chunks([record for _, record in batch.values()])
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
                    chunk_index=part.chunk_index,
                    size=part.size,
                    etag=part.etag,
                    checksum=part.checksum,
                )
            except DomainError as exc:
                results[index] = exc
        return results

    def _chunk_record(
        self, session: UploadSession, *, chunk_index: int, size: int, etag: str, checksum: str
    ) -> ChunkRecord:
        """The part as the store records it, once checked against its upload session."""
        self._check_part(session, chunk_index, size)
        if checksum and not session.checksum_algorithm:
            raise InvalidArgument("checksum: this upload was started without part checksums (v1)")
        cleaned = (
            clean_part_checksum(
                checksum,
                ChecksumAlgorithm(session.checksum_algorithm),
                what=f"the checksum of part {chunk_index + 1}",
            )
            if checksum
            else None
        )
        return ChunkRecord(
            file_id=session.file_id,
            user_id=session.user_id,
            upload_id=session.upload_id,
            chunk_index=chunk_index,
            size=size,
            etag=etag,
            checksum=cleaned,
        )

    def part_urls(
        self,
        *,
        user_id: uuid.UUID,
        file_id: str,
        first_part_number: int,
        last_part_number: int,
        checksums: list[str] | tuple = (),
    ) -> PartUrls:
        """Fresh presigned URLs for parts first..last (1-based, inclusive) of an upload that
        still takes parts. Reads PostgreSQL, not the Redis session: a session may outlive
        an abort for a moment, and this call is rare."""
        fid = parse_file_id(file_id)
        if first_part_number < 1:
            raise InvalidArgument("first_part_number must be 1 or more")
        if last_part_number < first_part_number:
            raise InvalidArgument("last_part_number must not be less than first_part_number")
        if last_part_number - first_part_number + 1 > MAX_PART_URLS_PER_CALL:
            raise InvalidArgument(
                f"at most {MAX_PART_URLS_PER_CALL} parts per call; ask again for the rest"
            )
        file = self._owned(fid, user_id)
        _refuse_unless_receiving_parts(file)
        if last_part_number > file.part_count:
            raise InvalidArgument(
                f"last_part_number {last_part_number} is beyond this file's {file.part_count} parts"
            )
        numbers = range(first_part_number, last_part_number + 1)
        lengths = part_lengths(numbers, size=file.size, part_size=file.part_size)
        self._refuse_checksums_of_v1(file, checksums)
        if file.checksum_algorithm:
            # v2: each URL is signed with its part's checksum; storage checks the bytes.
            algorithm = ChecksumAlgorithm(file.checksum_algorithm)
            if len(checksums) != len(numbers):
                raise InvalidArgument(
                    f"checksums: one {algorithm.value} checksum per part is "
                    f"required ({len(numbers)} for parts {first_part_number}"
                    f"..{last_part_number}), not {len(checksums)}"
                )
            cleaned = [
                clean_part_checksum(value, algorithm, what=f"the checksum of part {n}")
                for n, value in zip(numbers, checksums)
            ]
            signed = self._storage.presign_checksummed_parts(
                file.s3_key,
                upload_id=file.upload_id or "",
                part_numbers=numbers,
                lengths=lengths,
                algorithm=algorithm,
                checksums=cleaned,
                ttl=self._url_ttl,
            )
            return PartUrls(
                urls=list(zip(numbers, signed)),
                expires_in_seconds=self._url_ttl,
                headers={n: {algorithm.header: value} for n, value in zip(numbers, cleaned)},
            )
        urls = list(
            zip(
                numbers,
                self._storage.presign_parts(
                    file.s3_key,
                    upload_id=file.upload_id or "",
                    part_numbers=numbers,
                    lengths=lengths,
                    ttl=self._url_ttl,
                ),
            )
        )
        return PartUrls(urls=urls, expires_in_seconds=self._url_ttl)

    def complete(
        self,
        *,
        user_id: uuid.UUID,
        file_id: str,
        upload_id: str,
        parts: list[PartRef],
        use_recorded_parts: bool = False,
        sha256: str = "",
    ) -> None:
        """`use_recorded_parts` (v2): the recorded chunks are the parts (`parts` empty,
        `upload_id` optional). `sha256`: the whole file's, recorded with it."""
        fid = parse_file_id(file_id)
        if use_recorded_parts and parts:
            raise InvalidArgument("parts must be empty when completing with the recorded parts")
        digest = clean_sha256_hex(sha256)
        if not use_recorded_parts or upload_id:
            upload_id = _require_upload_id(upload_id)
        file = self._owned(fid, user_id)
        upload_id = upload_id or file.upload_id or ""
        if file.upload_id != upload_id:
            raise InvalidArgument("upload_id is not this file's upload")
        if _is_complete(file):
            return  # a retry of a completion that succeeded
        if file.status is FileStatus.FAILED:
            raise FailedPrecondition(UPLOAD_ABORTED, reason="UPLOAD_ABORTED")
        if digest and file.sha256 and digest != file.sha256:
            raise InvalidArgument(
                f"sha256 {digest} differs from the {file.sha256} declared "
                "when the upload was created"
            )
        recorded = self._store.chunks_of(fid)
        if use_recorded_parts:
            missing = [n for n in range(1, file.part_count + 1) if n - 1 not in recorded]
            if missing:
                shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
                raise FailedPrecondition(
                    f"parts not recorded yet: {shown} (this file has {file.part_count})",
                    reason="PART_NOT_RECORDED",
                )
            parts = [
                PartRef(part_number=index + 1, etag=chunk.etag) for index, chunk in recorded.items()
            ]
        ordered = ordered_parts(parts, file.part_count)

        for number, etag in ordered:
            chunk = recorded.get(number - 1)
            if chunk is None:
                raise FailedPrecondition(
                    f"part {number} was never recorded; record it first", reason="PART_NOT_RECORDED"
                )
            if chunk.etag != etag:
                raise FailedPrecondition(
                    f"part {number}: ETag {etag} differs from the recorded {chunk.etag}",
                    reason="PART_ETAG_MISMATCH",
                )
        try:
            stored = self._storage.list_parts(file.s3_key, upload_id=upload_id)
        except UploadGone:
            return self._settle_vanished_upload(file)
        for number, etag in ordered:
            part = stored.get(number)
            expected = expected_part_size(number - 1, size=file.size, part_size=file.part_size)
            if part is None:
                raise FailedPrecondition(
                    f"part {number} is not in storage; upload it again", reason="PART_NOT_STORED"
                )
            if part.etag != etag:
                raise FailedPrecondition(
                    f"part {number}: storage holds ETag {part.etag}, not {etag}; upload it again",
                    reason="PART_ETAG_MISMATCH",
                )
            if part.size != expected:
                raise FailedPrecondition(
                    f"part {number} is {part.size} bytes in storage; expected {expected}",
                    reason="PART_SIZE_MISMATCH",
                )
        total = sum(stored[number].size for number, _ in ordered)
        if total != file.size:  # implied by the sizes above; kept as a last guard
            raise FailedPrecondition(f"parts add up to {total} bytes, not {file.size}")
        self._check_quota_at_completion(file, total)
        algorithm = ChecksumAlgorithm(file.checksum_algorithm) if file.checksum_algorithm else None
        checksums = (
            {
                number: stored[number].checksum or recorded[number - 1].checksum
                for number, _ in ordered
            }
            if algorithm
            else None
        )
        # Storage completes while this file's row is locked, until the completion is recorded
        # (see _locked_for_completion): nothing can act between the object appearing in
        # storage and the row saying so.
        with self._locked_for_completion(file, upload_id) as current:
            if current is None:
                return self._completed(file, newly=False)  # another completion was first
            try:
                etag = self._storage.complete_multipart_upload(
                    file.s3_key,
                    upload_id=upload_id,
                    parts=ordered,
                    checksums=checksums,
                    checksum_algorithm=algorithm,
                )
            except UploadGone:
                # An earlier completion whose reply or row update was lost made the object?
                etag = self._stored_object_etag(current)
            except CompletionRefused as refused:
                unknown = [number for number, value in (checksums or {}).items() if not value]
                if unknown:
                    # A part stored but never recorded, in a store whose ListParts does not
                    # report checksums (SeaweedFS): its checksum must be recorded.
                    raise FailedPrecondition(
                        f"part {unknown[0]}: its {algorithm.value} checksum is not known; "
                        "record the part with its checksum",
                        reason="PART_CHECKSUM_UNKNOWN",
                    ) from None
                raise FailedPrecondition(
                    f"storage refused the parts ({refused}); upload them again",
                    reason="PARTS_REFUSED",
                ) from None
            _record_completion(current, etag=etag, sha256=digest)
        self._completed(file, newly=True)

    def abort(self, *, user_id: uuid.UUID, file_id: str, upload_id: str) -> None:
        fid = parse_file_id(file_id)
        upload_id = _require_upload_id(upload_id)
        with self._store.locked_owned_file(fid, user_id) as file:
            if file is None:
                raise NotFound(NO_SUCH_FILE)
            if file.upload_id != upload_id:
                raise InvalidArgument("upload_id is not this file's upload")
            if _is_complete(file):
                raise FailedPrecondition(
                    f"{ALREADY_COMPLETE}; delete the file instead", reason="UPLOAD_COMPLETE"
                )
            newly_failed = file.status is not FileStatus.FAILED
            file.status = FileStatus.FAILED  # already FAILED: a retry, storage is re-aborted
            key, size = file.s3_key, file.size
        # After the row says FAILED, so a racing CompleteUpload sees it (see module doc).
        self._storage.abort_multipart_upload(key, upload_id=upload_id)
        self._store.delete_chunks(fid)
        self._sessions.delete(fid)
        if newly_failed:
            self._status_events.changed(user_id=user_id, file_id=fid, status="FAILED", size=size)
        log.info("upload aborted", extra=log_fields(file_id=str(fid)))

    def list_files(self, *, user_id: uuid.UUID) -> list[FileInfo]:
        return [_info(file) for file in self._store.files_of(user_id)]

    def list_page(
        self, *, user_id: uuid.UUID, page_size: int, page_token: str, name_filter: str
    ) -> FilePage:
        """ListFiles: one page of the user's files (listing.py)."""
        return list_files_page(
            self._store.listing,
            user_id=user_id,
            page_size=page_size,
            page_token=page_token,
            name_filter=name_filter,
        )

    def download_url(self, *, user_id: uuid.UUID, s3_key: str) -> DownloadUrl:
        if not s3_key:
            raise InvalidArgument("s3_key is required")
        file = self._store.owned_file_by_key(s3_key, user_id)
        if file is None:
            raise NotFound(NO_SUCH_FILE)
        if file.status is FileStatus.UPLOADING:
            raise FailedPrecondition("the file is not uploaded yet", reason="NOT_UPLOADED")
        if file.status is FileStatus.FAILED:
            raise FailedPrecondition(
                "the upload failed; the file has no content", reason="UPLOAD_FAILED"
            )
        url = self._storage.presign_download(
            file.s3_key, file_name=file.file_name, mime_type=file.mime_type, ttl=self._url_ttl
        )
        return DownloadUrl(url=url, expires_in_seconds=self._url_ttl)

    def delete(self, *, user_id: uuid.UUID, file_id: str) -> None:
        fid = parse_file_id(file_id)
        # Under the row lock: a completion in progress finishes first (its object is then
        # deleted here), and a concurrent delete waits, then finds nothing.
        with self._store.locked_file_deletion(fid, user_id) as deletion:
            file = deletion.file
            if file is None:
                raise NotFound(NO_SUCH_FILE)
            if file.status is FileStatus.UPLOADING and file.completed_at is None and file.upload_id:
                self._storage.abort_multipart_upload(file.s3_key, upload_id=file.upload_id)
            self._storage.delete_object(file.s3_key)  # storage first: never orphan an object
            deletion.delete()
            size = file.size
        self._sessions.delete(fid)
        self._status_events.changed(user_id=user_id, file_id=fid, status="DELETED", size=size)
        log.info("file deleted", extra=log_fields(file_id=str(fid)))

    # -- services ----------------------------------------------------------------------

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
        with self._store.locked_file_by_key(s3_key) as file:
            status_before = file.status if file is not None else None
            if file is None:
                outcome, why = ConfirmOutcome.UNKNOWN_KEY, "no file has this key"
            elif file.status is FileStatus.FAILED:
                outcome, why = ConfirmOutcome.REJECTED, "the upload was aborted"
            elif not _is_recorded_object(file, size=size, etag=etag):
                outcome = ConfirmOutcome.STALE
                why = (
                    f"object is {size} bytes, ETag {etag or '-'}; completion recorded "
                    f"{file.size} bytes, ETag {file.etag or '-'}"
                )
            elif file.status is FileStatus.UPLOADED:
                outcome, why = ConfirmOutcome.ALREADY_CONFIRMED, "already uploaded"
            elif file.completed_at is None:
                # Someone else's object at the key (a forged message, or a PUT by whoever
                # got at storage), or storage's event overtook CompleteUpload's commit.
                outcome, why = ConfirmOutcome.NOT_COMPLETED, "CompleteUpload has not succeeded"
            else:
                file.status = FileStatus.UPLOADED
                file.etag = etag or file.etag
                file.uploaded_at = _now()
                outcome, why = ConfirmOutcome.CONFIRMED, "confirmed"
            file_id = file.id if file is not None else None
            change = (
                (file.user_id, file.status, file.size)
                if file is not None and file.status is not status_before
                else None
            )
        if change is not None:  # committed: the owner's live status hears of it now
            owner, status, stored_size = change
            self._status_events.changed(
                user_id=owner, file_id=file_id, status=status.value, size=stored_size
            )
        fields = {"s3_key": s3_key, "outcome": outcome.value, "why": why}
        if event_time is not None:
            fields["event_lag_seconds"] = round((_now() - event_time).total_seconds(), 3)
        if outcome is ConfirmOutcome.CONFIRMED:
            UPLOADS_CONFIRMED.inc()
            if event_time is not None:
                # Storage's clock may run a little ahead of ours: never a negative lag.
                EVENT_LAG.observe(max(fields["event_lag_seconds"], 0.0))
        if outcome in (ConfirmOutcome.NOT_COMPLETED, ConfirmOutcome.STALE):
            log.warning("upload confirmation refused: nothing changed", extra=log_fields(**fields))
        elif outcome is ConfirmOutcome.REJECTED:
            log.warning("upload confirmation rejected", extra=log_fields(**fields))
            # A FAILED file holds no object: the stray one goes (errors propagate, so the
            # event is retried and this runs again).
            self._storage.delete_object(s3_key)
        else:
            log.info("upload confirmation", extra=log_fields(**fields))
        if file_id is not None and outcome in (ConfirmOutcome.CONFIRMED, ConfirmOutcome.REJECTED):
            self._sessions.delete(file_id)
        return outcome

    def pending_confirmations(
        self, *, completed_at_least_seconds_ago: int, limit: int
    ) -> list[PendingConfirmation]:
        """Completed uploads storage has not confirmed yet, for a reconciler to check."""
        if completed_at_least_seconds_ago < 0:
            raise InvalidArgument("completed_at_least_seconds_ago must be 0 or more")
        limit = limit or 100
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        before = _now() - timedelta(seconds=completed_at_least_seconds_ago)
        return [
            PendingConfirmation(
                file_id=str(file.id),
                s3_key=file.s3_key,
                size=file.size,
                completed_at=file.completed_at,
            )
            for file in self._store.pending_confirmations(completed_before=before, limit=limit)
        ]

    # -- helpers -----------------------------------------------------------------------

    def _owned(self, file_id: uuid.UUID, user_id: uuid.UUID) -> File:
        file = self._store.owned_file(file_id, user_id)
        if file is None:
            raise NotFound(NO_SUCH_FILE)
        return file

    def _session_for(self, file_id: uuid.UUID, user_id: uuid.UUID) -> UploadSession:
        """The upload session from Redis, or rebuilt from PostgreSQL when Redis lost it."""
        session = self._sessions.get(file_id)
        if session is not None:
            if session.user_id != user_id:
                raise NotFound(NO_SUCH_FILE)
            return session
        file = self._owned(file_id, user_id)
        _refuse_unless_receiving_parts(file)
        session = _session_of(file)
        self._sessions.put(session)
        return session

    @staticmethod
    def _check_part(session: UploadSession, chunk_index: int, size: int) -> None:
        if not 0 <= chunk_index < session.part_count:
            raise InvalidArgument(
                f"chunk_index {chunk_index} is outside 0..{session.part_count - 1}"
            )
        expected = expected_part_size(chunk_index, size=session.size, part_size=session.part_size)
        if size != expected:
            raise InvalidArgument(f"part {chunk_index} must be {expected} bytes, not {size}")

    @contextmanager
    def _locked_for_completion(self, file: File, upload_id: str) -> Iterator[File | None]:
        """The file's row locked (SELECT ... FOR UPDATE) for the block, in which storage
        completes the upload and the completion is recorded, committed when the block
        ends; None when it is complete already. Whoever else would change the upload meets
        the lock: a second completion waits, then finds it complete; an abort waits, then
        refuses; RecordPart waits (and the upload takes no more parts); ConfirmUpload
        waits until the completion is recorded; the reaper skips locked rows, so it never
        fails, or deletes the object of, an upload being completed. Refused here, before
        storage is asked, when the upload was aborted, reaped or deleted meanwhile."""
        with self._store.locked_owned_file(file.id, file.user_id) as current:
            if current is None:
                raise NotFound(NO_SUCH_FILE)
            if current.upload_id != upload_id:
                raise InvalidArgument("upload_id is not this file's upload")
            if current.status is FileStatus.FAILED:
                raise FailedPrecondition(UPLOAD_ABORTED, reason="UPLOAD_ABORTED")
            yield None if _is_complete(current) else current

    def _stored_object_etag(self, file: File) -> str:
        """Storage no longer has the multipart upload: fine when it holds the finished
        object (a completion went through, its reply or our row update was lost), whose
        ETag this returns."""
        stored = self._storage.stored_object(file.s3_key)
        if stored is None or stored[0] != file.size:
            raise FailedPrecondition(
                "storage no longer has this upload (expired or aborted); "
                "start a new upload with a new file_id",
                reason="UPLOAD_GONE",
            )
        return stored[1]

    def _completed(self, file: File, *, newly: bool) -> None:
        """After the completion is committed."""
        if newly:
            UPLOADS_COMPLETED.inc()
        self._sessions.delete(file.id)
        log.info("upload completed", extra=log_fields(file_id=str(file.id)))

    def _settle_vanished_upload(self, file: File) -> None:
        """Storage no longer has the multipart upload. If it holds the finished object, an
        earlier completion succeeded (its reply or our row update was lost): record it."""
        with self._locked_for_completion(file, file.upload_id or "") as current:
            if current is None:
                return self._completed(file, newly=False)
            _record_completion(current, etag=self._stored_object_etag(current))
        self._completed(file, newly=True)

    def _start_upload(self, file: File, *, presign_every_part: bool = False) -> Iterable[str]:
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
        key, upload_id, urls = file.s3_key, None, ()
        try:
            limited = not (self._quota.unlimited and self._uploads_limit.unlimited)
            with self._store.file_creation(file.id, file.user_id, with_usage=limited) as creation:
                if creation.id_taken:
                    raise AlreadyExists(FILE_ID_TAKEN)
                if creation.usage is not None:
                    self._quota.admit(creation.usage, file.size)
                    self._uploads_limit.admit(creation.usage)
                upload_id = self._storage.create_multipart_upload(
                    key, content_type=file.mime_type, checksum_algorithm=algorithm
                )
                if presign_every_part:
                    numbers = range(1, file.part_count + 1)
                    urls = self._storage.presign_parts_lazily(
                        key,
                        upload_id=upload_id,
                        part_numbers=numbers,
                        lengths=part_lengths(numbers, size=file.size, part_size=file.part_size),
                        ttl=self._url_ttl,
                    )
                file.upload_id = upload_id
                creation.insert(file)
        except FileIdTaken:
            # Lost a race for this id: our multipart upload must not linger.
            self._abort_quietly(key, upload_id or "")
            raise AlreadyExists(FILE_ID_TAKEN) from None
        except BaseException:
            if upload_id is not None:  # failed after storage was touched
                self._abort_quietly(key, upload_id)
            raise
        self._sessions.put(_session_of(file))
        UPLOADS_INITIATED.inc()
        self._status_events.changed(
            user_id=file.user_id, file_id=file.id, status="UPLOADING", size=file.size
        )
        return urls

    def _abort_quietly(self, key: str, upload_id: str) -> None:
        try:
            self._storage.abort_multipart_upload(key, upload_id=upload_id)
        except Exception as exc:  # noqa: BLE001 - the original error matters more
            log.warning(
                "could not abort multipart upload after a failed initiate: %s",
                type(exc).__name__,
                extra=log_fields(s3_key=key),
            )
