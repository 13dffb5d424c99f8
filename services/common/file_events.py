"""File status changes on Redis pub/sub: the one contract between the upload coordinator,
which publishes them (it owns file status), and the event processor, which streams them to
their owners. Written once here so neither service imports the other: it is the wire
format alone (a channel per user, a JSON message), no rule of either service, which is why
services/common, otherwise free of any service's domain, holds it.

Each user has a channel, `dropfile:file-events:<user_id>`; a message is the JSON object
`{"fileId", "status", "size", "at"}` with `status` one of STATUSES and `at` an ISO-8601 UTC
time. Pub/sub delivers to whoever listens at that moment and keeps nothing: a subscriber
that was away re-reads the file list instead of expecting a replay.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

CHANNEL_PREFIX = "dropfile:file-events:"
# Every user's channel, for a subscriber that fans changes out to many users' streams.
CHANNEL_PATTERN = CHANNEL_PREFIX + "*"
# FileStatus values, plus DELETED (a status no row holds: the row is gone).
STATUSES = frozenset({"UPLOADING", "UPLOADED", "FAILED", "DELETED"})


class MalformedFileEvent(ValueError):
    """A message on a file-events channel that does not follow this contract."""


def channel_of(user_id: uuid.UUID | str) -> str:
    return f"{CHANNEL_PREFIX}{user_id}"


def user_of_channel(channel: str) -> str | None:
    """The user id a channel belongs to, or None for a channel that is not one."""
    if not channel.startswith(CHANNEL_PREFIX):
        return None
    return channel[len(CHANNEL_PREFIX) :] or None


@dataclass(frozen=True)
class FileStatusChange:
    file_id: str
    status: str
    size: int
    at: datetime

    def to_json(self) -> str:
        at = self.at.astimezone(UTC).isoformat(timespec="milliseconds")
        return json.dumps(
            {
                "fileId": self.file_id,
                "status": self.status,
                "size": self.size,
                "at": at.replace("+00:00", "Z"),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> FileStatusChange:
        try:
            document = json.loads(text)
            file_id, status, size = document["fileId"], document["status"], document["size"]
            at = datetime.fromisoformat(document["at"].replace("Z", "+00:00"))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise MalformedFileEvent(f"not a file event: {exc}") from None
        if (
            not isinstance(file_id, str)
            or status not in STATUSES
            or isinstance(size, bool)
            or not isinstance(size, int)
        ):
            raise MalformedFileEvent("not a file event: bad fileId, status or size")
        return cls(
            file_id=file_id,
            status=status,
            size=size,
            at=at if at.tzinfo else at.replace(tzinfo=UTC),
        )
