"""v1's InitiateUpload: parts of the configured size (5 MiB), files up to its limit (1 GiB),
and a presigned URL for every part in the reply."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.common.logs import log_fields

from .core import UploadCore
from .models import File, FileStatus
from .parts import MAX_PARTS, part_count
from .validation import (
    clean_file_name,
    clean_mime_type,
    human_size,
    parse_file_id,
    storage_key,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitiatedUpload:
    upload_id: str
    # In part order; made as they are read (PartPresigner.presign_parts_lazily): read them
    # once.
    part_urls: Iterable[str]
    part_size: int
    s3_key: str


class Initiation:
    def __init__(self, core: UploadCore, *, part_size: int, max_file_size: int) -> None:
        """`part_size`/`max_file_size`: v1's."""
        self._core = core
        self._part_size = part_size
        self._max_file_size = max_file_size

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
                f"({human_size(self._max_file_size)})",
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
        urls = self._core.start(file, presign_every_part=True)
        log.info(
            "upload initiated", extra=log_fields(file_id=str(fid), size=file_size, parts=count)
        )
        return InitiatedUpload(
            upload_id=file.upload_id or "",
            part_urls=urls,
            part_size=self._part_size,
            s3_key=file.s3_key,
        )
