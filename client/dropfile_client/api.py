"""The REST gateway, spoken as the v1 browser client speaks it: JSON bodies and the three
session cookies. One Gateway is shared by every thread of an upload.

Session cookies are kept here rather than in httpx's cookie jar: the gateway marks them
Secure outside development, and the CLI must keep and save them whatever the scheme. When
a call is answered that the session is over (its code: ACCESS_TOKEN_INVALID, ...; codes.py)
the access token is refreshed (GET /api/auth/refresh) once and the call retried. Calls
safe to repeat are retried while the failure is transient (retry.py). Refreshes are
serialized: the refresh token rotates, and presenting an old one ends the session, so
parallel parts that all see 401 refresh exactly once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

import httpx

from ._version import __version__
from .codes import code_of, is_signed_out
from .errors import ApiError, DropfileError, NotSignedIn, RetriesExhausted, ServerUnreachable
from .parts import Cancelled
from .retry import RetryPolicy, parse_retry_after, sleep
from .session import ACCESS_TOKEN, REFRESH_TOKEN, SESSION_COOKIES

log = logging.getLogger("dropfile_client")

USER_AGENT = f"dropfile-cli/{__version__}"


def describe_transport_error(exc: httpx.TransportError) -> str:
    """A short reason for a network failure, without a Python type name when possible."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "unknown host"
    return text.split("] ", 1)[-1]  # "[Errno 111] Connection refused" -> "Connection..."


def _signed_out(response: httpx.Response) -> bool:
    """Whether the answer says the session is missing or over (its code; 401 for an
    answer without a known one)."""
    if response.is_success:
        return False
    try:
        body = response.json()
    except ValueError:
        body = None
    return is_signed_out(code_of(response.status_code, body), response.status_code)


class Gateway:
    def __init__(
        self,
        server: str,
        *,
        cookies: dict[str, str] | None = None,
        on_cookies_changed: Callable[[dict[str, str]], None] | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server
        self._cookies = {k: v for k, v in (cookies or {}).items() if k in SESSION_COOKIES}
        self._cookie_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._on_cookies_changed = on_cookies_changed
        self._retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=server,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    # -- cookies -------------------------------------------------------------------------

    @property
    def cookies(self) -> dict[str, str]:
        with self._cookie_lock:
            return dict(self._cookies)

    def set_cookie(self, name: str, value: str | None) -> None:
        """Replaces (or with None removes) one session cookie, as a response would."""
        with self._cookie_lock:
            if value:
                self._cookies[name] = value
            else:
                self._cookies.pop(name, None)
            snapshot = dict(self._cookies)
        if self._on_cookies_changed:
            self._on_cookies_changed(snapshot)

    def _cookie_header(self) -> str:
        with self._cookie_lock:
            return "; ".join(
                f"{name}={self._cookies[name]}"
                for name in SESSION_COOKIES
                if self._cookies.get(name)
            )

    def _absorb_cookies(self, response: httpx.Response) -> None:
        changed = False
        with self._cookie_lock:
            for header in response.headers.get_list("set-cookie"):
                jar = SimpleCookie()
                try:
                    jar.load(header)
                except CookieError:
                    continue
                for name, morsel in jar.items():
                    if name not in SESSION_COOKIES:
                        continue
                    if not morsel.value or morsel["max-age"] in ("0", "-1"):
                        changed |= self._cookies.pop(name, None) is not None
                    elif self._cookies.get(name) != morsel.value:
                        self._cookies[name] = morsel.value
                        changed = True
            snapshot = dict(self._cookies)
        if changed and self._on_cookies_changed:
            self._on_cookies_changed(snapshot)

    # -- calls ---------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: bool = True,
        idempotent: bool = False,
        retry: RetryPolicy | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """One JSON call. `auth` calls refresh the session once on 401. `idempotent` calls
        are retried under the retry policy (this gateway's, or `retry`) while they fail in
        a way time may lift: no connection, a timeout, a dropped connection, 408, 429 or
        5xx (waiting at least Retry-After). Once the policy is spent the last failure is
        raised as RetriesExhausted. `cancel` cuts a wait short (raising Cancelled)."""
        if not idempotent:
            return self._call_once(method, path, json, auth)
        backoff = (retry or self._retry).start()
        while True:
            try:
                return self._call_once(method, path, json, auth)
            except DropfileError as exc:
                if not exc.transient:
                    raise
                wait = backoff.next_wait(exc.retry_after)
                if wait is None:
                    if backoff.tries == 1:
                        raise  # a policy without retries: the failure as it is
                    raise RetriesExhausted(exc, backoff.summary()) from exc
                log.warning(
                    "%s %s: %s; retrying in %.1f s (try %d of %d)",
                    method,
                    path,
                    exc.message,
                    wait,
                    backoff.tries,
                    backoff.policy.attempts,
                )
            if sleep(wait, cancel):
                raise Cancelled()

    def _call_once(self, method: str, path: str, json: Any, auth: bool) -> dict[str, Any]:
        response = (
            self._send_authenticated(method, path, json) if auth else self._send(method, path, json)
        )
        return self._reply(response, path)

    def _send(self, method: str, path: str, json: Any) -> httpx.Response:
        headers = {}
        cookie = self._cookie_header()
        if cookie:
            headers["Cookie"] = cookie
        try:
            response = self._http.request(method, path, json=json, headers=headers)
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.server, describe_transport_error(exc)) from None
        self._http.cookies.clear()  # httpx's own jar is not used (see the module doc)
        self._absorb_cookies(response)
        return response

    def _send_authenticated(self, method: str, path: str, json: Any) -> httpx.Response:
        if not self.cookies:
            raise NotSignedIn("not signed in")
        presented = self.cookies.get(ACCESS_TOKEN)
        response = self._send(method, path, json)
        if not _signed_out(response) or not self.cookies.get(REFRESH_TOKEN):
            if _signed_out(response):
                raise NotSignedIn("not signed in (the session has ended)")
            return response
        self.refresh(stale_access_token=presented)
        response = self._send(method, path, json)
        if _signed_out(response):
            raise NotSignedIn("not signed in (the server refused the refreshed session)")
        return response

    def refresh(self, *, stale_access_token: str | None = None) -> None:
        """New access token (and rotated refresh token). With `stale_access_token`, a
        refresh another thread made since that token was presented is reused."""
        with self._refresh_lock:
            if (
                stale_access_token is not None
                and self.cookies.get(ACCESS_TOKEN) != stale_access_token
            ):
                return  # another thread refreshed already
            log.info("access token refused; refreshing the session")
            response = self._send("GET", "/api/auth/refresh", None)
            if _signed_out(response):
                # The gateway cleared the cookies: the session is over.
                for name in SESSION_COOKIES:
                    if name in self.cookies:
                        self.set_cookie(name, None)
                raise NotSignedIn("not signed in (the session has expired or was revoked)")
            self._reply(response, "/api/auth/refresh")

    @staticmethod
    def _reply(response: httpx.Response, path: str) -> dict[str, Any]:
        if response.status_code == 204:  # No Content (a revoked link)
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            if not isinstance(body, dict):
                raise DropfileError(
                    f"unexpected reply from the server to {path} "
                    f"(HTTP {response.status_code}, not a JSON object); "
                    "is this a Dropfile server?"
                )
            return body
        message = body.get("error") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message:
            message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        raise ApiError(
            response.status_code,
            message,
            code=code_of(response.status_code, body),
            path=path,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
