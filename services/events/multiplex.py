"""SubscribeFileEvents: many users' live file status over one call, the gateway's.

A WatchFileEvents call per browser tab costs this process ~24 KB of gRPC's own per open
call (bench/README.md, "Live streams"), so 5,000 tabs took ~250 MB. Here a gateway holds
one call and subscribes each of its Server-Sent-Events clients on it: a subscription is a
hub Subscription (watch.py: counted, per-user limited, signed-out sessions ended, exactly
as a WatchFileEvents stream) whose changes go to the call's one outbox instead of a queue
and a coroutine of its own, a few hundred bytes.

Security is per subscription, as WatchFileEvents' is per call: each Subscribe carries its
subscriber's access token, verified as the interceptor verifies a caller's (signature,
expiry, issuer, audience, revoked session), and the subscription is the hub's subscription
to that token's user only. A bad token refuses that subscription alone (a
SubscriptionEnded with the status WatchFileEvents would have been refused with); the call
and its other subscriptions go on. The call itself carries many users' and no user's
token: it needs the service credential (the gateway's), and counts as one stream toward
max_streams besides.

A change of a user reaches all of that user's subscriptions on the call in one message
(the hub delivers it to each in turn: consecutive deliveries of one change are merged).
The outbox is bounded: a caller that stops reading (gRPC's flow control holding the
writes) and lets MAX_PENDING_PER_CALL messages pile up has its call ended with UNAVAILABLE
("fell behind"): its caller treats every subscription as interrupted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator

from dropfile.events.v1 import events_pb2
from services.common.errors import DomainError, InvalidArgument, Unauthenticated
from services.common.file_events import FileStatusChange
from services.common.tokens import InvalidTokenError, TokenVerifier

from .watch import FELL_BEHIND, FileEventHub, Subscription, interrupted

log = logging.getLogger(__name__)

# Messages waiting for a caller that does not read; one more ends the call. A gateway's
# call carries all its subscribers' changes: room for a burst to each of thousands.
MAX_PENDING_PER_CALL = 20_000
_LIVE = events_pb2.SubscriptionLive()
_STATUS = {
    "UPLOADING": events_pb2.FILE_EVENT_STATUS_UPLOADING,
    "UPLOADED": events_pb2.FILE_EVENT_STATUS_UPLOADED,
    "FAILED": events_pb2.FILE_EVENT_STATUS_FAILED,
    "DELETED": events_pb2.FILE_EVENT_STATUS_DELETED,
}


def file_event(change: FileStatusChange) -> events_pb2.FileEvent:
    event = events_pb2.FileEvent(
        file_id=change.file_id, status=_STATUS[change.status], size=change.size
    )
    event.at.FromDatetime(change.at)
    return event


def ended_message(
    subscription_id: int, error: DomainError
) -> events_pb2.SubscribeFileEventsResponse:
    retry_ms = 0 if error.retry_after is None else max(1, round(error.retry_after * 1000))
    return events_pb2.SubscribeFileEventsResponse(
        subscription_ids=[subscription_id],
        ended=events_pb2.SubscriptionEnded(
            code=error.code.value[0],
            message=error.message,
            reason=error.reason,
            retry_after_ms=retry_ms,
        ),
    )


class CallSubscription(Subscription):
    """One subscriber of a call: the hub's Subscription, delivering into the call."""

    __slots__ = ("subscription_id", "_call")

    def __init__(
        self, call: MultiplexedCall, subscription_id: int, user_id: str, session_id: str
    ) -> None:
        super().__init__(user_id, session_id)
        self.subscription_id = subscription_id
        self._call = call

    def deliver(self, change: FileStatusChange) -> bool:
        if self.ended:
            return False
        return self._call.push_change(self.subscription_id, change)

    def end(self, error: DomainError) -> None:
        """Ended by the hub (sign-out, replaced, the feed interrupted, stopping) or by the
        call (unsubscribed, over): the first wins."""
        if not self.ended:
            super().end(error)
            self._call.subscription_ended(self, error)


class MultiplexedCall:
    """One SubscribeFileEvents call: its subscriptions, and the outbox its replies leave
    from. Lives on the server's event loop."""

    def __init__(self, hub: FileEventHub, verifier: TokenVerifier) -> None:
        self._hub = hub
        self._verifier = verifier
        self._live: dict[int, CallSubscription] = {}
        self._admitting: dict[int, asyncio.Task[None]] = {}
        self._outbox: deque[tuple[FileStatusChange | None, events_pb2.SubscribeFileEventsResponse]]
        self._outbox = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: DomainError | None = None
        self._closing = False

    # -- the replies ---------------------------------------------------------------------

    def _send(
        self,
        reply: events_pb2.SubscribeFileEventsResponse,
        change: FileStatusChange | None = None,
    ) -> bool:
        if self._failure is not None:
            return False
        if len(self._outbox) >= MAX_PENDING_PER_CALL:
            self.fail(interrupted(FELL_BEHIND))
            return False
        self._outbox.append((change, reply))
        self._wake()
        return True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def push_change(self, subscription_id: int, change: FileStatusChange) -> bool:
        if self._failure is not None:
            return False
        if self._outbox and self._outbox[-1][0] is change:
            # The same change for another subscription of its user: one message for all.
            self._outbox[-1][1].subscription_ids.append(subscription_id)
            return True
        reply = events_pb2.SubscribeFileEventsResponse(
            subscription_ids=[subscription_id], file_event=file_event(change)
        )
        return self._send(reply, change)

    def subscription_ended(self, subscription: CallSubscription, error: DomainError) -> None:
        sid = subscription.subscription_id
        if self._live.get(sid) is subscription:
            del self._live[sid]
            self._hub.release(subscription)
            if not self._closing:
                self._send(ended_message(sid, error))

    def fail(self, error: DomainError) -> None:
        """Ends the whole call with `error` (after nothing more: what waits is dropped)."""
        if self._failure is None:
            self._failure = error
            self._outbox.clear()
            self._wake()

    async def replies(self) -> AsyncIterator[events_pb2.SubscribeFileEventsResponse]:
        while True:
            while self._outbox and self._failure is None:
                yield self._outbox.popleft()[1]
            if self._failure is not None:
                raise self._failure
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # -- the requests --------------------------------------------------------------------

    async def read(self, requests: AsyncIterator[events_pb2.SubscribeFileEventsRequest]) -> None:
        """Takes the caller's Subscribe and Unsubscribe messages until it half-closes."""
        try:
            async for request in requests:
                kind = request.WhichOneof("kind")
                if kind == "subscribe":
                    self._subscribe(request.subscribe)
                elif kind == "unsubscribe":
                    self._unsubscribe(request.unsubscribe.subscription_id)
        except DomainError as exc:
            self.fail(exc)
        except Exception:  # any bug: the call ends, its caller treats it as interrupted
            log.exception("reading a SubscribeFileEvents call failed")
            self.fail(interrupted())

    def _subscribe(self, subscribe: events_pb2.Subscribe) -> None:
        sid = subscribe.subscription_id
        if sid == 0 or sid in self._live or sid in self._admitting:
            # The caller's bug, not a subscriber's: its subscriptions cannot be told apart.
            raise InvalidArgument(f"subscription id {sid} is 0 or already in use on this call")
        # Admission waits on Redis (and briefly on the hub being ready): one task each, so
        # one slow admission holds up no other.
        task = asyncio.get_running_loop().create_task(self._admit(sid, subscribe.access_token))
        self._admitting[sid] = task
        task.add_done_callback(self._admitted)

    def _admitted(self, task: asyncio.Task[None]) -> None:
        for sid, admitting in list(self._admitting.items()):
            if admitting is task:  # not a later admission reusing an unsubscribed id
                del self._admitting[sid]
        if not task.cancelled() and task.exception() is not None:
            log.error("admitting a subscription failed", exc_info=task.exception())

    async def _admit(self, sid: int, access_token: str) -> None:
        try:
            user_id, session_id = await self._identify(access_token)
            subscription = CallSubscription(self, sid, user_id, session_id)
            await self._hub.admit(subscription)
        except DomainError as exc:
            self._send(ended_message(sid, exc))
            return
        # No await since admit returned: no change was delivered before `live` is sent.
        if subscription.ended or self._closing:  # evicted meanwhile, or the call is over
            self._hub.release(subscription)
            if not self._closing:
                self._send(ended_message(sid, interrupted()))
            return
        self._live[sid] = subscription
        self._send(events_pb2.SubscribeFileEventsResponse(subscription_ids=[sid], live=_LIVE))

    async def _identify(self, access_token: str) -> tuple[str, str]:
        """The token's user (canonical, as channels name it) and session: what the
        interceptor and WatchFileEvents' _caller check, with the same refusals."""
        if not access_token:
            raise Unauthenticated("missing access token", reason="ACCESS_TOKEN_MISSING")
        loop = asyncio.get_running_loop()
        try:
            # May ask Redis whether the session was signed out: off the loop.
            identity = await loop.run_in_executor(None, self._verifier.verify, access_token)
        except InvalidTokenError as exc:
            raise Unauthenticated(str(exc), reason="ACCESS_TOKEN_INVALID") from None
        try:
            return str(uuid.UUID(identity.user_id)), identity.session_id
        except ValueError:
            raise Unauthenticated(
                "the access token's subject is not a Dropfile user", reason="ACCESS_TOKEN_INVALID"
            ) from None

    def _unsubscribe(self, sid: int) -> None:
        admitting = self._admitting.pop(sid, None)
        if admitting is not None:
            admitting.cancel()  # its admission undoes itself (watch.FileEventHub._admit)
            return
        subscription = self._live.pop(sid, None)
        if subscription is not None:
            self._hub.release(subscription)
            subscription.end(interrupted("unsubscribed"))

    async def close(self) -> None:
        """The call is over: every subscription released, admissions abandoned."""
        self._closing = True
        for task in list(self._admitting.values()):
            task.cancel()
        if self._admitting:
            await asyncio.gather(*self._admitting.values(), return_exceptions=True)
        for subscription in list(self._live.values()):
            subscription.end(interrupted("closed"))
        self._live.clear()

    @property
    def subscriptions(self) -> int:
        return len(self._live)
