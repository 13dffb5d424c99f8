"""Publishing file status changes (services/common/file_events.py) as they happen here, the
one place a file's status changes: a new upload, confirmation, rejection, abort, the
reaper's cleanup, deletion.

Best effort by design: the database is the truth and clients re-list after reconnecting,
so a change that cannot be published is logged and forgotten, never an RPC failure. The
Redis client has short timeouts of its own, so an unreachable Redis delays a status change
by at most about a second, and no retries."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import redis
from pydantic import RedisDsn

from services.common.file_events import FileStatusChange, channel_of
from services.common.logs import log_fields

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_SECONDS = 1.0


def publisher_client(url: str | RedisDsn) -> redis.Redis:
    """A Redis client for publishing only: it waits a second at most, and never retries."""
    return redis.Redis.from_url(
        str(url),
        socket_timeout=PUBLISH_TIMEOUT_SECONDS,
        socket_connect_timeout=PUBLISH_TIMEOUT_SECONDS,
        retry_on_timeout=False,
        health_check_interval=30,
    )


class StatusEvents:
    """Publishes to each owner's channel. Without a client (tests of the rules alone,
    tools) it publishes nothing."""

    def __init__(self, client: redis.Redis | None = None) -> None:
        self._redis = client

    def changed(
        self, *, user_id: uuid.UUID, file_id: uuid.UUID | str, status: str, size: int
    ) -> None:
        if self._redis is None:
            return
        change = FileStatusChange(
            file_id=str(file_id), status=status, size=size, at=datetime.now(UTC)
        )
        try:
            self._redis.publish(channel_of(user_id), change.to_json())
        except redis.RedisError as exc:
            log.warning(
                "file status change not published (clients see it when they list files): %s",
                type(exc).__name__,
                extra=log_fields(file_id=str(file_id), status=status),
            )
