"""Talking to storage directly through presigned URLs: PUT a part, GET a file. Failures
are classified here: what is worth retrying, what means the URL expired, what is final."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from .api import USER_AGENT, describe_transport_error
from .retry import TRANSIENT_STATUS, parse_retry_after

_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


def storage_client(
    *, connections: int, timeout: float = 120.0, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """No cookies, no base URL: presigned URLs carry their own authorization. Proxies
    from the environment (HTTP_PROXY...) apply, as for any HTTP tool."""
    return httpx.Client(
        transport=transport,
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def storage_reason(response: httpx.Response) -> str:
    """`403 AccessDenied: Request has expired` from an S3 error body, or the status."""
    try:
        text = response.text[:4000]
    except (httpx.HTTPError, UnicodeDecodeError):
        text = ""
    return error_reason(response.status_code, response.reason_phrase, text)


def error_reason(status: int, reason_phrase: str, body: str) -> str:
    """storage_reason() from the parts of an answer."""
    code, message = _CODE.search(body), _MESSAGE.search(body)
    detail = ": ".join(m.group(1).strip().rstrip(".") for m in (code, message) if m)
    return f"{status} {detail}" if detail else f"{status} {reason_phrase}".strip()


@dataclass(frozen=True)
class PutOutcome:
    """What one PUT attempt came to. Exactly one of etag / failure is set."""

    etag: str | None = None
    failure: str | None = None
    # Worth another attempt with the same URL (after a pause).
    retryable: bool = False
    # The URL was refused (expired): another attempt needs a fresh URL.
    url_refused: bool = False
    # Storage's Retry-After, in seconds, when it sent one.
    retry_after: float | None = None
    status: int | None = None  # storage's answer, when there was one


def classify_put(response: httpx.Response) -> PutOutcome:
    if response.is_success:
        etag = response.headers.get("ETag", "").strip()
        if not etag:
            return PutOutcome(failure="storage accepted the part but sent no ETag")
        return PutOutcome(etag=etag)
    reason = storage_reason(response)
    if response.status_code == 403:
        return PutOutcome(failure=reason, url_refused=True, status=403)
    return PutOutcome(
        failure=reason,
        retryable=response.status_code in TRANSIENT_STATUS,
        status=response.status_code,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def transport_failure(exc: httpx.TransportError) -> PutOutcome:
    return PutOutcome(failure=describe_transport_error(exc), retryable=True)
