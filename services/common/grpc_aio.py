"""The common bootstrap (grpc_server.py) on gRPC's asyncio server, for a service whose
calls are long streams: the events service's WatchFileEvents, thousands at once in one
process, each a coroutine instead of a thread (and its SubscribeFileEvents, one per gateway
carrying thousands of subscriptions).

The same rules as every service (grpc_server.CallRules: request id, authentication with
revoked sessions, errors mapped to statuses with ErrorInfo and RetryInfo, counts and the
access log), the same health, readiness and reflection, the same graceful stop. Every
handler on this server is `async` (the servicer's, grpc_health's and grpc_reflection's
asyncio variants); the server's event loop runs in a thread of its own, so the handle
starts and stops like a thread-pool server's (`serve()`, the tests) and the service's
other workers (queue poller, reconciler) keep their threads.

Verifying an access token may ask Redis whether its session was signed out (a blocking
call): it runs in the loop's default executor, never on the loop itself."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import grpc
from google.rpc.status_pb2 import Status
from grpc_health.v1 import health
from grpc_status import rpc_status

from .errors import DomainError
from .grpc_server import (
    AccessPolicy,
    BaseServerHandle,
    CallRules,
    Refusal,
    add_common_services,
    server_options,
)
from .tokens import TokenVerifier, current_identity

log = logging.getLogger(__name__)

AioContext = grpc.aio.ServicerContext[Any, Any]
AioBehavior = Callable[[Any, AioContext], Awaitable[Any]]
AioStreamBehavior = Callable[[Any, AioContext], AsyncIterator[Any]]
# How long start() waits for the loop to start the server.
START_TIMEOUT_SECONDS = 30.0


async def _abort(context: AioContext, status: Status) -> NoReturn:
    await context.abort_with_status(rpc_status.to_status(status))


def _metadata_of(context: AioContext) -> dict[str, str]:
    return {
        key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)
    }


def _ended_by_caller(context: AioContext) -> grpc.StatusCode:
    """Why a cancelled call is over: its deadline passed, or its caller hung up."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class AioServiceInterceptor(CallRules, grpc.aio.ServerInterceptor):
    """ServiceInterceptor's rules for the asyncio server's (async) handlers."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._handler_for(method, await continuation(handler_call_details))
        return wrapped

    async def _enter(self, context: AioContext, kind: str) -> None:
        try:
            token = self._begin(_metadata_of(context), context.time_remaining(), kind)
            if token is not None:
                loop = asyncio.get_running_loop()
                current_identity.set(await loop.run_in_executor(None, self._identify, token))
        except Refusal as refusal:
            await _abort(context, refusal.status)

    def _wrap(self, behavior: Any, method: str, kind: str) -> AioBehavior:
        _require_async(behavior, method)
        latency = self._latency(method)
        record = self._outcome(method)

        async def wrapped(request: Any, context: AioContext) -> Any:
            started = time.perf_counter()
            ended: grpc.StatusCode | None = None
            try:
                await self._enter(context, kind)
                try:
                    return await behavior(request, context)
                except Exception as exc:  # any failure: mapped to a status, never leaked
                    if context.code() is not None and not isinstance(exc, DomainError):
                        raise  # context.abort() already set the status
                    await _abort(context, self._failure(method, exc))
            except asyncio.CancelledError:
                ended = _ended_by_caller(context)
                raise
            finally:
                elapsed = time.perf_counter() - started
                latency.observe(elapsed)
                record(ended or context.code() or grpc.StatusCode.OK, elapsed)

        return wrapped

    def _wrap_stream(self, behavior: Any, method: str, kind: str) -> AioStreamBehavior:
        """As _wrap, for server streams, counted and logged when they end (ServiceInterceptor
        ._wrap_stream)."""
        _require_async(behavior, method)
        record = self._outcome(method)

        async def wrapped(request: Any, context: AioContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            ended: grpc.StatusCode | None = None
            try:
                await self._enter(context, kind)
                try:
                    async for reply in behavior(request, context):
                        yield reply
                except Exception as exc:  # as in _wrap
                    if context.code() is not None and not isinstance(exc, DomainError):
                        raise
                    await _abort(context, self._failure(method, exc))
            except (asyncio.CancelledError, GeneratorExit):
                ended = _ended_by_caller(context)
                raise
            finally:
                record(ended or context.code() or grpc.StatusCode.OK, time.perf_counter() - started)

        return wrapped


def _require_async(behavior: Any, method: str) -> None:
    import inspect

    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        raise TypeError(f"{method}: the asyncio server serves async handlers only")


class LoopWorker(Protocol):
    """A background task on the server's event loop (the events service's status hub)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class LoopHealth:
    """The asyncio health servicer's statuses, settable from any thread (readiness checks
    run in one): each change is applied on the loop, in order."""

    def __init__(self, servicer: health.aio.HealthServicer, loop: asyncio.AbstractEventLoop):
        self._servicer = servicer
        self._loop = loop

    def set(self, service: str, status: int) -> None:
        def apply() -> None:
            self._loop.create_task(self._servicer.set(service, status))

        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(apply)


def _run_loop(loop: asyncio.AbstractEventLoop, stopped: threading.Event) -> None:
    """The server's thread: runs the loop until stopped, then ends what is left on it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
        stopped.set()


@dataclass(kw_only=True)
class AioServerHandle(BaseServerHandle):
    """An asyncio server and the thread running its loop (from the moment it is built:
    gRPC's asyncio objects belong to the loop they are made on). `loop_workers` start on
    the loop before the server and stop first (open streams end at once instead of
    holding the graceful stop)."""

    server: grpc.aio.Server
    loop: asyncio.AbstractEventLoop
    stopped: threading.Event
    loop_workers: list[LoopWorker] = field(default_factory=list)

    def on_loop(self, coroutine: Awaitable[Any], timeout: float = START_TIMEOUT_SECONDS) -> Any:
        """Runs a coroutine on the server's loop from another thread; its result."""

        async def run() -> Any:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def start(self) -> None:
        self._enter_service()
        self.on_loop(self._start())
        for worker in self.workers:
            worker.start()

    async def _start(self) -> None:
        for worker in self.loop_workers:
            await worker.start()
        await self.server.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        """NOT_SERVING, workers stopped, then the server stops: calls in progress get
        `grace` seconds (None: at once) to finish; the event is set once it has stopped."""
        if self.loop.is_closed():
            return self.stopped
        self._leave_service()

        async def stop_serving() -> None:
            try:
                for worker in self.loop_workers:
                    await worker.stop()
                await self.server.stop(grace)
            except Exception:
                log.exception("stopping the server failed")
            finally:
                asyncio.get_running_loop().stop()

        asyncio.run_coroutine_threadsafe(stop_serving(), self.loop)
        return self.stopped


def build_aio_server(
    *,
    host: str,
    port: int,
    verifier: TokenVerifier,
    service_token: str,
    policy: AccessPolicy,
    register: Callable[[grpc.aio.Server], Iterable[str]],
) -> AioServerHandle:
    """build_server()'s asyncio twin: `register` adds async servicers and returns their
    full service names (it runs on the server's loop). Its loop's thread starts here."""
    loop = asyncio.new_event_loop()
    stopped = threading.Event()
    threading.Thread(target=_run_loop, args=(loop, stopped), name="grpc-aio", daemon=True).start()

    async def assemble() -> AioServerHandle:
        server = grpc.aio.server(
            interceptors=[
                AioServiceInterceptor(verifier=verifier, service_token=service_token, policy=policy)
            ],
            options=server_options(),
        )
        names = list(register(server))
        health_servicer = health.aio.HealthServicer()
        statuses = LoopHealth(health_servicer, loop)
        bound = add_common_services(server, names, health_servicer, statuses, host=host, port=port)
        return AioServerHandle(
            server=server,
            loop=loop,
            stopped=stopped,
            port=bound,
            health=statuses,
            service_names=names,
        )

    try:
        return asyncio.run_coroutine_threadsafe(assemble(), loop).result(START_TIMEOUT_SECONDS)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        raise
