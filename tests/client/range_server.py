"""A real HTTP server on 127.0.0.1 that serves one file the way S3 serves a presigned GET
(ranges answered 206 with Content-Range), and can misbehave on purpose: ignore Range,
answer 200 after some 206s, claim another size, refuse a URL as expired, fail a range's
first attempts, cut a body short, or hold ranges until released. It logs every request,
so tests can see what the client asked for."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EXPIRED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)
UNAVAILABLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


@dataclass(frozen=True)
class Request:
    path: str
    range: tuple[int, int] | None  # (first, last) asked for, or None for the whole file
    status: int


@dataclass
class Behaviour:
    ignore_range: bool = False  # always the whole file, 200
    whole_file_after: int | None = None  # ranged requests after this many: 200, whole
    claimed_size: int | None = None  # the total announced in Content-Range
    expired_paths: set[str] = field(default_factory=set)  # answered 403 "expired"
    # First byte of a range -> how many of its first attempts are answered 503.
    unavailable: dict[int, int] = field(default_factory=dict)
    # First byte of a range -> how many of its first attempts send half the body then close.
    cut_short: dict[int, int] = field(default_factory=dict)
    # Ranged requests not starting at 0 wait for this event before being answered.
    hold: threading.Event | None = None
    # 503s are answered only once this many requests are being held.
    fail_when_held: int = 0


class RangeServer:
    def __init__(self, data: bytes, behaviour: Behaviour | None = None) -> None:
        self.data = data
        self.behaviour = behaviour or Behaviour()
        self.requests: list[Request] = []
        self.held = 0  # requests being held now
        self._lock = threading.Lock()
        self._held_changed = threading.Condition(self._lock)
        self._ranged_count = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            daemon=True,
            kwargs={"poll_interval": 0.05},
            name="range-server",
        )

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.behaviour.hold:
            self.behaviour.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str = "/file") -> str:
        return f"http://127.0.0.1:{self._server.server_port}{path}?X-Amz-Signature=abc"

    def ranges(self, status: int | None = None) -> list[tuple[int, int] | None]:
        return [r.range for r in self.requests if status is None or r.status == status]

    def _log(self, path: str, asked: tuple[int, int] | None, status: int) -> None:
        with self._lock:
            self.requests.append(Request(path, asked, status))

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                b = server.behaviour
                path = self.path.split("?", 1)[0]
                match = _RANGE.match(self.headers.get("Range", ""))
                asked = (int(match.group(1)), int(match.group(2))) if match else None
                if path in b.expired_paths:
                    server._log(path, asked, 403)
                    return self._send(403, EXPIRED_BODY, {"Content-Type": "application/xml"})
                with server._lock:
                    if asked:
                        server._ranged_count += 1
                    ranged_count = server._ranged_count
                    first = asked[0] if asked else 0
                    failing = b.unavailable.get(first, 0)
                    if failing:
                        b.unavailable[first] = failing - 1
                    cutting = b.cut_short.get(first, 0)
                    if cutting:
                        b.cut_short[first] = cutting - 1
                if failing:
                    with server._held_changed:
                        server._held_changed.wait_for(
                            lambda: server.held >= b.fail_when_held, timeout=30
                        )
                    server._log(path, asked, 503)
                    return self._send(503, UNAVAILABLE_BODY, {"Content-Type": "application/xml"})
                if asked and first and b.hold:
                    with server._held_changed:
                        server.held += 1
                        server._held_changed.notify_all()
                    b.hold.wait()
                    with server._held_changed:
                        server.held -= 1
                whole = (
                    not asked
                    or b.ignore_range
                    or (b.whole_file_after is not None and ranged_count > b.whole_file_after)
                )
                if whole:
                    server._log(path, asked, 200)
                    return self._send(200, server.data, {}, cut=cutting)
                size = len(server.data)
                body = server.data[asked[0] : asked[1] + 1]
                total = b.claimed_size if b.claimed_size is not None else size
                server._log(path, asked, 206)
                self._send(
                    206,
                    body,
                    {"Content-Range": f"bytes {asked[0]}-{asked[1]}/{total}"},
                    cut=cutting,
                )

            def _send(
                self, status: int, body: bytes, headers: dict[str, str], *, cut: int = 0
            ) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                if cut:
                    self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(body[: len(body) // 2] if cut else body)
                except ConnectionError:
                    pass  # the client gave up: expected in the failure tests
                if cut:
                    self.close_connection = True

        return Handler
