"""Limits on sign-in and sign-up attempts, shared by every auth replica through Redis.

Sign-in: each attempt is counted before its password is checked (so a burst of concurrent
guesses cannot all slip in before the first failure is known), against
- the account and the caller's address (or, for a device that proves it holds a valid
  session of the account, that device instead), and
- the account across every address (not for such a device): guessing from many addresses
  stays as slow as from one, and a stranger's failures never lock the owner's devices out.
The first `free` attempts of a counter pass; each one after that is allowed only once the
previous one's delay is over, the delay doubling each time (base, 2x, 4x... up to the
maximum). A refused attempt is answered TooManyRequests (429) with Retry-After and is not
counted. A success forgets its address's (or device's) failures and gives back its count
on the account. Counters expire after the failure window without an attempt.

Sign-up: at most `signup_per_address` attempts per address per window.

Redis's clock decides (TIME, inside the scripts), so replicas with skewed clocks agree.
When Redis cannot be reached, sign-ins and sign-ups are refused UNAVAILABLE (503,
Retry-After), with a warning logged: failing open would leave every account to unlimited
guessing while Redis is down (an outage an attacker may have caused), and every service
refuses access tokens as UNAVAILABLE then anyway (their sessions' revocation is checked
there), so a session opened meanwhile would be of no use."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.common.attempt_counters import AttemptCounters, Backoff, address_key, retry_after
from services.common.errors import TooManyRequests

from .metrics import SIGN_IN_THROTTLED

if TYPE_CHECKING:
    import redis

KEY_PREFIX = "dropfile:throttle"


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 5
    account_free_failures: int = 6
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 900.0
    failure_window_seconds: float = 3600.0
    signup_per_address: int = 20
    signup_window_seconds: float = 3600.0
    oidc_starts_per_address: int = 30
    oidc_start_window_seconds: float = 600.0


def _account_tag(email: str) -> str:
    # Keys name a digest, not the address itself; the braces keep an account's keys in
    # one Redis Cluster slot, as a script touching several of them requires.
    return "{" + hashlib.sha256(email.encode()).hexdigest()[:32] + "}"


def oidc_start_key(address: str) -> str:
    """The Redis key counting the single sign-on flows one client address started."""
    return f"{KEY_PREFIX}:oidc-start:address:{address_key(address)}"


def sign_up_key(address: str) -> str:
    """The Redis key counting one client address's sign-ups."""
    return f"{KEY_PREFIX}:signup:address:{address_key(address)}"


@dataclass(frozen=True)
class SignInAttempt:
    """The counters one admitted sign-in was counted on."""

    own_key: str  # the account and address, or the account and device
    account_key: str | None  # None for a device with a session of the account


class AttemptThrottle:
    def __init__(self, redis_client: redis.Redis, policy: ThrottlePolicy) -> None:
        self._policy = policy
        self._counters = AttemptCounters(
            redis_client,
            what="sign-in",
            unavailable="sign-in is temporarily unavailable; retry shortly",
        )
        self._backoff = Backoff(
            policy.base_delay_seconds, policy.max_delay_seconds, policy.failure_window_seconds
        )

    def admit_sign_in(
        self, *, email: str, address: str, device_id: str | None = None
    ) -> SignInAttempt:
        """Counts one attempt at `email`'s account, or raises TooManyRequests. `device_id`:
        a device session of this account the caller proved it holds."""
        p = self._policy
        tag = _account_tag(email)
        if device_id:
            attempt = SignInAttempt(f"{KEY_PREFIX}:signin:{tag}:device:{device_id}", None)
            frees = [p.free_failures]
        else:
            attempt = SignInAttempt(
                f"{KEY_PREFIX}:signin:{tag}:address:{address_key(address)}",
                f"{KEY_PREFIX}:signin:{tag}:account",
            )
            frees = [p.free_failures, p.account_free_failures]
        keys = [k for k in (attempt.own_key, attempt.account_key) if k]
        wait_ms = self._counters.admit(keys, frees, self._backoff)
        if wait_ms > 0:
            SIGN_IN_THROTTLED.labels("sign_in").inc()
            raise TooManyRequests(
                "too many sign-in attempts; retry later",
                reason="SIGN_IN_THROTTLED",
                retry_after=retry_after(wait_ms),
            )
        return attempt

    def sign_in_succeeded(self, attempt: SignInAttempt) -> None:
        self._counters.succeeded(
            attempt.own_key, attempt.account_key, self._policy.account_free_failures
        )

    def admit_sign_up(self, *, address: str) -> None:
        p = self._policy
        wait_ms = self._counters.within_window(
            sign_up_key(address), p.signup_per_address, p.signup_window_seconds
        )
        if wait_ms > 0:
            SIGN_IN_THROTTLED.labels("sign_up").inc()
            raise TooManyRequests(
                "too many sign-ups from this address; retry later",
                reason="SIGN_UP_THROTTLED",
                retry_after=retry_after(wait_ms),
            )

    def admit_oidc_start(self, *, address: str) -> None:
        """Counts one single sign-on flow started from `address` (each keeps a record in
        Redis until it ends or expires), or raises TooManyRequests."""
        p = self._policy
        wait_ms = self._counters.within_window(
            oidc_start_key(address), p.oidc_starts_per_address, p.oidc_start_window_seconds
        )
        if wait_ms > 0:
            SIGN_IN_THROTTLED.labels("oidc_start").inc()
            raise TooManyRequests(
                "too many single sign-on attempts from this address; retry later",
                reason="OIDC_START_THROTTLED",
                retry_after=retry_after(wait_ms),
            )
