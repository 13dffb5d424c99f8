"""Signed-out device sessions, shared by every service that verifies access tokens.

Each access token names its device session (the `sid` claim). When a session ends (sign-out,
a refresh token presented again after its grace window), the auth service marks it revoked
in Redis for as long as any access token issued for it may live; every verifier asks Redis
whether a token's session is revoked, remembering the answer for at most
`max_age_seconds` (one second): a signed-out token is refused everywhere within that, and
RecordPart, called per part, costs at most one Redis round trip per session per second per
process (concurrent checks of one session share the same round trip).

Redis unreachable: a session this process has checked before keeps its last answer (a
revoked one stays refused). No sign-out can be recorded while Redis is down (auth answers
503 and the session stays signed in), so that answer is as fresh as any revocation can be,
but for one made in the last second before the outage; and uploads in progress carry on
through a Redis restart. A session never checked here fails closed: its tokens are refused
with UNAVAILABLE (HTTP 503 and Retry-After at the gateway), never accepted unchecked and
never a 500. A flushed Redis forgets its revocations: those tokens work again until they
expire (at most ACCESS_TOKEN_TTL_SECONDS).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import Unavailable
from .settings import UrlSetting, url_text

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "dropfile:revoked-session:"
CHECK_UNAVAILABLE = "cannot check whether this session was signed out; retry shortly"
# After a failed check, further checks fail at once for this long instead of each waiting
# for Redis's timeout (a blackholed Redis would otherwise hold every worker thread).
FAIL_FAST_SECONDS = 0.5
# How long a check waits for another thread's round trip for the same session.
SHARED_CHECK_WAIT_SECONDS = 3.0


def revocation_key(session_id: str) -> str:
    return KEY_PREFIX + session_id


def revocation_client(url: str | UrlSetting) -> redis.Redis:
    """Short timeouts: a check is on every call's path, and failing closed fast beats
    holding a request for Redis's default five seconds (twice, with its retry)."""
    import redis

    return redis.Redis.from_url(
        url_text(url),
        decode_responses=True,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
    )


class _Check:
    """One Redis round trip for one session, which concurrent callers wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.revoked = False
        self.failed = False


class RevokedSessions:
    def __init__(
        self, client: redis.Redis, *, max_age_seconds: float = 1.0, max_sessions: int = 65536
    ) -> None:
        self._redis = client
        self._max_age = max_age_seconds
        self._max_sessions = max_sessions
        self._lock = threading.Lock()
        # session id -> (revoked, when checked, monotonic); revoked ones never need asking
        # again (they stay revoked longer than their tokens live).
        self._known: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._in_flight: dict[str, _Check] = {}
        self._down_until = 0.0

    def revoke(self, session_id: str, *, seconds: int) -> None:
        """Marks the session revoked for `seconds` (the longest an access token issued for
        it may still live). Raises Unavailable when Redis cannot be written."""
        import redis

        try:
            self._redis.set(revocation_key(session_id), "1", ex=max(int(seconds), 1))
        except redis.RedisError as exc:
            log.warning("cannot record a revoked session: %s", type(exc).__name__)
            raise Unavailable(
                "cannot sign the session out right now; retry shortly",
                reason="REVOCATION_UNAVAILABLE",
            ) from None
        self._remember(session_id, True, time.monotonic())

    def _fresh(self, known: tuple[bool, float] | None, now: float) -> bool:
        """Whether a remembered answer still stands (a revoked one always does)."""
        return known is not None and (known[0] or now - known[1] < self._max_age)

    def is_revoked(self, session_id: str) -> bool:
        """Whether the session was signed out; Unavailable when Redis cannot tell."""
        now = time.monotonic()
        with self._lock:
            known = self._known.get(session_id)
            if known is not None and self._fresh(known, now):
                return known[0]
            if now < self._down_until:
                return self._last_answer(known)
            check = self._in_flight.get(session_id)
            mine = check is None
            if check is None:
                check = self._in_flight[session_id] = _Check()
        if mine:
            self._ask_redis(session_id, check)
        answered = check.done.wait(SHARED_CHECK_WAIT_SECONDS)
        if not answered or check.failed:
            with self._lock:
                known = self._known.get(session_id)
            return self._last_answer(known)
        return check.revoked

    def revoked_among(self, session_ids: Iterable[str]) -> tuple[set[str], set[str]]:
        """Which of many sessions were signed out, as is_revoked() answers each, asking
        Redis about those not answered lately in one round trip (a process holding
        thousands of live-status streams checks all their sessions at once); and which
        cannot be known (Redis down, never checked here: is_revoked's Unavailable)."""
        import redis

        now = time.monotonic()
        revoked: set[str] = set()
        ask: list[str] = []
        with self._lock:
            for session_id in set(session_ids):
                known = self._known.get(session_id)
                if known is not None and self._fresh(known, now):
                    if known[0]:
                        revoked.add(session_id)
                else:
                    ask.append(session_id)
            down = now < self._down_until
        if not ask:
            return revoked, set()
        if not down:
            try:
                with self._redis.pipeline(transaction=False) as pipe:
                    for session_id in ask:
                        pipe.exists(revocation_key(session_id))
                    answers = pipe.execute()
            except redis.RedisError as exc:
                log.warning("cannot check revoked sessions: %s", type(exc).__name__)
                with self._lock:
                    self._down_until = time.monotonic() + FAIL_FAST_SECONDS
            else:
                answered = time.monotonic()
                for session_id, exists in zip(ask, answers, strict=True):
                    self._remember(session_id, bool(exists), answered)
                    if exists:
                        revoked.add(session_id)
                return revoked, set()
        unknown: set[str] = set()
        with self._lock:  # Redis cannot be asked: the last answers
            for session_id in ask:
                known = self._known.get(session_id)
                if known is None:
                    unknown.add(session_id)
                elif known[0]:
                    revoked.add(session_id)
        return revoked, unknown

    @staticmethod
    def _last_answer(known: tuple[bool, float] | None) -> bool:
        """While Redis cannot be asked: what it said last time, or UNAVAILABLE."""
        if known is None:
            raise Unavailable(CHECK_UNAVAILABLE, reason="SESSION_CHECK_UNAVAILABLE")
        return known[0]

    def _ask_redis(self, session_id: str, check: _Check) -> None:
        import redis

        try:
            check.revoked = bool(self._redis.exists(revocation_key(session_id)))
        except redis.RedisError as exc:
            check.failed = True
            log.warning("cannot check revoked sessions: %s", type(exc).__name__)
        finally:
            now = time.monotonic()
            with self._lock:
                self._in_flight.pop(session_id, None)
                if check.failed:
                    self._down_until = now + FAIL_FAST_SECONDS
            if not check.failed:
                self._remember(session_id, check.revoked, now)
            check.done.set()

    def _remember(self, session_id: str, revoked: bool, at: float) -> None:
        with self._lock:
            self._known[session_id] = (revoked, at)
            self._known.move_to_end(session_id)
            while len(self._known) > self._max_sessions:
                self._known.popitem(last=False)
