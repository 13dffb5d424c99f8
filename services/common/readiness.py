"""Readiness from the dependencies: a background check of PostgreSQL and Redis whose
result the gRPC health service reports, so that probes and the gateway's /readyz see an
outage while it lasts.

Health service names (grpc.health.v1):
- "" and each of the server's services: NOT_SERVING while a dependency the process cannot
  serve without is unreachable (the readiness probe, and the gateway's /readyz, ask "").
- each dependency by name ("postgresql", "redis"): its own state, whether or not the
  process needs it to serve.
- "liveness": SERVING as long as the process answers (grpc_server.LIVENESS_SERVICE). The
  liveness probe asks it: a database outage must never get healthy processes restarted."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from grpc_health.v1 import health_pb2

if TYPE_CHECKING:
    from .settings import UrlSetting

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class Dependency:
    name: str
    check: Callable[[], None]  # raises when the dependency cannot be reached
    required: bool = True  # False: the process serves without it (degraded)


def postgresql(uri: str | UrlSetting) -> Dependency:
    """A check on a pool of its own (one connection): the service's pools may be busy
    with every worker's call, which must not read as an outage."""
    from sqlalchemy import text

    from .db import make_engine

    engine = make_engine(uri, pool_size=1)

    def check() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return Dependency("postgresql", check)


class _Pingable(Protocol):
    def ping(self) -> Any: ...


def redis(client: _Pingable, *, required: bool = True) -> Dependency:
    return Dependency("redis", client.ping, required=required)


class HealthStatuses(Protocol):
    """Where the health service's statuses are set: grpc_health's servicer of a thread-pool
    server, or grpc_aio.LoopHealth of an asyncio one."""

    def set(self, service: str, status: int) -> None: ...


class ReadinessWatch:
    """Checks each dependency every `interval` seconds, on a thread of its own, and sets
    the health statuses (module doc). Starts by checking once, before the server serves."""

    def __init__(
        self,
        servicer: HealthStatuses,
        service_names: Iterable[str],
        dependencies: list[Dependency],
        *,
        interval: float,
    ) -> None:
        self._health = servicer
        self._service_names = [*service_names, ""]
        self._dependencies = dependencies
        self._interval = interval
        self._lock = threading.Lock()  # guards _stopped against a check's late result
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._down: set[str] = set()

    def check_once(self) -> bool:
        """Checks every dependency and publishes the result; True when ready."""
        down: dict[str, Exception] = {}
        for dependency in self._dependencies:
            try:
                dependency.check()
            except Exception as exc:  # any failure means unreachable
                down[dependency.name] = exc
        ready = not any(d.required for d in self._dependencies if d.name in down)
        with self._lock:
            if self._stopped.is_set():
                return ready  # the server is stopping: it reports NOT_SERVING already
            for dependency in self._dependencies:
                self._health.set(
                    dependency.name, NOT_SERVING if dependency.name in down else SERVING
                )
            for name in self._service_names:
                self._health.set(name, SERVING if ready else NOT_SERVING)
        for name, failure in down.items():
            if name not in self._down:
                log.warning(
                    "%s is unreachable (%s)%s",
                    name,
                    type(failure).__name__,
                    "" if ready else ": not ready",
                )
        for name in self._down - down.keys():
            log.info("%s is reachable again", name)
        self._down = set(down)
        return ready

    def start(self) -> None:
        self.check_once()
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            self.check_once()

    def stop(self) -> None:
        """Returns at once: a check in progress publishes nothing once stopped."""
        with self._lock:
            self._stopped.set()
