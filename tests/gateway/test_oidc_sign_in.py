"""Single sign-on end to end: a browser's HTTP (httpx, its own cookie jar) through the
gateway to the auth service and a real OpenID Connect provider on 127.0.0.1
(tests/fixtures/oidc_provider.py): discovery, JWKS, authorization code with PKCE, RS256
ID tokens. No part of it is mocked."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import text

from tests.fixtures.oidc import (
    LOGIN_PATH,
    PROVIDER_NAME,
    sso_sign_in,
)

PASSWORD = "correct horse battery"


def _email() -> str:
    return f"sso-{uuid.uuid4().hex[:10]}@example.com"


def _signed_in(client: httpx.Client) -> bool:
    return client.get("/api/auth/authenticate").status_code == 200


def _user_id(db_engine, email: str) -> str | None:
    with db_engine.connect() as conn:
        row = conn.execute(text("SELECT id FROM users WHERE email = :e"), {"e": email}).first()
    return str(row[0]) if row else None


def _identities(db_engine, user_id: str) -> list[tuple[str, str]]:
    with db_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT issuer, subject FROM oidc_identities WHERE user_id = :u"),
            {"u": user_id},
        ).all()
    return [(r[0], r[1]) for r in rows]


def _max_age(cookie: str) -> int:
    (value,) = [a.split("=", 1)[1] for a in cookie.split("; ") if a.lower().startswith("max-age=")]
    return int(value)


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_options_name_the_provider(sso_client):
    reply = sso_client.get("/api/v2/auth/options")
    assert reply.status_code == 200
    assert reply.json() == {
        "password": True,
        "oidc": {"name": PROVIDER_NAME, "loginUrl": LOGIN_PATH},
    }


def test_login_redirects_to_the_issuer_with_pkce_state_and_nonce(sso_client, oidc_provider):
    answer = sso_client.get(LOGIN_PATH)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == oidc_provider.issuer
    query = {k: v[-1] for k, v in parse_qs(location.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == oidc_provider.client_id
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43
    assert set(query["scope"].split()) == {"openid", "email", "profile"}
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("oidc_flow=")
    for attribute in ("HttpOnly", "Path=/api/v2/auth/oidc", "SameSite=lax", "Max-Age=600"):
        assert attribute.lower() in cookie.lower()


def test_a_new_user_signs_in_and_gets_a_passwordless_account(
    sso_client, oidc_provider, db_engine, api_client
):
    email = _email()
    user = oidc_provider.add_user(email, name="Ada Lovelace")
    answer = sso_sign_in(sso_client, user.login)
    assert answer.status_code == 302, answer.text
    assert answer.headers["location"] == "/"
    cookies = answer.headers.get_list("set-cookie")
    for name in ("access_token", "refresh_token", "device_id"):
        (cookie,) = [c for c in cookies if c.startswith(f"{name}=")]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert 86_300 < _max_age(cookie) <= 86_400  # no "remember me": a day
    assert any(c.startswith('oidc_flow=""') or "oidc_flow=;" in c for c in cookies)
    assert _signed_in(sso_client)
    assert sso_client.get("/api/files/list").status_code == 200
    # The landing page is the web app.
    assert sso_client.get("/").status_code == 200

    user_id = _user_id(db_engine, email)
    assert user_id is not None
    assert _identities(db_engine, user_id) == [(oidc_provider.issuer, user.subject)]
    # PKCE: the code was exchanged with the verifier of the challenge sent at the start.
    assert oidc_provider.token_requests[-1]["code_verifier"]

    # No password: a password sign-in is refused as any wrong one is.
    other = api_client()
    refused = other.post("/api/auth/signin", json={"user": {"email": email, "password": PASSWORD}})
    assert refused.status_code == 401
    assert refused.json() == {"error": "invalid email or password"}


def test_remember_me_gives_a_long_session(sso_client, oidc_provider):
    user = oidc_provider.add_user(_email())
    answer = sso_sign_in(sso_client, user.login, remember_me=True)
    assert answer.status_code == 302
    (cookie,) = [c for c in answer.headers.get_list("set-cookie") if c.startswith("device_id=")]
    assert 30 * 86_400 - 100 < _max_age(cookie) <= 30 * 86_400
