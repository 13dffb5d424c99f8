"""GetPartUrls: fresh presigned URLs for a batch of parts of an upload that still takes
parts (again when a URL expired). v2 uploads sign each part's checksum into its URL, so
storage refuses other bytes. A single-PUT upload's one URL is a PutObject of the whole
file (single_put_url)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.errors import FailedPrecondition, InvalidArgument

from .checksums import ChecksumAlgorithm, clean_part_checksum
from .core import UploadCore, refuse_unless_receiving_parts
from .models import File
from .parts import part_lengths
from .validation import parse_file_id

# Parts per GetPartUrls call: presigning is local CPU work, but a reply stays small.
MAX_PART_URLS_PER_CALL = 1000


@dataclass(frozen=True)
class PartUrls:
    """Presigned PUT URLs by 1-based part number, in part order."""

    urls: list[tuple[int, str]]
    expires_in_seconds: int
    # v2 uploads: the signed headers each part's PUT must carry, by part number.
    headers: dict[int, dict[str, str]] = field(default_factory=dict)


def single_put_url(core: UploadCore, file: File, checksum: str) -> PartUrls:
    """The URL of a single-PUT upload's one part: a PutObject of the whole file, signed for
    its size and `checksum` (cleaned base64, of the file's algorithm)."""
    algorithm = ChecksumAlgorithm(file.checksum_algorithm or ChecksumAlgorithm.SHA256.value)
    url = core.storage.part_urls.presign_object_put(
        file.s3_key, length=file.size, ttl=core.url_ttl, checksum=(algorithm, checksum)
    )
    return PartUrls(
        urls=[(1, url)],
        expires_in_seconds=core.url_ttl,
        headers={1: {algorithm.header: checksum}},
    )


def refuse_checksums_of_v1(file: File, checksums: Sequence[str]) -> None:
    if checksums and not file.checksum_algorithm:
        raise FailedPrecondition(
            "this upload was started without part checksums (v1); "
            "ask for its URLs without checksums",
            reason="NO_CHECKSUMS",
        )


class PartUrlIssuer:
    def __init__(self, core: UploadCore) -> None:
        self._core = core

    def part_urls(
        self,
        *,
        user_id: uuid.UUID,
        file_id: str,
        first_part_number: int,
        last_part_number: int,
        checksums: Sequence[str] = (),
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
        core = self._core
        file = core.owned(fid, user_id)
        refuse_unless_receiving_parts(file)
        if last_part_number > file.part_count:
            raise InvalidArgument(
                f"last_part_number {last_part_number} is beyond this file's {file.part_count} parts"
            )
        numbers = range(first_part_number, last_part_number + 1)
        lengths = part_lengths(numbers, size=file.size, part_size=file.part_size)
        refuse_checksums_of_v1(file, checksums)
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
            if file.single_put:  # one part, checked above: the whole file
                return single_put_url(core, file, cleaned[0])
            signed = core.storage.part_urls.presign_checksummed_parts(
                file.s3_key,
                upload_id=file.upload_id or "",
                part_numbers=numbers,
                lengths=lengths,
                algorithm=algorithm,
                checksums=cleaned,
                ttl=core.url_ttl,
            )
            return PartUrls(
                urls=list(zip(numbers, signed)),
                expires_in_seconds=core.url_ttl,
                headers={n: {algorithm.header: value} for n, value in zip(numbers, cleaned)},
            )
        urls = list(
            zip(
                numbers,
                core.storage.part_urls.presign_parts(
                    file.s3_key,
                    upload_id=file.upload_id or "",
                    part_numbers=numbers,
                    lengths=lengths,
                    ttl=core.url_ttl,
                ),
            )
        )
        return PartUrls(urls=urls, expires_in_seconds=core.url_ttl)
