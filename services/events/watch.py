"""Live file status for WatchFileEvents: one Redis subscription per process, fanned out to
the streams of this process's callers.

The upload coordinator publishes every status change on its owner's channel
(services/common/file_events.py). This hub, a task on the events server's event loop
(services/common/grpc_aio.py), subscribes once to every user's channel (PSUBSCRIBE) and
hands each change to the streams of that user open here. So a change made anywhere (any
upload replica, its reaper) reaches a stream open on any events replica, and a stream only
ever receives its own user's channel. A stream is a coroutine waiting on its
Subscription, not a thread: one process holds thousands.

Pub/sub keeps nothing: when the hub's connection to Redis breaks, changes may be missed, so
every open stream is ended (its client reconnects and re-lists), and new streams are refused
with UNAVAILABLE until the hub is subscribed again.

A slow stream (its client not reading: gRPC's flow control holds its writes) is never
allowed to grow memory: its changes wait in a queue of at most MAX_PENDING_PER_STREAM, and
one more ends the stream with UNAVAILABLE ("fell behind"); its client reconnects and
re-lists, as after any interruption. Other streams are not held up by it: delivering is
appending to each stream's queue.

Signed-out sessions: every REVOCATION_CHECK_SECONDS the hub asks which sessions of the open
streams were revoked, all of them in one Redis round trip (revocations.py), and ends their
streams with UNAUTHENTICATED.

A user holds at most `per_user` streams across every replica (stream_limits.py counts them
in Redis): one more ends that user's oldest, here at once or on the replica holding it
(which hears of it on its eviction channel). So one user never holds more than that many of
this process's max_streams, and other users are not refused because of one. Beyond
max_streams a new stream is refused with RESOURCE_EXHAUSTED and a RetryInfo (429 and
Retry-After at the gateway).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from services.common.errors import DomainError, ResourceExhausted, Unauthenticated, Unavailable
from services.common.file_events import (
    CHANNEL_PATTERN,
    FileStatusChange,
    MalformedFileEvent,
    user_of_channel,
)
from services.common.revocations import CHECK_UNAVAILABLE, RevokedSessions
from services.common.settings import UrlSetting, url_text
from services.common.tokens import SIGNED_OUT

from .stream_limits import Evicted, StreamLimits

log = logging.getLogger(__name__)

# Changes waiting for one slow stream; one more ends the stream (its client re-lists).
MAX_PENDING_PER_STREAM = 256
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
# How long a new stream waits for the hub to be subscribed before it is refused.
READY_WAIT_SECONDS = 2.0
# How often the sessions of the open streams are checked for sign-outs (from the
# verifier's memory, refreshed from Redis once a second at most).
REVOCATION_CHECK_SECONDS = 0.5
# When a client refused for max_streams may try again (any replica).
FULL_RETRY_SECONDS = 2.0
FEED_DOWN = "live file status is unavailable right now; retry shortly"
INTERRUPTED = "live file status was interrupted; reconnect"
REPLACED = "this user opened more live-status streams than allowed; the oldest was closed"
FELL_BEHIND = "this stream fell behind; reconnect"
FULL = "this server holds as many event streams as it may; retry"


def interrupted(message: str = INTERRUPTED) -> Unavailable:
    return Unavailable(message, reason="FILE_EVENTS_INTERRUPTED")


@dataclass(frozen=True)
class StreamEnded:
    """What ends a stream: the error its caller is told."""

    error: DomainError

    @property
    def reason(self) -> str:
        return self.error.message


class Subscription:
    """The changes for one stream, in order. `next()` waits for one. Used on the server's
    event loop only. (A SubscribeFileEvents subscription, multiplex.py, overrides
    `deliver` and `end` to pass them to its call instead.)"""

    __slots__ = ("user_id", "session_id", "stream_id", "_pending", "_end", "_waiter")

    def __init__(self, user_id: str, session_id: str = "") -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.stream_id = uuid.uuid4().hex
        self._pending: deque[FileStatusChange] = deque()
        self._end: StreamEnded | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def next(self, timeout: float) -> FileStatusChange | StreamEnded | None:
        """The next change, a StreamEnded (which comes before any change still waiting),
        or None when `timeout` passed without either."""
        if not self._pending and self._end is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                pass
            finally:
                self._waiter = None
        if self._end is not None:
            return self._end
        return self._pending.popleft() if self._pending else None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def deliver(self, change: FileStatusChange) -> bool:
        """False when the stream is ended, or too far behind (it is ended instead)."""
        if self._end is not None:
            return False
        if len(self._pending) >= MAX_PENDING_PER_STREAM:
            self.end(interrupted(FELL_BEHIND))
            return False
        self._pending.append(change)
        self._wake()
        return True

    def end(self, error: DomainError) -> None:
        """Wakes the stream to end it with `error`; the first wins, later calls do
        nothing."""
        if self._end is None:
            self._end = StreamEnded(error)
            self._pending.clear()
            self._wake()

    @property
    def ended(self) -> bool:
        return self._end is not None


class FileEventHub:
    """A worker on the server's event loop (grpc_aio.LoopWorker) that fans the file-events
    channels out to subscriptions. `subscribe()` is what each WatchFileEvents call holds."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        max_streams: int,
        limits: StreamLimits,
        revocations: RevokedSessions,
    ) -> None:
        self._redis = client
        self._max_streams = max_streams
        self._limits = limits
        self._revocations = revocations
        self._by_user: dict[str, set[Subscription]] = {}
        self._by_id: dict[str, Subscription] = {}  # every stream counted here
        self._calls = 0  # SubscribeFileEvents calls open (each counts as a stream too)
        # Streams registered in Redis but not yet counted here, and those of them another
        # replica evicted meanwhile (they end as soon as they are counted).
        self._registering: set[str] = set()
        self._evicted_early: set[str] = set()
        self._ready = asyncio.Event()
        self._ready_flag = threading.Event()  # the same, for other threads (wait_ready)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # -- worker ------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="file-events"),
            asyncio.create_task(self._check_sessions(), name="file-events-sessions"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        self._interrupt(interrupted("the server is stopping; reconnect"))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._background:  # releases of ended streams, briefly
            await asyncio.wait(self._background, timeout=1.0)
        await self._redis.aclose()
        await self._limits.close()

    def wait_ready(self, timeout: float) -> bool:
        """True once subscribed to Redis (for threads that start the hub and must know)."""
        return self._ready_flag.wait(timeout)

    def _set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
            self._ready_flag.set()
        else:
            self._ready.clear()
            self._ready_flag.clear()

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- streams -----------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, user_id: str, session_id: str = "") -> AsyncIterator[Subscription]:
        """A subscription to `user_id`'s changes for the block: live from the moment it is
        returned. Raises as `admit`."""
        subscription = Subscription(user_id, session_id)
        await self.admit(subscription)
        try:
            yield subscription
        finally:
            subscription.end(interrupted("closed"))
            self.release(subscription)

    async def admit(self, subscription: Subscription) -> None:
        """Counts `subscription` and makes it live: its user's changes reach it from the
        moment this returns (until `release`). Unavailable while the hub is not subscribed
        to Redis; ResourceExhausted when this process already serves max_streams (a user at
        the per-user limit is not refused: their oldest stream makes way)."""
        if not self._ready.is_set():
            # Just started, or resubscribing after a blip: worth a short wait before refusing.
            try:
                async with asyncio.timeout(READY_WAIT_SECONDS):
                    await self._ready.wait()
            except TimeoutError:
                pass
        await self._admit(subscription)

    def release(self, subscription: Subscription) -> None:
        """Stops counting an admitted subscription, here and (soon) in Redis."""
        self._forget(subscription)
        self._in_background(self._limits.release(subscription.user_id, subscription.stream_id))

    @contextmanager
    def call_counted(self) -> Iterator[None]:
        """Counts a SubscribeFileEvents call toward max_streams for the block (its callers
        need no token to open one: so they cannot hold more of this process than streams
        could). ResourceExhausted when full."""
        if len(self._by_id) + self._calls >= self._max_streams:
            raise ResourceExhausted(FULL, reason="TOO_MANY_STREAMS", retry_after=FULL_RETRY_SECONDS)
        self._calls += 1
        try:
            yield
        finally:
            self._calls -= 1

    async def _admit(self, subscription: Subscription) -> None:
        """Counts a new stream here and in Redis (ending what the per-user limit evicts),
        or raises why it is refused."""
        user_id, stream_id = subscription.user_id, subscription.stream_id
        self._check_admission(user_id, can_make_way=True)
        self._registering.add(stream_id)
        try:
            try:
                evicted = await self._limits.register(user_id, stream_id)
            except (redis.RedisError, OSError):
                raise Unavailable(FEED_DOWN, reason="FILE_EVENTS_UNAVAILABLE") from None
            for stream in evicted:
                await self._evict(stream)
            # No await from here on: no outage (_interrupt) slips in between.
            self._registering.discard(stream_id)
            self._check_admission(user_id, can_make_way=False)
            self._by_user.setdefault(user_id, set()).add(subscription)
            self._by_id[stream_id] = subscription
            evicted_early = stream_id in self._evicted_early
            self._evicted_early.discard(stream_id)
        except BaseException:
            self._registering.discard(stream_id)
            self._evicted_early.discard(stream_id)
            self._in_background(self._limits.release(user_id, stream_id))
            raise
        if evicted_early:  # another replica evicted it while it was being counted
            self._end_evicted(stream_id)

    def _check_admission(self, user_id: str, *, can_make_way: bool) -> None:
        """Before registering, a full process still admits a user with streams here
        (registering may end one of theirs here)."""
        if not self._ready.is_set():
            raise Unavailable(FEED_DOWN, reason="FILE_EVENTS_UNAVAILABLE")
        making_way = can_make_way and bool(self._by_user.get(user_id))
        if len(self._by_id) + self._calls >= self._max_streams and not making_way:
            raise ResourceExhausted(FULL, reason="TOO_MANY_STREAMS", retry_after=FULL_RETRY_SECONDS)

    def _forget(self, subscription: Subscription) -> bool:
        """Stops counting a stream here; False when it was not counted (any more)."""
        if self._by_id.pop(subscription.stream_id, None) is None:
            return False
        streams = self._by_user[subscription.user_id]
        streams.discard(subscription)
        if not streams:
            del self._by_user[subscription.user_id]
        return True

    async def _evict(self, evicted: Evicted) -> None:
        """Ends a stream the per-user limit evicted: here at once, else on its replica."""
        if evicted.replica_id == self._limits.replica_id:
            self._end_evicted(evicted.stream_id)
        else:
            try:
                await self._limits.tell(evicted)
            except (
                redis.RedisError,
                OSError,
            ) as exc:  # the feed is in trouble too: it ends them all
                log.warning(
                    "could not ask a replica to end an evicted stream (%s)", type(exc).__name__
                )

    def _end_evicted(self, stream_id: str) -> None:
        subscription = self._by_id.get(stream_id)
        if subscription is None and stream_id in self._registering:
            self._evicted_early.add(stream_id)
        # Uncounted at once: the stream replacing it may take its place in max_streams.
        if subscription is not None and self._forget(subscription):
            subscription.end(Unavailable(REPLACED, reason="TOO_MANY_STREAMS"))

    @property
    def open_streams(self) -> int:
        """Streams counted here: WatchFileEvents calls and SubscribeFileEvents
        subscriptions."""
        return len(self._by_id)

    @property
    def open_calls(self) -> int:
        """SubscribeFileEvents calls open here."""
        return self._calls

    def streams_of(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def _dispatch(self, channel: str, data: str) -> None:
        user_id = user_of_channel(channel)
        if user_id is None:
            return
        streams = self._by_user.get(user_id)
        if not streams:
            return  # nobody here watches this user: the usual case, kept cheap
        try:
            change = FileStatusChange.from_json(data)
        except MalformedFileEvent as exc:
            log.warning("ignoring a malformed message on %s: %s", channel, exc)
            return
        for subscription in list(streams):
            subscription.deliver(change)

    def _interrupt(self, error: DomainError, *, still_ready: bool = False) -> None:
        """Ends every open stream (changes may have been missed) and, unless
        `still_ready`, refuses new ones until the hub is subscribed again."""
        if not still_ready:
            self._set_ready(False)
        for subscription in list(self._by_id.values()):
            subscription.end(error)

    # -- signed-out sessions -----------------------------------------------------------

    async def _check_sessions(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_CHECK_SECONDS)
            try:
                await self._end_signed_out()
            except Exception:  # any bug: the next round tries again
                log.exception("checking the streams' sessions failed")

    async def _end_signed_out(self) -> None:
        """Ends the streams of sessions signed out since they opened (and, while Redis
        cannot tell, of sessions never checked here)."""
        sessions = {s.session_id for s in self._by_id.values() if s.session_id}
        if not sessions:
            return
        revoked, unknown = await asyncio.to_thread(self._revocations.revoked_among, sessions)
        if not revoked and not unknown:
            return
        for subscription in list(self._by_id.values()):
            if subscription.session_id in revoked:
                subscription.end(Unauthenticated(SIGNED_OUT, reason="SESSION_REVOKED"))
            elif subscription.session_id in unknown:
                subscription.end(Unavailable(CHECK_UNAVAILABLE, reason="SESSION_CHECK_UNAVAILABLE"))

    # -- the Redis side ----------------------------------------------------------------

    async def _keep_alive(self) -> float:
        """Renews this replica's stream lease; when to renew it next (monotonic)."""
        await self._limits.keep_alive(set(self._by_user))
        return time.monotonic() + self._limits.lease_seconds / 3

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            pubsub = self._redis.pubsub()
            try:
                # Alive before any stream is registered; evictions heard before streams open.
                renew_at = await self._keep_alive()
                await pubsub.subscribe(self._limits.eviction_channel)
                await pubsub.psubscribe(CHANNEL_PATTERN)
                while not self._stopping:
                    if time.monotonic() >= renew_at:
                        renew_at = await self._keep_alive()
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        if self._ready.is_set():
                            # Re-subscribed after a reconnection we did not see: changes may
                            # have been missed in between.
                            self._interrupt(interrupted(), still_ready=True)
                        self._set_ready(True)
                        failures = 0
                        log.info("watching file status changes on %s", CHANNEL_PATTERN)
                    elif message["type"] == "pmessage":
                        self._dispatch(message["channel"], message["data"])
                    elif message["type"] == "message":  # only the eviction channel
                        self._end_evicted(message["data"])
            except (redis.RedisError, OSError) as exc:
                was_ready = self._ready.is_set()
                self._interrupt(interrupted())
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                (log.warning if was_ready or failures == 1 else log.debug)(
                    "file status feed lost (%s); resubscribing in %.1f s", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
            except Exception:  # any bug: it must not end live status for good
                self._interrupt(interrupted())
                log.exception("file status feed crashed; resubscribing")
                await asyncio.sleep(RECONNECT_DELAYS[-1])
            finally:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                except (redis.RedisError, OSError):
                    pass


def feed_client(url: str | UrlSetting) -> redis.asyncio.Redis:
    """The hub's Redis client: no read timeout of its own (get_message waits with one),
    keepalive and a periodic PING so a dead connection is noticed."""
    return redis.asyncio.Redis.from_url(
        url_text(url),
        decode_responses=True,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
    )
