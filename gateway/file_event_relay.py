"""The gateway's one SubscribeFileEvents call, which every Server-Sent-Events client of this
process (routes/events.py) shares.

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

    __slots__ = ("subscription_id", "live", "_pending", "_waiter", "_end")

    def __init__(self, subscription_id: int) -> None:
        self.subscription_id = subscription_id
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


class FileEventRelay:
    """The process's shared SubscribeFileEvents call, opened by the first subscriber."""

    def __init__(self, stub: events_pb2_grpc.EventsServiceAsyncStub) -> None:
        self._stub = stub
        self._ids = itertools.count(1)
        self._subscribers: dict[int, Subscriber] = {}
        self._outgoing: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._refuse_until = 0.0
        self.calls_opened = 0  # for tests and the bench: how many calls this process made

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

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
        outgoing = self._outgoing if self._task is not None else None
        if outgoing is None:
            outgoing = self._open()
        subscriber = Subscriber(next(self._ids))
        self._subscribers[subscriber.subscription_id] = subscriber
        outgoing.put_nowait(
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
        sid = subscriber.subscription_id
        if self._subscribers.get(sid) is subscriber:
            del self._subscribers[sid]
            if self._outgoing is not None:
                self._outgoing.put_nowait(
                    _Request(unsubscribe=events_pb2.Unsubscribe(subscription_id=sid))
                )
        subscriber.end(_interrupted("closed"))

    def _open(self) -> asyncio.Queue[_Request]:
        outgoing: asyncio.Queue[_Request] = asyncio.Queue()
        self._outgoing = outgoing
        self._task = asyncio.get_running_loop().create_task(
            self._run(outgoing), name="file-event-relay"
        )
        self.calls_opened += 1
        return outgoing

    async def _run(self, outgoing: asyncio.Queue[_Request]) -> None:
        async def requests() -> AsyncIterator[_Request]:
            while True:
                yield await outgoing.get()

        answered = False
        error: grpc.aio.AioRpcError = _interrupted()
        call = self._stub.SubscribeFileEvents(requests())
        try:
            async for reply in call:
                answered = True
                self._dispatch(reply)
        except grpc.aio.AioRpcError as exc:
            error = exc
            log.info("the shared live-status call ended: %s", exc.code().name)
        except Exception:  # any bug: its subscribers end as after a broken call
            log.exception("relaying live status failed")
        finally:
            call.cancel()
            self._task = None
            self._outgoing = None
            if answered:
                self._failures = 0
            else:
                delay = RECONNECT_DELAYS[min(self._failures, len(RECONNECT_DELAYS) - 1)]
                self._failures += 1
                self._refuse_until = time.monotonic() + delay
            subscribers, self._subscribers = self._subscribers, {}
            for subscriber in subscribers.values():
                subscriber.end(error)

    def _dispatch(self, reply: events_pb2.SubscribeFileEventsResponse) -> None:
        kind = reply.WhichOneof("kind")
        for sid in reply.subscription_ids:
            subscriber = self._subscribers.get(sid)
            if subscriber is None:
                continue  # unsubscribed meanwhile
            if kind == "file_event":
                subscriber.deliver(reply.file_event)
            elif kind == "live":
                if not subscriber.live.done():
                    subscriber.live.set_result(None)
            elif kind == "ended":
                del self._subscribers[sid]
                subscriber.end(_ended_error(reply.ended))

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
