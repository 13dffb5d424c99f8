"""v2's CreateUpload: the server chooses the part size (parts.choose_part_size), files up to
5 TiB, every part checked against a checksum; no URL is presigned until the client asks
for a batch (part_urls.py).

A client may opt in to a single PUT for a file of one part (up to MIN_PART_SIZE): no
multipart upload in storage, the whole file PUT as the object by a presigned PutObject
(signed for its size and checksum), completed by a HEAD (completion.py). Given the file's
checksum at creation, the reply carries that URL already, saving the client a call."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.logs import log_fields

from .checksums import ChecksumAlgorithm, clean_part_checksum, clean_sha256_hex
from .core import UploadCore
from .models import File, FileStatus
from .part_urls import PartUrls, single_put_url
from .parts import MIN_PART_SIZE, choose_part_size, part_count
from .quota import human_bytes
from .validation import clean_file_name, clean_mime_type, parse_file_id, storage_key

log = logging.getLogger(__name__)

# The largest file a single PUT takes: one part of the smallest size a multipart upload
# would slice it into (or of the configured min_part_size, when smaller), so the files it
# takes are exactly those of one part. (S3 takes a PutObject of up to 5 GiB, but every
# byte of a failed PUT would be sent again.)
SINGLE_PUT_MAX_SIZE = MIN_PART_SIZE


@dataclass(frozen=True)
class CreatedUpload:
    file_id: str
    upload_id: str
    s3_key: str
    part_size: int
    part_count: int
    checksum_algorithm: ChecksumAlgorithm
    single_put: bool = False
    # A single PUT whose checksum was given at creation: its URL.
    put_url: PartUrls | None = None


class Creation:
    def __init__(
        self,
        core: UploadCore,
        *,
        max_file_size: int = 5 * 1024**4,
        min_part_size: int = MIN_PART_SIZE,
    ) -> None:
        """Part sizes are chosen from `min_part_size` up, for files up to `max_file_size`."""
        self._core = core
        self._max_file_size = max_file_size
        self._min_part_size = min_part_size

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
        single_put: bool = False,
        part_checksum: str = "",
    ) -> CreatedUpload:
        """`single_put`: the client will PUT the whole file at once (up to
        SINGLE_PUT_MAX_SIZE); `part_checksum` (base64, of the algorithm): its checksum, for
        the PUT URL to come with the reply."""
        fid = parse_file_id(file_id) if file_id else uuid.uuid4()
        name = clean_file_name(file_name)
        mime = clean_mime_type(mime_type)
        digest = clean_sha256_hex(sha256)
        algorithm = checksum_algorithm or ChecksumAlgorithm.SHA256
        if file_size < 0:
            raise InvalidArgument("file_size must be 0 or more bytes")
        if file_size > self._max_file_size:
            raise InvalidArgument(
                f"file_size {file_size} exceeds the limit of {self._max_file_size} bytes "
                f"({human_bytes(self._max_file_size)})",
                reason="FILE_TOO_LARGE",
            )
        if part_checksum and not single_put:
            raise InvalidArgument("part_checksum is for single-PUT uploads only")
        checksum = (
            clean_part_checksum(part_checksum, algorithm, what="part_checksum")
            if part_checksum
            else ""
        )
        limit = min(SINGLE_PUT_MAX_SIZE, self._min_part_size)
        if single_put and file_size > limit:
            raise InvalidArgument(
                f"file_size {file_size} is over the single-PUT limit of {limit} "
                f"bytes ({human_bytes(limit)}); upload it in parts",
                reason="SINGLE_PUT_TOO_LARGE",
            )
        size_of_parts = choose_part_size(file_size, min_part_size=self._min_part_size)
        if single_put:
            size_of_parts = max(size_of_parts, file_size)  # one part, whatever min_part_size is
        count = part_count(file_size, size_of_parts)
        file = File(
            id=fid,
            user_id=user_id,
            file_name=name,
            mime_type=mime,
            size=file_size,
            s3_key=storage_key(user_id, fid),
            part_size=size_of_parts,
            part_count=count,
            status=FileStatus.UPLOADING,
            checksum_algorithm=algorithm.value,
            sha256=digest,
            single_put=single_put,
        )
        self._core.start(file)
        put_url = single_put_url(self._core, file, checksum) if checksum else None
        log.info(
            "upload created",
            extra=log_fields(
                file_id=str(fid),
                size=file_size,
                parts=count,
                part_size=size_of_parts,
                single_put=single_put,
            ),
        )
        return CreatedUpload(
            file_id=str(fid),
            upload_id=file.upload_id or "",
            s3_key=file.s3_key,
            part_size=size_of_parts,
            part_count=count,
            checksum_algorithm=algorithm,
            single_put=single_put,
            put_url=put_url,
        )
