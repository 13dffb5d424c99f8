"""The gateway's SubscribeFileEvents call, which every Server-Sent-Events client of this
process (routes/events.py) shares (one at a time: renewed every RENEW_AFTER seconds).

A WatchFileEvents call per browser tab cost the events process ~24 KB of gRPC's own per
tab (bench/README.md, "Live streams"); here each tab is a subscription on the process's
one call (the events service's multiplex.py): Subscribe with the tab's access token, whose
user's changes then arrive tagged with the subscription's id, until Unsubscribe. The call
goes to one events replica (the channel's); every replica sees every change.

What each tab sees is what a WatchFileEvents call of its own showed it: its subscription
is live (SubscriptionLive) before its response starts, or it is refused with the status
that call would have been refused with (SubscriptionEnded: invalid token 401, too many
streams 429 with Retry-After, feed down 503); a subscription the events service ends
(signed out, replaced, feed interrupted) ends the tab's response, as the call ending did.
When the shared call breaks (the events replica restarted or is unreachable), every
subscription on it ends the same way: each browser reconnects (EventSource does by itself)
and re-lists what it may have missed. The next subscriber opens a new call; after a call
that broke without ever answering, new subscribers are refused (503, Retry-After) for a
delay that grows with each such failure (RECONNECT_DELAYS), so a replica that is down is
not asked again for every tab.

A slow tab never holds up the call: its changes wait in a queue of its own of at most
MAX_PENDING_PER_SUBSCRIBER, and one more ends that tab's response (it reconnects and
re-lists). Everything runs on the gateway's event loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

import grpc

from dropfile.events.v1 import events_pb2, events_pb2_grpc

from .errors import rpc_error

log = logging.getLogger("gateway.events")

MAX_PENDING_PER_SUBSCRIBER = 256
# New subscribers go to a new call after this many seconds (FileEventRelay): under the
# events service's max_connection_age, so every call ends within its connection's grace.
RENEW_AFTER = 240.0
# Seconds new subscribers are refused after the shared call failed 1, 2, ... times in a
# row without an answer (a call that answered and later broke is reopened at once).
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
FEED_DOWN = "live file status is unavailable right now; retry shortly"
INTERRUPTED = "live file status was interrupted; reconnect"
FELL_BEHIND = "this stream fell behind; reconnect"

_Request = events_pb2.SubscribeFileEventsRequest
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _ended_error(ended: events_pb2.SubscriptionEnded) -> grpc.aio.AioRpcError:
    """The error WatchFileEvents would have ended with."""
    return rpc_error(
        _CODES.get(ended.code, grpc.StatusCode.UNKNOWN),
        ended.message,
        reason=ended.reason or None,
        retry_after=ended.retry_after_ms / 1000 if ended.retry_after_ms else None,
    )


def _interrupted(message: str = INTERRUPTED) -> grpc.aio.AioRpcError:
    return rpc_error(grpc.StatusCode.UNAVAILABLE, message, reason="FILE_EVENTS_INTERRUPTED")


class Subscriber:
    """One SSE client's subscription: `live` resolves once it is (or raises its refusal),
    then `next()` gives its changes."""

    __slots__ = ("subscription_id", "call", "live", "_pending", "_waiter", "_end")

    def __init__(self, subscription_id: int, call: _SharedCall) -> None:
        self.subscription_id = subscription_id
        self.call = call
        self.live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending: deque[events_pb2.FileEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._end: grpc.aio.AioRpcError | None = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def deliver(self, event: events_pb2.FileEvent) -> None:
        if self._end is not None:
            return
        if len(self._pending) >= MAX_PENDING_PER_SUBSCRIBER:
            self.end(_interrupted(FELL_BEHIND))
            return
        self._pending.append(event)
        self._wake()

    def end(self, error: grpc.aio.AioRpcError) -> None:
        """The first wins; before it is live, it is the refusal."""
        if self._end is None:
            self._end = error
            self._pending.clear()
            if not self.live.done():
                self.live.set_exception(error)
                self.live.exception()  # retrieved: nobody may be awaiting it any more
            self._wake()

    async def next(self, timeout: float) -> events_pb2.FileEvent | None:
        """The next change; None when `timeout` passed without one. Raises the error that
        ended the subscription (before any change still waiting)."""
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
            raise self._end
        return self._pending.popleft() if self._pending else None


class _SharedCall:
    """One SubscribeFileEvents call and the subscribers on it."""

    def __init__(self, relay: FileEventRelay) -> None:
        self.subscribers: dict[int, Subscriber] = {}
        self.outgoing: asyncio.Queue[_Request] = asyncio.Queue()
        self.opened_at = time.monotonic()
        self.over = False
        self.task = asyncio.get_running_loop().create_task(
            relay._run(self), name="file-event-relay"
        )

    def send(self, request: _Request) -> None:
        if not self.over:
            self.outgoing.put_nowait(request)


class FileEventRelay:
    """The process's shared SubscribeFileEvents call, opened by the first subscriber.

    New subscribers go to a new call once the current one is `renew_after` seconds old; the
    old one ends when its last subscriber leaves (each within SSE_MAX_STREAM_SECONDS). The
    events service closes a client connection max_connection_age after it opened, giving
    its calls a grace period to finish (services/common/grpc_server.py: 5 and 20 minutes),
    so a call that lived for ever would be cut, and all its browsers with it, every 25
    minutes; a call renewed every few minutes ends on its own, and its new connection may
    reach a replica added since."""

    def __init__(
        self,
        stub: events_pb2_grpc.EventsServiceAsyncStub,
        *,
        metadata: tuple[tuple[str, str], ...],
        renew_after: float = RENEW_AFTER,
    ) -> None:
        self._stub = stub
        self._metadata = metadata  # the service credential
        self._renew_after = renew_after
        self._ids = itertools.count(1)
        self._current: _SharedCall | None = None
        self._calls: set[_SharedCall] = set()
        self._failures = 0
        self._refuse_until = 0.0
        self.calls_opened = 0  # for tests and the bench: how many calls this process made

    @property
    def subscribers(self) -> int:
        return sum(len(call.subscribers) for call in self._calls)

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    def _call_for_new_subscriber(self) -> _SharedCall:
        current = self._current
        if current is None or current.over:
            current = None
        elif time.monotonic() - current.opened_at >= self._renew_after:
            self._current = None
            if not current.subscribers:
                current.task.cancel()
            current = None
        if current is None:
            current = _SharedCall(self)
            self._current = current
            self._calls.add(current)
            self.calls_opened += 1
        return current

    async def subscribe(self, access_token: str, *, timeout: float) -> Subscriber:
        """A live subscription to the token's user's changes; raises grpc.aio.AioRpcError
        with the refusal (or the shared call's failure) otherwise."""
        now = time.monotonic()
        if now < self._refuse_until:
            raise rpc_error(
                grpc.StatusCode.UNAVAILABLE,
                FEED_DOWN,
                reason="FILE_EVENTS_UNAVAILABLE",
                retry_after=self._refuse_until - now,
            )
        call = self._call_for_new_subscriber()
        subscriber = Subscriber(next(self._ids), call)
        call.subscribers[subscriber.subscription_id] = subscriber
        call.send(
            _Request(
                subscribe=events_pb2.Subscribe(
                    subscription_id=subscriber.subscription_id, access_token=access_token
                )
            )
        )
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(subscriber.live)
        except TimeoutError:
            self.unsubscribe(subscriber)
            raise rpc_error(
                grpc.StatusCode.DEADLINE_EXCEEDED, FEED_DOWN, reason="FILE_EVENTS_UNAVAILABLE"
            ) from None
        except BaseException:
            self.unsubscribe(subscriber)
            raise
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """The client went away (or its response ended): the events service forgets it."""
        sid, call = subscriber.subscription_id, subscriber.call
        if call.subscribers.get(sid) is subscriber:
            del call.subscribers[sid]
            call.send(_Request(unsubscribe=events_pb2.Unsubscribe(subscription_id=sid)))
            if not call.subscribers and call is not self._current:
                call.task.cancel()  # a renewed call's last subscriber left
        subscriber.end(_interrupted("closed"))

    async def _run(self, call: _SharedCall) -> None:
        async def requests() -> AsyncIterator[_Request]:
            while True:
                yield await call.outgoing.get()

        answered = False
        error: grpc.aio.AioRpcError = _interrupted()
        stream = self._stub.SubscribeFileEvents(requests(), metadata=self._metadata)
        try:
            async for reply in stream:
                answered = True
                self._dispatch(call, reply)
        except grpc.aio.AioRpcError as exc:
            error = exc
            log.info("a shared live-status call ended: %s", exc.code().name)
        except asyncio.CancelledError:
            answered = True  # renewed and left by its last subscriber, or stopping: no failure
        except Exception:  # any bug: its subscribers end as after a broken call
            log.exception("relaying live status failed")
        finally:
            stream.cancel()
            call.over = True
            self._calls.discard(call)
            if self._current is call:
                self._current = None
            if answered:
                self._failures = 0
            else:
                delay = RECONNECT_DELAYS[min(self._failures, len(RECONNECT_DELAYS) - 1)]
                self._failures += 1
                self._refuse_until = time.monotonic() + delay
            subscribers, call.subscribers = call.subscribers, {}
            for subscriber in subscribers.values():
                subscriber.end(error)

    def _dispatch(self, call: _SharedCall, reply: events_pb2.SubscribeFileEventsResponse) -> None:
        kind = reply.WhichOneof("kind")
        for sid in reply.subscription_ids:
            subscriber = call.subscribers.get(sid)
            if subscriber is None:
                continue  # unsubscribed meanwhile
            if kind == "file_event":
                subscriber.deliver(reply.file_event)
            elif kind == "live":
                if not subscriber.live.done():
                    subscriber.live.set_result(None)
            elif kind == "ended":
                del call.subscribers[sid]
                subscriber.end(_ended_error(reply.ended))

    async def close(self) -> None:
        tasks = [call.task for call in self._calls]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
