"""Live file status for WatchFileEvents: one Redis subscription per process, fanned out to
the streams of this process's callers.

The upload coordinator publishes every status change on its owner's channel
(services/common/file_events.py). This hub, a server worker, subscribes once to every
user's channel (PSUBSCRIBE) and hands each change to the streams of that user open here. So
a change made anywhere (any upload replica, its reaper) reaches a stream open on any events
replica, and a stream only ever receives its own user's channel.

Pub/sub keeps nothing: when the hub's connection to Redis breaks, changes may be missed, so
every open stream is ended (its client reconnects and re-lists), and new streams are refused
with UNAVAILABLE until the hub is subscribed again.

A user holds at most `per_user` streams across every replica (stream_limits.py counts them
in Redis): one more ends that user's oldest, here at once or on the replica holding it
(which hears of it on its eviction channel). So one user never holds more than that many of
this process's max_streams, and other users are not refused because of one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from services.common.errors import ResourceExhausted, Unavailable
from services.common.file_events import (
    CHANNEL_PATTERN,
    FileStatusChange,
    MalformedFileEvent,
    user_of_channel,
)
from services.common.settings import UrlSetting, url_text

from .stream_limits import Evicted, StreamLimits

log = logging.getLogger(__name__)

# Changes waiting for one slow stream; beyond this the stream is ended (its client re-lists).
MAX_PENDING_PER_STREAM = 1000
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
# How long a new stream waits for the hub to be subscribed before it is refused.
READY_WAIT_SECONDS = 2.0
FEED_DOWN = "live file status is unavailable right now; retry shortly"
INTERRUPTED = "live file status was interrupted; reconnect"
REPLACED = "this user opened more live-status streams than allowed; the oldest was closed"


@dataclass(frozen=True)
class StreamEnded:
    """Put on a stream's queue to end it; `reason` is what its caller is told, and
    `error_reason` the ErrorInfo reason it is told with."""

    reason: str
    error_reason: str = "FILE_EVENTS_INTERRUPTED"


class Subscription:
    """The changes for one stream, in order. `next()` waits for one."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.stream_id = uuid.uuid4().hex
        self._queue: queue.Queue[FileStatusChange | StreamEnded] = queue.Queue(
            maxsize=MAX_PENDING_PER_STREAM + 1
        )
        self._closed = threading.Event()

    def next(self, timeout: float) -> FileStatusChange | StreamEnded | None:
        """The next change, a StreamEnded, or None when `timeout` passed without either."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def deliver(self, change: FileStatusChange) -> bool:
        """False when the stream is too far behind (it is ended instead)."""
        if self._queue.qsize() >= MAX_PENDING_PER_STREAM:
            self.end("this stream fell behind; reconnect")
            return False
        self._queue.put_nowait(change)
        return True

    def end(self, reason: str, error_reason: str = "FILE_EVENTS_INTERRUPTED") -> None:
        """Wakes the stream to end it; the first reason wins, later calls do nothing."""
        if not self._closed.is_set():
            self._closed.set()
            try:
                self._queue.put_nowait(StreamEnded(reason, error_reason))
            except queue.Full:  # deliver() keeps a slot free for this
                pass

    @property
    def ended(self) -> bool:
        return self._closed.is_set()


class FileEventHub:
    """A server worker (start/stop) that fans the file-events channels out to
    subscriptions. `subscribe()` is what each WatchFileEvents call holds."""

    def __init__(self, client: redis.Redis, *, max_streams: int, limits: StreamLimits) -> None:
        self._redis = client
        self._max_streams = max_streams
        self._limits = limits
        self._lock = threading.Lock()
        self._by_user: dict[str, set[Subscription]] = {}
        self._by_id: dict[str, Subscription] = {}  # every stream counted here
        # Streams registered in Redis but not yet counted here, and those of them another
        # replica evicted meanwhile (they end as soon as they are counted).
        self._registering: set[str] = set()
        self._evicted_early: set[str] = set()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- worker ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="file-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._interrupt("the server is stopping; reconnect")
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._redis.close()
        self._limits.close()

    def wait_ready(self, timeout: float) -> bool:
        """True once subscribed to Redis (for callers that start the hub and must know)."""
        return self._ready.wait(timeout)

    # -- streams -----------------------------------------------------------------------

    @contextmanager
    def subscribe(self, user_id: str) -> Iterator[Subscription]:
        """A subscription to `user_id`'s changes for the block: live from the moment it is
        returned. Unavailable while the hub is not subscribed to Redis; ResourceExhausted
        when this process already serves max_streams (a user at the per-user limit is not
        refused: their oldest stream makes way)."""
        # Just started, or resubscribing after a blip: worth a short wait before refusing.
        self._ready.wait(READY_WAIT_SECONDS)
        subscription = Subscription(user_id)
        self._admit(subscription)
        try:
            yield subscription
        finally:
            subscription.end("closed")
            self._forget(subscription)
            self._limits.release(user_id, subscription.stream_id)

    def _admit(self, subscription: Subscription) -> None:
        """Counts a new stream here and in Redis (ending what the per-user limit evicts),
        or raises why it is refused."""
        user_id, stream_id = subscription.user_id, subscription.stream_id
        with self._lock:
            self._check_admission(user_id, can_make_way=True)
            self._registering.add(stream_id)
        try:
            try:
                evicted = self._limits.register(user_id, stream_id)
            except redis.RedisError:
                raise Unavailable(FEED_DOWN, reason="FILE_EVENTS_UNAVAILABLE") from None
            for stream in evicted:
                self._evict(stream)
            with self._lock:  # the same lock _interrupt holds: no stream slips past an outage
                self._registering.discard(stream_id)
                self._check_admission(user_id, can_make_way=False)
                self._by_user.setdefault(user_id, set()).add(subscription)
                self._by_id[stream_id] = subscription
                evicted_early = stream_id in self._evicted_early
                self._evicted_early.discard(stream_id)
        except BaseException:
            with self._lock:
                self._registering.discard(stream_id)
                self._evicted_early.discard(stream_id)
            self._limits.release(user_id, stream_id)
            raise
        if evicted_early:  # another replica evicted it while it was being counted
            self._end_evicted(stream_id)

    def _check_admission(self, user_id: str, *, can_make_way: bool) -> None:
        """Called with the lock held. Before registering, a full process still admits a
        user with streams here (registering may end one of theirs here)."""
        if not self._ready.is_set():
            raise Unavailable(FEED_DOWN, reason="FILE_EVENTS_UNAVAILABLE")
        making_way = can_make_way and bool(self._by_user.get(user_id))
        if len(self._by_id) >= self._max_streams and not making_way:
            raise ResourceExhausted(
                "this server holds as many event streams as it may; retry",
                reason="TOO_MANY_STREAMS",
            )

    def _forget(self, subscription: Subscription) -> bool:
        """Stops counting a stream here; False when it was not counted (any more)."""
        with self._lock:
            if self._by_id.pop(subscription.stream_id, None) is None:
                return False
            streams = self._by_user[subscription.user_id]
            streams.discard(subscription)
            if not streams:
                del self._by_user[subscription.user_id]
            return True

    def _evict(self, evicted: Evicted) -> None:
        """Ends a stream the per-user limit evicted: here at once, else on its replica."""
        if evicted.replica_id == self._limits.replica_id:
            self._end_evicted(evicted.stream_id)
        else:
            try:
                self._limits.tell(evicted)
            except redis.RedisError as exc:  # the feed is in trouble too: it ends them all
                log.warning(
                    "could not ask a replica to end an evicted stream (%s)", type(exc).__name__
                )

    def _end_evicted(self, stream_id: str) -> None:
        with self._lock:
            subscription = self._by_id.get(stream_id)
            if subscription is None and stream_id in self._registering:
                self._evicted_early.add(stream_id)
        # Uncounted at once: the stream replacing it may take its place in max_streams.
        if subscription is not None and self._forget(subscription):
            subscription.end(REPLACED, "TOO_MANY_STREAMS")

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._by_id)

    def streams_of(self, user_id: str) -> int:
        with self._lock:
            return len(self._by_user.get(user_id, ()))

    def _dispatch(self, channel: str, data: str) -> None:
        user_id = user_of_channel(channel)
        if user_id is None:
            return
        with self._lock:
            streams = list(self._by_user.get(user_id, ()))
        if not streams:
            return  # nobody here watches this user: the usual case, kept cheap
        try:
            change = FileStatusChange.from_json(data)
        except MalformedFileEvent as exc:
            log.warning("ignoring a malformed message on %s: %s", channel, exc)
            return
        for subscription in streams:
            subscription.deliver(change)

    def _interrupt(self, reason: str, *, still_ready: bool = False) -> None:
        """Ends every open stream (changes may have been missed) and, unless
        `still_ready`, refuses new ones until the hub is subscribed again."""
        with self._lock:
            if not still_ready:
                self._ready.clear()
            streams = [s for subscriptions in self._by_user.values() for s in subscriptions]
        for subscription in streams:
            subscription.end(reason)

    # -- the Redis side ----------------------------------------------------------------

    def _keep_alive(self) -> float:
        """Renews this replica's stream lease; when to renew it next (monotonic)."""
        with self._lock:
            users = set(self._by_user)
        self._limits.keep_alive(users)
        return time.monotonic() + self._limits.lease_seconds / 3

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            try:
                # Alive before any stream is registered; evictions heard before streams open.
                renew_at = self._keep_alive()
                pubsub.subscribe(self._limits.eviction_channel)
                pubsub.psubscribe(CHANNEL_PATTERN)
                while not self._stopping.is_set():
                    if time.monotonic() >= renew_at:
                        renew_at = self._keep_alive()
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        if self._ready.is_set():
                            # Re-subscribed after a reconnection we did not see: changes may
                            # have been missed in between.
                            self._interrupt(INTERRUPTED, still_ready=True)
                        self._ready.set()
                        failures = 0
                        log.info("watching file status changes on %s", CHANNEL_PATTERN)
                    elif message["type"] == "pmessage":
                        self._dispatch(message["channel"], message["data"])
                    elif message["type"] == "message":  # only the eviction channel
                        self._end_evicted(message["data"])
            except redis.RedisError as exc:
                was_ready = self._ready.is_set()
                self._interrupt(INTERRUPTED)
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                (log.warning if was_ready or failures == 1 else log.debug)(
                    "file status feed lost (%s); resubscribing in %.1f s", type(exc).__name__, delay
                )
                self._stopping.wait(delay)
            except Exception:  # any bug: it must not end live status for good
                self._interrupt(INTERRUPTED)
                log.exception("file status feed crashed; resubscribing")
                self._stopping.wait(RECONNECT_DELAYS[-1])
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass


def feed_client(url: str | UrlSetting) -> redis.Redis:
    """The hub's Redis client: no read timeout of its own (get_message waits with one),
    keepalive and a periodic PING so a dead connection is noticed."""
    return redis.Redis.from_url(
        url_text(url),
        decode_responses=True,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
    )
