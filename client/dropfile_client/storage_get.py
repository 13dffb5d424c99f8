"""The GET requests of a download, sent one of two ways behind one interface (a Getter per
download thread, whose `get` yields an Answer):

- straight over http.client, the usual case: each thread keeps one connection alive and
  reads bodies into one reused buffer, so a byte is copied once between the socket and the
  file. Through httpx (h11) each byte is also copied through two Python-level buffers and
  every 64 KiB is handled in Python: ~0.8 CPU-second more per GiB, nearly what the whole
  SHA-256 check costs, on a machine whose store competes for the same cores
  (bench/README.md).
- through httpx when it must: a proxy is configured for the URL (HTTP_PROXY, ALL_PROXY...,
  honoured as httpx honours them) or the caller gave a transport of its own.

Either way, storage that cannot be reached or an answer cut short is TransportFailure."""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, cast
from urllib.parse import SplitResult, urlsplit

import httpx

from .api import USER_AGENT, describe_transport_error
from .errors import StorageError
from .parts import BLOCK_SIZE
from .storage import error_reason, storage_client

CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 120.0


class TransportFailure(Exception):
    """No answer, or an answer cut short (the message says how): worth another try."""


class Answer:
    """One answer of storage, while it is read: `blocks` yields its body (raw bytes, as
    storage holds them); each block is valid until the next one is asked for."""

    def __init__(
        self,
        status: int,
        reason_phrase: str,
        header: Callable[[str], str | None],
        blocks: Iterator[bytes | memoryview],
        read_text: Callable[[], str],
    ) -> None:
        self.status = status
        self.reason_phrase = reason_phrase
        self.header = header
        self.blocks = blocks
        self._read_text = read_text

    def error_reason(self) -> str:
        """`403 AccessDenied: Request has expired`, from the S3 error body."""
        return error_reason(self.status, self.reason_phrase, self._read_text())


class Getter(Protocol):
    def get(self, url: str, headers: dict[str, str]) -> AbstractContextManager[Answer]: ...

    def close(self) -> None: ...


@contextmanager
def getters(
    url: str, *, connections: int, transport: httpx.BaseTransport | None = None
) -> Iterator[Callable[[], Getter]]:
    """Makes a Getter for each download thread, for URLs like `url`."""
    if transport is None and not _proxied(url):
        yield DirectGetter
        return
    with storage_client(connections=connections, transport=transport) as http:
        yield lambda: HttpxGetter(http)


def _proxied(url: str) -> bool:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class DirectGetter:
    """http.client over one connection, kept alive from one answer to the next."""

    def __init__(self, *, block_size: int = BLOCK_SIZE) -> None:
        self._view = memoryview(bytearray(block_size))
        self._connection: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, int | None] | None = None
        # The connection served a whole answer: the server may have closed it since.
        self._kept_alive = False

    @contextmanager
    def get(self, url: str, headers: dict[str, str]) -> Iterator[Answer]:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": USER_AGENT, **headers}
        while True:
            kept_alive = self._kept_alive
            try:
                connection = self._connect(parts)
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if kept_alive and isinstance(exc, ConnectionError):
                    continue  # closed by the server while idle: once more, on a new one
                raise TransportFailure(_describe(exc)) from None
        self._kept_alive = False
        try:
            yield Answer(
                response.status,
                response.reason,
                response.getheader,
                self._blocks(response),
                lambda: _body_text(response),
            )
        finally:
            if response.isclosed():  # read to its end: the connection can serve another
                self._kept_alive = self._connection is not None
            else:
                self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._kept_alive = False

    def _connect(self, parts: SplitResult) -> http.client.HTTPConnection:
        origin = (parts.scheme, parts.hostname or "", parts.port)
        if self._connection is None or origin != self._origin:
            self.close()
            if parts.scheme == "https":
                self._connection = http.client.HTTPSConnection(
                    origin[1], parts.port, timeout=CONNECT_TIMEOUT, context=_tls_context()
                )
            elif parts.scheme == "http":
                self._connection = http.client.HTTPConnection(
                    origin[1], parts.port, timeout=CONNECT_TIMEOUT
                )
            else:
                raise StorageError(f"the download URL is not http(s): {parts.scheme!r}")
            self._origin = origin
        if self._connection.sock is None:  # new, or closed after a `Connection: close`
            self._connection.connect()
            cast(socket.socket, self._connection.sock).settimeout(READ_TIMEOUT)
        return self._connection

    def _blocks(self, response: http.client.HTTPResponse) -> Iterator[memoryview]:
        while True:
            try:
                count = response.readinto(self._view)
            except (OSError, http.client.HTTPException) as exc:
                raise TransportFailure(_describe(exc)) from None
            if not count:
                return
            yield self._view[:count]


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # The certificates httpx trusts (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
    return httpx.create_ssl_context()


def _body_text(response: http.client.HTTPResponse) -> str:
    try:
        return response.read(4000).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""


def _describe(exc: BaseException) -> str:
    """A short reason for a network failure, as describe_transport_error gives for httpx."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the answer's end"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "storage closed the connection without answering"
    text = str(exc) or type(exc).__name__
    return text.split("] ", 1)[-1]  # "[Errno 104] Connection reset by peer" -> "Connection..."


class HttpxGetter:
    """Through a shared httpx client (its proxies, its transport)."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    @contextmanager
    def get(self, url: str, headers: dict[str, str]) -> Iterator[Answer]:
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                yield Answer(
                    response.status_code,
                    response.reason_phrase,
                    response.headers.get,
                    self._blocks(response),
                    lambda: _httpx_text(response),
                )
        except httpx.TransportError as exc:
            raise TransportFailure(describe_transport_error(exc)) from None

    def close(self) -> None:
        pass  # the client is shared, and closed by getters()

    @staticmethod
    def _blocks(response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_raw()
        except httpx.TransportError as exc:
            raise TransportFailure(describe_transport_error(exc)) from None


def _httpx_text(response: httpx.Response) -> str:
    try:
        response.read()
        return response.text[:4000]
    except (httpx.HTTPError, UnicodeDecodeError):
        return ""
