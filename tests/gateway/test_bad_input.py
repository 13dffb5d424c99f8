"""Bad input on every endpoint is a 4xx with an `error` (and `"success": false` on file
endpoints), never a 500: malformed bodies, missing and unknown fields, wrong types,
negative and absurd numbers, text protobuf cannot carry, and unusable access tokens."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from .conftest import PASSWORD, sign_up, start_upload, unique_email

STRING_FIELD_JUNK = [None, 123, 12.5, True, [], {}, "\u0000nul", "\ud800"]
INT_FIELD_JUNK = [None, "1", 1.5, True, -1, 2**31, 2**70, [], {}]
BYTE_COUNT_JUNK = [
    None,
    "-5",
    "1.5",
    "1e3",
    "abc",
    "",
    " 5",
    "5 ",
    "9" * 30,
    "١٢",
    1.5,
    True,
    -1,
    2**64,
    [],
    {},
]


@pytest.fixture(scope="module")
def file_user(gateway_url):
    """A signed-in user with one upload under way, whose ids the bodies below use."""
    with httpx.Client(base_url=gateway_url, timeout=60) as client:
        assert sign_up(client).status_code == 200
        file_id, started = start_upload(client, b"0123456789")
        s3_key = next(f["s3Key"] for f in client.get("/api/files/list").json()["files"])
        yield client, {"file_id": file_id, "upload_id": started["uploadId"], "s3_key": s3_key}


# Each endpoint: method, path, and a valid body (given the user's upload) with its fields'
# kinds ("str", "int" or "bytes"), so every field gets junk of the wrong kind.
ENDPOINTS: dict[str, tuple[str, str, Callable[[dict], dict], dict[str, str]]] = {
    "signup": (
        "POST",
        "/api/auth/signup",
        lambda ids: {"user": {"email": unique_email(), "name": "G", "password": PASSWORD}},
        {},
    ),
    "signin": (
        "POST",
        "/api/auth/signin",
        lambda ids: {"user": {"email": unique_email(), "password": PASSWORD}, "rememberMe": False},
        {"rememberMe": "bool"},
    ),
    "get-upload-urls": (
        "POST",
        "/api/files/get-upload-urls",
        lambda ids: {
            "file_id": str(uuid.uuid4()),
            "file_name": "a.txt",
            "file_type": "text/plain",
            "file_size": "10",
        },
        {"file_id": "str", "file_name": "str", "file_type": "str", "file_size": "bytes"},
    ),
    "record-chunk": (
        "POST",
        "/api/files/record-chunk",
        lambda ids: {"file_id": ids["file_id"], "chunk_index": 0, "size": "10", "etag": "a" * 32},
        {"file_id": "str", "chunk_index": "int", "size": "bytes", "etag": "str"},
    ),
    "complete-upload": (
        "POST",
        "/api/files/complete-upload",
        lambda ids: {
            "uploadId": ids["upload_id"],
            "fileId": ids["file_id"],
            "parts": [{"ETag": '"' + "a" * 32 + '"', "PartNumber": 1}],
        },
        {"uploadId": "str", "fileId": "str", "parts": "list"},
    ),
    "abort-upload": (
        "POST",
        "/api/files/abort-upload",
        lambda ids: {"uploadId": ids["upload_id"], "file_id": str(uuid.uuid4())},
        {"uploadId": "str", "file_id": "str"},
    ),
    "get-download-url": (
        "POST",
        "/api/files/get-download-url",
        lambda ids: {"s3_key": ids["s3_key"]},
        {"s3_key": "str"},
    ),
    "delete": (
        "DELETE",
        "/api/files/delete",
        lambda ids: {"file_id": str(uuid.uuid4())},
        {"file_id": "str"},
    ),
}
JUNK = {
    "str": STRING_FIELD_JUNK,
    "int": INT_FIELD_JUNK,
    "bytes": BYTE_COUNT_JUNK,
    "bool": ["yes", 1, "true", [], {}],
    "list": [
        None,
        "parts",
        {},
        [1],
        [None],
        [{"ETag": "a"}],
        [{"ETag": "a", "PartNumber": 0}],
        [{"ETag": "a", "PartNumber": "1"}],
        [{"ETag": "a", "PartNumber": 1, "Size": 5}],
        [{"ETag": 5, "PartNumber": 1}],
    ],
}
NESTED = {
    "signup": [("user", f) for f in ("email", "name", "password")],
    "signin": [("user", f) for f in ("email", "password")],
}

# The contract lets clients leave these out.
OPTIONAL_FIELDS = {"file_type", "rememberMe"}

Mutation = Callable[[dict], dict[str, Any]]  # valid body -> httpx request kwargs


def _raw(text: str, content_type: str | None = "application/json") -> dict[str, Any]:
    headers = {"Content-Type": content_type} if content_type else {}
    return {"content": text.encode("utf-8", "surrogatepass"), "headers": headers}


def _as_json(body: Any) -> dict[str, Any]:
    # json.dumps escapes lone surrogates, which httpx's own encoder cannot send.
    return _raw(json.dumps(body))


def _without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


def _mutations(name: str) -> list[tuple[str, Mutation]]:
    _, _, _, fields = ENDPOINTS[name]
    cases: list[tuple[str, Mutation]] = [
        ("empty body", lambda body: _raw("")),
        ("not JSON", lambda body: _raw("{oops")),
        ("truncated JSON", lambda body: _raw(json.dumps(body)[:-1])),
        ("JSON array", lambda body: _as_json([body])),
        ("JSON string", lambda body: _as_json("body")),
        ("JSON null", lambda body: _raw("null")),
        ("text/plain", lambda body: _raw(json.dumps(body), "text/plain")),
        ("no content type", lambda body: _raw(json.dumps(body), None)),
        ("form encoded", lambda body: {"data": {"a": "b"}}),
        ("unknown field", lambda body: _as_json({**body, "isAdmin": True})),
        ("deeply nested JSON", lambda body: _raw("[" * 100_000 + "]" * 100_000)),
        (
            "not UTF-8",
            lambda body: {
                "content": b'{"a": "\xff\xfe"}',
                "headers": {"Content-Type": "application/json"},
            },
        ),
    ]
    for field, kind in fields.items():
        if field not in OPTIONAL_FIELDS:
            cases.append((f"missing {field}", lambda body, f=field: _as_json(_without(body, f))))
        for junk in JUNK[kind]:
            cases.append(
                (f"{field}={junk!r:.20}", lambda body, f=field, j=junk: _as_json({**body, f: j}))
            )
        if kind in ("int", "bytes"):
            # Numbers JSON can spell but Python's json turns into inf, nan or a huge int.
            for literal in ("1e999", "NaN", "-Infinity", "7" * 5000):
                cases.append(
                    (
                        f"{field}={literal:.20}",
                        lambda body, f=field, raw=literal: _raw(
                            json.dumps({**body, f: "__RAW__"}).replace('"__RAW__"', raw)
                        ),
                    )
                )
    for outer, field in NESTED.get(name, []):
        cases.append(
            (
                f"missing {outer}.{field}",
                lambda body, o=outer, f=field: _as_json({**body, o: _without(body[o], f)}),
            )
        )
        cases.append(
            (
                f"unknown {outer}.extra",
                lambda body, o=outer: _as_json({**body, o: {**body[o], "extra": 1}}),
            )
        )
        for junk in STRING_FIELD_JUNK:
            cases.append(
                (
                    f"{outer}.{field}={junk!r:.20}",
                    lambda body, o=outer, f=field, j=junk: _as_json({**body, o: {**body[o], f: j}}),
                )
            )
    if NESTED.get(name):
        cases.append(("user not an object", lambda body: _as_json({**body, "user": "me"})))
    return cases


CASES = [
    pytest.param(name, mutate, id=f"{name}: {label}")
    for name in ENDPOINTS
    for label, mutate in _mutations(name)
]


def _assert_refused(response: httpx.Response, path: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    if path.startswith("/api/files"):
        assert body["success"] is False


@pytest.mark.parametrize("name,mutate", CASES)
def test_bad_body_is_a_4xx_with_an_error(file_user, name, mutate):
    client, ids = file_user
    method, path, valid, _ = ENDPOINTS[name]
    response = client.request(method, path, **mutate(valid(ids)))
    _assert_refused(response, path)
    if response.status_code == 400:
        assert "Traceback" not in response.text


def test_validation_errors_name_the_fields(file_user):
    client, ids = file_user
    response = client.post(
        "/api/files/record-chunk",
        json={"file_id": ids["file_id"], "chunk_index": -1, "size": "x", "colour": "red"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    for needle in ("etag", "chunk_index", "size", "colour"):
        assert needle in error, error
    nested = client.post(
        "/api/files/complete-upload",
        json={"uploadId": "u", "fileId": ids["file_id"], "parts": [{"ETag": "e", "PartNumber": 0}]},
    )
    assert nested.status_code == 400
    assert "parts[0].PartNumber" in nested.json()["error"]


@pytest.mark.parametrize("value", ["", "abc", "-1", "1.5", "1" * 20, -1, 1.5, True])
def test_decimal_sizes_refuse_what_is_not_a_byte_count(file_user, value):
    client, _ = file_user
    response = client.post(
        "/api/files/get-upload-urls",
        json={"file_id": str(uuid.uuid4()), "file_name": "a", "file_type": "", "file_size": value},
    )
    assert response.status_code == 400
    assert "file_size" in response.json()["error"]


def test_oversized_text_fields_are_refused_by_the_service(file_user):
    client, ids = file_user
    for body in (
        {
            "file_id": str(uuid.uuid4()),
            "file_name": "n" * 100_000,
            "file_type": "",
            "file_size": "1",
        },
        {"file_id": "f" * 100_000, "file_name": "n", "file_type": "", "file_size": "1"},
        {
            "file_id": str(uuid.uuid4()),
            "file_name": "n",
            "file_type": "t/" + "x" * 500,
            "file_size": "1",
        },
    ):
        _assert_refused(
            client.post("/api/files/get-upload-urls", json=body), "/api/files/get-upload-urls"
        )
    response = client.post(
        "/api/files/record-chunk",
        json={"file_id": ids["file_id"], "chunk_index": 0, "size": "10", "etag": "e" * 100_000},
    )
    _assert_refused(response, "/api/files/record-chunk")
    response = client.post("/api/files/get-download-url", json={"s3_key": "k" * 100_000})
    _assert_refused(response, "/api/files/get-download-url")


def _unusable_tokens(make_token) -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "email": "e@example.com",
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "iss": "dropfile-auth",
        "aud": "dropfile",
    }
    return {
        "forged": jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "expired": make_token(iat=now - 3600, exp=now - 60),
        "garbage": "garbage",
    }


@pytest.mark.parametrize(
    "name",
    [n for n in ENDPOINTS if n.startswith(("get-", "record", "complete", "abort", "delete"))]
    + ["list"],
)
def test_unusable_access_tokens_are_401_on_every_file_endpoint(
    api_client, file_user, make_token, name
):
    _, ids = file_user
    if name == "list":
        method, path, body = "GET", "/api/files/list", None
    else:
        method, path, valid, _ = ENDPOINTS[name]
        body = valid(ids)
    for label, token in _unusable_tokens(make_token).items():
        client = api_client(cookies={"access_token": token})
        response = client.request(method, path, json=body)
        assert response.status_code == 401, (label, response.text)
        assert response.json()["success"] is False and response.json()["error"]
