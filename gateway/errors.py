"""Every error the gateway answers, shaped in one place: gRPC status -> HTTP status, request
validation -> 400, unknown routes -> 404/405; anything unexpected becomes a generic 500
in middleware.py.

Bodies follow the v1 contract and add a `code` clients can branch on:
`{"error": msg, "code": "PART_NOT_RECORDED"}`, plus `"success": false` on file endpoints.
`code` is the google.rpc.ErrorInfo reason the service attached to its refusal, or one of
the gateway's own for what it refuses itself (ERROR_CODES lists them all, with their
status: the README's table and the OpenAPI document are made from it). No traceback or
backend detail (addresses, exception text) ever reaches a response."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.rich_status import ERROR_DOMAIN, rich_status

from . import schemas, schemas_v2

log = logging.getLogger("gateway.errors")

FILES_PREFIX = "/api/files"
INTERNAL_ERROR = "internal error"


@dataclass(frozen=True)
class ErrorCode:
    """One `code` an error body may carry: the HTTP status it comes with, what it means,
    who answers it, and whether the same request may succeed later (`transient`: retry,
    after Retry-After when the answer has one)."""

    code: str
    status: int
    meaning: str
    source: str
    transient: bool = False


_GATEWAY = "gateway"
_ANY = "any service"

# Every code, grouped by who answers it. Codes are stable: clients branch on them. A
# service's new ErrorInfo reason goes here too (tests/gateway/test_error_codes.py checks).
ERROR_CODES: tuple[ErrorCode, ...] = (
    # Refused by the gateway itself, before or instead of a backend call.
    ErrorCode(
        "INVALID_REQUEST",
        400,
        "the body or a parameter does not match the API's shape (missing or unknown "
        "fields, wrong types, values out of bounds, not JSON)",
        _GATEWAY,
    ),
    ErrorCode(
        "ACCESS_TOKEN_MISSING",
        401,
        "no access_token cookie (or no token reached the service): sign in",
        _ANY,
    ),
    ErrorCode(
        "ACCESS_TOKEN_INVALID",
        401,
        "the access token is expired, forged, revoked or unusable: refresh the "
        "session, else sign in",
        _ANY,
    ),
    ErrorCode("ROUTE_NOT_FOUND", 404, "no endpoint (or web app file) at this path", _GATEWAY),
    ErrorCode(
        "WEB_APP_NOT_BUILT",
        404,
        "the browser app is not built on this server (the API works)",
        _GATEWAY,
    ),
    ErrorCode("METHOD_NOT_ALLOWED", 405, "the endpoint exists but not with this method", _GATEWAY),
    ErrorCode(
        "REQUEST_TIMEOUT",
        408,
        "the request's headers or body arrived too slowly; the connection is closed",
        _GATEWAY,
        transient=True,
    ),
    ErrorCode(
        "REQUEST_TOO_LARGE", 413, "the request body is larger than the server accepts", _GATEWAY
    ),
    ErrorCode(
        "TOO_MANY_PARTS_WAITING",
        429,
        "this session has too many part records waiting to be sent; retry after Retry-After",
        _GATEWAY,
        transient=True,
    ),
    ErrorCode(
        "HEADERS_TOO_LARGE",
        431,
        "the request's headers are too large; the connection is closed",
        _GATEWAY,
    ),
    ErrorCode(
        "INTERNAL",
        500,
        "an unexpected error; nothing about it is shown (the request id is in the logs)",
        _ANY,
        transient=True,
    ),
    ErrorCode(
        "SERVER_BUSY",
        503,
        "the gateway has as many connections as it may; retry after Retry-After",
        _GATEWAY,
        transient=True,
    ),
    ErrorCode(
        "BACKEND_UNAVAILABLE",
        503,
        "a backend service or its database is unreachable; retry after Retry-After",
        _ANY,
        transient=True,
    ),
    ErrorCode(
        "NOT_READY",
        503,
        "readiness: a backend does not answer its health check",
        _GATEWAY,
        transient=True,
    ),
    ErrorCode(
        "BACKEND_TIMEOUT",
        504,
        "a backend service did not answer in time; retry",
        _GATEWAY,
        transient=True,
    ),
    # The generic reasons of services/common/errors.py (a refusal that names none better).
    ErrorCode(
        "INVALID_ARGUMENT", 400, "a value the service does not accept; `error` names it", _ANY
    ),
    ErrorCode("UNAUTHENTICATED", 401, "not signed in", _ANY),
    ErrorCode("PERMISSION_DENIED", 403, "not allowed", _ANY),
    ErrorCode(
        "NOT_FOUND",
        404,
        "no such file among the caller's (another user's file is not found either)",
        _ANY,
    ),
    ErrorCode(
        "ALREADY_EXISTS",
        409,
        "the id or email is taken: a file_id already used (by anyone), an account's email",
        _ANY,
    ),
    ErrorCode(
        "FAILED_PRECONDITION",
        409,
        "the resource's state does not allow this (e.g. the upload changed meanwhile: retry)",
        _ANY,
    ),
    ErrorCode("RESOURCE_EXHAUSTED", 413, "a limit is reached", _ANY),
    ErrorCode(
        "RATE_LIMITED", 429, "too many requests; retry after Retry-After", _ANY, transient=True
    ),
    ErrorCode(
        "UNAVAILABLE",
        503,
        "a dependency is unavailable; retry after Retry-After",
        _ANY,
        transient=True,
    ),
    # auth
    ErrorCode(
        "BAD_CREDENTIALS",
        401,
        "wrong email or password (whether the email exists is not said)",
        "auth",
    ),
    ErrorCode(
        "REFRESH_TOKEN_INVALID",
        401,
        "the refresh token or device session is missing, expired or revoked: sign in",
        "auth",
    ),
    ErrorCode(
        "REFRESH_TOKEN_REUSED",
        401,
        "an old refresh token was presented again: the device session is revoked; sign in",
        "auth",
    ),
    ErrorCode(
        "SIGN_IN_THROTTLED",
        429,
        "too many sign-in attempts; retry after Retry-After",
        "auth",
        transient=True,
    ),
    ErrorCode(
        "SIGN_UP_THROTTLED",
        429,
        "too many sign-ups from this address; retry after Retry-After",
        "auth",
        transient=True,
    ),
    ErrorCode(
        "AUTH_BUSY",
        503,
        "password hashing is at capacity; retry after Retry-After",
        "auth",
        transient=True,
    ),
    ErrorCode(
        "THROTTLE_UNAVAILABLE",
        503,
        "the attempt counters (Redis) are unreachable; retry after Retry-After",
        "auth",
        transient=True,
    ),
    ErrorCode(
        "SERVICE_CREDENTIAL_REQUIRED",
        403,
        "an RPC for Dropfile services only (never expected through the gateway)",
        _ANY,
    ),
    # any service that checks access tokens
    ErrorCode(
        "REVOCATION_UNAVAILABLE",
        503,
        "sign-out could not be recorded (Redis unreachable); retry",
        _ANY,
        transient=True,
    ),
    ErrorCode(
        "SESSION_CHECK_UNAVAILABLE",
        503,
        "whether the session was signed out cannot be checked (Redis unreachable); retry",
        _ANY,
        transient=True,
    ),
    # upload
    ErrorCode(
        "FILE_TOO_LARGE",
        400,
        "the declared size is over the server's limit for this API version",
        "upload",
    ),
    ErrorCode(
        "SINGLE_PUT_TOO_LARGE",
        400,
        "a single PUT was asked for a file over the server's smallest part size (5 MiB): "
        "upload it in parts",
        "upload",
    ),
    ErrorCode(
        "QUOTA_EXCEEDED", 413, "the file does not fit in the caller's storage quota", "upload"
    ),
    ErrorCode(
        "TOO_MANY_UPLOADS",
        429,
        "as many uploads in progress as allowed: finish some, or retry after Retry-After",
        "upload",
        transient=True,
    ),
    ErrorCode(
        "UPLOAD_ABORTED",
        409,
        "the upload was aborted (or reaped): start a new one with a new file id",
        "upload",
    ),
    ErrorCode(
        "UPLOAD_COMPLETE",
        409,
        "the upload is already complete: it takes no more parts and cannot be aborted",
        "upload",
    ),
    ErrorCode(
        "UPLOAD_GONE",
        409,
        "storage no longer has the upload (expired or aborted): start a new one",
        "upload",
    ),
    ErrorCode(
        "NO_CHECKSUMS",
        409,
        "a v1 upload (no part checksums) was asked for checksummed URLs",
        "upload",
    ),
    ErrorCode(
        "PART_NOT_RECORDED",
        409,
        "completion names a part that was never recorded: record it first",
        "upload",
    ),
    ErrorCode(
        "PART_NOT_STORED", 409, "a recorded part is not in storage: upload it again", "upload"
    ),
    ErrorCode(
        "PART_ETAG_MISMATCH",
        409,
        "a part's ETag differs from the recorded or stored one: upload it again",
        "upload",
    ),
    ErrorCode(
        "PART_SIZE_MISMATCH", 409, "a stored part has the wrong size: upload it again", "upload"
    ),
    ErrorCode(
        "PART_CHECKSUM_UNKNOWN",
        409,
        "a part's checksum is not known: record the part with its checksum",
        "upload",
    ),
    ErrorCode(
        "PARTS_REFUSED",
        409,
        "storage refused to complete with these parts: upload them again",
        "upload",
    ),
    ErrorCode("NOT_UPLOADED", 409, "the file is not uploaded yet (no download URL)", "upload"),
    ErrorCode("UPLOAD_FAILED", 409, "the upload failed; the file has no content", "upload"),
    ErrorCode(
        "INVALID_PAGE_TOKEN",
        400,
        "the page token is not one this server made for this name filter: list from the start",
        "upload",
    ),
    # upload: share links
    ErrorCode(
        "LINK_NOT_FOUND",
        404,
        "no such share link of the caller's (revoked links, other users' links, unknown "
        "ids); at /s/<token>, a link that is not usable (the page says no more)",
        "upload",
    ),
    ErrorCode(
        "PASSWORD_REQUIRED",
        409,
        "the share link has a password (the /s/<token> page asks for it)",
        "upload",
    ),
    ErrorCode(
        "LINK_GUESSES_THROTTLED",
        429,
        "too many failed attempts at share links from this address; retry after Retry-After",
        "upload",
        transient=True,
    ),
    ErrorCode(
        "SHARE_BUSY",
        503,
        "share link password checks are at capacity; retry after Retry-After",
        "upload",
        transient=True,
    ),
    # auth: single sign-on (OpenID Connect)
    ErrorCode(
        "OIDC_NOT_CONFIGURED", 404, "single sign-on is not configured on this server", "auth"
    ),
    ErrorCode(
        "OIDC_FLOW_UNKNOWN",
        400,
        "the sign-in expired, was used already or was started in another browser: start again",
        "auth",
    ),
    ErrorCode(
        "OIDC_PROVIDER_ERROR",
        400,
        "the issuer answered with an error (for example the user cancelled): start again",
        "auth",
    ),
    ErrorCode(
        "OIDC_CODE_REFUSED", 401, "the issuer refused the authorization code: start again", "auth"
    ),
    ErrorCode(
        "OIDC_ID_TOKEN_INVALID",
        401,
        "the issuer's ID token failed verification (signature, issuer, audience, expiry, nonce)",
        "auth",
    ),
    ErrorCode(
        "OIDC_EMAIL_NOT_VERIFIED",
        403,
        "the issuer does not say the account's email is verified",
        "auth",
    ),
    ErrorCode(
        "OIDC_EMAIL_UNUSABLE", 403, "the issuer's email is missing or not an address", "auth"
    ),
    ErrorCode(
        "OIDC_IDENTITY_UNUSABLE",
        403,
        "the issuer's identity lacks what a sign-in needs (a subject)",
        "auth",
    ),
    ErrorCode(
        "OIDC_ACCOUNT_LINKED_ELSEWHERE",
        409,
        "the account with this email is linked to another identity at this issuer",
        "auth",
    ),
    ErrorCode(
        "OIDC_START_THROTTLED",
        429,
        "too many single sign-on attempts from this address; retry after Retry-After",
        "auth",
        transient=True,
    ),
    ErrorCode(
        "OIDC_PROVIDER_UNAVAILABLE",
        503,
        "the issuer cannot be reached; retry after Retry-After",
        "auth",
        transient=True,
    ),
    ErrorCode(
        "OIDC_FLOWS_UNAVAILABLE",
        503,
        "sign-in flows cannot be kept (Redis unreachable); retry after Retry-After",
        "auth",
        transient=True,
    ),
    # events (GET /api/v2/events)
    ErrorCode(
        "SESSION_REVOKED", 401, "the session was signed out while the stream was open", "events"
    ),
    ErrorCode(
        "TOO_MANY_STREAMS",
        429,
        "the events service holds as many streams as it may; retry after Retry-After",
        "events",
        transient=True,
    ),
    ErrorCode(
        "FILE_EVENTS_UNAVAILABLE",
        503,
        "the live status feed is down; retry after Retry-After",
        "events",
        transient=True,
    ),
    ErrorCode(
        "FILE_EVENTS_INTERRUPTED",
        503,
        "the live status feed was interrupted; retry",
        "events",
        transient=True,
    ),
)
ERROR_CODE = {entry.code: entry for entry in ERROR_CODES}


def codes_of_status(status: int) -> list[str]:
    return [entry.code for entry in ERROR_CODES if entry.status == status]


# Codes of the gateway's own refusals (used by name so a typo fails at import).
INVALID_REQUEST = ERROR_CODE["INVALID_REQUEST"].code
ACCESS_TOKEN_MISSING = ERROR_CODE["ACCESS_TOKEN_MISSING"].code
ACCESS_TOKEN_INVALID = ERROR_CODE["ACCESS_TOKEN_INVALID"].code
ROUTE_NOT_FOUND = ERROR_CODE["ROUTE_NOT_FOUND"].code
WEB_APP_NOT_BUILT = ERROR_CODE["WEB_APP_NOT_BUILT"].code
METHOD_NOT_ALLOWED = ERROR_CODE["METHOD_NOT_ALLOWED"].code
REQUEST_TIMEOUT = ERROR_CODE["REQUEST_TIMEOUT"].code
REQUEST_TOO_LARGE = ERROR_CODE["REQUEST_TOO_LARGE"].code
TOO_MANY_PARTS_WAITING = ERROR_CODE["TOO_MANY_PARTS_WAITING"].code
HEADERS_TOO_LARGE = ERROR_CODE["HEADERS_TOO_LARGE"].code
INTERNAL = ERROR_CODE["INTERNAL"].code
SERVER_BUSY = ERROR_CODE["SERVER_BUSY"].code
BACKEND_UNAVAILABLE = ERROR_CODE["BACKEND_UNAVAILABLE"].code
NOT_READY = ERROR_CODE["NOT_READY"].code
BACKEND_TIMEOUT = ERROR_CODE["BACKEND_TIMEOUT"].code
FILE_EVENTS_UNAVAILABLE = ERROR_CODE["FILE_EVENTS_UNAVAILABLE"].code

HTTP_STATUS_OF = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# Services word their refusals for the caller; these two come from the transport and may
# name internal addresses, so callers get a fixed message (and code) instead.
_TRANSPORT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "a backend service is unavailable; retry later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "a backend service did not answer in time; retry later",
}
_TRANSPORT_CODES = {
    grpc.StatusCode.UNAVAILABLE: BACKEND_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: BACKEND_TIMEOUT,
}


@dataclass(frozen=True)
class RpcErrorDetails:
    """What a Dropfile service attached to a refusal: its reason (google.rpc.ErrorInfo), and
    when a retry may succeed (google.rpc.RetryInfo). Empty for transport errors."""

    reason: str | None = None
    retry_after: float | None = None


def rpc_error_details(exc: grpc.aio.AioRpcError) -> RpcErrorDetails:
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]  # an aio error is a Call
    except ValueError:  # details that contradict the call's code: not one of ours
        return RpcErrorDetails()
    if status is None:
        return RpcErrorDetails()
    reason: str | None = None
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToMilliseconds() / 1000
    return RpcErrorDetails(reason=reason, retry_after=retry_after)


def rpc_error(
    code: grpc.StatusCode,
    details: str,
    *,
    reason: str | None = None,
    retry_after: float | None = None,
) -> grpc.aio.AioRpcError:
    """The error a call with this status (and ErrorInfo `reason`, RetryInfo `retry_after`
    seconds) would have raised, so the gateway answers a refusal it learnt another way (a
    RecordParts result, a SubscriptionEnded) exactly as it answers a refused call."""
    trailing = grpc.aio.Metadata()
    if reason:
        status = rich_status(code, details, reason, retry_after)
        trailing = grpc.aio.Metadata(*rpc_status.to_status(status).trailing_metadata)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """`Retry-After` in whole seconds, at least 1 (HTTP has no fractions)."""
    return {"Retry-After": str(max(1, math.ceil(seconds or 1)))}


class ApiError(Exception):
    """A refusal decided at the HTTP edge (for example: no access_token cookie)."""

    def __init__(
        self, status: int, message: str, *, code: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers) if headers else None


class EdgeHTTPException(StarletteHTTPException):
    """An HTTPException with its code, for refusals made while a request's body is read
    (FastAPI passes only HTTPExceptions from there on to the handlers below)."""

    def __init__(
        self, status: int, message: str, *, code: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.code = code


def error_body(path: str, message: str, code: str) -> dict[str, Any]:
    if path.startswith(FILES_PREFIX):
        return {"success": False, "error": message, "code": code}
    return {"error": message, "code": code}


def error_response(
    path: str, status: int, message: str, *, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(path, message, code), status_code=status, headers=headers)


@dataclass(frozen=True)
class RpcErrorAnswer:
    """What a failed backend call is answered: HTTP status, message, code, extra headers."""

    status: int
    message: str
    code: str
    headers: dict[str, str] | None = None


def rpc_error_answer(request: Request, exc: grpc.aio.AioRpcError) -> RpcErrorAnswer:
    """The one gRPC -> HTTP mapping, for JSON answers (rpc_error_response) and the pages
    of browser navigations (gateway/pages.py) alike."""
    code = exc.code()
    status = HTTP_STATUS_OF.get(code)
    path = request.url.path
    if status is None:
        log.error(
            "backend call for %s %s failed: %s %s", request.method, path, code.name, exc.details()
        )
        return RpcErrorAnswer(500, INTERNAL_ERROR, INTERNAL)
    details = rpc_error_details(exc)
    if code in _TRANSPORT_MESSAGES:
        log.warning(
            "backend call for %s %s failed: %s %s", request.method, path, code.name, exc.details()
        )
        # A service's own refusal is worded for the caller; the transport's is not.
        message = exc.details() if details.reason else _TRANSPORT_MESSAGES[code]
        return RpcErrorAnswer(
            status,
            message or _TRANSPORT_MESSAGES[code],
            details.reason or _TRANSPORT_CODES[code],
            retry_after_header(details.retry_after),
        )
    error_code = details.reason or code.name
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and details.retry_after is not None:
        # A limit that time lifts (sign-in attempts, uploads in progress): 429, not a
        # quota's 413.
        return RpcErrorAnswer(
            429,
            exc.details() or "too many requests",
            error_code,
            retry_after_header(details.retry_after),
        )
    return RpcErrorAnswer(status, exc.details() or code.name.lower(), error_code)


def rpc_error_response(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
    answer = rpc_error_answer(request, exc)
    return error_response(
        request.url.path, answer.status, answer.message, code=answer.code, headers=answer.headers
    )


def _field_name(loc: Iterable[Any]) -> str:
    """("body", "parts", 0, "ETag") -> "parts[0].ETag"."""
    parts = list(loc)
    if parts[:1] in (["body"], ["path"], ["query"]):
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name


# What a pattern of schemas.py asks, in words (a regular expression is no message).
_PATTERNS = {
    schemas.UUID_PATTERN: "must be a UUID",
    schemas.VISIBLE_TEXT_PATTERN: "must have a visible character, and no NUL",
    schemas.NO_NUL_PATTERN: "must not contain NUL characters",
    schemas.MIME_TYPE_PATTERN: "must look like type/subtype, e.g. application/pdf",
    schemas.ETAG_PATTERN: "must be an ETag: printable ASCII, at most 200 characters",
    schemas.EMAIL_PATTERN: "is not a valid address",
    schemas_v2.CHECKSUM_PATTERN: "must be a base64 CRC32C or SHA-256 digest",
    schemas_v2.SHA256_HEX_PATTERN: "must be 64 hexadecimal characters (a SHA-256)",
}


def validation_message(errors: Iterable[Mapping[str, Any]]) -> str:
    """One sentence naming every bad field, for a client's `error`."""
    missing: list[str] = []
    unknown: list[str] = []
    invalid: list[str] = []
    for error in errors:
        kind = error.get("type", "")
        field = _field_name(error.get("loc", ()))
        if kind == "json_invalid":
            return "request body is not valid JSON"
        if not field:
            if kind == "missing":
                return "request body is required: a JSON object"
            return "request body must be a JSON object sent as Content-Type: application/json"
        if kind == "missing":
            missing.append(field)
        elif kind == "extra_forbidden":
            unknown.append(field)
        elif kind == "string_pattern_mismatch":
            pattern = (error.get("ctx") or {}).get("pattern")
            described = _PATTERNS.get(str(pattern), "does not have the form the API document gives")
            invalid.append(f"{field} {described}")  # "file_id must be a UUID"
        else:
            reason = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
            invalid.append(f"{field}: {reason}")
    parts = []
    if missing:
        parts.append(f"missing fields: {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown fields: {', '.join(unknown)}")
    parts.extend(invalid)
    return "; ".join(parts) or "invalid request"


async def _on_rpc_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, grpc.aio.AioRpcError)
    return rpc_error_response(request, exc)


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        request.url.path, exc.status, exc.message, code=exc.code, headers=exc.headers
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        request.url.path, 400, validation_message(exc.errors()), code=INVALID_REQUEST
    )


# Starlette's and FastAPI's own refusals: no such route or method, a body it could not parse.
_HTTP_MESSAGES = {404: "no such endpoint", 405: "method not allowed for this endpoint"}
_HTTP_CODES = {
    400: INVALID_REQUEST,
    404: ROUTE_NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    408: REQUEST_TIMEOUT,
    413: REQUEST_TOO_LARGE,
}


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
    if isinstance(exc, EdgeHTTPException):
        code = exc.code
    elif exc.status_code >= 500:
        code = INTERNAL
    else:
        code = _HTTP_CODES.get(exc.status_code, INVALID_REQUEST)
    if exc.status_code >= 500:
        message = INTERNAL_ERROR
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), **_allow_header(request)}
    return error_response(request.url.path, exc.status_code, message, code=code, headers=headers)


def _allow_header(request: Request) -> dict[str, str]:
    """Every method of every route at this path (app.state.route_methods, written by
    app.py): Starlette's 405 names only those of the route it tried first, and a path may
    have several (GET and POST /api/v2/files)."""
    methods: set[str] = set()
    for pattern, route_methods in getattr(request.app.state, "route_methods", ()):
        if pattern.match(request.url.path):
            methods |= route_methods
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
