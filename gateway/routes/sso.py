"""`/api/v2/auth`: which sign-in methods the deployment offers, and single sign-on with
OpenID Connect (authorization code with PKCE).

The browser navigates here, so refusals are small HTML pages (gateway/pages.py) with the
status code the JSON API would answer. Auth does the protocol and decides who signs in
(services/auth/oidc/); these routes carry the browser's side of it: the redirect to the
issuer with the flow's cookie, and back, the session cookies a password sign-in sets."""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Cookie, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dropfile.auth.v1 import auth_pb2

from ..cookies import (
    OIDC_FLOW,
    clear_oidc_flow_cookie,
    set_oidc_flow_cookie,
    set_session_cookies,
)
from ..deps import AnonymousCall, BackendsDep, ClientCall, SettingsDep
from ..errors import rpc_error_answer, rpc_error_details
from ..pages import PAGE_HEADERS, message_page
from ..responses import error_responses, merged, page_responses, redirect_response
from ..schemas_v2 import SignInOptionsReply
from .auth import held_back_when_refused

router = APIRouter(prefix="/api/v2/auth", tags=["auth"])

LOGIN_PATH = "/api/v2/auth/oidc/login"
CALLBACK_PATH = "/api/v2/auth/oidc/callback"
# Where a browser lands once signed in: the web app.
SIGNED_IN_PATH = "/"
# An issuer's parameters are short; anything longer is not one of its answers.
_MAX_PARAMETER = 4096


_LOGIN_RESPONSES = merged(
    redirect_response(
        "to the issuer's authorization endpoint (state, nonce, PKCE S256 challenge); sets "
        "the `oidc_flow` cookie (HttpOnly, SameSite=Lax) for the callback"
    ),
    page_responses(
        "INVALID_ARGUMENT",  # the redirect URI is not usable
        "OIDC_NOT_CONFIGURED",
        "OIDC_START_THROTTLED",
        "OIDC_PROVIDER_UNAVAILABLE",
        "OIDC_FLOWS_UNAVAILABLE",
        "THROTTLE_UNAVAILABLE",
    ),
    error_responses("INVALID_REQUEST"),  # a `rememberMe` that is not a boolean: JSON
)
_CALLBACK_RESPONSES = merged(
    redirect_response(
        "signed in: to the web app (`/`), with the `access_token`, `refresh_token` and "
        "`device_id` cookies of a password sign-in; `oidc_flow` cleared"
    ),
    page_responses(
        # No flow of this browser's matches (expired, used, started in another browser):
        # what any request answers but the issuer's redirect back to the browser that
        # started the sign-in.
        "OIDC_FLOW_UNKNOWN",
        "OIDC_PROVIDER_ERROR",
        "INVALID_ARGUMENT",  # back without a code
        "OIDC_CODE_REFUSED",
        "OIDC_ID_TOKEN_INVALID",
        "OIDC_EMAIL_NOT_VERIFIED",
        "OIDC_EMAIL_UNUSABLE",
        "OIDC_IDENTITY_UNUSABLE",
        "OIDC_NOT_CONFIGURED",
        "OIDC_ACCOUNT_LINKED_ELSEWHERE",
        "OIDC_PROVIDER_UNAVAILABLE",
        "OIDC_FLOWS_UNAVAILABLE",
        "UNAVAILABLE",  # the account's sign-in raced another one
    ),
)
# The issuer's parameters (RFC 6749: printable ASCII), stated here and not checked: one
# that is not is simply no answer to a sign-in this browser started, refused as a page.
_ISSUER_PARAMETER = {"pattern": rf"^[\x20-\x7e]{{0,{_MAX_PARAMETER}}}$"}

_TITLES = {
    400: "Sign-in did not complete",
    401: "Sign-in refused",
    403: "Sign-in refused",
    404: "Single sign-on is not available",
    409: "Sign-in refused",
    429: "Too many sign-in attempts",
}


def _error_page(request: Request, exc: grpc.aio.AioRpcError) -> HTMLResponse:
    answer = rpc_error_answer(request, exc)
    title = _TITLES.get(answer.status, "Single sign-on is unavailable")
    return message_page(answer.status, title, answer.message, answer.headers)


def _parameter(value: str) -> str:
    return value if len(value) <= _MAX_PARAMETER else ""


@router.get(
    "/options",
    response_model=SignInOptionsReply,
    operation_id="getSignInOptions",
    summary="The ways of signing in this deployment offers",
)
async def sign_in_options(backends: BackendsDep, call: AnonymousCall) -> dict[str, Any]:
    reply = await backends.auth.GetSignInOptions(auth_pb2.GetSignInOptionsRequest(), **call.kwargs)
    oidc = {"name": reply.oidc_display_name, "loginUrl": LOGIN_PATH} if reply.oidc_enabled else None
    return {"password": True, "oidc": oidc}


@router.get(
    "/oidc/login",
    response_class=RedirectResponse,
    status_code=302,
    responses=_LOGIN_RESPONSES,
    operation_id="startOidcSignIn",
    summary="Single sign-on: start (redirects the browser to the issuer)",
)
async def oidc_login(
    request: Request,
    backends: BackendsDep,
    settings: SettingsDep,
    call: ClientCall,
    remember_me: Annotated[
        bool, Query(alias="rememberMe", description="a long-lived session, as at sign-in")
    ] = False,
) -> Response:
    redirect_uri = settings.oidc_redirect_uri or str(request.url_for("oidc_callback"))
    try:
        reply = await held_back_when_refused(
            backends.auth.StartOidcSignIn(
                auth_pb2.StartOidcSignInRequest(redirect_uri=redirect_uri, remember_me=remember_me),
                **call.kwargs,
            ),
            settings.throttled_answer_delay_seconds,
        )
    except grpc.aio.AioRpcError as exc:
        return _error_page(request, exc)
    response = RedirectResponse(reply.authorization_url, status_code=302, headers=PAGE_HEADERS)
    set_oidc_flow_cookie(
        response,
        reply.flow_secret,
        max_age=int(reply.expires_in_seconds),
        secure=settings.secure_cookies,
    )
    return response


@router.get(
    "/oidc/callback",
    response_class=RedirectResponse,
    status_code=302,
    responses=_CALLBACK_RESPONSES,
    operation_id="finishOidcSignIn",
    summary="Single sign-on: the issuer's redirect back (signs the browser in)",
)
async def oidc_callback(
    request: Request,
    backends: BackendsDep,
    settings: SettingsDep,
    call: ClientCall,
    state: Annotated[
        str, Query(description="as the issuer hands it back", json_schema_extra=_ISSUER_PARAMETER)
    ] = "",
    code: Annotated[
        str, Query(description="the authorization code", json_schema_extra=_ISSUER_PARAMETER)
    ] = "",
    error: Annotated[
        str,
        Query(
            description="the issuer's error, instead of a code",
            json_schema_extra=_ISSUER_PARAMETER,
        ),
    ] = "",
    error_description: Annotated[
        str, Query(description="the issuer's words for it", json_schema_extra=_ISSUER_PARAMETER)
    ] = "",
    flow_secret: Annotated[
        str | None, Cookie(alias=OIDC_FLOW, description="set by the login route")
    ] = None,
) -> Response:
    response: Response
    flow_over = True
    try:
        reply = await backends.auth.FinishOidcSignIn(
            auth_pb2.FinishOidcSignInRequest(
                state=_parameter(state),
                code=_parameter(code),
                flow_secret=_parameter(flow_secret or ""),
                error=_parameter(error),
                error_description=_parameter(error_description),
            ),
            **call.kwargs,
        )
    except grpc.aio.AioRpcError as exc:
        response = _error_page(request, exc)
        # A callback that matched no flow (forged, replayed, another browser's) leaves this
        # browser's own flow, if any, to finish.
        flow_over = rpc_error_details(exc).reason != "OIDC_FLOW_UNKNOWN"
    else:
        response = RedirectResponse(SIGNED_IN_PATH, status_code=302, headers=PAGE_HEADERS)
        set_session_cookies(response, reply.tokens, secure=settings.secure_cookies)
    if flow_over:  # used, whether it signed the browser in or was refused
        clear_oidc_flow_cookie(response, secure=settings.secure_cookies)
    return response
