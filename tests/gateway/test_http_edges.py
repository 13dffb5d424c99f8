"""What surrounds the routes: CORS for credentialed browser calls, request ids, probes,
OpenAPI, unknown routes and oversized bodies."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from services.common.logs import request_id_var
from tests.fixtures.gateway import serve_gateway
from tools.processes import free_port

DEV_ORIGIN = "http://localhost:5173"


def test_cors_preflight_from_a_listed_origin_allows_credentials_for_that_origin(api_client):
    response = api_client().options(
        "/api/files/get-upload-urls",
        headers={
            "Origin": DEV_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == DEV_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


def test_cors_actual_request_echoes_the_origin_and_exposes_the_request_id(api_client):
    response = api_client().get("/api/auth/authenticate", headers={"Origin": DEV_ORIGIN})
    assert response.status_code == 401  # errors must be readable cross-origin too
    assert response.headers["access-control-allow-origin"] == DEV_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_cors_ignores_origins_that_are_not_listed(api_client):
    client = api_client()
    preflight = client.options(
        "/api/auth/signin",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    actual = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in actual.headers


def test_wildcard_cors_origin_is_refused_by_the_settings():
    with pytest.raises(ValidationError, match="explicitly"):
        GatewaySettings(_env_file=None, cors_origins="http://localhost:5173,*")


def test_request_id_is_echoed_or_made_up(api_client):
    client = api_client()
    echoed = client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert echoed.headers["x-request-id"] == "trace-abc.123"
    made_up = client.get("/healthz")
    assert len(made_up.headers["x-request-id"]) >= 16
    assert made_up.headers["x-request-id"] != client.get("/healthz").headers["x-request-id"]
    # A value unfit for logs and metadata is replaced, never echoed.
    unfit = client.get("/healthz", headers={"X-Request-ID": "a b;c" + "x" * 300})
    assert unfit.headers["x-request-id"] != "a b;c" + "x" * 300
    error = client.get("/api/files/list", headers={"X-Request-ID": "on-error-1"})
    assert error.status_code == 401
    assert error.headers["x-request-id"] == "on-error-1"


def test_healthz_answers_while_the_process_is_up(api_client):
    response = api_client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_every_backend_serves(api_client):
    response = api_client().get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["backends"] == {
        "auth": "SERVING",
        "upload": "SERVING",
        "events": "SERVING",
    }


def test_readyz_is_503_naming_the_backend_that_is_down(gateway_settings):
    broken = gateway_settings.model_copy(
        update={
            "upload_service_addr": f"127.0.0.1:{free_port()}",
            "readiness_timeout_seconds": 1.0,
        }
    )
    with serve_gateway(broken) as url, httpx.Client(base_url=url, timeout=30) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert "upload" in body["error"]
        assert body["backends"]["upload"] != "SERVING"
        assert body["backends"]["auth"] == "SERVING"
        assert client.get("/healthz").status_code == 200
        # A route whose backend is down is a clean 503, not a 500.
        listing = client.get("/api/files/list", headers={"Cookie": "access_token=a.b.c"})
        assert listing.status_code == 503
        assert listing.json()["success"] is False
        assert "127.0.0.1" not in listing.json()["error"]


def test_openapi_lists_every_route_and_docs_are_served(api_client):
    client = api_client()
    schema = client.get("/openapi.json").json()
    expected = {
        ("post", "/api/auth/signup"),
        ("post", "/api/auth/signin"),
        ("get", "/api/auth/signout"),
        ("get", "/api/auth/refresh"),
        ("get", "/api/auth/authenticate"),
        ("post", "/api/files/get-upload-urls"),
        ("post", "/api/files/record-chunk"),
        ("post", "/api/files/complete-upload"),
        ("post", "/api/files/abort-upload"),
        ("post", "/api/files/get-download-url"),
        ("get", "/api/files/list"),
        ("delete", "/api/files/delete"),
        ("get", "/healthz"),
        ("get", "/readyz"),
    }
    listed = {(method, path) for path, item in schema["paths"].items() for method in item}
    assert expected <= listed
    # Invalid requests are answered 400, so the docs must not promise 422.
    assert all(
        "422" not in op["responses"] for item in schema["paths"].values() for op in item.values()
    )
    # The routes that act for the signed-in user name the cookie they need; sign-in not.
    assert schema["components"]["securitySchemes"]["accessTokenCookie"] | {"description": ""} == {
        "type": "apiKey",
        "in": "cookie",
        "name": "access_token",
        "description": "",
    }
    for method, path in (
        ("post", "/api/files/record-chunk"),
        ("get", "/api/files/list"),
        ("post", "/api/v2/files"),
        ("get", "/api/v2/events"),
        ("get", "/api/auth/authenticate"),
    ):
        assert schema["paths"][path][method]["security"] == [{"accessTokenCookie": []}], path
    for method, path in (
        ("post", "/api/auth/signin"),
        ("get", "/api/auth/refresh"),
        ("get", "/healthz"),
    ):
        assert "security" not in schema["paths"][path][method], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_unknown_routes_and_methods_are_json_errors(api_client):
    client = api_client()
    missing = client.get("/api/nope")
    assert missing.status_code == 404
    assert "error" in missing.json()
    missing_file_route = client.post("/api/files/nope", json={})
    assert missing_file_route.status_code == 404
    assert missing_file_route.json()["success"] is False
    wrong_method = client.get("/api/auth/signup")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()


def test_a_body_over_the_limit_is_413(api_client, gateway_settings):
    too_big = "x" * (gateway_settings.max_request_body_bytes + 1)
    response = api_client().post(
        "/api/auth/signin", json={"user": {"email": too_big, "password": "p"}}
    )
    assert response.status_code == 413
    assert "error" in response.json()


def test_a_streamed_body_over_the_limit_is_413(api_client, gateway_settings):
    chunk = b"x" * 65536
    chunks = gateway_settings.max_request_body_bytes // len(chunk) + 2

    def body():  # no Content-Length: sent chunked
        yield b'{"user": {"email": "'
        for _ in range(chunks):
            yield chunk
        yield b'", "password": "p"}}'

    response = api_client().post(
        "/api/auth/signin", content=body(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large", "code": "REQUEST_TOO_LARGE"}


def test_the_request_id_reaches_the_backends(signed_in):
    seen: list[tuple[str, str]] = []

    class RequestIdCapture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # Runs in the service's RPC thread, where its interceptor set the request id.
            seen.append((record.name, request_id_var.get()))

    capture = RequestIdCapture(level=logging.INFO)
    logger = logging.getLogger("services.upload")
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(capture)
    try:
        response = signed_in().post(
            "/api/files/get-upload-urls",
            headers={"X-Request-ID": "trace-to-backend-1"},
            json={
                "file_id": str(uuid.uuid4()),
                "file_name": "a.txt",
                "file_type": "",
                "file_size": "3",
            },
        )
    finally:
        logger.removeHandler(capture)
        logger.setLevel(previous_level)
    assert response.status_code == 200
    assert any(request_id == "trace-to-backend-1" for name, request_id in seen), seen
