"""A real HTTP forward proxy for the client tests, that can misbehave on purpose.

The CLI is pointed at it the standard way (HTTP_PROXY), so every request it makes, to the
gateway and to storage, goes through here as an absolute-form request and is forwarded with
its Host header intact (presigned URLs are signed for moto's host). Rules act on part PUTs
(requests with a `partNumber` query): answer 503 a few times, answer 403 "Request has
expired" until the client fetched fresh URLs, hold a PUT until released, or flip a bit of
the bytes forwarded (corruption on the way). Faults (`fault`) act on any call, gateway's
or storage's: an error status (with or without Retry-After), a connection dropped before
forwarding, an answer lost after the server acted on the request, or a stall that outlasts
the client's timeout. Everything forwarded is logged, with the checksum header a PUT
carried and when it arrived, so tests can see what the client did."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own: never forwarded.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_PART_URLS_PATH = re.compile(r"^/api/v2/files/[^/]+/part-urls$")

EXPIRED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)
UNAVAILABLE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable'
    b"</Code><Message>Please reduce your request rate.</Message></Error>"
)


@dataclass(frozen=True)
class Seen:
    """One request the proxy handled, and what it answered."""

    method: str
    url: str
    status: int
    part_number: int | None
    injected: bool  # answered by a rule, not forwarded
    checksum_header: str | None = None  # a PUT's x-amz-checksum-<algorithm>, lowercase
    json_body: Any = None  # a POST's JSON body
    at: float = field(default_factory=time.monotonic)  # when it arrived
    fault: str | None = None  # the injected fault's kind (see Fault)

    @property
    def recorded_parts(self) -> list[int]:
        """The part numbers a parts/batch POST carried."""
        return [part["partNumber"] for part in (self.json_body or {}).get("parts", [])]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


@dataclass
class Fault:
    """What the next `times` matching requests meet. `kind`: "status" (answered `status`,
    with Retry-After when `retry_after` is set), "drop" (the connection closes, nothing
    forwarded), "lose-answer" (forwarded, then the connection closes before the answer:
    the server acted, the client cannot know), "stall" (no answer for `stall` seconds,
    then the connection closes) or "hold" (forwarded once release() is called)."""

    method: str
    pattern: str
    times: int
    kind: str = "status"
    status: int = 503
    retry_after: str | None = None
    stall: float = 0.0
    part_number: int | None = None

    def matches(self, method: str, path: str, part_number: int | None) -> bool:
        return (
            self.times > 0
            and method == self.method
            and bool(re.search(self.pattern, path))
            and (self.part_number is None or self.part_number == part_number)
        )


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that went away (Ctrl-C tests) is expected; anything else is reported.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FaultProxy:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._fail: dict[int, tuple[int, int]] = {}  # part -> (remaining, status)
        self._fail_paths: dict[tuple[str, str], int] = {}  # (method, path regex) -> status
        self._faults: list[Fault] = []  # applied in order, each `times` times
        self._released = threading.Event()  # ends "hold" faults
        self._corrupt: dict[int, int] = {}  # part -> PUTs still to corrupt
        self._expired: set[int] = set()  # parts whose URLs are expired until refreshed
        self._refused: set[int] = set()  # expired parts whose PUT was refused already
        self._held: dict[int, threading.Event] = {}
        self._barrier: tuple[int, threading.Event] | None = None
        self._in_flight = 0
        self.max_in_flight = 0
        self.arrived: list[int] = []  # part numbers of PUTs as they arrive
        # (token, replacement, after part, active): see expire_access_token.
        self._token_rule: list | None = None
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="fault-proxy"
        )

    # -- setup ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Environment variables that send a process's HTTP through this proxy."""
        return {"HTTP_PROXY": self.url, "http_proxy": self.url, "NO_PROXY": "", "no_proxy": ""}

    def fail_part(self, part_number: int, *, times: int, status: int = 503) -> None:
        """The next `times` PUTs of the part are answered `status` (not forwarded)."""
        with self._lock:
            self._fail[part_number] = (times, status)

    def fail_calls(self, method: str, path_pattern: str, *, status: int = 503) -> None:
        """Every call with this method to a path matching `path_pattern` is answered
        `status` (not forwarded) until allow_calls."""
        with self._lock:
            self._fail_paths[(method, path_pattern)] = status

    def allow_calls(self, method: str, path_pattern: str) -> None:
        with self._lock:
            self._fail_paths.pop((method, path_pattern), None)
            self._faults = [
                f for f in self._faults if (f.method, f.pattern) != (method, path_pattern)
            ]

    def fault(
        self,
        method: str,
        path_pattern: str,
        *,
        times: int = 1,
        kind: str = "status",
        status: int = 503,
        retry_after: str | None = None,
        stall: float = 0.0,
        part_number: int | None = None,
    ) -> None:
        """The next `times` calls with this method to a path matching `path_pattern` (and,
        for part PUTs, of part `part_number` when given) meet the fault (see Fault). Faults
        queue: the next one applies once this one's times are spent."""
        assert kind in ("status", "drop", "lose-answer", "stall", "hold"), kind
        with self._lock:
            self._faults.append(
                Fault(method, path_pattern, times, kind, status, retry_after, stall, part_number)
            )

    def faults_left(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def corrupt_part(self, part_number: int, *, times: int = 1) -> None:
        """The next `times` PUTs of the part are forwarded with one bit of the body flipped."""
        with self._lock:
            self._corrupt[part_number] = times

    def expire_part(self, part_number: int) -> None:
        """PUTs of the part are answered 403 "Request has expired" until the client has
        fetched fresh URLs for it from the part-urls endpoint after the first refusal (a
        client asking for URLs lazily fetches the first one from there too)."""
        with self._lock:
            self._expired.add(part_number)

    def hold_part(self, part_number: int) -> None:
        """PUTs of the part wait (unanswered) until release()."""
        with self._lock:
            self._held[part_number] = threading.Event()

    def hold_until_concurrent(self, count: int) -> None:
        """Part PUTs wait until `count` of them are in flight at once (or 30 s pass):
        proves that the client sends that many in parallel."""
        with self._lock:
            self._barrier = (count, threading.Event())

    def expire_access_token(self, token: str, replacement: str, *, after_part: int) -> None:
        """Once part `after_part` is stored, requests presenting the access token `token`
        present `replacement` (an expired token) instead: the token "expires" mid-upload,
        at a known point, and only a refreshed token gets through unchanged."""
        with self._lock:
            self._token_rule = [token, replacement, after_part, False]

    def release(self) -> None:
        self._released.set()
        with self._lock:
            events = list(self._held.values())
            if self._barrier:
                events.append(self._barrier[1])
        for event in events:
            event.set()

    # -- what happened -------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """No part PUT is being forwarded (one from a killed client may still be)."""
        with self._lock:
            return self._in_flight == 0

    def puts(self, part_number: int | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen
                if s.method == "PUT"
                and s.part_number is not None
                and (part_number is None or s.part_number == part_number)
            ]

    def calls(self, method: str, path_pattern: str) -> list[Seen]:
        pattern = re.compile(path_pattern)
        with self._lock:
            return [s for s in self.seen if s.method == method and pattern.search(s.path)]

    # -- serving -------------------------------------------------------------------------

    def _fault_for(self, method: str, path: str, part_number: int | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, part_number):
                    fault.times -= 1
                    return fault
        return None

    def _path_rule_for(self, method: str, path: str) -> int | None:
        with self._lock:
            return next(
                (
                    status
                    for (m, pattern), status in self._fail_paths.items()
                    if m == method and re.search(pattern, path)
                ),
                None,
            )

    def _rule_for(self, part_number: int) -> tuple[int, bytes] | None:
        """An injected answer for this PUT, or None to forward it."""
        with self._lock:
            remaining, status = self._fail.get(part_number, (0, 0))
            if remaining:
                self._fail[part_number] = (remaining - 1, status)
                return status, UNAVAILABLE_BODY
            if part_number in self._expired:
                self._refused.add(part_number)
                return 403, EXPIRED_BODY
        return None

    def _maybe_corrupt(self, part_number: int, body: bytes) -> bytes:
        with self._lock:
            remaining = self._corrupt.get(part_number, 0)
            if not remaining or not body:
                return body
            self._corrupt[part_number] = remaining - 1
        middle = len(body) // 2
        return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1 :]

    def _rewrite_cookie(self, cookie: str) -> str:
        with self._lock:
            rule = self._token_rule
            if not rule or not rule[3]:
                return cookie
            token, replacement = rule[0], rule[1]
        return cookie.replace(f"access_token={token}", f"access_token={replacement}")

    def _part_stored(self, part_number: int) -> None:
        with self._lock:
            if self._token_rule and self._token_rule[2] == part_number:
                self._token_rule[3] = True

    def _wait_if_held(self, part_number: int) -> None:
        with self._lock:
            self.arrived.append(part_number)
            held = self._held.get(part_number)
            barrier = self._barrier
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if barrier and self._in_flight >= barrier[0]:
                barrier[1].set()
        if barrier:
            barrier[1].wait(timeout=30)
        if held:
            held.wait(timeout=120)

    def _note_fresh_urls(self, body: bytes) -> None:
        try:
            parts = json.loads(body)["parts"]
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            for part in parts:
                if part.get("partNumber") in self._refused:
                    self._expired.discard(part.get("partNumber"))

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_GET(self):
                self._forward()

            do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_GET

            def _forward(self):
                target = urlsplit(self.path)
                if target.scheme != "http" or not target.hostname:
                    self._answer(400, b"absolute http:// URLs only", "text/plain")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    # The client went away mid-body (killed): forwarding the rest of a request
                    # that will never come would leave storage waiting for it.
                    self.close_connection = True
                    return
                numbers = parse_qs(target.query).get("partNumber")
                part_number = int(numbers[0]) if numbers and self.command == "PUT" else None

                fault = proxy._fault_for(self.command, target.path, part_number)
                if fault is not None and fault.kind == "hold":
                    proxy._released.wait(timeout=120)
                    fault = None  # then forwarded as usual
                if fault is not None and fault.kind != "lose-answer":
                    self._inject(fault, part_number)
                    return
                refused = proxy._path_rule_for(self.command, target.path)
                if refused:
                    self._record(part_number, refused, injected=True)
                    self._answer(refused, b'{"error": "unavailable"}', "application/json")
                    return
                if part_number is not None:
                    injected = proxy._rule_for(part_number)
                    if injected:
                        self._record(part_number, injected[0], injected=True)
                        self._answer(injected[0], injected[1], "application/xml")
                        return
                    proxy._wait_if_held(part_number)
                    body = proxy._maybe_corrupt(part_number, body)
                try:
                    status, headers, reply = self._upstream(target, body)
                finally:
                    if part_number is not None:
                        with proxy._lock:
                            proxy._in_flight -= 1
                if self.command == "POST" and status == 200 and _PART_URLS_PATH.match(target.path):
                    proxy._note_fresh_urls(reply)
                if part_number is not None and status == 200:
                    proxy._part_stored(part_number)
                if fault is not None:  # lose-answer: the server acted; its answer is lost
                    self._record(
                        part_number,
                        status,
                        injected=True,
                        fault=fault.kind,
                        json_body=_json_or_none(body) if self.command == "POST" else None,
                    )
                    self.close_connection = True
                    return
                self._record(
                    part_number,
                    status,
                    injected=False,
                    json_body=_json_or_none(body) if self.command == "POST" else None,
                )
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply)

            def _upstream(self, target, body: bytes):
                path = target.path + (f"?{target.query}" if target.query else "")
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                }
                for name in headers:
                    if name.lower() == "cookie":
                        headers[name] = proxy._rewrite_cookie(headers[name])
                connection = http.client.HTTPConnection(
                    target.hostname, target.port or 80, timeout=120
                )
                try:
                    # The Host header travels as the client sent it.
                    connection.request(self.command, path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    return response.status, response.getheaders(), response.read()
                except OSError as exc:
                    return 502, [("Content-Type", "text/plain")], f"proxy: {exc}".encode()
                finally:
                    connection.close()

            def _record(self, part_number, status, *, injected, json_body=None, fault=None):
                checksum = next(
                    (
                        name.lower()
                        for name in self.headers
                        if name.lower().startswith("x-amz-checksum-")
                    ),
                    None,
                )
                with proxy._lock:
                    proxy.seen.append(
                        Seen(
                            self.command,
                            self.path,
                            status,
                            part_number,
                            injected,
                            checksum,
                            json_body,
                            fault=fault,
                        )
                    )

            def _inject(self, fault: Fault, part_number):
                """Meets the request with the fault (nothing is forwarded)."""
                if fault.kind == "status":
                    self._record(part_number, fault.status, injected=True, fault="status")
                    body = (
                        UNAVAILABLE_BODY
                        if part_number is not None
                        else b'{"error": "injected failure"}'
                    )
                    self.send_response(fault.status)
                    self.send_header(
                        "Content-Type",
                        "application/xml" if part_number is not None else "application/json",
                    )
                    if fault.retry_after is not None:
                        self.send_header("Retry-After", fault.retry_after)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self._record(part_number, 0, injected=True, fault=fault.kind)
                if fault.kind == "stall":
                    time.sleep(fault.stall)
                self.close_connection = True  # closed without a word

            def _answer(self, status: int, body: bytes, content_type: str):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
