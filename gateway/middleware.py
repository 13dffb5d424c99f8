"""The gateway's one ASGI middleware, around every HTTP request: its request id (taken
from the caller's X-Request-ID when it is sane, made up otherwise; set for logging,
passed to backends, echoed in the response), the limits on the request body's size and on
the time it takes to arrive (408, and the connection is closed), the last-resort answer
to an unhandled error, its metrics and its access-log line.

One middleware, not one per concern: each ASGI layer wraps `send` once more for every
request, and the layers together cost more of the gateway's CPU than the route itself."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.logs import REQUEST_ID_HEADER, log_fields, request_id_var

from .deadlines import Deadlines
from .errors import (
    INTERNAL,
    INTERNAL_ERROR,
    REQUEST_TIMEOUT,
    REQUEST_TOO_LARGE,
    EdgeHTTPException,
    error_response,
)
from .metrics import observe_request

BODY_TOO_LARGE = "request body too large"
BODY_TOO_SLOW = "request body took too long to arrive"
# Closes the connection after the 408: the rest of a trickled body is not waited for.
_CLOSE = {"Connection": "close"}

log = logging.getLogger("gateway.access")
errors_log = logging.getLogger("gateway.errors")

# Probes hit these every few seconds: their lines would drown the rest at INFO.
_QUIET_PATHS = {"/healthz", "/readyz"}
# Request ids end up in logs and gRPC metadata: short, printable, no separators.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_REQUEST_ID_KEY = REQUEST_ID_HEADER.encode()
_REQUEST_ID_HEADER_NAME = REQUEST_ID_HEADER.lower().encode()


class BodyDeadlines:
    """Ends body reads that outlast their request's deadline: 408 and Connection: close."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._reading: Deadlines[asyncio.Task[Any]] = Deadlines(min(1.0, timeout / 4), self._expire)
        self._expired: set[asyncio.Task[Any]] = set()

    async def receive(self, receive: Receive, deadline: float) -> Message:
        task = asyncio.current_task()
        assert task is not None  # always, inside a request
        self._reading.set_at(task, deadline)
        try:
            return await receive()
        except asyncio.CancelledError:
            # _expire's cancel lands here: a task is only listed while it waits above.
            if task not in self._expired:
                raise
            self._expired.discard(task)
            task.uncancel()
            raise EdgeHTTPException(
                408, BODY_TOO_SLOW, code=REQUEST_TIMEOUT, headers=_CLOSE
            ) from None
        finally:
            self._reading.clear(task)

    def _expire(self, task: asyncio.Task[Any]) -> None:
        self._expired.add(task)
        task.cancel()


def request_id_of(scope: Scope) -> str:
    """The request id EdgeMiddleware chose (empty outside a request)."""
    request_id: str = scope.get("state", {}).get("request_id", "")
    return request_id


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, body_timeout: float | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_deadlines = None if body_timeout is None else BodyDeadlines(body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        presented = headers.get(_REQUEST_ID_KEY, b"").decode("latin-1")
        request_id = presented if _SANE_REQUEST_ID.fullmatch(presented) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        request_id_var.set(request_id)
        encoded_id = request_id.encode("latin-1")
        started = time.perf_counter()
        status = 0
        received = 0
        deadlines = self.body_deadlines
        body_done = deadlines is None
        body_deadline = (
            0.0 if deadlines is None else asyncio.get_running_loop().time() + deadlines.timeout
        )

        async def edge_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (_REQUEST_ID_HEADER_NAME, encoded_id),
                ]
            await send(message)

        async def limited_receive() -> Message:
            nonlocal received, body_done
            # Read (or no deadline): e.g. a streaming response waiting for the client to hang up.
            if body_done or deadlines is None:
                return await receive()
            message = await deadlines.receive(receive, body_deadline)  # a slowloris's trickle
            body_done = not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                # FastAPI passes HTTPExceptions from body reading on to errors.py's handler.
                raise EdgeHTTPException(413, BODY_TOO_LARGE, code=REQUEST_TOO_LARGE)
            return message

        try:
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                # Refused at once when Content-Length says so, else while a route reads.
                refusal = error_response(scope["path"], 413, BODY_TOO_LARGE, code=REQUEST_TOO_LARGE)
                await refusal(scope, receive, edge_send)
            else:
                await self.app(scope, limited_receive, edge_send)
        except Exception:  # noqa: BLE001 - logged here, never shown to the client
            errors_log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            # Once the response has started it is too late for a clean answer: the server
            # closes the connection.
            if status == 0:
                failure = error_response(scope["path"], 500, INTERNAL_ERROR, code=INTERNAL)
                await failure(scope, receive, edge_send)
        finally:
            elapsed = time.perf_counter() - started
            # What the client sees if the app failed before answering: 500.
            observe_request(scope, status or 500, elapsed)
            level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra=log_fields(
                        method=scope["method"],
                        path=scope["path"],
                        status=status,
                        duration_ms=round(elapsed * 1000, 1),
                    ),
                )
