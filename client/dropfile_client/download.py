"""Saving a file from a presigned GET URL: streamed to a temporary file beside the target,
checked against the expected size and the SHA-256 its uploader declared, then moved into
place. An existing file is replaced
only when asked; a failed or interrupted download leaves nothing behind."""
from __future__ import annotations

import os
import secrets
import unicodedata
from pathlib import Path

import httpx

from .api import describe_transport_error
from .checksums import Sha256Writer
from .errors import DropfileError, StorageError
from .parts import BLOCK_SIZE
from .storage import storage_client, storage_reason
from .uploader import ProgressCallback


class TargetExists(DropfileError):
    """The download's target exists and replacing it was not asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already exists")
        self.path = path


def safe_file_name(name: str, fallback: str) -> str:
    """The stored name as a single path component: separators and control characters
    become `_`, so a name like "../../.bashrc" cannot escape the target directory."""
    cleaned = "".join("_" if ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cf")
                      else ch for ch in name).strip()
    if cleaned in ("", ".", ".."):
        return fallback
    return cleaned


def target_path(dest: str | os.PathLike | None, file_name: str, file_id: str) -> Path:
    """`dest` itself, or the file's own name inside `dest` (a directory) or the cwd."""
    name = safe_file_name(file_name, f"dropfile-{file_id}")
    if dest is None:
        return Path.cwd() / name
    path = Path(dest).expanduser()
    return path / name if path.is_dir() else path


class ChecksumMismatch(StorageError):
    """The downloaded bytes are not the ones uploaded (their SHA-256 differs)."""


def fetch_to(url: str, target: Path, *, size: int, overwrite: bool,
             on_progress: ProgressCallback | None = None,
             transport: httpx.BaseTransport | None = None, sha256: str | None = None) -> None:
    """`sha256`: the whole file's (hex); the download is refused, and nothing kept, when
    the bytes received do not have it."""
    if target.exists() and not overwrite:
        raise TargetExists(target)
    directory = target.parent
    if not directory.is_dir():
        raise DropfileError(f"{directory} is not a directory")
    temporary = directory / f".{target.name[:100]}.{secrets.token_hex(4)}.dropfile-part"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise DropfileError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    digest = None
    try:
        written = 0
        digest = Sha256Writer() if sha256 else None
        with os.fdopen(fd, "wb") as out, storage_client(connections=1,
                                                        transport=transport) as http:
            try:
                with http.stream("GET", url) as response:
                    if not response.is_success:
                        response.read()
                        raise StorageError(f"storage refused the download: "
                                           f"{storage_reason(response)}")
                    for block in response.iter_bytes(BLOCK_SIZE):
                        out.write(block)
                        if digest:
                            digest.update(block)
                        written += len(block)
                        if on_progress:
                            on_progress(written, size)
            except httpx.TransportError as exc:
                raise StorageError(f"download failed: {describe_transport_error(exc)}") \
                    from None
            out.flush()
            os.fsync(out.fileno())
        if written != size:
            raise StorageError(f"download incomplete: got {written} of {size} bytes")
        if digest and digest.hexdigest() != sha256.lower():
            raise ChecksumMismatch(f"download corrupted: its SHA-256 is {digest.hexdigest()}, "
                                   f"not the uploaded file's {sha256.lower()}; nothing was "
                                   "saved")
        _move_into_place(temporary, target, overwrite=overwrite)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        if digest:
            digest.close()


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
