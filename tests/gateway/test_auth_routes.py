"""The /api/auth routes over real HTTP against the real auth service."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt

from tests.fixtures.gateway import serve_gateway

from .conftest import PASSWORD, set_cookies, sign_up, unique_email

SESSION_COOKIES = {"access_token", "refresh_token", "device_id"}


def test_sign_up_answers_status_and_sets_three_strict_httponly_cookies(api_client, key_pair):
    client = api_client()
    email = unique_email()
    response = sign_up(client, email)
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["status"], str)
    cookies = set_cookies(response)
    assert set(cookies) == SESSION_COOKIES
    for name, cookie in cookies.items():
        assert cookie["httponly"], name
        assert cookie["samesite"] == "Strict", name
        assert cookie["path"] == "/", name
        assert not cookie["secure"], f"{name} must not be Secure in development"
        # A one-day session (no rememberMe): the cookies live as long as it does.
        assert 24 * 3600 - 60 <= int(cookie["max-age"]) <= 24 * 3600, name
    claims = jwt.decode(
        cookies["access_token"]["value"],
        key_pair[1],
        algorithms=["RS256"],
        audience="dropfile",
        issuer="dropfile-auth",
    )
    assert claims["email"] == email
    uuid.UUID(cookies["device_id"]["value"])


def test_cookies_are_secure_outside_development(gateway_settings):
    production = gateway_settings.model_copy(update={"dropfile_env": "production"})
    with serve_gateway(production) as url, httpx.Client(base_url=url, timeout=60) as client:
        cookies = set_cookies(sign_up(client))
        assert set(cookies) == SESSION_COOKIES
        assert all(cookie["secure"] and cookie["httponly"] for cookie in cookies.values())
        signed_out = client.get("/api/auth/signout")
        assert all(cookie["secure"] for cookie in set_cookies(signed_out).values())


def test_sign_up_twice_with_the_same_email_is_409(api_client):
    email = unique_email()
    assert sign_up(api_client(), email).status_code == 200
    response = sign_up(api_client(), email.upper())
    assert response.status_code == 409
    assert "error" in response.json()
    assert not set_cookies(response)


def test_sign_up_with_missing_fields_names_them(api_client):
    client = api_client()
    response = client.post("/api/auth/signup", json={"user": {"email": unique_email()}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert "name" in error and "password" in error
    response = client.post(
        "/api/auth/signup", json={"user": {"email": "", "name": "G", "password": PASSWORD}}
    )
    assert response.status_code == 400
    assert "email" in response.json()["error"]


def test_sign_in_sets_cookies_and_remember_me_chooses_a_long_session(api_client):
    email = unique_email()
    assert sign_up(api_client(), email).status_code == 200
    client = api_client()
    short = client.post(
        "/api/auth/signin",
        json={"user": {"email": email, "password": PASSWORD}, "rememberMe": False},
    )
    assert short.status_code == 200, short.text
    assert isinstance(short.json()["status"], str)
    short_cookies = set_cookies(short)
    assert set(short_cookies) == SESSION_COOKIES
    assert int(short_cookies["refresh_token"]["max-age"]) <= 24 * 3600
    long = client.post(
        "/api/auth/signin",
        json={"user": {"email": email, "password": PASSWORD}, "rememberMe": True},
    )
    assert long.status_code == 200
    long_cookies = set_cookies(long)
    assert all(int(cookie["max-age"]) > 7 * 24 * 3600 for cookie in long_cookies.values())
    assert client.get("/api/auth/authenticate").status_code == 200


def test_sign_in_failures_are_401_and_do_not_reveal_whether_the_email_exists(api_client):
    email = unique_email()
    assert sign_up(api_client(), email).status_code == 200
    client = api_client()
    wrong = client.post(
        "/api/auth/signin", json={"user": {"email": email, "password": "not the password"}}
    )
    unknown = client.post(
        "/api/auth/signin", json={"user": {"email": unique_email(), "password": "not the password"}}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "error" in wrong.json()
    assert not set_cookies(wrong)


def test_authenticate_is_200_with_the_cookie_and_401_without(api_client):
    client = api_client()
    sign_up(client)
    response = client.get("/api/auth/authenticate")
    assert response.status_code == 200
    assert response.json() == {"status": "Authorized"}
    anonymous = api_client().get("/api/auth/authenticate")
    assert anonymous.status_code == 401
    assert "error" in anonymous.json()


def test_refresh_rotates_the_refresh_token_and_a_reused_one_is_401(api_client):
    client = api_client()
    first = set_cookies(sign_up(client))
    refreshed = client.get("/api/auth/refresh")
    assert refreshed.status_code == 200, refreshed.text
    rotated = set_cookies(refreshed)
    assert rotated["refresh_token"]["value"] != first["refresh_token"]["value"]
    assert rotated["access_token"]["value"]
    assert rotated["device_id"]["value"] == first["device_id"]["value"]
    assert rotated["access_token"]["httponly"] and rotated["refresh_token"]["samesite"] == "Strict"
    assert client.get("/api/auth/authenticate").status_code == 200
    assert client.get("/api/auth/refresh").status_code == 200

    # A stolen copy of the first refresh token, two rotations old (the grace window covers
    # only the last one): the session ends, for the thief and owner.
    thief = api_client(
        cookies={
            "refresh_token": first["refresh_token"]["value"],
            "device_id": first["device_id"]["value"],
        }
    )
    reused = thief.get("/api/auth/refresh")
    assert reused.status_code == 401
    assert "error" in reused.json()
    cleared = set_cookies(reused)
    assert set(cleared) == SESSION_COOKIES
    assert all(cookie["max-age"] == "0" for cookie in cleared.values())
    assert client.get("/api/auth/refresh").status_code == 401


def test_refresh_without_or_with_bogus_cookies_is_401(api_client):
    assert api_client().get("/api/auth/refresh").status_code == 401
    bogus = api_client(cookies={"refresh_token": "x" * 43, "device_id": str(uuid.uuid4())})
    response = bogus.get("/api/auth/refresh")
    assert response.status_code == 401
    assert "error" in response.json()
    garbage = api_client(cookies={"refresh_token": "x", "device_id": "not-a-uuid"})
    assert garbage.get("/api/auth/refresh").status_code == 401


def test_sign_out_revokes_the_session_and_clears_the_cookies(api_client):
    client = api_client()
    issued = set_cookies(sign_up(client))
    response = client.get("/api/auth/signout")
    assert response.status_code == 200
    assert isinstance(response.json()["status"], str)
    cleared = set_cookies(response)
    assert set(cleared) == SESSION_COOKIES
    assert all(cookie["max-age"] == "0" and cookie["httponly"] for cookie in cleared.values())
    assert not client.cookies.get("refresh_token")
    # The revoked session's refresh token no longer works, even presented again.
    again = api_client(
        cookies={
            "refresh_token": issued["refresh_token"]["value"],
            "device_id": issued["device_id"]["value"],
        }
    )
    assert again.get("/api/auth/refresh").status_code == 401


def test_sign_out_without_cookies_or_with_garbage_is_200(api_client):
    assert api_client().get("/api/auth/signout").status_code == 200
    garbage = api_client(cookies={"device_id": "garbage", "refresh_token": "x"})
    assert garbage.get("/api/auth/signout").status_code == 200


def test_forged_expired_and_unsigned_access_tokens_are_401(api_client, make_token):
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "email": "e@example.com",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
        "iss": "dropfile-auth",
        "aud": "dropfile",
    }
    forged = jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    expired = make_token(iat=now - 3600, exp=now - 60)
    for token in (forged, unsigned, expired, "not.a.jwt", "x" * 10_000):
        response = api_client(cookies={"access_token": token}).get("/api/auth/authenticate")
        assert response.status_code == 401, token[:40]
        assert "error" in response.json()
    # Bytes no token has (and gRPC metadata cannot carry), sent as a raw header.
    response = api_client().get(
        "/api/auth/authenticate", headers={"Cookie": b"access_token=\xe9\xffabc"}
    )
    assert response.status_code == 401
    assert "error" in response.json()
    response = api_client(cookies={"access_token": expired}).get("/api/auth/authenticate")
    assert "expired" in response.json()["error"]
