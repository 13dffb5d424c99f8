"""Which uploads may be resumed: a small record, beside the session file (`uploads.json`,
0600), of the upload each local file started, keyed by server, path, size and
modification time. Uploading the same, unchanged file again continues its upload where it
stopped; any change to the file starts a new one.

A record is written when an upload starts and removed when it completes or is aborted,
so what stays behind is exactly what was interrupted without an abort (a crash, a kill,
a server that went away). A damaged file only means starting afresh."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FILE_MODE = 0o600
DIR_MODE = 0o700
# Records older than this are dropped: the server reaps abandoned uploads long before.
MAX_AGE_SECONDS = 30 * 24 * 3600


def upload_key(server: str, path: Path, stat: os.stat_result) -> str:
    identity = f"{server}\0{os.path.realpath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()


class ResumeStore:
    _lock = threading.Lock()  # one process's threads; processes race harmlessly (see put)
    # Keys of the uploads this process is running now: the same file uploaded twice at once
    # (two threads) must not resume, and so join, the other's upload.
    _running: set[str] = set()

    @classmethod
    def claim(cls, key: str) -> str:
        """The key an upload of this process runs under: `key`, unless another upload of
        this process runs under it now; then a key of its own, which no later upload of the
        file resumes (its record expires with MAX_AGE_SECONDS if it is interrupted)."""
        with cls._lock:
            if key in cls._running:
                key = f"{key}:{secrets.token_hex(8)}"
            cls._running.add(key)
            return key

    @classmethod
    def release(cls, key: str) -> None:
        with cls._lock:
            cls._running.discard(key)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def get(self, key: str) -> str | None:
        """The file id of the upload this file started, if any."""
        entry = self._load().get(key)
        return (
            entry.get("fileId")
            if isinstance(entry, dict) and isinstance(entry.get("fileId"), str)
            else None
        )

    def put(self, key: str, file_id: str) -> None:
        self._update(
            lambda records: records.__setitem__(
                key, {"fileId": file_id, "savedAt": int(time.time())}
            )
        )

    def forget(self, key: str) -> None:
        self._update(lambda records: records.pop(key, None))

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                records = json.load(handle)
        except (OSError, ValueError):
            return {}
        return records if isinstance(records, dict) else {}

    def _update(self, change: Callable[[dict[str, Any]], object]) -> None:
        """Read, change, replace atomically. Two processes writing at once may lose one
        record: that upload then starts afresh next time, nothing worse."""
        with self._lock:
            records = self._load()
            change(records)
            now = time.time()
            records = {
                key: entry
                for key, entry in records.items()
                if isinstance(entry, dict) and now - entry.get("savedAt", 0) < MAX_AGE_SECONDS
            }
            try:
                self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                temporary = self.path.parent / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        json.dump(records, handle)
                    os.replace(temporary, self.path)
                except BaseException:
                    temporary.unlink(missing_ok=True)
                    raise
            except OSError:
                pass  # resuming is a convenience: never fail an upload over it
