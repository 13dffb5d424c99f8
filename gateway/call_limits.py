"""At most so many calls in flight from this gateway to one backend; the rest wait here.

A call the upload coordinator has accepted but no worker thread runs yet still costs it
~20-25 KB of gRPC's C core (the call, its metadata and message), and the gateway as much
on its side: a burst of 500 uploads at once put ~470 such calls in the coordinator's queue
behind its 32 workers, +14 MB at its peak (bench/README.md, "Memory < 150 MB"). Waiting
here instead costs a coroutine and a place in a FIFO queue, a few hundred bytes, and no
call is refused: each leaves in its turn, as it would have from the coordinator's queue.

The wait counts against the call's own timeout (the caller's deadline is what it was);
a call whose time runs out while it waits ends DEADLINE_EXCEEDED as gRPC ends it.
Only unary-unary calls are held (the upload coordinator's calls all are); health checks
use the channel itself and never wait here (a readiness probe must not queue behind a
burst)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Generic, TypeVar, cast

import grpc

from .errors import rpc_error

Request = TypeVar("Request")
Reply = TypeVar("Reply")

DEADLINE_WHILE_WAITING = "deadline exceeded while waiting to be sent to the backend"


class LimitedUnaryUnary(Generic[Request, Reply]):
    """One method's multicallable, sent only while a slot is free."""

    def __init__(
        self,
        call: grpc.aio.UnaryUnaryMultiCallable[Request, Reply],
        slots: asyncio.Semaphore,
    ) -> None:
        self._call = call
        self._slots = slots

    def __call__(
        self, request: Request, *, timeout: float | None = None, **kwargs: Any
    ) -> Coroutine[Any, Any, Reply]:
        return self._sent(request, timeout, kwargs)

    async def _sent(self, request: Request, timeout: float | None, kwargs: dict[str, Any]) -> Reply:
        if self._slots.locked():
            waited_from = time.monotonic()
            try:
                async with asyncio.timeout(timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, DEADLINE_WHILE_WAITING) from None
            if timeout is not None:
                timeout = max(timeout - (time.monotonic() - waited_from), 0.0)
        else:
            await self._slots.acquire()
        try:
            return await self._call(request, timeout=timeout, **kwargs)
        finally:
            self._slots.release()


class LimitedChannel:
    """What a generated stub is built on in place of a grpc.aio channel: its unary-unary
    methods share `limit` slots; anything else is the channel's own."""

    def __init__(self, channel: grpc.aio.Channel, limit: int) -> None:
        self._channel = channel
        self.slots = asyncio.Semaphore(limit)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> LimitedUnaryUnary[Any, Any]:
        return LimitedUnaryUnary(self._channel.unary_unary(method, *args, **kwargs), self.slots)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)

    def as_channel(self) -> grpc.aio.Channel:
        """Itself, as the type generated stubs take: they only call its methods."""
        return cast(grpc.aio.Channel, self)
