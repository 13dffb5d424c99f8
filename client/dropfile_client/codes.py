"""The `code` of the server's error answers, which the SDK branches on (never on the HTTP
status or the message): the server's README lists them ("Error codes"), gateway/errors.py
defines them.

An answer without a code did not come from a Dropfile gateway (a proxy's 502, a load
balancer's 503): `code_of` names it by its status (`HTTP_502`). A code this SDK does not
know (a newer server's) is treated by its HTTP status, as an answer without one is."""

from __future__ import annotations

from typing import Any

from .retry import TRANSIENT_STATUS

# A retry may cure these: the same request may succeed later (after Retry-After).
TRANSIENT_CODES = frozenset(
    {
        "REQUEST_TIMEOUT",
        "TOO_MANY_PARTS_WAITING",
        "INTERNAL",
        "SERVER_BUSY",
        "BACKEND_UNAVAILABLE",
        "NOT_READY",
        "BACKEND_TIMEOUT",
        "RATE_LIMITED",
        "UNAVAILABLE",
        "SIGN_IN_THROTTLED",
        "SIGN_UP_THROTTLED",
        "AUTH_BUSY",
        "THROTTLE_UNAVAILABLE",
        "REVOCATION_UNAVAILABLE",
        "SESSION_CHECK_UNAVAILABLE",
        "TOO_MANY_UPLOADS",
        "TOO_MANY_STREAMS",
        "FILE_EVENTS_UNAVAILABLE",
        "FILE_EVENTS_INTERRUPTED",
        "LINK_GUESSES_THROTTLED",
        "SHARE_BUSY",
        "OIDC_START_THROTTLED",
        "OIDC_PROVIDER_UNAVAILABLE",
        "OIDC_FLOWS_UNAVAILABLE",
    }
)
# The session is missing, over or refused: refresh it (once), else sign in again.
SIGNED_OUT_CODES = frozenset(
    {
        "ACCESS_TOKEN_MISSING",
        "ACCESS_TOKEN_INVALID",
        "UNAUTHENTICATED",
        "SESSION_REVOKED",
        "REFRESH_TOKEN_INVALID",
        "REFRESH_TOKEN_REUSED",
        "BAD_CREDENTIALS",
        # Single sign-on's, answered as pages to a browser.
        "OIDC_CODE_REFUSED",
        "OIDC_ID_TOKEN_INVALID",
    }
)
# Codes that are neither: a refusal the same request will meet again.
PERMANENT_CODES = frozenset(
    {
        "INVALID_REQUEST",
        "ROUTE_NOT_FOUND",
        "WEB_APP_NOT_BUILT",
        "METHOD_NOT_ALLOWED",
        "REQUEST_TOO_LARGE",
        "HEADERS_TOO_LARGE",
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "FAILED_PRECONDITION",
        "RESOURCE_EXHAUSTED",
        "SERVICE_CREDENTIAL_REQUIRED",
        "FILE_TOO_LARGE",
        "SINGLE_PUT_TOO_LARGE",
        "QUOTA_EXCEEDED",
        "UPLOAD_ABORTED",
        "UPLOAD_COMPLETE",
        "UPLOAD_GONE",
        "NO_CHECKSUMS",
        "PART_NOT_RECORDED",
        "PART_NOT_STORED",
        "PART_ETAG_MISMATCH",
        "PART_SIZE_MISMATCH",
        "PART_CHECKSUM_UNKNOWN",
        "PARTS_REFUSED",
        "NOT_UPLOADED",
        "UPLOAD_FAILED",
        "INVALID_PAGE_TOKEN",
        "LINK_NOT_FOUND",
        "PASSWORD_REQUIRED",
        "OIDC_NOT_CONFIGURED",
        "OIDC_FLOW_UNKNOWN",
        "OIDC_PROVIDER_ERROR",
        "OIDC_EMAIL_NOT_VERIFIED",
        "OIDC_EMAIL_UNUSABLE",
        "OIDC_IDENTITY_UNUSABLE",
        "OIDC_ACCOUNT_LINKED_ELSEWHERE",
    }
)
KNOWN_CODES = TRANSIENT_CODES | SIGNED_OUT_CODES | PERMANENT_CODES

# The file (or upload) is not the caller's, or no longer exists.
NOT_FOUND = "NOT_FOUND"
# A file id already taken (a creation whose answer was lost, retried).
ALREADY_EXISTS = "ALREADY_EXISTS"
# A single PUT asked for a file over the server's limit (its part size): upload in parts.
SINGLE_PUT_TOO_LARGE = "SINGLE_PUT_TOO_LARGE"
# A body the server does not take (a server from before single PUTs refuses singlePut).
INVALID_REQUEST = "INVALID_REQUEST"
# Asking where an upload stands: it cannot be resumed, start afresh.
NOT_RESUMABLE_CODES = frozenset(
    {
        "INVALID_REQUEST",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
        "UPLOAD_ABORTED",
        "UPLOAD_COMPLETE",
        "UPLOAD_GONE",
    }
)


def code_of(status: int, body: Any) -> str:
    """The code of an error answer: its body's `code`, else `HTTP_<status>`."""
    code = body.get("code") if isinstance(body, dict) else None
    if isinstance(code, str) and code:
        return code
    return f"HTTP_{status}"


def is_transient(code: str, status: int) -> bool:
    """Whether the same request may succeed later (a code unknown here: whether its status
    is a timeout, throttling, a server error or an outage)."""
    if code in KNOWN_CODES:
        return code in TRANSIENT_CODES
    return status in TRANSIENT_STATUS


def is_signed_out(code: str, status: int) -> bool:
    """Whether the answer says the session is missing or over."""
    if code in KNOWN_CODES:
        return code in SIGNED_OUT_CODES
    return status == 401
