"""The gateway's bound on calls in flight to the upload coordinator (gateway/call_limits.py):
beyond it calls wait in the gateway and leave in their turn, none refused; a call whose
deadline passes while it waits ends DEADLINE_EXCEEDED without reaching the backend. The
backend here is a gRPC server of the test's own whose one method holds every call until
the test lets them go, so that what is in flight can be counted; the wiring test builds
the gateway's real Backends."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from gateway.call_limits import LimitedChannel, LimitedUnaryUnary
from gateway.deps import Backends
from gateway.settings import GatewaySettings
from services.common.settings import load_settings

HOLD = "/dropfile.test.Held/Hold"


class HeldBackend:
    """Answers each call with its request once released; counts the calls it holds."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.received: list[bytes] = []
        self.release = asyncio.Event()
        self.changed = asyncio.Condition()

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        async with self.changed:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.received.append(request)
            self.changed.notify_all()
        await self.release.wait()
        self.in_flight -= 1
        return request

    async def until_holding(self, count: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.in_flight >= count), 10)


async def serve(backend: HeldBackend) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(backend.hold)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("dropfile.test.Held", {"Hold": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def held_method(channel: grpc.aio.Channel, limit: int) -> Any:
    return LimitedChannel(channel, limit).unary_unary(HOLD)


def test_calls_beyond_the_bound_wait_and_all_succeed_in_their_turn():
    async def main() -> None:
        backend = HeldBackend()
        server, address = await serve(backend)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                hold = held_method(channel, 3)
                calls = [
                    asyncio.create_task(hold(f"call {n}".encode(), timeout=30)) for n in range(10)
                ]
                await backend.until_holding(3)
                # Give the other seven every chance to reach the server: they must not.
                for _ in range(20):
                    await asyncio.sleep(0.01)
                assert backend.in_flight == 3
                assert len(backend.received) == 3
                backend.release.set()
                replies = await asyncio.gather(*calls)
        finally:
            await server.stop(None)
        assert replies == [f"call {n}".encode() for n in range(10)]
        assert backend.most_in_flight == 3
        assert sorted(backend.received) == sorted(replies)

    asyncio.run(main())


def test_a_call_whose_deadline_passes_while_it_waits_never_reaches_the_backend():
    async def main() -> None:
        backend = HeldBackend()
        server, address = await serve(backend)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                hold = held_method(channel, 1)
                first = asyncio.create_task(hold(b"first", timeout=30))
                await backend.until_holding(1)
                with pytest.raises(grpc.aio.AioRpcError) as waited:
                    await hold(b"second", timeout=0.2)
                assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                backend.release.set()
                assert await first == b"first"
                # The slot is free again for the next call.
                assert await hold(b"third", timeout=30) == b"third"
        finally:
            await server.stop(None)
        assert backend.received == [b"first", b"third"]

    asyncio.run(main())


def test_the_gateway_bounds_its_upload_coordinator_calls_but_not_health_checks():
    async def main() -> None:
        settings = load_settings(GatewaySettings, upload_max_calls_in_flight=5)
        backends = Backends(settings, service_token="t" * 32)
        try:
            for method in (
                backends.upload.CreateUpload,
                backends.upload.CompleteUpload,
                backends.share.CreateLink,
                backends.share_internal.ResolveLink,
            ):
                assert isinstance(method, LimitedUnaryUnary)
            slots = {id(m._slots) for m in (backends.upload.GetQuota, backends.share.ListLinks)}
            assert len(slots) == 1
            assert not isinstance(backends.health["upload"].Check, LimitedUnaryUnary)
        finally:
            await backends.close()

    asyncio.run(main())


def test_the_bound_is_at_least_one():
    with pytest.raises(SystemExit):
        load_settings(GatewaySettings, upload_max_calls_in_flight=0)
