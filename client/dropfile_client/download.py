"""Saving a file from a presigned GET URL: fetched in parallel ranges into a temporary file
beside the target (range_download.py), checked against the expected size and the SHA-256
its uploader declared (hashed as the ranges land), then moved into place. An existing file
is replaced only when asked; a failed or interrupted download leaves nothing behind."""

from __future__ import annotations

import os
import secrets
import unicodedata
from collections.abc import Callable
from pathlib import Path

import httpx

from .checksums import PrefixHasher
from .errors import DropfileError, StorageError
from .range_download import DEFAULT_RANGE_SIZE, DownloadUrl, RangeDownloader
from .retry import RetryPolicy
from .storage_get import getters
from .uploader import ByteCounter, ProgressCallback


class TargetExists(DropfileError):
    """The download's target exists and replacing it was not asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already exists")
        self.path = path


def safe_file_name(name: str, fallback: str) -> str:
    """The stored name as a single path component: separators and control characters
    become `_`, so a name like "../../.bashrc" cannot escape the target directory."""
    cleaned = "".join(
        "_" if ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in name
    ).strip()
    if cleaned in ("", ".", ".."):
        return fallback
    return cleaned


def target_path(dest: str | os.PathLike[str] | None, file_name: str, file_id: str) -> Path:
    """`dest` itself, or the file's own name inside `dest` (a directory) or the cwd."""
    name = safe_file_name(file_name, f"dropfile-{file_id}")
    if dest is None:
        return Path.cwd() / name
    path = Path(dest).expanduser()
    return path / name if path.is_dir() else path


class ChecksumMismatch(StorageError):
    """The downloaded bytes are not the ones uploaded (their SHA-256 differs)."""


def fetch_to(
    url: str,
    target: Path,
    *,
    size: int,
    overwrite: bool,
    on_progress: ProgressCallback | None = None,
    transport: httpx.BaseTransport | None = None,
    sha256: str | None = None,
    parallel: int = 4,
    range_size: int = DEFAULT_RANGE_SIZE,
    retry: RetryPolicy | None = None,
    renew_url: Callable[[], str] | None = None,
) -> None:
    """Downloads `size` bytes from `url` into `target`, `parallel` ranges of `range_size`
    bytes at a time (range_download.py). `sha256`: the whole file's (hex); the download is
    refused, and nothing kept, when the bytes received do not have it. `renew_url` gives a
    fresh URL when storage refuses this one (expired)."""
    if parallel < 1:
        raise ValueError("parallel must be 1 or more")
    if target.exists() and not overwrite:
        raise TargetExists(target)
    directory = target.parent
    if not directory.is_dir():
        raise DropfileError(f"{directory} is not a directory")
    temporary = directory / f".{target.name[:100]}.{secrets.token_hex(4)}.dropfile-part"
    try:
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise DropfileError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    hasher = None
    try:
        hasher = PrefixHasher(fd, size) if sha256 else None
        with getters(url, connections=parallel, transport=transport) as new_getter:
            downloader = RangeDownloader(
                getters=new_getter,
                url=DownloadUrl(url, renew_url),
                fd=fd,
                size=size,
                range_size=range_size,
                parallel=parallel,
                retry=retry or RetryPolicy(),
                progress=ByteCounter(size, on_progress),
                on_written=hasher.written if hasher else None,
            )
            try:
                downloader.run()
            finally:
                downloader.stop()  # no thread writes to the file once this returns
        digest = hasher.hexdigest() if hasher else None
        os.fsync(fd)
        if digest and sha256 and digest != sha256.lower():
            raise ChecksumMismatch(
                f"download corrupted: its SHA-256 is {digest}, "
                f"not the uploaded file's {sha256.lower()}; nothing was "
                "saved"
            )
        _move_into_place(temporary, target, overwrite=overwrite)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        if hasher:
            hasher.close()
        os.close(fd)


def _move_into_place(temporary: Path, target: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        # A hard link fails if the target appeared meanwhile: never clobber silently.
        os.link(temporary, target)
    except FileExistsError:
        raise TargetExists(target) from None
    except OSError:
        if target.exists():  # a file system without hard links: check, then rename
            raise TargetExists(target) from None
        os.replace(temporary, target)
        return
    temporary.unlink()
