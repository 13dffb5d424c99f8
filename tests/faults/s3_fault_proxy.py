"""A reverse proxy in front of an S3 server (moto) that answers some requests itself, as
S3 does when it is overloaded: 503 SlowDown (or 500 InternalError). A process is pointed
at it as its S3 endpoint; everything else is forwarded as it came (moto does not check
the Host a signature covers). Listens on 127.0.0.1 only."""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

ERROR_BODIES = {
    503: b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>",
    500: b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>",
}


@dataclass
class Rule:
    method: str
    target: re.Pattern  # searched in the path and query
    status: int
    remaining: int | None  # None: until cleared


class S3FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self.injected: list[tuple[str, str, int]] = []  # (method, target, status)
        self.forwarded: list[tuple[str, str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = proxy._injected_status(self.command, self.path)
                if status is not None:
                    self._send(status, [("Content-Type", "application/xml")], ERROR_BODIES[status])
                    return
                connection = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    reply = response.read()
                    with proxy._lock:
                        proxy.forwarded.append((self.command, self.path, response.status))
                    self._send(response.status, response.getheaders(), reply)
                finally:
                    connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

            def _send(self, status, headers, body):
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="s3-fault-proxy"
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(
        self, method: str, target: str, *, status: int = 503, times: int | None = None
    ) -> None:
        """Requests with `method` whose path and query match `target` (a regex) are
        answered `status` (S3's error body), the next `times` of them or until clear()."""
        with self._lock:
            self._rules.append(Rule(method, re.compile(target), status, times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def count(self, method: str, target: str, *, injected: bool) -> int:
        pattern = re.compile(target)
        with self._lock:
            seen = self.injected if injected else self.forwarded
            return sum(1 for m, t, _ in seen if m == method and pattern.search(t))

    def _injected_status(self, method: str, target: str) -> int | None:
        with self._lock:
            for rule in self._rules:
                if rule.method == method and rule.target.search(target) and rule.remaining != 0:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    self.injected.append((method, target, rule.status))
                    return rule.status
        return None
