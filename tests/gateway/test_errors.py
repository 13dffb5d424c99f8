"""The one mapping of failures to HTTP answers: gRPC codes, validation, and what no
handler expected (a generic 500 without detail)."""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from fastapi import Request

from gateway.app import create_app
from gateway.errors import rpc_error_response, validation_message
from tests.fixtures.gateway import serve_gateway


def _request(path: str) -> Request:
    return Request(
        {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    )


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(
    "code,status",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    ],
)
def test_refusals_keep_the_services_message(code, status):
    response = rpc_error_response(_request("/api/files/list"), _rpc_error(code, "file not found"))
    assert response.status_code == status
    # Without an ErrorInfo reason (not one of our services), the gRPC code's name.
    assert json.loads(response.body) == {
        "success": False,
        "error": "file not found",
        "code": code.name,
    }
    auth = rpc_error_response(_request("/api/auth/signin"), _rpc_error(code, "bad"))
    assert json.loads(auth.body) == {"error": "bad", "code": code.name}


@pytest.mark.parametrize(
    "code,status",
    [
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
        (grpc.StatusCode.UNIMPLEMENTED, 500),
        (grpc.StatusCode.CANCELLED, 500),
    ],
)
def test_transport_and_internal_failures_hide_their_detail(code, status):
    secret = "failed to connect to 10.1.2.3:50052: Traceback (most recent call last)"
    response = rpc_error_response(_request("/api/files/list"), _rpc_error(code, secret))
    assert response.status_code == status
    body = json.loads(response.body)
    assert body["success"] is False and body["error"]
    assert "10.1.2.3" not in body["error"] and "Traceback" not in body["error"]
    assert body["code"] == {503: "BACKEND_UNAVAILABLE", 504: "BACKEND_TIMEOUT"}.get(
        status, "INTERNAL"
    )


def test_validation_message_names_missing_unknown_and_invalid_fields():
    message = validation_message(
        [
            {"type": "missing", "loc": ("body", "user", "email"), "msg": "Field required"},
            {"type": "missing", "loc": ("body", "user", "name"), "msg": "Field required"},
            {"type": "extra_forbidden", "loc": ("body", "colour"), "msg": "Extra inputs"},
            {
                "type": "value_error",
                "loc": ("body", "parts", 2, "ETag"),
                "msg": "Value error, must not contain NUL characters",
            },
        ]
    )
    assert message == (
        "missing fields: user.email, user.name; unknown fields: colour; "
        "parts[2].ETag: must not contain NUL characters"
    )
    assert validation_message([{"type": "json_invalid", "loc": ("body", 3)}]) == (
        "request body is not valid JSON"
    )


def test_an_unexpected_exception_is_a_generic_500_with_the_request_id(gateway_settings):
    app = create_app(gateway_settings)

    @app.get("/api/files/boom")
    async def boom():
        raise RuntimeError("secret detail from deep inside")

    @app.get("/api/auth/boom")
    async def auth_boom():
        raise KeyError("another secret")

    with serve_gateway(gateway_settings, app) as url, httpx.Client(base_url=url) as client:
        files = client.get(
            "/api/files/boom", headers={"X-Request-ID": "boom-1", "Origin": "http://localhost:5173"}
        )
        assert files.status_code == 500
        assert files.json() == {"success": False, "error": "internal error", "code": "INTERNAL"}
        assert files.headers["x-request-id"] == "boom-1"
        assert files.headers["access-control-allow-origin"] == "http://localhost:5173"
        auth = client.get("/api/auth/boom")
        assert auth.status_code == 500
        assert auth.json() == {"error": "internal error", "code": "INTERNAL"}
        assert "secret" not in auth.text


def test_a_backend_deadline_is_504(gateway_settings):
    # Sign-in hashes a password with bcrypt: it cannot answer within a millisecond.
    hasty = gateway_settings.model_copy(update={"grpc_timeout_seconds": 0.001})
    with serve_gateway(hasty) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.post(
            "/api/auth/signin",
            json={"user": {"email": "someone@example.com", "password": "a password"}},
        )
        assert response.status_code == 504
        assert "error" in response.json()
        assert response.json()["code"] == "BACKEND_TIMEOUT"


def _refusal(
    code: grpc.StatusCode, message: str, reason: str, retry_after: float | None
) -> grpc.aio.AioRpcError:
    """A refusal as a Dropfile service sends it (services/common/rich_status.py)."""
    from grpc_status import rpc_status

    from services.common.rich_status import rich_status

    status = rpc_status.to_status(rich_status(code, message, reason, retry_after))
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), details=message
    )


def test_a_limit_that_time_lifts_is_429_with_retry_after():
    response = rpc_error_response(
        _request("/api/auth/signin"),
        _refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many attempts", "RATE_LIMITED", 7.2),
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "8"
    assert json.loads(response.body) == {"error": "too many attempts", "code": "RATE_LIMITED"}
    quota = rpc_error_response(
        _request("/api/files/get-upload-urls"),
        _refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota exceeded", "QUOTA_EXCEEDED", None),
    )
    assert quota.status_code == 413 and "retry-after" not in quota.headers
    assert json.loads(quota.body)["code"] == "QUOTA_EXCEEDED"


def test_a_service_unavailable_is_503_with_its_own_retry_after():
    response = rpc_error_response(
        _request("/api/files/list"),
        _refusal(grpc.StatusCode.UNAVAILABLE, "sign-in is busy; retry", "SIGN_IN_BUSY", 3),
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert json.loads(response.body) == {
        "success": False,
        "error": "sign-in is busy; retry",
        "code": "SIGN_IN_BUSY",
    }
    transport = rpc_error_response(
        _request("/api/files/list"), _rpc_error(grpc.StatusCode.UNAVAILABLE, "10.0.0.1 refused")
    )
    assert transport.status_code == 503 and transport.headers["retry-after"] == "1"
    assert json.loads(transport.body)["code"] == "BACKEND_UNAVAILABLE"
