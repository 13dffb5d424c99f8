"""The session cookies of the v1 contract: `access_token`, `refresh_token` and `device_id`,
all HttpOnly, SameSite=Strict, Path=/, and Secure outside development; and `oidc_flow`,
which binds a single sign-on in progress to the browser that started it."""

from __future__ import annotations

from fastapi import Response

from dropfile.auth.v1 import auth_pb2

ACCESS_TOKEN = "access_token"
REFRESH_TOKEN = "refresh_token"
DEVICE_ID = "device_id"
SESSION_COOKIES = (ACCESS_TOKEN, REFRESH_TOKEN, DEVICE_ID)
OIDC_FLOW = "oidc_flow"
# Only the single sign-on routes see it (the callback is under this path).
OIDC_FLOW_PATH = "/api/v2/auth/oidc"


def set_session_cookies(
    response: Response, tokens: auth_pb2.SessionTokens, *, secure: bool
) -> None:
    """All three live as long as the device session, so a browser keeps presenting the
    refresh token (and the expired access token is answered 401, prompting a refresh)."""
    lifetime = max(int(tokens.session_expires_in_seconds), 0)
    for name, value in (
        (ACCESS_TOKEN, tokens.access_token),
        (REFRESH_TOKEN, tokens.refresh_token),
        (DEVICE_ID, tokens.device_id),
    ):
        response.set_cookie(
            name,
            value,
            max_age=lifetime,
            path="/",
            secure=secure,
            httponly=True,
            samesite="Strict",  # type: ignore[arg-type]  # Starlette's type says "strict"
        )


def clear_session_cookies(response: Response, *, secure: bool) -> None:
    for name in SESSION_COOKIES:
        response.delete_cookie(
            name,
            path="/",
            secure=secure,
            httponly=True,
            samesite="Strict",  # type: ignore[arg-type]  # the header keeps "Strict"
        )


def set_oidc_flow_cookie(
    response: Response, flow_secret: str, *, max_age: int, secure: bool
) -> None:
    """SameSite=Lax, unlike the session's: the issuer sends the browser back with a
    cross-site top-level GET, on which a Strict cookie would not be sent."""
    response.set_cookie(
        OIDC_FLOW,
        flow_secret,
        max_age=max(max_age, 1),
        path=OIDC_FLOW_PATH,
        secure=secure,
        httponly=True,
        samesite="lax",
    )


def clear_oidc_flow_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(
        OIDC_FLOW, path=OIDC_FLOW_PATH, secure=secure, httponly=True, samesite="lax"
    )
