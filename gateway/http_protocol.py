"""The gateway's HTTP/1.1 connection: uvicorn's httptools protocol, plus what it lacks
against slow and oversized request heads.

uvicorn bounds idle keep-alive connections (timeout_keep_alive) and the connections it
serves (limit_concurrency, answered 503), but nothing bounds how long a client may take to
send a request's headers, nor how large they may grow: a client trickling a header a byte
at a time held its connection, and a slot of the connection limit, for ever. Here:
- a request's head must arrive within `header_timeout` of the connection opening or of the
  previous response ending, else 408 and the connection is closed;
- a head larger than `max_header_bytes` is answered 431 and the connection closed;
- the connection limit's 503 is JSON with Retry-After, as every gateway error is.
(The body's deadline is the middleware's: gateway/middleware.py.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from .deadlines import Deadlines
from .errors import HEADERS_TOO_LARGE as HEADERS_TOO_LARGE_CODE
from .errors import REQUEST_TIMEOUT, SERVER_BUSY

HEADERS_TOO_SLOW = "request headers took too long"
HEADERS_TOO_LARGE = "request headers too large"
BUSY = "the server is busy; retry shortly"
BUSY_RETRY_AFTER_SECONDS = 1


def edge_protocol(*, header_timeout: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (Config(http=...)) with these limits; one per
    server, as its deadlines belong to the server's event loop."""
    heads = Deadlines(min(1.0, header_timeout / 4), EdgeHttpProtocol.head_too_slow)
    return type(
        "EdgeHttpProtocol",
        (EdgeHttpProtocol,),
        {"header_timeout": header_timeout, "max_header_bytes": max_header_bytes, "heads": heads},
    )


class EdgeHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    max_header_bytes = 64 * 1024
    heads: Deadlines[EdgeHttpProtocol]  # connections waiting for a request's head

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = False
        self._head_bytes = 0  # received while the head is incomplete
        self._head_size = 0  # of the request line and headers parsed so far
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_received()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._awaiting_head:  # the head is still incomplete
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(431, HEADERS_TOO_LARGE, HEADERS_TOO_LARGE_CODE)

    # The parser calls these for what it already holds even once the connection is
    # refused: they ignore it.
    def on_message_begin(self) -> None:
        self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_header_bytes:
            self._refuse(431, HEADERS_TOO_LARGE, HEADERS_TOO_LARGE_CODE)
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_received()
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        # Between requests the clock runs again (a pipelined request's head is in already).
        if not pipelined and not self.transport.is_closing():
            self._await_head()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn answers its connection limit with plain text and no Retry-After.
        super()._start_asgi_task(cycle, _busy if app is service_unavailable else app)

    def _await_head(self) -> None:
        self._awaiting_head = True
        self._head_bytes = 0
        self.heads.set(self, self.header_timeout)

    def _head_received(self) -> None:
        if self._awaiting_head:
            self._awaiting_head = False
            self.heads.clear(self)

    def head_too_slow(self) -> None:
        self._awaiting_head = False
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:  # nothing asked: nothing to answer
            self.transport.close()
        else:
            self._refuse(408, HEADERS_TOO_SLOW, REQUEST_TIMEOUT)

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answers before the request reached the app (so no CORS, no request id) and
        closes the connection."""
        self._head_received()
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        body = json.dumps({"error": message, "code": code}).encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()


async def _busy(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    body = json.dumps({"error": BUSY, "code": SERVER_BUSY}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(BUSY_RETRY_AFTER_SECONDS).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
