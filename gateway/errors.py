"""Every error the gateway answers, shaped in one place: gRPC status -> HTTP status, request
validation -> 400, unknown routes -> 404/405; anything unexpected becomes a generic 500
in middleware.py.

Bodies follow the v1 contract: `{"error": msg}`, plus `"success": false` on file endpoints.
No traceback or backend detail (addresses, exception text) ever reaches a response."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("gateway.errors")

FILES_PREFIX = "/api/files"
INTERNAL_ERROR = "internal error"

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
# name internal addresses, so callers get a fixed message instead.
_TRANSPORT_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "a backend service is unavailable; retry later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "a backend service did not answer in time; retry later",
}


ERROR_DOMAIN = "dropfile"  # services/common/grpc_server.py's ErrorInfo domain


@dataclass(frozen=True)
class RpcErrorDetails:
    """What a Dropfile service attached to a refusal: its reason (google.rpc.ErrorInfo), and
    when a retry may succeed (google.rpc.RetryInfo). Empty for transport errors."""

    reason: str | None = None
    retry_after: float | None = None


def rpc_error_details(exc: grpc.aio.AioRpcError) -> RpcErrorDetails:
    try:
        status = rpc_status.from_call(exc)
    except ValueError:  # details that contradict the call's code: not one of ours
        return RpcErrorDetails()
    if status is None:
        return RpcErrorDetails()
    reason = retry_after = None
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


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """`Retry-After` in whole seconds, at least 1 (HTTP has no fractions)."""
    return {"Retry-After": str(max(1, math.ceil(seconds or 1)))}


class ApiError(Exception):
    """A refusal decided at the HTTP edge (for example: no access_token cookie)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(path: str, message: str) -> dict[str, Any]:
    if path.startswith(FILES_PREFIX):
        return {"success": False, "error": message}
    return {"error": message}


def error_response(
    path: str, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(path, message), status_code=status, headers=headers)


@dataclass(frozen=True)
class RpcErrorAnswer:
    """What a failed backend call is answered: HTTP status, message, extra headers."""

    status: int
    message: str
    headers: dict[str, str] | None = None


def rpc_error_answer(request: Request, exc: grpc.aio.AioRpcError) -> RpcErrorAnswer:
    """The one gRPC -> HTTP mapping, for JSON answers (rpc_error_response) and the pages
    of browser navigations (gateway/pages.py) alike."""
    code = exc.code()
    status = HTTP_STATUS_OF.get(code)
    if status is None:
        log.error(
            "backend call for %s %s failed: %s %s",
            request.method,
            request.url.path,
            code.name,
            exc.details(),
        )
        return RpcErrorAnswer(500, INTERNAL_ERROR)
    details = rpc_error_details(exc)
    if code in _TRANSPORT_MESSAGES:
        log.warning(
            "backend call for %s %s failed: %s %s",
            request.method,
            request.url.path,
            code.name,
            exc.details(),
        )
        # A service's own refusal is worded for the caller; the transport's is not.
        message = exc.details() if details.reason else _TRANSPORT_MESSAGES[code]
        return RpcErrorAnswer(
            status,
            message or _TRANSPORT_MESSAGES[code],
            retry_after_header(details.retry_after),
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and details.retry_after is not None:
        # A limit that time lifts (sign-in attempts, uploads in progress): 429, not a
        # quota's 413.
        return RpcErrorAnswer(
            429, exc.details() or "too many requests", retry_after_header(details.retry_after)
        )
    return RpcErrorAnswer(status, exc.details() or code.name.lower())


def rpc_error_response(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
    answer = rpc_error_answer(request, exc)
    return error_response(request.url.path, answer.status, answer.message, headers=answer.headers)


def _field_name(loc: Iterable[Any]) -> str:
    """("body", "parts", 0, "ETag") -> "parts[0].ETag"."""
    parts = list(loc)
    if parts[:1] == ["body"]:
        parts = parts[1:]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name


def validation_message(errors: Iterable[dict[str, Any]]) -> str:
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
    return error_response(request.url.path, exc.status, exc.message)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(request.url.path, 400, validation_message(exc.errors()))


_HTTP_MESSAGES = {404: "no such endpoint", 405: "method not allowed for this endpoint"}


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = _HTTP_MESSAGES.get(exc.status_code) or str(exc.detail)
    if exc.status_code >= 500:
        message = INTERNAL_ERROR
    return error_response(request.url.path, exc.status_code, message, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(grpc.aio.AioRpcError, _on_rpc_error)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
