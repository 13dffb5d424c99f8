"""An HTTP proxy in front of the test S3 server that holds chosen requests: a race test
points a coordinator (or a reaper) at it and stops one side at a known point of its
conversation with storage, e.g. right after storage completed a multipart upload and
before the coordinator hears of it, then lets it go. Every other request passes straight
through. Real HTTP on 127.0.0.1 both ways; nothing in the code under test is replaced.

    gate = StorageGate(moto_endpoint).start()
    with gate.hold("POST", "uploadId=", after_forwarding=True) as held:
        ...start the call in a thread...
        held.wait_arrived()       # storage has done it; the caller is waiting
        ...the other side acts...
    # leaving the block releases it (held.release() does it earlier)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# Headers of one hop only, or that httpx sets again itself.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "expect",
    "content-length",
    "host",
    "proxy-connection",
    "te",
    "upgrade",
    "content-encoding",
}
HOLD_TIMEOUT_SECONDS = 60


@dataclass
class Hold:
    method: str
    query_part: str
    after_forwarding: bool
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    count: int = 0  # requests that matched

    def matches(self, method: str, path: str) -> bool:
        query = path.partition("?")[2]
        return method == self.method and self.query_part in query

    def wait_arrived(self, timeout: float = 30) -> None:
        assert self.arrived.wait(timeout), (
            f"no {self.method} ...?{self.query_part} request reached storage"
        )

    def release(self) -> None:
        self.released.set()


class StorageGate:
    def __init__(self, target: str) -> None:
        self._target = target.rstrip("/")
        self._holds: list[Hold] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=120)
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for botocore

            def _relay(self) -> None:
                gate._relay(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> StorageGate:
        threading.Thread(
            target=self._server.serve_forever, name="storage-gate", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        with self._lock:
            for hold in self._holds:
                hold.release()
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    @contextmanager
    def hold(self, method: str, query_part: str, *, after_forwarding: bool) -> Iterator[Hold]:
        """Holds the `method` requests whose query contains `query_part` until released
        (at the latest when the block ends): before they reach storage, or
        `after_forwarding`, once storage answered and before the caller hears it."""
        hold = Hold(method, query_part, after_forwarding)
        with self._lock:
            self._holds.append(hold)
        try:
            yield hold
        finally:
            hold.release()
            with self._lock:
                self._holds.remove(hold)

    def _matching(self, method: str, path: str) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if hold.matches(method, path):
                    hold.count += 1
                    return hold
        return None

    @staticmethod
    def _wait(hold: Hold) -> None:
        hold.arrived.set()
        if not hold.released.wait(HOLD_TIMEOUT_SECONDS):
            raise TimeoutError("a held storage request was never released")

    def _relay(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        hold = self._matching(method, path)
        if hold is not None and not hold.after_forwarding:
            self._wait(hold)
        headers = [
            (name, value)
            for name, value in handler.headers.items()
            if name.lower() not in _HOP_BY_HOP
        ]
        upstream = self._http.request(method, self._target + path, headers=headers, content=body)
        if hold is not None and hold.after_forwarding:
            self._wait(hold)
        content = upstream.content
        handler.send_response(upstream.status_code)
        for name, value in upstream.headers.multi_items():
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        # HEAD answers carry the object's length, and no body.
        handler.send_header(
            "Content-Length",
            upstream.headers.get("Content-Length", "0") if method == "HEAD" else str(len(content)),
        )
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(content)
