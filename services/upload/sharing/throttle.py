"""Limits on guessing at share links, shared by every upload replica through Redis.

Two kinds of guess, limited as auth limits sign-ins (services/auth/throttle.py):
- Tokens. A token has 256 random bits, so guessing one is hopeless; still, a client
  address that keeps presenting tokens that lead nowhere (unknown, expired, revoked,
  exhausted) or wrong passwords is slowed down: its failures are counted after each
  refusal, and once `guess_free_failures` are spent every later attempt must wait for the
  last one's delay (doubling from the base delay up to the maximum), answered
  TooManyRequests (429) with Retry-After and not looked up at all.
- Passwords, which people choose and are short. Each attempt at a link's password is
  counted before the password is checked (a burst of concurrent guesses cannot slip in
  before the first failure is known), per link and address and per link across every
  address, with the same doubling delays after the free ones. A right password forgets
  its address's attempts at that link and gives its count back on the link's.

Redis's clock decides (TIME, inside the scripts), so replicas with skewed clocks agree.
Redis unreachable: resolving a link is refused UNAVAILABLE (503 with Retry-After), never
unlimited."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.attempt_counters import AttemptCounters, Backoff, address_key, retry_after
from services.common.errors import TooManyRequests

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "dropfile:share-throttle"
THROTTLED = "too many attempts at share links; retry later"


@dataclass(frozen=True)
class GuessPolicy:
    guess_free_failures: int = 10
    password_free_failures: int = 5
    link_password_free_failures: int = 20
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 900.0
    window_seconds: float = 3600.0


def _address_tag(address: str) -> str:
    # A digest, so that keys never carry what a client sent.
    return hashlib.sha256(address_key(address).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PasswordAttempt:
    """The counters one admitted password attempt was counted on."""

    own_key: str  # the link and the address
    link_key: str


class GuessThrottle:
    def __init__(self, redis_client: redis.Redis, policy: GuessPolicy) -> None:
        self._policy = policy
        self._counters = AttemptCounters(
            redis_client,
            what="share link",
            unavailable="share links are temporarily unavailable; retry shortly",
        )
        self._backoff = Backoff(
            policy.base_delay_seconds, policy.max_delay_seconds, policy.window_seconds
        )

    @staticmethod
    def _refuse(wait_ms: int) -> TooManyRequests:
        return TooManyRequests(
            THROTTLED, reason="LINK_GUESSES_THROTTLED", retry_after=retry_after(wait_ms)
        )

    def _address_key(self, address: str) -> str:
        return f"{KEY_PREFIX}:address:{_address_tag(address)}"

    def check_address(self, address: str) -> None:
        """Raises TooManyRequests while the address must wait."""
        wait_ms = self._counters.wait_ms([self._address_key(address)])
        if wait_ms > 0:
            raise self._refuse(wait_ms)

    def failed(self, address: str) -> None:
        """Counts one failed resolution (a token leading nowhere, a wrong password)."""
        self._counters.count_failure(
            [self._address_key(address)], [self._policy.guess_free_failures], self._backoff
        )

    def admit_password(self, link_id: uuid.UUID, address: str) -> PasswordAttempt:
        """Counts one attempt at the link's password, or raises TooManyRequests."""
        p = self._policy
        # The braces keep a link's keys in one Redis Cluster slot, as a script needs.
        tag = "{" + link_id.hex + "}"
        attempt = PasswordAttempt(
            own_key=f"{KEY_PREFIX}:password:{tag}:address:{_address_tag(address)}",
            link_key=f"{KEY_PREFIX}:password:{tag}:link",
        )
        wait_ms = self._counters.admit(
            [attempt.own_key, attempt.link_key],
            [p.password_free_failures, p.link_password_free_failures],
            self._backoff,
        )
        if wait_ms > 0:
            raise self._refuse(wait_ms)
        return attempt

    def password_succeeded(self, attempt: PasswordAttempt) -> None:
        self._counters.succeeded(
            attempt.own_key, attempt.link_key, self._policy.link_password_free_failures
        )
