"""A user's files as they are read: the list, one file, its download URL, and the
user's usage against the quota."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

from .core import NO_SUCH_FILE, UploadCore
from .listing import FilePage, list_files_page
from .models import File, FileStatus
from .quota import Quota, Usage
from .validation import parse_file_id


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
class DownloadUrl:
    url: str
    expires_in_seconds: int


def file_info(file: File) -> FileInfo:
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


class Files:
    def __init__(self, core: UploadCore) -> None:
        self._core = core

    def list_page(
        self, *, user_id: uuid.UUID, page_size: int, page_token: str, name_filter: str
    ) -> FilePage:
        """ListFiles: one page of the user's files, newest first (listing.py)."""
        return list_files_page(
            self._core.store.listing,
            user_id=user_id,
            page_size=page_size,
            page_token=page_token,
            name_filter=name_filter,
        )

    def get_file(self, *, user_id: uuid.UUID, file_id: str) -> File:
        return self._core.owned(parse_file_id(file_id), user_id)

    def download_url(self, *, user_id: uuid.UUID, s3_key: str) -> DownloadUrl:
        if not s3_key:
            raise InvalidArgument("s3_key is required")
        core = self._core
        file = core.store.files.owned_file_by_key(s3_key, user_id)
        if file is None:
            raise NotFound(NO_SUCH_FILE)
        if file.status is FileStatus.UPLOADING:
            raise FailedPrecondition("the file is not uploaded yet", reason="NOT_UPLOADED")
        if file.status is FileStatus.FAILED:
            raise FailedPrecondition(
                "the upload failed; the file has no content", reason="UPLOAD_FAILED"
            )
        url = core.storage.presign_download(
            file.s3_key, file_name=file.file_name, mime_type=file.mime_type, ttl=core.url_ttl
        )
        return DownloadUrl(url=url, expires_in_seconds=core.url_ttl)

    def quota_of(self, *, user_id: uuid.UUID) -> tuple[Usage, Quota]:
        return self._core.store.usage.usage_of(user_id), self._core.quota
