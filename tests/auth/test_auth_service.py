"""AuthService over gRPC against the real PostgreSQL."""

from __future__ import annotations

import time
import uuid

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dropfile.auth.v1 import auth_pb2


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def signup(stub, email=None, password="correct horse battery", remember_me=False):
    email = email or unique_email()
    reply = stub.SignUp(
        auth_pb2.SignUpRequest(email=email, name="Ada", password=password, remember_me=remember_me)
    )
    return email, reply


def error_of(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


def bearer(token: str):
    return [("authorization", f"Bearer {token}")]


def test_sign_up_issues_a_verified_rs256_token_with_every_claim(auth_stub, key_pair):
    email, reply = signup(auth_stub)
    claims = jwt.decode(
        reply.tokens.access_token,
        key_pair[1],
        algorithms=["RS256"],
        audience="dropfile",
        issuer="dropfile-auth",
    )
    assert claims["sub"] == reply.user_id
    assert claims["email"] == email
    assert {"iat", "exp", "jti"} <= claims.keys()
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert reply.tokens.access_token_expires_in_seconds == 900
    assert len(reply.tokens.refresh_token) >= 43  # 256 bits, base64url
    uuid.UUID(reply.tokens.device_id)
    assert reply.tokens.session_expires_in_seconds <= 24 * 3600


@pytest.mark.slow
def test_passwords_are_bcrypt_cost_12_and_refresh_tokens_only_hashed(common_settings, db_engine):
    """An auth server of its own with the product's default cost (the session's hashes at
    the cheapest, tests/fixtures/auth.py)."""
    from sqlalchemy import text

    from dropfile.auth.v1 import auth_pb2_grpc
    from services.auth.server import create_server
    from services.auth.settings import AuthSettings
    from tests.conftest import settings_for

    settings = settings_for(AuthSettings, common_settings)
    assert settings.bcrypt_rounds == 12
    handle = create_server(settings, port=0)
    handle.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            email, reply = signup(auth_pb2_grpc.AuthServiceStub(channel))
    finally:
        handle.stop(0).wait()
    with db_engine.connect() as conn:
        password_hash = conn.execute(
            text("select password_hash from users where email=:e"), {"e": email}
        ).scalar_one()
        stored = conn.execute(
            text("select refresh_token_hash from device_sessions where id=:d"),
            {"d": reply.tokens.device_id},
        ).scalar_one()
    assert password_hash.startswith("$2b$12$")
    assert stored != reply.tokens.refresh_token and len(stored) == 64


def test_duplicate_email_is_already_exists_case_insensitively(auth_stub):
    email, _ = signup(auth_stub)
    err = error_of(signup, auth_stub, email=email.upper())
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    "email,name,password,needle",
    [
        ("", "Ada", "long enough pw", "email"),
        ("a@b.co", "", "long enough pw", "name"),
        ("not-an-email", "Ada", "long enough pw", "email"),
        ("a@b.co", "Ada", "short", "at least 8"),
        ("a@b.co", "Ada", "x" * 73, "72 bytes"),
    ],
)
def test_sign_up_rejects_bad_input_with_a_clear_message(auth_stub, email, name, password, needle):
    err = error_of(
        auth_stub.SignUp, auth_pb2.SignUpRequest(email=email, name=name, password=password)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.details()
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(err).details[0].Unpack(info)
    assert info.domain == "dropfile"


@pytest.mark.slow
def test_sign_in_does_not_reveal_whether_the_email_exists(auth_stub):
    email, _ = signup(auth_stub)
    wrong_password = error_of(
        auth_stub.SignIn, auth_pb2.SignInRequest(email=email, password="wrong password")
    )
    unknown = error_of(
        auth_stub.SignIn, auth_pb2.SignInRequest(email=unique_email(), password="wrong password")
    )
    assert wrong_password.code() == unknown.code() == grpc.StatusCode.UNAUTHENTICATED
    assert wrong_password.details() == unknown.details()


def test_remember_me_chooses_a_long_session(auth_stub):
    email, _ = signup(auth_stub)
    short = auth_stub.SignIn(auth_pb2.SignInRequest(email=email, password="correct horse battery"))
    long = auth_stub.SignIn(
        auth_pb2.SignInRequest(email=email, password="correct horse battery", remember_me=True)
    )
    assert short.tokens.session_expires_in_seconds <= 24 * 3600
    assert long.tokens.session_expires_in_seconds > 7 * 24 * 3600
    assert short.tokens.device_id != long.tokens.device_id


def test_refresh_rotates_and_a_reused_token_revokes_the_session(auth_stub):
    _, reply = signup(auth_stub)
    first = reply.tokens
    rotated = auth_stub.Refresh(
        auth_pb2.RefreshRequest(refresh_token=first.refresh_token, device_id=first.device_id)
    ).tokens
    assert rotated.refresh_token != first.refresh_token
    assert rotated.device_id == first.device_id
    rotated = auth_stub.Refresh(
        auth_pb2.RefreshRequest(refresh_token=rotated.refresh_token, device_id=first.device_id)
    ).tokens
    # A token two rotations old (the grace window covers only the last one): theft
    # suspected, the session ends...
    err = error_of(
        auth_stub.Refresh,
        auth_pb2.RefreshRequest(refresh_token=first.refresh_token, device_id=first.device_id),
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    # ...so even the newest token no longer works.
    err = error_of(
        auth_stub.Refresh,
        auth_pb2.RefreshRequest(refresh_token=rotated.refresh_token, device_id=first.device_id),
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("token,device", [("", ""), ("x", "not-a-uuid"), ("x", str(uuid.uuid4()))])
def test_refresh_with_missing_or_unknown_credentials_is_unauthenticated(auth_stub, token, device):
    err = error_of(
        auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=token, device_id=device)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sign_out_revokes_the_session_and_never_fails(auth_stub):
    _, reply = signup(auth_stub)
    auth_stub.SignOut(auth_pb2.SignOutRequest(device_id=reply.tokens.device_id))
    err = error_of(
        auth_stub.Refresh,
        auth_pb2.RefreshRequest(
            refresh_token=reply.tokens.refresh_token, device_id=reply.tokens.device_id
        ),
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    auth_stub.SignOut(auth_pb2.SignOutRequest(device_id=reply.tokens.device_id))
    auth_stub.SignOut(auth_pb2.SignOutRequest(device_id="garbage"))
    auth_stub.SignOut(auth_pb2.SignOutRequest())


def test_authenticate_returns_the_token_identity(auth_stub):
    email, reply = signup(auth_stub)
    me = auth_stub.Authenticate(
        auth_pb2.AuthenticateRequest(), metadata=bearer(reply.tokens.access_token)
    )
    assert (me.user_id, me.email) == (reply.user_id, email)


def test_authenticate_refuses_missing_forged_expired_and_alg_none_tokens(auth_stub, make_token):
    other_key_token = jwt.encode(
        {
            "sub": "x",
            "email": "e",
            "iat": 1,
            "exp": 2**31,
            "jti": "j",
            "iss": "dropfile-auth",
            "aud": "dropfile",
        },
        "a-shared-secret-of-at-least-32-bytes!",
        algorithm="HS256",
    )
    unsigned = jwt.encode(
        {
            "sub": "x",
            "email": "e",
            "iat": 1,
            "exp": 2**31,
            "jti": "j",
            "iss": "dropfile-auth",
            "aud": "dropfile",
        },
        None,
        algorithm="none",
    )
    expired = make_token(iat=int(time.time()) - 3600, exp=int(time.time()) - 60)
    wrong_audience = make_token(aud="someone-else")
    no_jti = make_token(jti=None)
    for metadata in (
        [],
        [("authorization", "Basic abc")],
        bearer("not.a.jwt"),
        bearer(other_key_token),
        bearer(unsigned),
        bearer(expired),
        bearer(wrong_audience),
        bearer(no_jti),
    ):
        err = error_of(auth_stub.Authenticate, auth_pb2.AuthenticateRequest(), metadata=metadata)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
    err = error_of(auth_stub.Authenticate, auth_pb2.AuthenticateRequest(), metadata=bearer(expired))
    assert "expired" in err.details()


def test_health_and_reflection_are_served(auth_channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(auth_channel)
    for service in ("", "dropfile.auth.v1.AuthService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(auth_channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "dropfile.auth.v1.AuthService" in names
