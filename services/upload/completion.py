"""CompleteUpload: the parts named (or, in v2, the recorded ones) are checked against what
was recorded, what storage holds (ListParts) and the declared size, then storage completes
the multipart upload under the file's row lock (core.UploadCore.locked_for_completion) and
the completion is recorded with the object's ETag. The file stays UPLOADING until storage
confirms the object (confirmation.py).

A single-PUT upload (creation.py) has no multipart upload: the object is there once the
client's PUT succeeded, so completion HEADs it, checks it against the declaration, and
confirms it at once (as storage's own word would, confirmation.py): no ListParts, no
CompleteMultipartUpload, no reconciler's HEAD later."""

from __future__ import annotations

import base64
import uuid

from services.common.errors import FailedPrecondition, InvalidArgument

from .checksums import ChecksumAlgorithm, clean_sha256_hex
from .confirmation import Confirmation
from .core import UPLOAD_ABORTED, UploadCore, is_complete, record_completion
from .models import File, FileStatus, Part
from .parts import expected_part_size
from .storage import CompletionRefused, StoredPart, UploadGone
from .validation import PartRef, ordered_parts, parse_file_id, require_upload_id, shown_numbers


def check_recorded(ordered: list[tuple[int, str]], recorded: dict[int, Part]) -> None:
    """Every part named was recorded, with the ETag named."""
    for number, etag in ordered:
        part = recorded.get(number - 1)
        if part is None:
            raise FailedPrecondition(
                f"part {number} was never recorded; record it first", reason="PART_NOT_RECORDED"
            )
        if part.etag != etag:
            raise FailedPrecondition(
                f"part {number}: ETag {etag} differs from the recorded {part.etag}",
                reason="PART_ETAG_MISMATCH",
            )


def check_stored(ordered: list[tuple[int, str]], stored: dict[int, StoredPart], file: File) -> int:
    """Every part named is in storage with the ETag named and its exact size; the bytes
    they hold together."""
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
    return total


class Completion:
    def __init__(self, core: UploadCore) -> None:
        self._core = core
        self._confirmation = Confirmation(core)

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
        """`use_recorded_parts` (v2): the recorded parts are the parts (`parts` empty,
        `upload_id` optional). `sha256`: the whole file's, recorded with it."""
        core = self._core
        fid = parse_file_id(file_id)
        if use_recorded_parts and parts:
            raise InvalidArgument("parts must be empty when completing with the recorded parts")
        digest = clean_sha256_hex(sha256)
        if not use_recorded_parts or upload_id:
            upload_id = require_upload_id(upload_id)
        file = core.owned(fid, user_id)
        upload_id = upload_id or file.upload_id or ""
        if file.upload_id != upload_id:
            raise InvalidArgument("upload_id is not this file's upload")
        if is_complete(file):
            return  # a retry of a completion that succeeded
        if file.status is FileStatus.FAILED:
            raise FailedPrecondition(UPLOAD_ABORTED, reason="UPLOAD_ABORTED")
        if digest and file.sha256 and digest != file.sha256:
            raise InvalidArgument(
                f"sha256 {digest} differs from the {file.sha256} declared "
                "when the upload was created"
            )
        if file.single_put:
            return self._complete_single_put(file, parts=parts, sha256=digest)
        recorded = core.store.parts.parts_of(fid)
        if use_recorded_parts:
            missing = [n for n in range(1, file.part_count + 1) if n - 1 not in recorded]
            if missing:
                raise FailedPrecondition(
                    f"parts not recorded yet: {shown_numbers(missing)} "
                    f"(this file has {file.part_count})",
                    reason="PART_NOT_RECORDED",
                )
            parts = [
                PartRef(part_number=index + 1, etag=part.etag) for index, part in recorded.items()
            ]
        ordered = ordered_parts(parts, file.part_count)
        check_recorded(ordered, recorded)
        try:
            stored = core.storage.list_parts(file.s3_key, upload_id=upload_id)
        except UploadGone:
            return core.settle_vanished_upload(file)
        total = check_stored(ordered, stored, file)
        self._check_quota(file, total)
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
        # (see UploadCore.locked_for_completion): nothing can act between the object
        # appearing in storage and the row saying so.
        with core.locked_for_completion(file, upload_id) as current:
            if current is None:
                return core.completed(file, newly=False)  # another completion was first
            try:
                etag = core.storage.complete_multipart_upload(
                    file.s3_key,
                    upload_id=upload_id,
                    parts=ordered,
                    checksums=checksums,
                    checksum_algorithm=algorithm,
                )
            except UploadGone:
                # An earlier completion whose reply or row update was lost made the object?
                etag = core.stored_object_etag(current)
            except CompletionRefused as refused:
                unknown = [number for number, value in (checksums or {}).items() if not value]
                if unknown and algorithm is not None:
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
            record_completion(current, etag=etag, sha256=digest)
        core.completed(file, newly=True)

    def _complete_single_put(self, file: File, *, parts: list[PartRef], sha256: str | None) -> None:
        """The object the client PUT, checked against the declaration (size; the whole
        file's SHA-256 where storage reports the object's; the ETag of part 1 when named),
        completed and confirmed. An object of another size or SHA-256 is deleted (the
        client may PUT again and complete again); no object: nothing changes."""
        core = self._core
        ordered = ordered_parts(parts, 1) if parts else []
        algorithm = ChecksumAlgorithm(file.checksum_algorithm) if file.checksum_algorithm else None
        # No quota re-check (a multipart completion's, under the owner's usage lock): the
        # object is checked below to be the declared size, admitted at creation moments
        # ago, and the lock was ~12 % of the coordinator's CPU per upload of a burst.
        with core.locked_for_completion(file, file.upload_id or "") as current:
            if current is None:
                return core.completed(file, newly=False)  # another completion was first
            stored = core.storage.head_object(file.s3_key, algorithm=algorithm)
            if stored is None:
                raise FailedPrecondition(
                    "part 1 (the whole file, a single PUT) is not in storage; PUT it, "
                    "then complete again",
                    reason="PART_NOT_STORED",
                )
            if ordered and ordered[0][1] != stored.etag:
                raise FailedPrecondition(
                    f"part 1: storage holds ETag {stored.etag}, not {ordered[0][1]}; PUT it again",
                    reason="PART_ETAG_MISMATCH",
                )
            declared = sha256 or current.sha256
            if stored.size != file.size:
                core.storage.delete_object(file.s3_key)
                raise FailedPrecondition(
                    f"part 1 (the whole file) is {stored.size} bytes in storage; expected "
                    f"{file.size}; it was deleted: PUT it again",
                    reason="PART_SIZE_MISMATCH",
                )
            if (
                algorithm is ChecksumAlgorithm.SHA256
                and declared
                and stored.checksum
                and stored.checksum != base64.b64encode(bytes.fromhex(declared)).decode()
            ):
                core.storage.delete_object(file.s3_key)
                raise InvalidArgument(
                    f"sha256 {declared} differs from the SHA-256 of the object storage holds "
                    f"({stored.checksum}, base64); it was deleted: PUT the file again"
                )
            record_completion(current, etag=stored.etag, sha256=sha256)
            # Storage holds the object completion recorded: confirmed now, in the same
            # transaction, by the judgment an event or the reconciler would make (both find
            # it confirmed later and change nothing).
            verdict = self._confirmation.judge_locked(current, size=stored.size, etag=stored.etag)
        core.completed(file, newly=True)
        self._confirmation.settle(verdict, s3_key=file.s3_key)

    def _check_quota(self, file: File, real_size: int) -> None:
        """Completion counts the bytes storage really holds, against the quota as it is
        now (it may have been lowered since the upload began)."""
        quota = self._core.quota
        if quota.unlimited:
            return
        with self._core.store.usage.locked_usage(file.user_id, excluding=file.id) as usage:
            quota.admit(usage, real_size)
