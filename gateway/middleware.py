"""ASGI middleware of the gateway: the request id every request carries (taken from the
caller's X-Request-ID when it is sane, made up otherwise; set for logging, passed to
backends, echoed in the response) with one access-log line per request, and the limit on
request body size."""
from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.logs import REQUEST_ID_HEADER, log_fields, request_id_var

from .errors import error_response

BODY_TOO_LARGE = "request body too large"

log = logging.getLogger("gateway.access")

# Probes hit these every few seconds: their lines would drown the rest at INFO.
_QUIET_PATHS = {"/healthz", "/readyz"}
# Request ids end up in logs and gRPC metadata: short, printable, no separators.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_of(scope: Scope) -> str:
    """The request id RequestIdMiddleware chose (empty outside a request)."""
    return scope.get("state", {}).get("request_id", "")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = presented if _SANE_REQUEST_ID.fullmatch(presented) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        request_id_var.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
            log.log(level, "%s %s %d", scope["method"], scope["path"], status, extra=log_fields(
                method=scope["method"], path=scope["path"], status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1)))


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413: at once when Content-Length says
    so, else as soon as the streamed body grows past it (while a route reads it)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(scope["path"], 413, BODY_TOO_LARGE)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI passes HTTPExceptions from body reading on to errors.py's handler.
                raise HTTPException(413, BODY_TOO_LARGE)
            return message

        await self.app(scope, limited_receive, send)
