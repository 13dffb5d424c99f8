"""The bootstrap every gRPC service shares: interceptors for request ids, authentication
and errors; the health and reflection services; graceful stop on SIGTERM.

What a call goes through is decided once, in CallRules; this module serves it on gRPC's
thread-pool server (one thread per call in progress), and grpc_aio.py on its asyncio
server (for the events service, whose calls are streams that stay open for minutes)."""

from __future__ import annotations

import hmac
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NoReturn, Protocol, TypeVar, cast

import grpc
from google.rpc.status_pb2 import Status
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from .encoded_replies import passing_encoded
from .errors import DomainError
from .gc_tuning import freeze_startup_objects
from .keys import MissingSecretError
from .logs import REQUEST_ID_HEADER, configure_logging, log_fields, request_id_var
from .memory import map_large_blocks_apart
from .metrics import GRPC_LATENCY, GRPC_REQUESTS, start_metrics_server
from .process_limits import raise_open_files_limit
from .readiness import HealthStatuses
from .rich_status import rich_status
from .settings import GrpcServiceSettings, load_settings
from .tokens import Identity, InvalidTokenError, TokenVerifier, current_identity
from .tracing import configure_tracing
from .transient import caller_gives_up_at, is_transient

log = logging.getLogger(__name__)
# One line per RPC served, with its request id: a call can be followed through every
# service it touched (the gateway's access log is the first line).
access_log = logging.getLogger("rpc.access")

# Clients' connections are closed (gracefully: calls in flight finish) after a few minutes,
# so that clients resolve the service's name again and spread over replicas added since
# (clients.GRPC_CHANNEL_OPTIONS). The grace outlasts the longest stream, a live-status
# watch (the gateway ends those after SSE_MAX_STREAM_SECONDS, 15 min by default).
CONNECTION_AGING = [
    ("grpc.max_connection_age_ms", 5 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", 20 * 60 * 1000),
]

SERVICE_TOKEN_HEADER = "x-dropfile-service-token"
# The health service name the liveness probe asks: SERVING while the process answers,
# whatever its dependencies (readiness.py: "" and the services follow them).
LIVENESS_SERVICE = "liveness"

S = TypeVar("S", bound=GrpcServiceSettings)
# A servicer method: its request and context in, its reply (or replies) out.
Behavior = Callable[[Any, grpc.ServicerContext], Any]
StreamBehavior = Callable[[Any, grpc.ServicerContext], Iterator[Any]]


def metadata_of(context: grpc.ServicerContext) -> dict[str, str]:
    """The call's text metadata (binary `-bin` entries, which no Dropfile header is, left
    out)."""
    return {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}


class _StatusOf(Protocol):
    def code(self) -> grpc.StatusCode | None: ...


def _status_set(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status the servicer set (abort, set_code), None while it set none: grpc's
    ServicerContext.code(), which its type stubs lack."""
    return cast(_StatusOf, context).code()


@dataclass
class AccessPolicy:
    """Who may call what. Methods are full names (`/pkg.Service/Method`); services are
    full service names. Anything not listed needs a user's access token."""

    public_methods: set[str] = field(default_factory=set)
    internal_services: set[str] = field(default_factory=set)
    # Calls made many times a second per client (a part recorded per part uploaded): their
    # successes are logged at DEBUG, their failures at INFO like every other call. The
    # gateway's access log still has a line for each.
    frequent_methods: set[str] = field(default_factory=set)
    # Calls that carry several users' requests, each with its own access token, which the
    # servicer verifies record by record: no `authorization` metadata is asked of them.
    per_record_token_methods: set[str] = field(default_factory=set)
    # Methods for Dropfile services only (the service credential), in a service whose other
    # methods are users'. Their servicer verifies any user token it is handed itself.
    internal_methods: set[str] = field(default_factory=set)

    def kind(self, method: str) -> str:
        service = method.lstrip("/").split("/", 1)[0]
        if method in self.public_methods or service.startswith("grpc."):
            return "public"  # health checks and reflection are open, as probes need
        if method in self.internal_methods:
            return "internal"
        if method in self.per_record_token_methods:
            return "per-record"
        if service in self.internal_services:
            return "internal"
        return "user"


def _abort(context: grpc.ServicerContext, status: Status) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status))


class Refusal(Exception):
    """A call refused before its servicer runs: the status it ends with."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status


def domain_status(exc: DomainError) -> Status:
    return rich_status(exc.code, exc.message, exc.reason, exc.retry_after)


class CallRules:
    """What every RPC goes through, whichever server runs it: the request id, the caller's
    deadline, authentication (ServiceInterceptor here, AioServiceInterceptor in
    grpc_aio.py), the mapping of failures to statuses, and its count and access-log line.
    Each method's handler is wrapped once (`_wrap`, `_wrap_stream`: the server's kind)."""

    def __init__(
        self, *, verifier: TokenVerifier, service_token: str, policy: AccessPolicy
    ) -> None:
        self._verifier = verifier
        self._service_token = service_token.encode()
        self._policy = policy
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def _handler_for(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any] | None
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """`handler` wrapped, once per method (unknown methods are not kept: callers
        choose the names)."""
        if handler is None:
            return None
        return self._wrapped.setdefault(method, self._wrap_handler(handler, method))

    def _wrap_handler(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        kind = self._policy.kind(method)
        if handler.unary_unary:
            # A servicer may return an EncodedReply (a reply of many megabytes).
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, method, kind),
                request_deserializer=handler.request_deserializer,
                response_serializer=passing_encoded(handler.response_serializer),
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, kind),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            # The same rules: the wrapper hands the request iterator on as it would a request.
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method, kind),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap(self, behavior: Any, method: str, kind: str) -> Any:
        raise NotImplementedError

    def _wrap_stream(self, behavior: Any, method: str, kind: str) -> Any:
        raise NotImplementedError

    def _begin(self, metadata: dict[str, str], remaining: float | None, kind: str) -> str | None:
        """Sets the call's request id and deadline; checks its service credential. The
        access token still to verify (`_identify`) for a user's call, else None. Raises
        Refusal."""
        request_id_var.set(metadata.get(REQUEST_ID_HEADER, ""))
        current_identity.set(None)
        # remaining None: the caller set no deadline
        caller_gives_up_at.set(None if remaining is None else time.monotonic() + remaining)
        if kind in ("public", "per-record"):
            return None
        if kind == "internal":
            presented = metadata.get(SERVICE_TOKEN_HEADER, "").encode()
            if not presented or not hmac.compare_digest(presented, self._service_token):
                raise Refusal(
                    rich_status(
                        grpc.StatusCode.PERMISSION_DENIED,
                        "this RPC is for Dropfile services only",
                        "SERVICE_CREDENTIAL_REQUIRED",
                    )
                )
            return None
        authorization = metadata.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Refusal(
                rich_status(
                    grpc.StatusCode.UNAUTHENTICATED, "missing access token", "ACCESS_TOKEN_MISSING"
                )
            )
        return token.strip()

    def _identify(self, token: str) -> Identity:
        """The token's identity; Refusal when it is not good (or whether its session was
        signed out cannot be known: Redis)."""
        try:
            return self._verifier.verify(token)
        except InvalidTokenError as exc:
            raise Refusal(
                rich_status(grpc.StatusCode.UNAUTHENTICATED, str(exc), "ACCESS_TOKEN_INVALID")
            ) from None
        except DomainError as exc:
            raise Refusal(domain_status(exc)) from None

    def _failure(self, method: str, exc: Exception) -> Status:
        """What a servicer's failure is answered: its DomainError's status, UNAVAILABLE for
        a dependency's outage, INTERNAL (logged) for anything else."""
        if isinstance(exc, DomainError):
            return domain_status(exc)
        if is_transient(exc):
            log.warning("dependency unavailable in %s: %s", method, type(exc).__name__)
            return rich_status(
                grpc.StatusCode.UNAVAILABLE,
                "a backend is temporarily unavailable; retry",
                "BACKEND_UNAVAILABLE",
                1.0,
            )
        log.exception("unexpected error in %s", method)
        return rich_status(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL")

    def _outcome(self, method: str) -> Callable[[grpc.StatusCode, float], None]:
        """What records a call's end: its count by status, and one access-log line (DEBUG
        for health checks and the policy's frequent methods when they succeed)."""
        service, _, name = method.lstrip("/").partition("/")
        # Probes call the health service every few seconds: DEBUG only.
        quiet = service.startswith("grpc.")
        ok_level = (
            logging.DEBUG if quiet or method in self._policy.frequent_methods else logging.INFO
        )
        other_level = logging.DEBUG if quiet else logging.INFO

        def record(code: grpc.StatusCode, elapsed: float) -> None:
            GRPC_REQUESTS.labels(service, name, code.name).inc()
            level = ok_level if code is grpc.StatusCode.OK else other_level
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    "%s %s",
                    method,
                    code.name,
                    extra=log_fields(
                        method=method, code=code.name, duration_ms=round(elapsed * 1000, 1)
                    ),
                )

        return record

    def _latency(self, method: str) -> Any:
        service, _, name = method.lstrip("/").partition("/")
        return GRPC_LATENCY.labels(service, name)


class ServiceInterceptor(CallRules, grpc.ServerInterceptor):
    """Sets the request id, authenticates the caller and maps errors, for every RPC of a
    thread-pool server."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        # gRPC asks on every call; a method's handler never changes once the server runs.
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._handler_for(method, continuation(handler_call_details))
        return wrapped

    def _enter(self, context: grpc.ServicerContext, kind: str) -> None:
        try:
            token = self._begin(metadata_of(context), context.time_remaining(), kind)
            if token is not None:
                current_identity.set(self._identify(token))
        except Refusal as refusal:
            _abort(context, refusal.status)

    def _fail(self, context: grpc.ServicerContext, method: str, exc: Exception) -> NoReturn:
        _abort(context, self._failure(method, exc))

    def _wrap(self, behavior: Behavior, method: str, kind: str) -> Behavior:
        latency = self._latency(method)
        record = self._outcome(method)

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                self._enter(context, kind)
                try:
                    return behavior(request, context)
                except Exception as exc:  # any failure: mapped to a status, never leaked
                    if _status_set(context) is not None and not isinstance(exc, DomainError):
                        raise  # context.abort() already set the status
                    self._fail(context, method, exc)
            finally:
                elapsed = time.perf_counter() - started
                latency.observe(elapsed)
                record(_status_set(context) or grpc.StatusCode.OK, elapsed)

        return wrapped

    def _wrap_stream(self, behavior: StreamBehavior, method: str, kind: str) -> StreamBehavior:
        """As _wrap, for server streams (live status: minutes long), whose duration is not
        a latency: counted and logged when they end, not observed in the histogram."""
        record = self._outcome(method)

        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            try:
                self._enter(context, kind)
                try:
                    yield from behavior(request, context)
                except Exception as exc:  # as in _wrap
                    if _status_set(context) is not None and not isinstance(exc, DomainError):
                        raise
                    self._fail(context, method, exc)
            finally:
                record(
                    _status_set(context) or _ended_by_caller(context) or grpc.StatusCode.OK,
                    time.perf_counter() - started,
                )

        return wrapped


def _ended_by_caller(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """Why a stream the servicer ended without a status is over, when the caller ended it:
    its deadline passed, or it hung up."""
    if context.is_active():
        return None
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


class Worker(Protocol):
    """A background loop that lives as long as its server (a queue poller, a reconciler)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(kw_only=True)
class BaseServerHandle:
    """A built server, whichever kind: its port, health statuses and workers."""

    port: int
    health: HealthStatuses
    service_names: list[str]
    workers: list[Worker] = field(default_factory=list)
    # Sets the health statuses from the dependencies (readiness.py); None: always SERVING.
    readiness: Worker | None = None

    def _enter_service(self) -> None:
        """Before the server starts: the readiness checks (one at once)."""
        if self.readiness is not None:
            self.readiness.start()

    def _leave_service(self) -> None:
        """Before the server stops: NOT_SERVING everywhere, workers stopped."""
        if self.readiness is not None:
            self.readiness.stop()
        for name in self.service_names + [""]:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for worker in self.workers:
            worker.stop()


class Serving(Protocol):
    """What serve() runs: a server handle of either kind."""

    port: int

    def start(self) -> None: ...
    def stop(self, grace: float | None = None) -> threading.Event: ...


@dataclass(kw_only=True)
class ServerHandle(BaseServerHandle):
    server: grpc.Server

    def start(self) -> None:
        self._enter_service()
        self.server.start()
        for worker in self.workers:
            worker.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        self._leave_service()
        return self.server.stop(grace)


def server_options() -> list[tuple[str, Any]]:
    return [("grpc.so_reuseport", 0), *CONNECTION_AGING]


def add_common_services(
    server: grpc.Server | grpc.aio.Server,
    names: list[str],
    health_servicer: health_pb2_grpc.HealthServicer,
    statuses: HealthStatuses,
    *,
    host: str,
    port: int,
) -> int:
    """Adds health and reflection to a server whose services are `names`, all SERVING,
    and listens on host:port; the port bound (port 0 picks a free one)."""
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in names + ["", LIVENESS_SERVICE]:
        statuses.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        names
        + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (in use?)")
    return bound


def build_server(
    *,
    host: str,
    port: int,
    max_workers: int,
    verifier: TokenVerifier,
    service_token: str,
    policy: AccessPolicy,
    register: Callable[[grpc.Server], Iterable[str]],
) -> ServerHandle:
    """Creates a server with every Dropfile service's common parts. `register` adds the
    servicers and returns their full service names. Port 0 picks a free port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        interceptors=[
            ServiceInterceptor(verifier=verifier, service_token=service_token, policy=policy)
        ],
        options=server_options(),
    )
    names = list(register(server))
    health_servicer = health.HealthServicer()
    bound = add_common_services(
        server, names, health_servicer, health_servicer, host=host, port=port
    )
    return ServerHandle(server=server, port=bound, health=health_servicer, service_names=names)


def serve(handle: Serving, *, grace: float) -> None:
    """Runs until SIGTERM or SIGINT, then reports NOT_SERVING and lets in-flight RPCs
    finish within `grace` seconds."""
    stopping = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    handle.start()
    log.info("serving gRPC on port %d", handle.port)
    stopping.wait()
    handle.stop(grace).wait()
    log.info("stopped")


def run_service(name: str, settings_cls: type[S], create_server: Callable[[S], Serving]) -> None:
    """The `main()` of every gRPC service: settings, logging, server, serve until signal."""
    map_large_blocks_apart()
    raise_open_files_limit()
    settings = load_settings(settings_cls)
    configure_logging(name, settings.log_level)
    configure_tracing(name, settings)  # before the server and channels exist
    try:
        handle = create_server(settings)
        start_metrics_server(settings.metrics_port, settings.metrics_host)
    except (MissingSecretError, OSError) as exc:
        print(f"{name}: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    freeze_startup_objects()  # built: out of the collector's full passes
    serve(handle, grace=settings.shutdown_grace_seconds)
