"""How many live-status streams each user holds, counted in Redis across every events
replica, and which of them to end when a user opens one too many.

Each user has a sorted set `dropfile:watch-streams:{<user_id>}` of their open streams: the
member is `<replica id>|<stream id>`, the score the order in which they opened (a per-user
counter, so replicas' clocks do not matter). A replica shows it is alive with the key
`dropfile:watch-replica:<replica id>`, which expires after `lease_seconds` unless renewed
(`keep_alive`, three times per lease). Registering a stream first drops the entries of
replicas whose key is gone (crashed, or cut off from Redis for a whole lease), so their
streams stop counting; then, beyond the limit, it removes the user's oldest entries and
returns them: whoever holds those streams ends them (another replica is told on its
eviction channel, `eviction_channel_of`). All of it is one script, so replicas registering
streams of one user at the same time cannot together exceed the limit. The calls are made
from the events server's event loop (watch.py), on redis.asyncio.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import redis
import redis.asyncio

log = logging.getLogger(__name__)

STREAMS_PREFIX = "dropfile:watch-streams:"
REPLICA_PREFIX = "dropfile:watch-replica:"
EVICTION_PREFIX = "dropfile:watch-evict:"

# KEYS: the user's streams, the user's counter. ARGV: the new member, the limit, the
# replica key prefix, the keys' lifetime in seconds. Returns the evicted members.
_REGISTER = """
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local replica = string.match(member, '^([^|]+)|')
  if not replica or redis.call('EXISTS', ARGV[3] .. replica) == 0 then
    redis.call('ZREM', KEYS[1], member)
  end
end
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over <= 0 then
  return {}
end
local evicted = redis.call('ZRANGE', KEYS[1], 0, over - 1)
redis.call('ZREM', KEYS[1], unpack(evicted))
return evicted
"""


def eviction_channel_of(replica_id: str) -> str:
    return f"{EVICTION_PREFIX}{replica_id}"


@dataclass(frozen=True)
class Evicted:
    """A stream that must end: the replica holding it, and its id there."""

    replica_id: str
    stream_id: str


class StreamLimits:
    """One replica's view of the per-user stream counts. Every method may raise
    redis.RedisError except `release`, which is best effort."""

    def __init__(self, client: redis.asyncio.Redis, *, per_user: int, lease_seconds: float) -> None:
        self._redis = client
        self.per_user = per_user
        self.lease_seconds = lease_seconds
        self.replica_id = uuid.uuid4().hex
        self.eviction_channel = eviction_channel_of(self.replica_id)
        self._register = client.register_script(_REGISTER)

    async def keep_alive(self, user_ids: set[str]) -> None:
        """Renews this replica's lease, and the keys of the users it serves streams for."""
        lifetime = _whole_seconds(self.lease_seconds)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{REPLICA_PREFIX}{self.replica_id}", 1, ex=lifetime)
            for user_id in user_ids:
                pipe.expire(_streams_key(user_id), lifetime)
                pipe.expire(_counter_key(user_id), lifetime)
            await pipe.execute()

    async def register(self, user_id: str, stream_id: str) -> list[Evicted]:
        """Counts the new stream; the user's oldest streams beyond the limit, to end."""
        evicted = await self._register(
            keys=[_streams_key(user_id), _counter_key(user_id)],
            args=[
                f"{self.replica_id}|{stream_id}",
                self.per_user,
                REPLICA_PREFIX,
                _whole_seconds(self.lease_seconds),
            ],
        )
        return [Evicted(*_text(member).split("|", 1)) for member in evicted]

    async def release(self, user_id: str, stream_id: str) -> None:
        """Stops counting an ended stream. Best effort: an entry left behind by an outage is
        the user's oldest and is the next evicted, or it expires with this replica."""
        try:
            await self._redis.zrem(_streams_key(user_id), f"{self.replica_id}|{stream_id}")
        except redis.RedisError as exc:
            log.debug("could not release a stream's entry: %s", type(exc).__name__)

    async def tell(self, evicted: Evicted) -> None:
        """Asks the replica holding an evicted stream to end it."""
        await self._redis.publish(eviction_channel_of(evicted.replica_id), evicted.stream_id)

    async def close(self) -> None:
        await self._redis.aclose()

    async def count_of(self, user_id: str) -> int:
        """The user's streams counted now (entries of dead replicas included until the
        next registration drops them)."""
        return await self._redis.zcard(_streams_key(user_id))


def _streams_key(user_id: str) -> str:
    return f"{STREAMS_PREFIX}{{{user_id}}}"


def _counter_key(user_id: str) -> str:
    return f"{STREAMS_PREFIX}{{{user_id}}}:opened"


def _whole_seconds(seconds: float) -> int:
    return max(1, round(seconds))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
