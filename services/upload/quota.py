"""Per-user limits decided when an upload starts: the storage quota (what counts, and the
refusal) and the number of uploads a user may have in progress.

A user's usage is the declared size of every upload in progress plus the stored size of
every uploaded file (failed uploads hold nothing). A new upload is admitted when usage plus
its declared size stays within the quota; the decision is made under a per-user lock in
the transaction that inserts the file (store/usage.py), so concurrent initiations cannot together
exceed it. Completion checks again with the real size, in case the quota was lowered."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import ResourceExhausted, TooManyRequests

# When a client refused for having too many uploads in progress may try again: its
# own uploads end as it completes or aborts them.
UPLOADS_LIMIT_RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    # Of used_bytes, what uploads still in progress hold.
    uploading_bytes: int
    # Uploads in progress (UPLOADING: started, not yet confirmed by storage); counted only
    # where an initiation is decided.
    uploads_in_progress: int = 0


def human_bytes(size: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.4g} {unit}"
    return f"{size} bytes"


class Quota:
    """The quota every user has: `limit_bytes`, 0 meaning unlimited."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes

    @property
    def unlimited(self) -> bool:
        return self.limit_bytes == 0

    def admit(self, usage: Usage, size: int) -> None:
        """Raises ResourceExhausted unless `size` more bytes fit."""
        if self.unlimited or usage.used_bytes + size <= self.limit_bytes:
            return
        free = max(0, self.limit_bytes - usage.used_bytes)
        raise ResourceExhausted(
            f"storage quota exceeded: this file needs {human_bytes(size)}, but only "
            f"{human_bytes(free)} of your {human_bytes(self.limit_bytes)} quota is free "
            f"({human_bytes(usage.used_bytes)} used, uploads in progress included); "
            "delete files or abort uploads to make room",
            reason="QUOTA_EXCEEDED",
        )


class UploadsInProgressLimit:
    """How many uploads each user may have in progress at once (`max_uploads`, 0 meaning
    unlimited): every one holds a row and a multipart upload until it ends, whatever its
    size, so the quota alone (0-byte uploads cost nothing) does not bound them."""

    def __init__(self, max_uploads: int) -> None:
        self.max_uploads = max_uploads

    @property
    def unlimited(self) -> bool:
        return self.max_uploads == 0

    def admit(self, usage: Usage) -> None:
        """Raises TooManyRequests unless one more upload may start."""
        if self.unlimited or usage.uploads_in_progress < self.max_uploads:
            return
        raise TooManyRequests(
            f"too many uploads in progress: you have {usage.uploads_in_progress}, the limit "
            f"is {self.max_uploads}; complete or abort some before starting another",
            reason="TOO_MANY_UPLOADS",
            retry_after=UPLOADS_LIMIT_RETRY_AFTER_SECONDS,
        )
