"""Per-user storage quotas: what counts, and the refusal.

A user's usage is the declared size of every upload in progress plus the stored size of
every uploaded file (failed uploads hold nothing). A new upload is admitted when usage plus
its declared size stays within the quota; the decision is made under a per-user lock in
the transaction that inserts the file (store.py), so concurrent initiations cannot together
exceed it. Completion checks again with the real size, in case the quota was lowered."""
from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import ResourceExhausted


@dataclass(frozen=True)
class Usage:
    used_bytes: int
    # Of used_bytes, what uploads still in progress hold.
    uploading_bytes: int


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
            "delete files or abort uploads to make room", reason="QUOTA_EXCEEDED")
