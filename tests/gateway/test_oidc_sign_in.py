"""Single sign-on end to end: a browser's HTTP (httpx, its own cookie jar) through the
gateway to the auth service and a real OpenID Connect provider on 127.0.0.1
(tests/fixtures/oidc_provider.py): discovery, JWKS, authorization code with PKCE, RS256
ID tokens. No part of it is mocked."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import text

from services.auth.oidc.provider import JWKS_REFETCH_SECONDS
from tests.fixtures.oidc import (
    LOGIN_PATH,
    PROVIDER_NAME,
    approve,
    open_login_page,
    provider_callback,
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
    assert refused.json() == {"error": "invalid email or password", "code": "BAD_CREDENTIALS"}


def test_remember_me_gives_a_long_session(sso_client, oidc_provider):
    user = oidc_provider.add_user(_email())
    answer = sso_sign_in(sso_client, user.login, remember_me=True)
    assert answer.status_code == 302
    (cookie,) = [c for c in answer.headers.get_list("set-cookie") if c.startswith("device_id=")]
    assert 30 * 86_400 - 100 < _max_age(cookie) <= 30 * 86_400


def _refused_page(answer: httpx.Response, status: int, *words: str, flow_over: bool = True) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"
    assert '<a href="/">Back to Dropfile</a>' in answer.text
    for word in words:
        assert word in answer.text
    cookies = answer.headers.get_list("set-cookie")
    assert not any(
        c.startswith(("access_token=ey", "refresh_token=", "device_id="))
        and "max-age=0" not in c.lower()
        for c in cookies
    )
    # A flow that was used is over, refused or not: its cookie goes. One that matched no
    # flow leaves the browser's own, if any, to finish.
    cleared = any(c.startswith("oidc_flow=") and "max-age=0" in c.lower() for c in cookies)
    assert cleared == flow_over


@pytest.mark.parametrize("verified", [False, "true", None])
def test_an_unverified_email_is_refused_and_no_account_is_made(
    sso_client, oidc_provider, db_engine, verified
):
    email = _email()
    user = oidc_provider.add_user(email, email_verified=verified)
    answer = sso_sign_in(sso_client, user.login)
    _refused_page(answer, 403, f"{PROVIDER_NAME} has not verified your email address")
    assert not _signed_in(sso_client)
    assert _user_id(db_engine, email) is None


def test_an_existing_account_is_linked_only_when_the_issuer_verified_its_email(
    sso_client, oidc_provider, db_engine, api_client
):
    email = _email()
    owner = api_client()
    signed_up = owner.post(
        "/api/auth/signup", json={"user": {"email": email, "name": "Owner", "password": PASSWORD}}
    )
    assert signed_up.status_code == 200
    user_id = _user_id(db_engine, email)

    # Someone at the issuer claims the address without having verified it: refused.
    claimant = oidc_provider.add_user(email.upper(), email_verified=False, login=_email())
    _refused_page(sso_sign_in(sso_client, claimant.login), 403, "has not verified")
    assert not _signed_in(sso_client)
    assert _identities(db_engine, user_id) == []

    # Verified at the issuer: linked to the existing account (its email matched whatever
    # its case), which keeps its password.
    verified = oidc_provider.add_user(email.upper(), login=_email())
    assert sso_sign_in(sso_client, verified.login).status_code == 302
    assert _signed_in(sso_client)
    assert _identities(db_engine, user_id) == [(oidc_provider.issuer, verified.subject)]
    again = api_client().post(
        "/api/auth/signin", json={"user": {"email": email, "password": PASSWORD}}
    )
    assert again.status_code == 200

    # Once linked, the subject decides: the issuer's address changing changes nothing.
    verified.email = _email()
    browser = httpx.Client(base_url=str(sso_client.base_url), timeout=60)
    with browser:
        assert sso_sign_in(browser, verified.login).status_code == 302
        assert _signed_in(browser)
    assert _user_id(db_engine, verified.email) is None
    assert _identities(db_engine, user_id) == [(oidc_provider.issuer, verified.subject)]

    # Another identity at the same issuer claiming the same (verified) address is not
    # linked to the account a second time.
    usurper = oidc_provider.add_user(email, login=_email())
    _refused_page(sso_sign_in(sso_client, usurper.login), 409, "linked to another account")
    assert _identities(db_engine, user_id) == [(oidc_provider.issuer, verified.subject)]


@pytest.mark.parametrize(
    "claims,check",
    [
        ({"nonce": "not-the-flows-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"aud": "another-client"}, "aud"),
        ({"iss": "http://127.0.0.1:9/evil"}, "iss"),
        ({"exp": 1_000_000_000, "iat": 999_999_000}, "exp"),
        ({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}, "at_hash"),
    ],
)
def test_an_id_token_failing_a_check_is_refused(
    sso_client, oidc_provider, db_engine, claims, check
):
    email = _email()
    user = oidc_provider.add_user(email)
    oidc_provider.next_id_token_claims.append(claims)
    answer = sso_sign_in(sso_client, user.login)
    _refused_page(answer, 401, f"failed verification ({check})")
    assert not _signed_in(sso_client)
    assert _user_id(db_engine, email) is None


def test_an_id_token_with_a_forged_signature_is_refused(sso_client, oidc_provider, db_engine):
    email = _email()
    user = oidc_provider.add_user(email)
    oidc_provider.sign_next_with_unknown_key = True
    _refused_page(sso_sign_in(sso_client, user.login), 401, "failed verification (signature)")
    assert _user_id(db_engine, email) is None


def test_a_forged_or_foreign_callback_is_refused_and_leaves_the_real_one_usable(
    sso_client, oidc_provider, oidc_gateway_url
):
    user = oidc_provider.add_user(_email())
    callback = provider_callback(sso_client, user.login)

    # Another state, no state, no code: nothing matches this browser's flow.
    forged = sso_client.get(_with_query(callback, state="forged"))
    _refused_page(forged, 400, "start again", flow_over=False)
    _refused_page(sso_client.get(callback.split("?", 1)[0]), 400, "start again", flow_over=False)
    # The right URL in another browser (login CSRF: the victim has no flow cookie).
    with httpx.Client(base_url=oidc_gateway_url, timeout=60) as victim:
        _refused_page(victim.get(callback), 400, "start again", flow_over=False)
        assert not _signed_in(victim)

    # The refusals did not use the flow up: its own browser still finishes it...
    assert sso_client.get(callback).status_code == 302
    assert _signed_in(sso_client)
    # ...once. A replayed callback (its code is spent too) is refused.
    _refused_page(sso_client.get(callback), 400, "already used", flow_over=False)


def test_a_wrong_code_is_refused_by_the_issuer_and_uses_the_flow_up(sso_client, oidc_provider):
    user = oidc_provider.add_user(_email())
    callback = provider_callback(sso_client, user.login)
    _refused_page(sso_client.get(_with_query(callback, code="made-up")), 401, "invalid_grant")
    _refused_page(sso_client.get(callback), 400, "start again", flow_over=False)


def test_the_issuers_error_is_shown(sso_client, oidc_provider):
    user = oidc_provider.add_user(_email())
    callback = approve(sso_client, open_login_page(sso_client), user.login, action="deny")
    _refused_page(
        sso_client.get(callback), 400, f"{PROVIDER_NAME} did not sign you in (access_denied"
    )
    assert not _signed_in(sso_client)


def test_discovery_and_keys_are_cached_and_rotated_keys_are_fetched(sso_client, oidc_provider):
    sso_sign_in(sso_client, oidc_provider.add_user(_email()).login)  # warm
    before = dict(oidc_provider.hits)
    for _ in range(3):
        assert sso_sign_in(sso_client, oidc_provider.add_user(_email()).login).status_code == 302
    assert oidc_provider.hits["/.well-known/openid-configuration"] == before.get(
        "/.well-known/openid-configuration"
    )
    assert oidc_provider.hits["/jwks"] == before.get("/jwks")

    # The issuer rolls its keys: a token signed by the new key id fetches the JWKS again
    # (keys fetched less than a second ago are not fetched again).
    oidc_provider.rotate_keys()
    time.sleep(JWKS_REFETCH_SECONDS + 0.1)
    assert sso_sign_in(sso_client, oidc_provider.add_user(_email()).login).status_code == 302
    assert oidc_provider.hits["/jwks"] == before.get("/jwks", 0) + 1


def test_email_missing_from_the_id_token_is_read_from_userinfo(
    sso_client, oidc_provider, db_engine
):
    email = _email()
    user = oidc_provider.add_user(email, userinfo_only=True)
    assert sso_sign_in(sso_client, user.login).status_code == 302
    assert _user_id(db_engine, email) is not None


def test_without_configuration_there_is_no_single_sign_on(api_client):
    client = api_client()
    assert client.get("/api/v2/auth/options").json() == {"password": True, "oidc": None}
    answer = client.get(LOGIN_PATH)
    assert answer.status_code == 404
    assert "single sign-on is not configured" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
