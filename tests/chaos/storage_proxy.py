"""A reverse proxy in front of the store that fails a share of part PUTs and downloads.

The upload coordinator signs its URLs for this proxy (S3_PUBLIC_ENDPOINT_URL), and the proxy
forwards each request with its Host header intact, so storage checks the same signature the
client was given. A failed request is answered `503 SlowDown` before any byte is forwarded
(as S3 does under load), or its connection is dropped half-way through the answer: both
are what a client meets on a real network."""

from __future__ import annotations

import http.client
import random
import threading
from dataclasses import dataclass, field
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
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
CHUNK = 256 * 1024


@dataclass
class Counts:
    forwarded: int = 0
    refused: int = 0  # answered 503 SlowDown
    dropped: int = 0  # connection closed in the middle of the answer
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):  # a client that hung up: not news
        pass


class StorageFaultProxy:
    def __init__(self, upstream: str, *, failure_rate: float, seed: int = 7) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self.counts = Counts()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> StorageFaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _fault(self, method: str, query: str) -> str | None:
        """Only transfers fail: part PUTs and GETs of objects (not ListParts and the like,
        which the services make straight to storage anyway)."""
        if method not in ("PUT", "GET") or (method == "PUT" and "partNumber=" not in query):
            return None
        with self._random_lock:
            roll = self._random.random()
        if roll >= self.failure_rate:
            return None
        return "refuse" if roll < self.failure_rate / 2 else "drop"

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fault = proxy._fault(self.command, urlsplit(self.path).query)
                body = self.rfile.read(length) if length else b""
                if fault == "refuse":
                    proxy.counts.add("refused")
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=120)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    if fault == "drop" and self.command == "PUT":
                        # Stored, but the client never hears so: it must send it again.
                        answer.read()
                        proxy.counts.add("dropped")
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in _HOP_BY_HOP:
                            self.send_header(key, value)
                    self.end_headers()
                    sent = 0
                    total = int(answer.getheader("Content-Length") or 0)
                    while chunk := answer.read(CHUNK):
                        if fault == "drop" and sent + len(chunk) >= total // 2:
                            proxy.counts.add("dropped")
                            self.close_connection = True
                            self.wfile.write(chunk[: max(0, total // 2 - sent)])
                            self.connection.shutdown(2)
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)
                    proxy.counts.add("forwarded")
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
