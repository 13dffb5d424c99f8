"""Upload sessions in Redis: what RecordPart needs to validate a part (owner, upload id,
part size and count, declared size) without reading PostgreSQL on every part.

A session is a cache of the files row, never the truth: every operation here is best
effort. A missing session (expired, flushed) or a Redis outage means the caller reads
PostgreSQL instead, so Redis being down slows uploads but never fails them.

Each process also keeps the sessions it has seen in memory (bounded, expiring), in front
of Redis: a session never changes during its upload, so RecordPart, called for every part,
needs no Redis round trip after the first. A stale one (the upload aborted or re-created
meanwhile, perhaps through another replica) is harmless for the same reason a stale Redis
session is: RecordPart's upsert checks the upload id and status in PostgreSQL, and on a
refusal the caller reads the file and replaces the session."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass

import redis
from cachetools import TTLCache

log = logging.getLogger(__name__)

KEY_PREFIX = "dropfile:upload:"


@dataclass(frozen=True)
class UploadSession:
    file_id: uuid.UUID
    user_id: uuid.UUID
    upload_id: str
    s3_key: str
    part_size: int
    part_count: int
    size: int
    # v2 uploads: the per-part checksum algorithm ("SHA256", "CRC32C"); "" for v1 ones.
    checksum_algorithm: str = ""


def _text(value: bytes | str) -> str:
    """A field as the client decodes it (decode_responses: always str already)."""
    return value if isinstance(value, str) else value.decode()


def session_key(file_id: uuid.UUID) -> str:
    return f"{KEY_PREFIX}{file_id}"


# Sessions kept in each process: enough for every upload in progress on a busy replica
# (a session is ~1 KB); the expiry bounds how long a forgotten one takes memory.
LOCAL_SESSIONS = 10_000
LOCAL_TTL_SECONDS = 600


class UploadSessions:
    def __init__(self, client: redis.Redis, *, ttl_seconds: int) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._local: TTLCache[uuid.UUID, UploadSession] = TTLCache(
            maxsize=LOCAL_SESSIONS, ttl=min(ttl_seconds, LOCAL_TTL_SECONDS)
        )
        self._local_lock = threading.Lock()  # cachetools caches are not thread-safe

    def get(self, file_id: uuid.UUID) -> UploadSession | None:
        with self._local_lock:
            session = self._local.get(file_id)
        if session is None:
            session = self._from_redis(file_id)
            if session is not None:
                self._remember(session)
        return session

    def _remember(self, session: UploadSession) -> None:
        with self._local_lock:
            self._local[session.file_id] = session

    def _from_redis(self, file_id: uuid.UUID) -> UploadSession | None:
        try:
            fields = self._redis.hgetall(session_key(file_id))
        except redis.RedisError as exc:
            log.warning("upload session unavailable, using the database: %s", type(exc).__name__)
            return None
        if not fields:
            return None
        try:
            return UploadSession(
                file_id=file_id,
                user_id=uuid.UUID(_text(fields["user_id"])),
                upload_id=_text(fields["upload_id"]),
                s3_key=_text(fields["s3_key"]),
                part_size=int(fields["part_size"]),
                part_count=int(fields["part_count"]),
                size=int(fields["size"]),
                checksum_algorithm=_text(fields.get("checksum_algorithm", "")),
            )
        except (KeyError, ValueError):
            log.warning("ignoring a malformed upload session for %s", file_id)
            return None

    def put(self, session: UploadSession) -> None:
        self._remember(session)
        key = session_key(session.file_id)
        try:
            # One round trip; MULTI so the hash never exists without its expiry.
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(
                    key,
                    mapping={
                        "user_id": str(session.user_id),
                        "upload_id": session.upload_id,
                        "s3_key": session.s3_key,
                        "part_size": session.part_size,
                        "part_count": session.part_count,
                        "size": session.size,
                        "checksum_algorithm": session.checksum_algorithm,
                    },
                )
                pipe.expire(key, self._ttl)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning(
                "upload session not stored (the database still has the upload): %s",
                type(exc).__name__,
            )

    def delete(self, file_id: uuid.UUID) -> None:
        with self._local_lock:
            self._local.pop(file_id, None)
        try:
            self._redis.delete(session_key(file_id))
        except redis.RedisError as exc:
            # A stale session is harmless: RecordPart re-checks the file in the database.
            log.warning("upload session not deleted: %s", type(exc).__name__)
