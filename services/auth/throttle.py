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
import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.errors import TooManyRequests, Unavailable

from .metrics import SIGN_IN_THROTTLED

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

log = logging.getLogger(__name__)

KEY_PREFIX = "dropfile:throttle"
REDIS_DOWN_RETRY_AFTER_SECONDS = 5.0

# KEYS: the counters the attempt is checked against. ARGV: base delay (ms), maximum delay
# (ms), failure window (ms), then each key's free attempts. Returns 0 when the attempt may
# proceed (it is counted on every key), else the milliseconds until it may.
_ADMIT_SIGN_IN = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local base, most, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
for _, key in ipairs(KEYS) do
  local blocked_until = tonumber(redis.call('HGET', key, 'until') or '0')
  if blocked_until - now > wait then wait = blocked_until - now end
end
if wait > 0 then return wait end
for i, key in ipairs(KEYS) do
  local count = redis.call('HINCRBY', key, 'n', 1)
  local free = tonumber(ARGV[3 + i])
  local ttl = window
  if count >= free then
    local delay = math.floor(math.min(base * 2 ^ (count - free), most))
    redis.call('HSET', key, 'until', now + delay)
    ttl = window + delay
  end
  redis.call('PEXPIRE', key, ttl)
end
return 0
"""

# KEYS[1]: the address's (or device's) counter, forgotten; KEYS[2] (optional): the
# account's, which gives the successful attempt back, and lifts its delay when no more than
# the free attempts remain (a few concurrent sign-ins of the owner's may have started it;
# strangers' failures keep it). ARGV[1]: the account's free attempts.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if KEYS[2] and redis.call('HGET', KEYS[2], 'n') then
  local count = tonumber(redis.call('HINCRBY', KEYS[2], 'n', -1))
  if count < 0 then
    redis.call('HSET', KEYS[2], 'n', 0)
  end
  if count < tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[2], 'until')
  end
end
return 0
"""

# KEYS[1]: the address's sign-up counter. ARGV: limit, window (ms). Returns 0, or the
# milliseconds until the window ends.
_ADMIT_SIGN_UP = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
if count > tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    left = tonumber(ARGV[2])
  end
  return left
end
return 0
"""


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


def address_key(address: str) -> str:
    """What one client is counted by: its IPv4 address, or its IPv6 /64 (a single host
    usually holds a whole /64, and would otherwise have 2^64 addresses to rotate through).
    Anything else (a Unix socket's peer) as it is."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


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


def _retry_after(milliseconds: int) -> float:
    # Exact over gRPC (RetryInfo); the gateway rounds up to whole seconds for Retry-After.
    return max(milliseconds, 1) / 1000


class AttemptThrottle:
    def __init__(self, redis_client: redis.Redis, policy: ThrottlePolicy) -> None:
        import redis as redis_library

        self._errors = (redis_library.RedisError, OSError)
        self._policy = policy
        self._admit_sign_in = redis_client.register_script(_ADMIT_SIGN_IN)
        self._succeeded = redis_client.register_script(_SUCCEEDED)
        self._admit_sign_up = redis_client.register_script(_ADMIT_SIGN_UP)

    def _call(self, script: Script, keys: list[str], args: list[Any]) -> int:
        try:
            return int(script(keys=keys, args=args))
        except self._errors as exc:
            log.warning(
                "sign-in limits unavailable (Redis): %s; refusing with 503", type(exc).__name__
            )
            raise Unavailable(
                "sign-in is temporarily unavailable; retry shortly",
                reason="THROTTLE_UNAVAILABLE",
                retry_after=REDIS_DOWN_RETRY_AFTER_SECONDS,
            ) from None

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
        wait_ms = self._call(
            self._admit_sign_in,
            keys,
            [
                int(p.base_delay_seconds * 1000),
                int(p.max_delay_seconds * 1000),
                int(p.failure_window_seconds * 1000),
                *frees,
            ],
        )
        if wait_ms > 0:
            SIGN_IN_THROTTLED.labels("sign_in").inc()
            raise TooManyRequests(
                "too many sign-in attempts; retry later",
                reason="SIGN_IN_THROTTLED",
                retry_after=_retry_after(wait_ms),
            )
        return attempt

    def sign_in_succeeded(self, attempt: SignInAttempt) -> None:
        keys = [k for k in (attempt.own_key, attempt.account_key) if k]
        try:
            self._succeeded(keys=keys, args=[self._policy.account_free_failures])
        except self._errors as exc:
            # The sign-in is done; its failures are forgotten when their window ends.
            log.warning("could not reset sign-in failures (Redis): %s", type(exc).__name__)

    def admit_sign_up(self, *, address: str) -> None:
        p = self._policy
        key = sign_up_key(address)
        wait_ms = self._call(
            self._admit_sign_up, [key], [p.signup_per_address, int(p.signup_window_seconds * 1000)]
        )
        if wait_ms > 0:
            SIGN_IN_THROTTLED.labels("sign_up").inc()
            raise TooManyRequests(
                "too many sign-ups from this address; retry later",
                reason="SIGN_UP_THROTTLED",
                retry_after=_retry_after(wait_ms),
            )

    def admit_oidc_start(self, *, address: str) -> None:
        """Counts one single sign-on flow started from `address` (each keeps a record in
        Redis until it ends or expires), or raises TooManyRequests."""
        p = self._policy
        wait_ms = self._call(
            self._admit_sign_up,  # the same fixed window, on a key of its own
            [oidc_start_key(address)],
            [p.oidc_starts_per_address, int(p.oidc_start_window_seconds * 1000)],
        )
        if wait_ms > 0:
            SIGN_IN_THROTTLED.labels("oidc_start").inc()
            raise TooManyRequests(
                "too many single sign-on attempts from this address; retry later",
                reason="OIDC_START_THROTTLED",
                retry_after=_retry_after(wait_ms),
            )
