"""Sign-ins in progress at the issuer, kept in Redis (shared by every auth replica) from
the button to the callback, and used once.

A flow is stored under a digest of its `state` (sent to the issuer, which hands it back)
together with its `flow secret` (kept by the browser in an HttpOnly cookie, never sent to
the issuer): a callback is matched only when it comes back to the browser that started
it, so a callback URL carried to another browser (login CSRF) matches nothing. Consuming
is one GETDEL: a replayed or concurrent second callback finds nothing."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from services.common.errors import Unavailable

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "dropfile:oidc-flow"
REDIS_DOWN_RETRY_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class Flow:
    """What the callback needs of its start: kept secret from everyone but auth."""

    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    redirect_uri: str
    remember_me: bool


def flow_key(state: str, flow_secret: str) -> str:
    digest = hashlib.sha256(f"{state}\n{flow_secret}".encode()).hexdigest()
    return f"{KEY_PREFIX}:{digest}"


class FlowStore:
    def __init__(self, redis_client: redis.Redis, ttl_seconds: int) -> None:
        import redis as redis_library

        self._redis = redis_client
        self._errors = (redis_library.RedisError, OSError)
        self.ttl_seconds = ttl_seconds

    def _unavailable(self, exc: BaseException) -> Unavailable:
        log.warning("sign-in flows unavailable (Redis): %s", type(exc).__name__)
        return Unavailable(
            "single sign-on is temporarily unavailable; retry shortly",
            reason="OIDC_FLOWS_UNAVAILABLE",
            retry_after=REDIS_DOWN_RETRY_AFTER_SECONDS,
        )

    def save(self, *, state: str, flow_secret: str, flow: Flow) -> None:
        try:
            self._redis.set(
                flow_key(state, flow_secret), json.dumps(asdict(flow)), ex=self.ttl_seconds
            )
        except self._errors as exc:
            raise self._unavailable(exc) from None

    def take(self, *, state: str, flow_secret: str) -> Flow | None:
        """The flow, removed (so it is never used twice); None when there is none for this
        state and secret (unknown, expired, already used, or another browser's)."""
        if not state or not flow_secret:
            return None
        try:
            raw = self._redis.getdel(flow_key(state, flow_secret))
        except self._errors as exc:
            raise self._unavailable(exc) from None
        if raw is None:
            return None
        data = json.loads(raw)
        return Flow(
            nonce=str(data["nonce"]),
            code_verifier=str(data["code_verifier"]),
            redirect_uri=str(data["redirect_uri"]),
            remember_me=bool(data["remember_me"]),
        )
