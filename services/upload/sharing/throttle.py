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
import ipaddress
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.errors import TooManyRequests, Unavailable

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "dropfile:share-throttle"
REDIS_DOWN_RETRY_AFTER_SECONDS = 5.0
THROTTLED = "too many attempts at share links; retry later"

# KEYS: counters. Returns the milliseconds until every one of them lets an attempt
# through (0: now).
_WAIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local wait = 0
for _, key in ipairs(KEYS) do
  local blocked_until = tonumber(redis.call('HGET', key, 'until') or '0')
  if blocked_until - now > wait then wait = blocked_until - now end
end
return wait
"""

# KEYS: counters. ARGV: only_if_free (1: count only when no key blocks), base delay (ms),
# maximum delay (ms), window (ms), then each key's free attempts. Returns 0 when counted,
# else the milliseconds until an attempt may be.
_COUNT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local base, most, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[1] == '1' then
  local wait = 0
  for _, key in ipairs(KEYS) do
    local blocked_until = tonumber(redis.call('HGET', key, 'until') or '0')
    if blocked_until - now > wait then wait = blocked_until - now end
  end
  if wait > 0 then return wait end
end
for i, key in ipairs(KEYS) do
  local count = redis.call('HINCRBY', key, 'n', 1)
  local free = tonumber(ARGV[4 + i])
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

# KEYS[1]: the link-and-address counter, forgotten; KEYS[2]: the link's, given one back
# (its delay lifted once no more than the free attempts remain). ARGV[1]: the link's free
# attempts.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if redis.call('HGET', KEYS[2], 'n') then
  local count = tonumber(redis.call('HINCRBY', KEYS[2], 'n', -1))
  if count < 0 then redis.call('HSET', KEYS[2], 'n', 0) end
  if count < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[2], 'until') end
end
return 0
"""


@dataclass(frozen=True)
class GuessPolicy:
    guess_free_failures: int = 10
    password_free_failures: int = 5
    link_password_free_failures: int = 20
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 900.0
    window_seconds: float = 3600.0


def address_key(address: str) -> str:
    """What one client is counted by: its IPv4 address, or its IPv6 /64 (one host usually
    holds a whole /64). Anything else as it is."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip() or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _address_tag(address: str) -> str:
    # A digest, so that keys never carry what a client sent.
    return hashlib.sha256(address_key(address).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PasswordAttempt:
    """The counters one admitted password attempt was counted on."""

    own_key: str  # the link and the address
    link_key: str


def _retry_after(milliseconds: int) -> float:
    return max(milliseconds, 1) / 1000


class GuessThrottle:
    def __init__(self, redis_client: redis.Redis, policy: GuessPolicy) -> None:
        import redis as redis_library

        self._errors = (redis_library.RedisError, OSError)
        self._policy = policy
        self._wait = redis_client.register_script(_WAIT)
        self._count = redis_client.register_script(_COUNT)
        self._succeeded = redis_client.register_script(_SUCCEEDED)

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> int:
        try:
            return int(script(keys=keys, args=args))
        except self._errors as exc:
            log.warning(
                "share link limits unavailable (Redis): %s; refusing with 503",
                type(exc).__name__,
            )
            raise Unavailable(
                "share links are temporarily unavailable; retry shortly",
                reason="THROTTLE_UNAVAILABLE",
                retry_after=REDIS_DOWN_RETRY_AFTER_SECONDS,
            ) from None

    def _delays(self) -> list[int]:
        p = self._policy
        return [
            int(p.base_delay_seconds * 1000),
            int(p.max_delay_seconds * 1000),
            int(p.window_seconds * 1000),
        ]

    @staticmethod
    def _refuse(wait_ms: int) -> TooManyRequests:
        return TooManyRequests(
            THROTTLED, reason="LINK_GUESSES_THROTTLED", retry_after=_retry_after(wait_ms)
        )

    def _address_key(self, address: str) -> str:
        return f"{KEY_PREFIX}:address:{_address_tag(address)}"

    def check_address(self, address: str) -> None:
        """Raises TooManyRequests while the address must wait."""
        wait_ms = self._call(self._wait, [self._address_key(address)], [])
        if wait_ms > 0:
            raise self._refuse(wait_ms)

    def failed(self, address: str) -> None:
        """Counts one failed resolution (a token leading nowhere, a wrong password)."""
        self._call(
            self._count,
            [self._address_key(address)],
            ["0", *self._delays(), self._policy.guess_free_failures],
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
        wait_ms = self._call(
            self._count,
            [attempt.own_key, attempt.link_key],
            ["1", *self._delays(), p.password_free_failures, p.link_password_free_failures],
        )
        if wait_ms > 0:
            raise self._refuse(wait_ms)
        return attempt

    def password_succeeded(self, attempt: PasswordAttempt) -> None:
        try:
            self._succeeded(
                keys=[attempt.own_key, attempt.link_key],
                args=[self._policy.link_password_free_failures],
            )
        except self._errors as exc:
            # The download goes ahead; the attempts are forgotten when their window ends.
            log.warning("could not reset link password attempts (Redis): %s", type(exc).__name__)
