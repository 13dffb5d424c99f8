"""Single sign-on in the auth service: its settings, the issuer's discovery document and
keys (against the local provider over HTTP, or a port nobody listens on), the limit on
flows started per address (real Redis), and the RPCs as a direct gRPC caller makes them.
End to end through the gateway: tests/gateway/test_oidc_sign_in.py; in Chromium:
tests/web/test_oidc_sign_in.py."""

from __future__ import annotations

import socket
import uuid

import grpc
import pytest
from pydantic import ValidationError

from dropfile.auth.v1 import auth_pb2, auth_pb2_grpc
from services.auth.oidc.provider import IssuerUnreachable, OidcProvider, parse_metadata
from services.auth.settings import AuthSettings
from services.auth.throttle import AttemptThrottle, ThrottlePolicy
from services.common.clients import redis_client
from services.common.errors import TooManyRequests, Unavailable
from tests.fixtures.oidc_provider import LocalOidcProvider

ISSUER = "https://id.example.com/realms/staff"
DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/auth",
    "token_endpoint": f"{ISSUER}/token",
    "jwks_uri": f"{ISSUER}/certs",
}


def _settings(**values) -> AuthSettings:
    return AuthSettings(_env_file=None, **values)


def test_single_sign_on_is_off_unless_issuer_and_client_are_both_set():
    assert not _settings().oidc_enabled
    assert _settings(oidc_issuer_url=ISSUER, oidc_client_id="dropfile").oidc_enabled
    with pytest.raises(ValidationError, match="OIDC_CLIENT_ID"):
        _settings(oidc_issuer_url=ISSUER)
    with pytest.raises(ValidationError, match="OIDC_ISSUER_URL"):
        _settings(oidc_client_id="dropfile")
    with pytest.raises(ValidationError, match="openid"):
        _settings(oidc_issuer_url=ISSUER, oidc_client_id="d", oidc_scopes="email profile")
    secret = _settings(oidc_issuer_url=ISSUER, oidc_client_id="d", oidc_client_secret="s3cr3t")
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret.model_dump())


def test_production_needs_an_https_issuer(tmp_path):
    with pytest.raises(ValidationError, match="https"):
        _settings(
            dropfile_env="production",
            dropfile_keys_dir=tmp_path,
            oidc_issuer_url="http://id.example.com",
            oidc_client_id="dropfile",
        )


def test_discovery_documents_are_checked():
    metadata = parse_metadata(
        {**DOCUMENT, "id_token_signing_alg_values_supported": ["HS256", "RS256", "ES256"]},
        issuer=ISSUER + "/",
        has_secret=True,
    )
    assert metadata.algorithms == ("RS256", "ES256")  # never HS256 or none
    assert metadata.token_auth_method == "client_secret_basic"
    assert metadata.userinfo_endpoint is None
    post_only = {**DOCUMENT, "token_endpoint_auth_methods_supported": ["client_secret_post"]}
    assert parse_metadata(post_only, issuer=ISSUER, has_secret=True).token_auth_method == (
        "client_secret_post"
    )
    assert parse_metadata(DOCUMENT, issuer=ISSUER, has_secret=False).token_auth_method == "none"
    refused = {
        "another issuer": {**DOCUMENT, "issuer": "https://evil.example.com"},
        "PKCE": {**DOCUMENT, "code_challenge_methods_supported": ["plain"]},
        "asymmetric": {**DOCUMENT, "id_token_signing_alg_values_supported": ["HS256", "none"]},
        "token_endpoint": {k: v for k, v in DOCUMENT.items() if k != "token_endpoint"},
    }
    for words, document in refused.items():
        with pytest.raises(IssuerUnreachable, match=words):
            parse_metadata(document, issuer=ISSUER, has_secret=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _provider(issuer: str, **kwargs) -> OidcProvider:
    return OidcProvider(
        issuer_url=issuer,
        client_id="dropfile-test",
        client_secret="secret",
        scopes="openid email",
        metadata_ttl_seconds=kwargs.pop("metadata_ttl_seconds", 3600),
        http_timeout_seconds=5,
    )


def test_an_unreachable_issuer_is_unavailable_with_a_retry_hint():
    provider = _provider(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(Unavailable) as refused:
        provider.metadata()
    assert refused.value.reason == "OIDC_PROVIDER_UNAVAILABLE"
    assert refused.value.retry_after and refused.value.retry_after > 0


def test_discovery_fetched_before_serves_while_the_issuer_is_down():
    local = LocalOidcProvider(client_id="dropfile-test", client_secret="secret").start()
    try:
        provider = _provider(local.issuer, metadata_ttl_seconds=0.01)
        first = provider.metadata()
        assert first.token_endpoint == f"{local.issuer}/token"
    finally:
        local.stop()
    assert provider.metadata() == first  # stale, but the issuer cannot be asked


def test_flows_started_per_address_are_limited(redis_url):
    throttle = AttemptThrottle(redis_client(redis_url), ThrottlePolicy(oidc_starts_per_address=3))
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"
    for _ in range(3):
        throttle.admit_oidc_start(address=address)
    with pytest.raises(TooManyRequests) as refused:
        throttle.admit_oidc_start(address=address)
    assert refused.value.reason == "OIDC_START_THROTTLED"
    assert 0 < refused.value.retry_after <= 600
    throttle.admit_oidc_start(address="192.0.2.1")  # others are not held back


def test_the_rpcs_over_grpc(auth_stub, oidc_auth_address):
    options = auth_stub.GetSignInOptions(auth_pb2.GetSignInOptionsRequest())
    assert not options.oidc_enabled and options.oidc_display_name == ""
    with pytest.raises(grpc.RpcError) as refused:
        auth_stub.StartOidcSignIn(
            auth_pb2.StartOidcSignInRequest(redirect_uri="http://127.0.0.1/cb")
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND

    with grpc.insecure_channel(oidc_auth_address) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        assert stub.GetSignInOptions(auth_pb2.GetSignInOptionsRequest()).oidc_enabled
        with pytest.raises(grpc.RpcError) as refused:
            stub.StartOidcSignIn(auth_pb2.StartOidcSignInRequest(redirect_uri="javascript:x"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        started = stub.StartOidcSignIn(
            auth_pb2.StartOidcSignInRequest(redirect_uri="http://127.0.0.1:1/cb")
        )
        assert started.authorization_url.startswith("http://localhost:")
        assert len(started.flow_secret) >= 43 and started.expires_in_seconds == 600
        # A guessed state, or the right flow secret with no state: nothing to finish.
        with pytest.raises(grpc.RpcError) as refused:
            stub.FinishOidcSignIn(
                auth_pb2.FinishOidcSignInRequest(
                    state="guess", code="x", flow_secret=started.flow_secret
                )
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
