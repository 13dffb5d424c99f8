"""SubscribeFileEvents (issue #19, item 3): many users' live status over one call, as the
gateway holds it for all its SSE clients. Against a real events process and Redis: each
subscription is authenticated by its own token and only ever receives that token's user's
changes; a bad token refuses that subscription alone; the stream cap counts subscriptions;
a user's change reaches all their subscriptions on the call in one message."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dropfile.events.v1 import events_pb2, events_pb2_grpc
from services.common.grpc_server import SERVICE_TOKEN_HEADER
from services.common.revocations import RevokedSessions, revocation_client
from services.events.watch import FULL
from tests.conftest import wait_until

from .helpers import publish_uploaded
from .test_live_status import start_own_processor
from .test_many_streams import hub_of

pytestmark = pytest.mark.slow

Request = events_pb2.SubscribeFileEventsRequest


def credential(service_token: str):
    """The gateway's metadata: the service credential, no user token."""
    return ((SERVICE_TOKEN_HEADER, service_token),)


def subscribe(sid: int, token: str) -> Request:
    return Request(subscribe=events_pb2.Subscribe(subscription_id=sid, access_token=token))


def unsubscribe(sid: int) -> Request:
    return Request(unsubscribe=events_pb2.Unsubscribe(subscription_id=sid))


class Multiplexed:
    """One SubscribeFileEvents call, as a gateway holds it: requests sent when asked,
    replies sorted by subscription as they arrive."""

    def __init__(self, stub: events_pb2_grpc.EventsServiceStub, metadata) -> None:
        self._outgoing: asyncio.Queue[Request] = asyncio.Queue()
        self.call = stub.SubscribeFileEvents(self._requests(), metadata=metadata)
        self.replies: list[events_pb2.SubscribeFileEventsResponse] = []
        self.live: set[int] = set()
        self.ended: dict[int, events_pb2.SubscriptionEnded] = {}
        self.events: dict[int, list[str]] = defaultdict(list)
        self.error: grpc.aio.AioRpcError | None = None
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _requests(self):
        while True:
            yield await self._outgoing.get()

    def send(self, request: Request) -> None:
        self._outgoing.put_nowait(request)

    async def _read(self) -> None:
        try:
            async for reply in self.call:
                self.replies.append(reply)
                kind = reply.WhichOneof("kind")
                for sid in reply.subscription_ids:
                    if kind == "live":
                        self.live.add(sid)
                    elif kind == "ended":
                        self.ended[sid] = reply.ended
                    else:
                        self.events[sid].append(reply.file_event.file_id)
                self.changed.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.changed.set()

    async def until(self, predicate, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.error is not None:
                raise AssertionError(f"the call ended ({self.error.code()}) waiting for {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass

    async def settled(self, sids, timeout: float = 20) -> None:
        await self.until(
            lambda: all(s in self.live or s in self.ended for s in sids), "subscriptions", timeout
        )

    async def close(self) -> None:
        self.call.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def run_with_processor(common_settings, scenario, **overrides):
    handle, channel, _ = start_own_processor(common_settings, **overrides)

    async def main() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{handle.port}") as aio_channel:
            await scenario(handle, events_pb2_grpc.EventsServiceStub(aio_channel))

    try:
        asyncio.run(main())
    finally:
        channel.close()
        handle.stop(0).wait()


def foreign_key_token(user_id: str) -> str:
    """A well-formed RS256 token for `user_id`, signed with a key that is not the stack's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = int(time.time())
    claims = {
        "sub": user_id,
        "email": "mallory@example.com",
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 900,
        "jti": str(uuid.uuid4()),
        "iss": "dropfile-auth",
        "aud": "dropfile",
    }
    return jwt.encode(claims, pem, algorithm="RS256")


def test_subscribe_receive_unsubscribe_on_one_call(
    common_settings, service_token, make_token, redis_url
):
    alice = str(uuid.uuid4())

    async def scenario(handle, stub) -> None:
        hub = hub_of(handle)
        # Without the service credential (a user's token is not one): refused.
        for metadata in ((), (("authorization", f"Bearer {make_token(user_id=alice)}"),)):
            # Nothing is sent: the call is refused on its metadata alone, and a message
            # written while the refusal is on its way fails the write with gRPC's own
            # INTERNAL ("Failed execute_batch") instead of the server's status.
            stranger = Multiplexed(stub, metadata)
            await stranger.until(lambda s=stranger: s.error is not None, "the refusal")
            assert stranger.error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert not stranger.replies and hub.open_calls == 0
        call = Multiplexed(
            stub, credential(service_token)
        )  # no `authorization`: each subscription brings its own
        try:
            call.send(subscribe(1, make_token(user_id=alice)))
            await call.settled([1])
            assert call.live == {1} and not call.ended
            assert (hub.open_calls, hub.open_streams, hub.streams_of(alice)) == (1, 1, 1)

            first = (await asyncio.to_thread(publish_uploaded, redis_url, [alice]))[alice]
            await call.until(lambda: call.events[1] == [first], "the change")

            call.send(unsubscribe(1))
            await asyncio.to_thread(
                wait_until, lambda: hub.open_streams == 0, what="the subscription released"
            )
            assert hub.open_calls == 1  # the call itself goes on
            await asyncio.to_thread(publish_uploaded, redis_url, [alice])
            await asyncio.sleep(0.5)
            assert call.events[1] == [first] and call.error is None
        finally:
            await call.close()
        await asyncio.to_thread(
            wait_until, lambda: hub.open_calls == 0, what="the call to be forgotten"
        )

    run_with_processor(common_settings, scenario)


def test_two_users_on_one_call_never_see_each_others_changes(
    common_settings, service_token, make_token, redis_url
):
    """The attacker shares the victim's gateway call: their own subscriptions, a forged
    token naming the victim, an expired one, a tampered one: none of it gets the victim's
    changes, and the bad ones are refused alone."""
    victim, attacker = str(uuid.uuid4()), str(uuid.uuid4())
    genuine_victim = make_token(user_id=victim)
    header, _, signature = make_token(user_id=attacker).split(".")
    _, payload, _ = genuine_victim.split(".")
    spliced = f"{header}.{payload}.{signature}"  # the victim's claims, the attacker's signature

    async def scenario(handle, stub) -> None:
        call = Multiplexed(stub, credential(service_token))
        try:
            call.send(subscribe(1, genuine_victim))
            call.send(subscribe(2, make_token(user_id=attacker)))
            call.send(subscribe(3, foreign_key_token(victim)))
            call.send(subscribe(4, make_token(user_id=victim, exp=int(time.time()) - 60)))
            call.send(subscribe(5, spliced))
            call.send(subscribe(6, ""))
            call.send(subscribe(7, make_token(user_id="not-a-uuid")))
            await call.settled(range(1, 8))
            assert call.live == {1, 2}
            assert set(call.ended) == {3, 4, 5, 6, 7}
            for sid in (3, 4, 5, 6, 7):
                assert call.ended[sid].code == grpc.StatusCode.UNAUTHENTICATED.value[0]
            assert call.ended[4].message == "access token expired"
            assert call.ended[6].reason == "ACCESS_TOKEN_MISSING"
            assert {call.ended[s].reason for s in (3, 4, 5, 7)} == {"ACCESS_TOKEN_INVALID"}
            assert hub_of(handle).streams_of(victim) == 1

            published = await asyncio.to_thread(publish_uploaded, redis_url, [victim, attacker])
            await call.until(lambda: call.events[1] and call.events[2], "both changes")
            await asyncio.sleep(0.3)  # anything else on its way arrives too
            assert dict(call.events) == {1: [published[victim]], 2: [published[attacker]]}
            # Each change named only its user's subscription.
            for reply in call.replies:
                if reply.HasField("file_event"):
                    owner = victim if reply.file_event.file_id == published[victim] else attacker
                    assert list(reply.subscription_ids) == [1 if owner == victim else 2]
            assert call.error is None
        finally:
            await call.close()

    run_with_processor(common_settings, scenario)


def test_a_users_change_reaches_all_their_subscriptions_in_one_message(
    common_settings, service_token, make_token, redis_url
):
    user = str(uuid.uuid4())

    async def scenario(handle, stub) -> None:
        call = Multiplexed(stub, credential(service_token))
        try:
            for sid in (10, 11, 12):
                call.send(subscribe(sid, make_token(user_id=user)))
            await call.settled([10, 11, 12])
            published = (await asyncio.to_thread(publish_uploaded, redis_url, [user]))[user]
            await call.until(lambda: len(call.events) == 3, "the change on all three")
            [message] = [r for r in call.replies if r.HasField("file_event")]
            assert sorted(message.subscription_ids) == [10, 11, 12]
            assert message.file_event.file_id == published
        finally:
            await call.close()

    run_with_processor(common_settings, scenario)


def test_the_stream_cap_counts_subscriptions_and_refuses_one_alone(
    common_settings, service_token, make_token
):
    async def scenario(handle, stub) -> None:
        hub = hub_of(handle)
        call = Multiplexed(stub, credential(service_token))
        try:
            # The call takes one place of watch_max_streams=3, two subscriptions the rest.
            for sid in (1, 2, 3):
                call.send(subscribe(sid, make_token()))
            await call.settled([1, 2, 3])
            # Subscriptions are admitted concurrently: any one of the three may be the third.
            assert len(call.live) == 2 and len(call.ended) == 1
            (refused,) = call.ended.values()
            assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            assert (refused.reason, refused.message) == ("TOO_MANY_STREAMS", FULL)
            assert refused.retry_after_ms > 0
            assert hub.open_streams == 2
            # A second call is refused as a stream would be: the process is full.
            other = Multiplexed(stub, credential(service_token))
            await other.until(lambda: other.error is not None, "the refusal", timeout=10)
            assert other.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # One leaves: room for another, on the same call.
            call.send(unsubscribe(min(call.live)))
            await asyncio.to_thread(wait_until, lambda: hub.open_streams == 1, what="a place")
            call.send(subscribe(4, make_token()))
            await call.settled([4])
            assert 4 in call.live and call.error is None
        finally:
            await call.close()

    run_with_processor(common_settings, scenario, watch_max_streams=3)


def test_a_signed_out_session_ends_its_subscription_only(
    common_settings, service_token, make_token, redis_url
):
    session = str(uuid.uuid4())

    async def scenario(handle, stub) -> None:
        call = Multiplexed(stub, credential(service_token))
        try:
            call.send(subscribe(1, make_token(sid=session)))
            call.send(subscribe(2, make_token()))
            await call.settled([1, 2])
            revocations = RevokedSessions(revocation_client(redis_url), max_age_seconds=1)
            await asyncio.to_thread(revocations.revoke, session, seconds=60)
            await call.until(lambda: 1 in call.ended, "the signed-out subscription to end")
            assert call.ended[1].reason == "SESSION_REVOKED"
            assert 2 not in call.ended and call.error is None
        finally:
            await call.close()

    run_with_processor(common_settings, scenario)


def test_a_reused_subscription_id_ends_the_call(common_settings, service_token, make_token):
    """The caller's bug, not a subscriber's: its replies could not be told apart."""

    async def scenario(handle, stub) -> None:
        call = Multiplexed(stub, credential(service_token))
        try:
            call.send(subscribe(1, make_token()))
            await call.settled([1])
            call.send(subscribe(1, make_token()))
            await call.until(lambda: call.error is not None, "the call to end")
            assert call.error.code() == grpc.StatusCode.INVALID_ARGUMENT
            await asyncio.to_thread(
                wait_until, lambda: hub_of(handle).open_streams == 0, what="released"
            )
        finally:
            await call.close()

    run_with_processor(common_settings, scenario)
