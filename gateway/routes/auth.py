"""`/api/auth`: sign up, sign in, sign out, refresh and authenticate, with the session held
in HttpOnly cookies (see gateway.cookies)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import APIRouter, Cookie, Request, Response
from fastapi.responses import JSONResponse

from dropfile.auth.v1 import auth_pb2

from ..cookies import DEVICE_ID, REFRESH_TOKEN, clear_session_cookies, set_session_cookies
from ..deps import AnonymousCall, BackendsDep, ClientCall, SettingsDep, UserCall
from ..errors import rpc_error_details, rpc_error_response
from ..responses import error_responses
from ..schemas import SignInBody, SignUpBody, StatusReply

router = APIRouter(prefix="/api/auth", tags=["auth"])
T = TypeVar("T")

# Sign-up and sign-in hash passwords (a bounded pool: AUTH_BUSY) and are limited per
# client address and account (Retry-After).
_HASHING = ("INVALID_ARGUMENT", "AUTH_BUSY", "THROTTLE_UNAVAILABLE")
RefreshTokenCookie = Annotated[
    str | None, Cookie(alias=REFRESH_TOKEN, description="The session's refresh token")
]
DeviceIdCookie = Annotated[
    str | None, Cookie(alias=DEVICE_ID, description="The device session's id")
]


async def held_back_when_refused(rpc: Awaitable[T], delay_cap: float) -> T:
    """Awaits a sign-in or sign-up call. A throttled attempt (429), or one refused because
    password hashing is full (503; auth refuses it at once, it never queues), is answered
    only after its Retry-After, up to `delay_cap` seconds: a client that ignores
    Retry-After would otherwise send hundreds of refused attempts a second, each costing
    this process a request's CPU that other callers wait for; held back, each connection
    sends at most one a second, and a client that honours Retry-After loses nothing. A
    held request costs an open connection (HTTP_MAX_CONNECTIONS bounds them)."""
    try:
        return await rpc
    except grpc.aio.AioRpcError as exc:
        details = rpc_error_details(exc)
        held = exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED or (
            exc.code() is grpc.StatusCode.UNAVAILABLE and details.reason == "AUTH_BUSY"
        )
        if held and delay_cap > 0 and details.retry_after is not None:
            await asyncio.sleep(min(details.retry_after, delay_cap))
        raise


@router.post(
    "/signup",
    operation_id="signUp",
    response_model=StatusReply,
    responses=error_responses(*_HASHING, "ALREADY_EXISTS", "SIGN_UP_THROTTLED"),
    summary="Create an account and sign in",
)
async def sign_up(
    body: SignUpBody,
    response: Response,
    backends: BackendsDep,
    settings: SettingsDep,
    call: ClientCall,
) -> dict[str, Any]:
    reply = await held_back_when_refused(
        backends.auth.SignUp(
            auth_pb2.SignUpRequest(
                email=body.user.email,
                name=body.user.name,
                password=body.user.password,
                remember_me=bool(body.rememberMe),
            ),
            **call.kwargs,
        ),
        settings.throttled_answer_delay_seconds,
    )
    set_session_cookies(response, reply.tokens, secure=settings.secure_cookies)
    return {"status": "Signed up"}


@router.post(
    "/signin",
    operation_id="signIn",
    response_model=StatusReply,
    responses=error_responses(*_HASHING, "BAD_CREDENTIALS", "SIGN_IN_THROTTLED"),
    summary="Sign in with email and password",
)
async def sign_in(
    body: SignInBody,
    response: Response,
    backends: BackendsDep,
    settings: SettingsDep,
    call: ClientCall,
    refresh_token: RefreshTokenCookie = None,
    device_id: DeviceIdCookie = None,
) -> dict[str, Any]:
    # The device's current session, if it has one: auth then counts this attempt against
    # the device alone, so strangers' failures never lock its owner out.
    reply = await held_back_when_refused(
        backends.auth.SignIn(
            auth_pb2.SignInRequest(
                email=body.user.email,
                password=body.user.password,
                remember_me=bool(body.rememberMe),
                device_id=device_id or "",
                refresh_token=refresh_token or "",
            ),
            **call.kwargs,
        ),
        settings.throttled_answer_delay_seconds,
    )
    set_session_cookies(response, reply.tokens, secure=settings.secure_cookies)
    return {"status": "Signed in"}


@router.get(
    "/signout",
    operation_id="signOut",
    response_model=StatusReply,
    responses=error_responses("REVOCATION_UNAVAILABLE", "BACKEND_UNAVAILABLE"),
    summary="Revoke this device's session and clear its cookies",
)
async def sign_out(
    request: Request,
    response: Response,
    backends: BackendsDep,
    settings: SettingsDep,
    call: AnonymousCall,
    device_id: DeviceIdCookie = None,
) -> dict[str, Any] | JSONResponse:
    if device_id:  # without a session there is nothing to revoke
        try:
            await backends.auth.SignOut(auth_pb2.SignOutRequest(device_id=device_id), **call.kwargs)
        except grpc.aio.AioRpcError as exc:
            # The revocation did not happen and the client must know; its cookies go anyway.
            failure = rpc_error_response(request, exc)
            clear_session_cookies(failure, secure=settings.secure_cookies)
            return failure
    clear_session_cookies(response, secure=settings.secure_cookies)
    return {"status": "Signed out"}


@router.get(
    "/refresh",
    operation_id="refreshSession",
    response_model=StatusReply,
    responses=error_responses(
        "REFRESH_TOKEN_INVALID", "REFRESH_TOKEN_REUSED", "REVOCATION_UNAVAILABLE"
    ),
    summary="Rotate the refresh token and issue a new access token",
)
async def refresh(
    request: Request,
    response: Response,
    backends: BackendsDep,
    settings: SettingsDep,
    call: AnonymousCall,
    refresh_token: RefreshTokenCookie = None,
    device_id: DeviceIdCookie = None,
) -> dict[str, Any] | JSONResponse:
    try:
        reply = await backends.auth.Refresh(
            auth_pb2.RefreshRequest(refresh_token=refresh_token or "", device_id=device_id or ""),
            **call.kwargs,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        # The session is over (or never was): stale cookies would only fail again.
        failure: JSONResponse = rpc_error_response(request, exc)
        clear_session_cookies(failure, secure=settings.secure_cookies)
        return failure
    set_session_cookies(response, reply.tokens, secure=settings.secure_cookies)
    return {"status": "Refreshed"}


@router.get(
    "/authenticate",
    operation_id="authenticate",
    response_model=StatusReply,
    summary="Check that the access token is valid",
)
async def authenticate(call: UserCall) -> dict[str, Any]:
    await call.backends.auth.Authenticate(auth_pb2.AuthenticateRequest(), **call.kwargs)
    return {"status": "Authorized"}
