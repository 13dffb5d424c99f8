"""Every error body carries a `code` clients can branch on (gateway/errors.py): the catalog
holds every ErrorInfo reason the services raise, and each refusal, made by the gateway or
by a service behind it, answers with its code over real HTTP against the real services."""

from __future__ import annotations

import ast
import re
import socket
import uuid
from pathlib import Path

import httpx
import pytest

from gateway.errors import ERROR_CODE, ERROR_CODES
from tests.fixtures.gateway import serve_gateway

from .conftest import PASSWORD, put_part, sign_up, start_upload, unique_email

ROOT = Path(__file__).resolve().parents[2]


def _reasons_raised_by_services() -> set[str]:
    """Every ErrorInfo reason written in services/: `reason="..."` arguments, the
    DomainError subclasses' `reason = "..."`, the interceptor's `_abort(..., "REASON")`,
    and defaults of parameters named `*reason`."""
    found: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("reason", "error_reason"):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    found.add(node.value.value)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (
                        isinstance(item, ast.Assign)
                        and [getattr(t, "id", None) for t in item.targets] == ["reason"]
                        and isinstance(item.value, ast.Constant)
                    ):
                        found.add(item.value.value)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_abort":
                found.update(
                    arg.value
                    for arg in node.args
                    if isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and re.fullmatch(r"[A-Z][A-Z0-9_]+", arg.value)
                )
            elif isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "").endswith(
                "reason"
            ):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    found.add(node.value.value)
            elif isinstance(node, ast.arguments):
                names = [a.arg for a in node.args[len(node.args) - len(node.defaults) :]]
                for name, default in zip(names, node.defaults):
                    if name.endswith("reason") and isinstance(default, ast.Constant):
                        if isinstance(default.value, str):
                            found.add(default.value)
    found.discard("ERROR")  # DomainError's own, never raised as such
    return found


def test_every_reason_the_services_raise_is_a_documented_code():
    reasons = _reasons_raised_by_services()
    assert {"PART_NOT_RECORDED", "QUOTA_EXCEEDED", "BAD_CREDENTIALS"} <= reasons  # the scan works
    assert reasons - set(ERROR_CODE) == set()


def test_codes_are_unique_and_shaped_for_branching():
    codes = [entry.code for entry in ERROR_CODES]
    assert len(codes) == len(set(codes))
    for entry in ERROR_CODES:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", entry.code)
        assert 400 <= entry.status <= 599 and entry.meaning
        # Whatever time may cure is 408, 429 or 5xx: the status and the code agree.
        if entry.status in (408, 429) or entry.status >= 500:
            assert entry.transient, entry.code


def test_the_readme_documents_every_code():
    readme = (ROOT / "README.md").read_text()
    for entry in ERROR_CODES:
        assert re.search(rf"^\| `{entry.code}` \| {entry.status} \|", readme, re.M), entry.code


# --- over HTTP, against the real services ------------------------------------------------


def _code(response: httpx.Response) -> str:
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body["code"]


def test_refusals_made_by_the_gateway_itself(api_client):
    client = api_client()
    missing_cookie = client.get("/api/files/list")
    assert (missing_cookie.status_code, _code(missing_cookie)) == (401, "ACCESS_TOKEN_MISSING")
    assert missing_cookie.json()["success"] is False  # v1's shape, plus the code
    unusable = api_client(cookies={"access_token": "a token with spaces"}).get("/api/v2/quota")
    assert (unusable.status_code, _code(unusable)) == (401, "ACCESS_TOKEN_INVALID")
    unknown_route = client.get("/api/nothing-here")
    assert (unknown_route.status_code, _code(unknown_route)) == (404, "ROUTE_NOT_FOUND")
    wrong_method = client.get("/api/auth/signin")
    assert (wrong_method.status_code, _code(wrong_method)) == (405, "METHOD_NOT_ALLOWED")
    # Allow names every method of the path, whichever route has it.
    for path, methods in [("/api/v2/files", {"GET", "POST"}), ("/s/x", {"GET", "POST"})]:
        refused = client.put(path)
        assert (refused.status_code, _code(refused)) == (405, "METHOD_NOT_ALLOWED")
        assert methods <= set(refused.headers["allow"].split(", ")), refused.headers["allow"]
    invalid = client.post("/api/auth/signup", json={"user": {"email": "a@example.com"}})
    assert (invalid.status_code, _code(invalid)) == (400, "INVALID_REQUEST")
    not_json = client.post(
        "/api/auth/signin", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (not_json.status_code, _code(not_json)) == (400, "INVALID_REQUEST")
    too_large = client.post(
        "/api/auth/signin",
        content=b" " * (3 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert (too_large.status_code, _code(too_large)) == (413, "REQUEST_TOO_LARGE")


def test_auth_refusals_carry_the_services_reason(api_client):
    client = api_client()
    email = unique_email()
    assert sign_up(client, email).status_code == 200
    taken = sign_up(api_client(), email)
    assert (taken.status_code, _code(taken)) == (409, "ALREADY_EXISTS")
    wrong = api_client().post(
        "/api/auth/signin", json={"user": {"email": email, "password": PASSWORD + "!"}}
    )
    assert (wrong.status_code, _code(wrong)) == (401, "BAD_CREDENTIALS")
    no_session = api_client().get("/api/auth/refresh")
    assert (no_session.status_code, _code(no_session)) == (401, "REFRESH_TOKEN_INVALID")
    # 72 characters, but more than bcrypt's 72 bytes: the service refuses it.
    long = api_client().post(
        "/api/auth/signup",
        json={"user": {"email": unique_email(), "name": "Ada", "password": "é" * 40}},
    )
    assert (long.status_code, _code(long)) == (400, "INVALID_ARGUMENT")
    short = api_client().post(
        "/api/auth/signup",
        json={"user": {"email": unique_email(), "name": "Ada", "password": "short"}},
    )
    assert (short.status_code, _code(short)) == (400, "INVALID_REQUEST")
    # A well-formed token the services do not believe (signed by another key).
    forged = api_client(cookies={"access_token": "e30.e30.c2lnbmF0dXJl"}).get(
        "/api/auth/authenticate"
    )
    assert (forged.status_code, _code(forged)) == (401, "ACCESS_TOKEN_INVALID")


def test_upload_refusals_carry_the_services_reason(signed_in, api_client):
    client = signed_in()
    too_big = client.post(
        "/api/files/get-upload-urls",
        json={
            "file_id": str(uuid.uuid4()),
            "file_name": "huge.bin",
            "file_type": "",
            "file_size": str(10**15),
        },
    )
    assert (too_big.status_code, _code(too_big)) == (400, "FILE_TOO_LARGE")
    assert too_big.json()["success"] is False

    data = b"x" * 1000
    file_id, started = start_upload(client, data)
    again = client.post(
        "/api/files/get-upload-urls",
        json={"file_id": file_id, "file_name": "b", "file_type": "", "file_size": "1"},
    )
    assert (again.status_code, _code(again)) == (409, "ALREADY_EXISTS")
    stranger = signed_in().post(
        "/api/files/record-chunk",
        json={"file_id": file_id, "chunk_index": 0, "size": "1000", "etag": "abc"},
    )
    assert (stranger.status_code, _code(stranger)) == (404, "NOT_FOUND")
    download = client.post("/api/files/get-download-url", json={"s3_key": listed_key(client)})
    assert (download.status_code, _code(download)) == (409, "NOT_UPLOADED")
    etag = put_part(started["presignedUrls"][0], data)
    unrecorded = client.post(
        "/api/files/complete-upload",
        json={
            "uploadId": started["uploadId"],
            "fileId": file_id,
            "parts": [{"ETag": etag, "PartNumber": 1}],
        },
    )
    assert (unrecorded.status_code, _code(unrecorded)) == (409, "PART_NOT_RECORDED")
    checksummed = client.post(
        f"/api/v2/files/{file_id}/part-urls",
        json={"first_part": 1, "last_part": 1, "checksums": ["AAAAAA=="]},
    )
    assert (checksummed.status_code, _code(checksummed)) == (409, "NO_CHECKSUMS")

    aborted = client.post(
        "/api/files/abort-upload", json={"uploadId": started["uploadId"], "file_id": file_id}
    )
    assert aborted.status_code == 200
    late = client.post(
        f"/api/v2/files/{file_id}/parts/batch",
        json={"parts": [{"partNumber": 1, "size": 1000, "etag": etag.strip('"')}]},
    )
    # A batch's refusal keeps its part's reason, as a single record's does.
    assert (late.status_code, _code(late)) == (409, "UPLOAD_ABORTED")
    assert late.json()["error"].startswith("part 1: ")
    single = client.post(
        "/api/files/record-chunk",
        json={"file_id": file_id, "chunk_index": 0, "size": "1000", "etag": "abc"},
    )
    assert (single.status_code, _code(single)) == (409, "UPLOAD_ABORTED")


def listed_key(client: httpx.Client) -> str:
    files = client.get("/api/files/list").json()["files"]
    return files[0]["s3Key"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("path", ["/api/v2/quota", "/api/files/list"])
def test_an_unreachable_backend_is_503_backend_unavailable(gateway_settings, make_token, path):
    nowhere = f"127.0.0.1:{_closed_port()}"
    settings = gateway_settings.model_copy(
        update={
            "upload_service_addr": nowhere,
            "auth_service_addr": nowhere,
            "events_service_addr": nowhere,
            "grpc_timeout_seconds": 5.0,
            "readiness_timeout_seconds": 1.0,
        }
    )
    cookies = {"access_token": make_token()}
    with (
        serve_gateway(settings) as url,
        httpx.Client(base_url=url, timeout=30, cookies=cookies) as client,
    ):
        response = client.get(path)
        assert response.status_code in (503, 504)
        assert (
            _code(response)
            == {503: "BACKEND_UNAVAILABLE", 504: "BACKEND_TIMEOUT"}[response.status_code]
        )
        assert int(response.headers["retry-after"]) >= 1
        ready = client.get("/readyz")
        assert (ready.status_code, _code(ready)) == (503, "NOT_READY")
