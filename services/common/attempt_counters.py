"""Counters of attempts in Redis, shared by every replica, for limits on guessing: auth's
sign-ins and sign-ups (services/auth/throttle.py) and share links' tokens and passwords
(services/upload/sharing/throttle.py). The policies are theirs; the counting is here, once.

A counter lets its first `free` attempts through; after that each one is let through only
once the previous one's delay is over, the delay doubling (base, 2x, 4x... up to the
maximum). Counters expire after a window without an attempt. A fixed window (at most N
attempts per window) serves sign-ups and single sign-on starts.

Redis's clock decides (TIME, inside the scripts), so replicas with skewed clocks agree.
Redis unreachable: the attempt is refused UNAVAILABLE (503, Retry-After), never let through
unlimited: an outage an attacker may have caused must not open the door to guessing."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import Unavailable

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

log = logging.getLogger(__name__)

REDIS_DOWN_RETRY_AFTER_SECONDS = 5.0

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

# KEYS: counters. ARGV: only_if_free (1: count only when no key blocks, else return the
# wait), base delay (ms), maximum delay (ms), window (ms), then each key's free attempts.
# Returns 0 when counted, else the milliseconds until an attempt may be.
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

# KEYS[1]: the attempt's own counter, forgotten; KEYS[2] (optional): the shared one, which
# gives the successful attempt back and lifts its delay once no more than its free attempts
# remain (strangers' failures keep it). ARGV[1]: the shared counter's free attempts.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if KEYS[2] and redis.call('HGET', KEYS[2], 'n') then
  local count = tonumber(redis.call('HINCRBY', KEYS[2], 'n', -1))
  if count < 0 then redis.call('HSET', KEYS[2], 'n', 0) end
  if count < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[2], 'until') end
end
return 0
"""

# KEYS[1]: the counter. ARGV: limit, window (ms). Returns 0, or the milliseconds until the
# window ends.
_FIXED_WINDOW = """
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


def address_key(address: str) -> str:
    """What one client is counted by: its IPv4 address, or its IPv6 /64 (a single host
    usually holds a whole /64, and would otherwise have 2^64 addresses to rotate through).
    Anything else (a Unix socket's peer) as it is."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip() or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def retry_after(milliseconds: int) -> float:
    """Seconds to wait, exact over gRPC (RetryInfo); the gateway rounds up for Retry-After."""
    return max(milliseconds, 1) / 1000


@dataclass(frozen=True)
class Backoff:
    """The doubling delays after a counter's free attempts, and how long it is remembered."""

    base_seconds: float
    max_seconds: float
    window_seconds: float

    def args(self) -> list[int]:
        return [
            int(self.base_seconds * 1000),
            int(self.max_seconds * 1000),
            int(self.window_seconds * 1000),
        ]


class AttemptCounters:
    """The scripts on one Redis. `what` names the limited attempts in warnings ("sign-in",
    "share link"); `unavailable` is the 503's message while Redis is unreachable."""

    def __init__(self, redis_client: redis.Redis, *, what: str, unavailable: str) -> None:
        import redis as redis_library

        self._errors = (redis_library.RedisError, OSError)
        self._what = what
        self._unavailable = unavailable
        self._wait = redis_client.register_script(_WAIT)
        self._count = redis_client.register_script(_COUNT)
        self._succeeded = redis_client.register_script(_SUCCEEDED)
        self._fixed_window = redis_client.register_script(_FIXED_WINDOW)

    def _call(self, script: Script, keys: list[str], args: list[Any]) -> int:
        try:
            return int(script(keys=keys, args=args))
        except self._errors as exc:
            log.warning(
                "%s limits unavailable (Redis): %s; refusing with 503",
                self._what,
                type(exc).__name__,
            )
            raise Unavailable(
                self._unavailable,
                reason="THROTTLE_UNAVAILABLE",
                retry_after=REDIS_DOWN_RETRY_AFTER_SECONDS,
            ) from None

    def wait_ms(self, keys: list[str]) -> int:
        """Milliseconds until every counter lets an attempt through (0: now)."""
        return self._call(self._wait, keys, [])

    def admit(self, keys: list[str], frees: list[int], backoff: Backoff) -> int:
        """Counts one attempt on every counter unless one of them makes it wait: 0 when
        counted, else the milliseconds to wait (and nothing is counted)."""
        return self._call(self._count, keys, ["1", *backoff.args(), *frees])

    def count_failure(self, keys: list[str], frees: list[int], backoff: Backoff) -> None:
        """Counts a failure that was not admitted first (known only after the fact)."""
        self._call(self._count, keys, ["0", *backoff.args(), *frees])

    def succeeded(self, own_key: str, shared_key: str | None, shared_free: int) -> None:
        """Forgets the own counter and gives the attempt back on the shared one. Best
        effort: the attempt succeeded; its failures expire with their window anyway."""
        keys = [own_key, shared_key] if shared_key else [own_key]
        try:
            self._succeeded(keys=keys, args=[shared_free])
        except self._errors as exc:
            log.warning("could not reset %s attempts (Redis): %s", self._what, type(exc).__name__)

    def within_window(self, key: str, limit: int, window_seconds: float) -> int:
        """Counts one attempt in a fixed window: 0 while at most `limit`, else the
        milliseconds until the window ends."""
        return self._call(self._fixed_window, [key], [limit, int(window_seconds * 1000)])
