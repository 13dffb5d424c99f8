"""Forged access tokens (issue #14, item 7) are refused everywhere, v1 and v2 routes and
every service's RPCs, and cost bounded CPU: what can be refused without the key (another
algorithm, issuer or audience) never reaches an RSA check, and a forged token seen again is
refused from memory (counted by dropfile_token_signature_checks_total and
dropfile_access_tokens_refused_total)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import grpc
import jwt
import pytest
from prometheus_client import REGISTRY

from dropfile.auth.v1 import auth_pb2, auth_pb2_grpc
from dropfile.events.v1 import events_pb2, events_pb2_grpc
from dropfile.upload.v1 import upload_pb2, upload_pb2_grpc

# Kinds of forgery; "tampered" is the one only an RSA check can refuse.
FORGERIES = [
    "hs256 with the public key",
    "hs256 with a secret",
    "alg none",
    "wrong issuer",
    "wrong audience",
    "tampered payload",
    "no session id",
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims() -> dict:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "email": "mallory@example.com",
        "sid": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "iss": "dropfile-auth",
        "aud": "dropfile",
    }


def hs256_with(key: bytes, claims: dict) -> str:
    """What PyJWT refuses to make: an HMAC token keyed with bytes a verifier holds (the
    public key), the classic algorithm-confusion attack."""
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(claims).encode())
    )
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tampered(token: str) -> str:
    """A genuine token whose payload names someone else, its signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(uuid.uuid4())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


@pytest.fixture
def forge(key_pair, make_token):
    def make(kind: str) -> str:
        claims = _claims()
        if kind == "hs256 with the public key":
            return hs256_with(key_pair[1].encode(), claims)
        if kind == "hs256 with a secret":
            return jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256")
        if kind == "alg none":
            return jwt.encode(claims, None, algorithm="none")
        if kind == "wrong issuer":
            return make_token(iss="someone-else")
        if kind == "wrong audience":
            return make_token(aud="someone-else")
        if kind == "tampered payload":
            return tampered(make_token())
        if kind == "no session id":  # genuine, but from before tokens named their session
            return make_token(sid=None)
        raise AssertionError(kind)

    return make


def refusals(check: str) -> float:
    return (
        REGISTRY.get_sample_value("dropfile_access_tokens_refused_total", {"check": check}) or 0.0
    )


def rsa_checks() -> float:
    return sum(
        REGISTRY.get_sample_value("dropfile_token_signature_checks_total", {"outcome": outcome})
        or 0.0
        for outcome in ("valid", "invalid")
    )


def costs() -> dict[str, float]:
    """What verifying has cost so far, in every service of this test process."""
    return {
        "rsa": rsa_checks(),
        "claims": refusals("claims"),
        "memory": refusals("memory"),
        "signature": refusals("signature"),
    }


def assert_bounded_cost(
    kind: str, before: dict[str, float], *, refused: int, services: int
) -> None:
    """`refused` refusals by `services` processes (each with its own verifier): a forgery
    the claims give away never reaches RSA; a tampered one costs one RSA check per process,
    its repetitions are answered from memory."""
    spent = {name: value - before[name] for name, value in costs().items()}
    if kind == "tampered payload":
        assert spent == {
            "rsa": services,
            "claims": 0,
            "memory": refused - services,
            "signature": services,
        }, spent
    else:
        assert spent == {"rsa": 0, "claims": refused, "memory": 0, "signature": 0}, spent


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _code(call, *args, **kwargs) -> grpc.StatusCode:
    try:
        reply = call(*args, **kwargs)
        if hasattr(reply, "__next__"):
            next(reply)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("kind", FORGERIES)
def test_forged_tokens_are_401_on_v1_and_v2_routes(api_client, forge, kind):
    token = forge(kind)
    browser = api_client(cookies={"access_token": token})
    file_id = str(uuid.uuid4())
    before = costs()
    routes = [
        ("GET", "/api/auth/authenticate", None),
        ("GET", "/api/files/list", None),
        (
            "POST",
            "/api/files/record-chunk",
            {"file_id": file_id, "chunk_index": 0, "size": "5", "etag": "abc"},
        ),
        ("GET", "/api/v2/quota", None),
        ("GET", f"/api/v2/files/{file_id}", None),
        ("POST", f"/api/v2/files/{file_id}/parts", {"partNumber": 1, "size": 5, "etag": "abc"}),
        ("GET", "/api/v2/events", None),
    ]
    for method, path, body in routes:
        response = browser.request(method, path, json=body)
        assert response.status_code == 401, (kind, path, response.text)
        assert "error" in response.json()
    assert_bounded_cost(kind, before, refused=len(routes), services=3)


@pytest.mark.parametrize("kind", FORGERIES)
def test_forged_tokens_are_unauthenticated_on_every_service(
    auth_channel, upload_channel, events_channel, forge, kind
):
    metadata = bearer(forge(kind))
    upload = upload_pb2_grpc.UploadServiceStub(upload_channel)
    before = costs()
    calls = [
        (auth_pb2_grpc.AuthServiceStub(auth_channel).Authenticate, auth_pb2.AuthenticateRequest()),
        (upload.ListFiles, upload_pb2.ListFilesRequest()),
        (
            events_pb2_grpc.EventsServiceStub(events_channel).WatchFileEvents,
            events_pb2.WatchFileEventsRequest(),
        ),
        (events_pb2_grpc.EventsServiceStub(events_channel).GetStats, events_pb2.GetStatsRequest()),
    ]
    for call, request in calls:
        assert _code(call, request, metadata=metadata) == grpc.StatusCode.UNAUTHENTICATED, call
    # RecordParts carries each record's token: verified record by record.
    reply = upload.RecordParts(
        upload_pb2.RecordPartsRequest(
            records=[
                upload_pb2.PartRecord(
                    access_token=metadata[0][1].removeprefix("Bearer "),
                    part=upload_pb2.RecordPartRequest(
                        file_id=str(uuid.uuid4()), chunk_index=0, size=5, etag="abc"
                    ),
                )
            ]
        )
    )
    assert reply.results[0].code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert_bounded_cost(kind, before, refused=len(calls) + 1, services=3)


def test_a_repeated_forged_token_is_refused_from_memory(upload_channel, forge):
    upload = upload_pb2_grpc.UploadServiceStub(upload_channel)
    token = forge("tampered payload")
    before = costs()
    for _ in range(20):
        assert (
            _code(upload.ListFiles, upload_pb2.ListFilesRequest(), metadata=bearer(token))
            == grpc.StatusCode.UNAUTHENTICATED
        )
    assert_bounded_cost("tampered payload", before, refused=20, services=1)
    # Another forgery is checked on its own: memory is keyed by the whole token.
    assert (
        _code(
            upload.ListFiles,
            upload_pb2.ListFilesRequest(),
            metadata=bearer(forge("tampered payload")),
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    assert rsa_checks() == before["rsa"] + 2
