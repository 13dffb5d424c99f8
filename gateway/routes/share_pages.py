"""`/s/<token>`: where a stranger holding a share link lands. Small server-rendered pages
that need no script and no account:

    GET  /s/{token}   302 to a short-lived presigned GET of the file (saved under its
                      name); for a link with a password, a page asking for it
    POST /s/{token}   the password form's answer (application/x-www-form-urlencoded
                      `password=...`): 302 to the file when it is right

Every way a link can fail (unknown, expired, revoked, out of downloads, its file deleted,
and a wrong password) is answered with the same 404 page, byte for byte, so a refusal
never tells which it was; that page offers to try the password again. Too many failed
attempts from one address (or at one link's password) are answered 429 with Retry-After,
held back like a throttled sign-in; a backend that is down, 503 with Retry-After (one that
does not answer in time, 504; an unexpected error, 500: the statuses of the JSON API).

The upload service decides (ShareInternalService.ResolveLink, called with the service
credential and the client's address); this module only renders."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import logging
from urllib.parse import parse_qs

import grpc
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dropfile.upload.v1 import share_pb2

from ..client_address import client_address
from ..deps import ClientCall, SettingsDep
from ..errors import retry_after_header, rpc_error_details
from ..responses import merged, page_responses, redirect_response
from ..schemas import NO_NUL_PATTERN

log = logging.getLogger("gateway.share")

router = APIRouter(tags=["share links"])

# Tokens are 43 characters; anything much longer is no token (answered 404 unasked).
MAX_TOKEN_CHARS = 256
# The password form's body: far more than a 72-byte password needs.
MAX_FORM_BYTES = 4096

_STYLE = (
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2933;"
    "background:#f5f7fa;margin:0}"
    "main{max-width:30rem;margin:12vh auto;background:#fff;padding:2rem;border-radius:8px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    "h1{font-size:1.35rem;margin:0 0 .75rem}p{margin:0 0 1rem}"
    "label{display:block;font-weight:600;margin-bottom:.35rem}"
    "input{font:inherit;width:100%;box-sizing:border-box;padding:.5rem;margin-bottom:1rem;"
    "border:1px solid #9aa5b1;border-radius:4px}"
    "button{font:inherit;padding:.5rem 1.25rem;border:0;border-radius:4px;background:#2563eb;"
    "color:#fff;cursor:pointer}"
    "small{color:#52606d}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

# The project's page headers (static.py), tightened: no script at all, the one inline
# style by its hash, the form may post here and be redirected to storage (Chromium checks
# form-action on a form's redirects too), no referrer (the URL holds the token), never
# cached, never indexed.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
        "form-action 'self' https: http:; base-uri 'none'; frame-ancestors 'none'"
    ),
}
_REDIRECT_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex,nofollow">'
        f"<title>{html.escape(title)} · Dropfile</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}"
        "<p><small>Shared with Dropfile. You need no account to download.</small></p>"
        "</main></body></html>\n"
    )


PASSWORD_PAGE = _page(
    "A file was shared with you",
    "<p>This file is protected by a password. Enter the password the person who shared "
    "it gave you, then download it.</p>"
    '<form method="post"><label for="password">Password</label>'
    '<input id="password" name="password" type="password" autocomplete="off" required '
    'autofocus maxlength="200"><button type="submit">Download</button></form>',
)
# One page for every refusal: unknown, expired, revoked, used up, file deleted, and a
# wrong password. `href=""` is this very URL, so it carries no token of its own.
NOT_FOUND_PAGE = _page(
    "This link is not available",
    "<p>The link may be mistyped, expired, revoked or out of downloads, the file may have "
    "been deleted, or the password was wrong.</p>"
    '<p>If it asked you for a password, you can <a href="">try again</a>. Otherwise, '
    "ask the person who shared it for a new link.</p>",
)
UNAVAILABLE_PAGE = _page(
    "Please try again in a moment",
    "<p>Dropfile cannot answer right now. Reload this page in a minute.</p>",
)


def _throttled_page(seconds: int) -> str:
    return _page(
        "Too many attempts",
        f"<p>There were too many attempts from your network. Wait {seconds} seconds, "
        "then reload this page.</p>",
    )


def _html(content: str, status: int, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def not_found() -> HTMLResponse:
    return _html(NOT_FOUND_PAGE, 404)


_PAGE_RESPONSES = merged(
    redirect_response("to a short-lived presigned GET of the file (saved under its name)"),
    page_responses(
        # The same page for an unknown, expired, revoked or used-up link, a deleted file, a
        # wrong password and anything that is no token at all.
        "LINK_NOT_FOUND",
        "LINK_GUESSES_THROTTLED",
        "SHARE_BUSY",
        "THROTTLE_UNAVAILABLE",
        "UNAVAILABLE",
    ),
)
# What the service takes for a token (services/upload/sharing/links.py's TOKEN_PATTERN; it
# makes them of 43): stated, not checked here, since anything else is the same 404 page.
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{22,128}$"
TokenPath = Path(
    description="The link's secret token (from its URL)",
    json_schema_extra={"pattern": TOKEN_PATTERN, "examples": ["x" * 43]},
)


async def _resolve(
    request: Request, token: str, password: str, settings: SettingsDep, call: ClientCall
) -> Response:
    if not token or len(token) > MAX_TOKEN_CHARS:
        return not_found()
    try:
        reply = await request.app.state.backends.share_internal.ResolveLink(
            share_pb2.ResolveLinkRequest(
                token=token,
                password=password,
                client_address=client_address(request, settings.trusted_proxy_hops),
            ),
            **call.kwargs,
        )
    except grpc.aio.AioRpcError as exc:
        return await _refusal(exc, settings.throttled_answer_delay_seconds)
    return RedirectResponse(reply.url, status_code=302, headers=_REDIRECT_HEADERS)


async def _refusal(exc: grpc.aio.AioRpcError, delay_cap: float) -> Response:
    code = exc.code()
    details = rpc_error_details(exc)
    if code is grpc.StatusCode.NOT_FOUND:
        return not_found()
    if code is grpc.StatusCode.FAILED_PRECONDITION and details.reason == "PASSWORD_REQUIRED":
        return _html(PASSWORD_PAGE, 200)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        # Held back like a throttled sign-in (routes/auth.py): a client ignoring
        # Retry-After sends at most one refused attempt a second per connection.
        if delay_cap > 0 and details.retry_after is not None:
            await asyncio.sleep(min(details.retry_after, delay_cap))
        headers = retry_after_header(details.retry_after)
        return _html(_throttled_page(int(headers["Retry-After"])), 429, headers)
    if code is grpc.StatusCode.UNAVAILABLE:
        log.warning("share link resolution failed: %s", code.name)
        return _html(UNAVAILABLE_PAGE, 503, retry_after_header(details.retry_after))
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:  # as the JSON API answers it: 504
        log.warning("share link resolution failed: %s", code.name)
        return _html(UNAVAILABLE_PAGE, 504)
    log.error("share link resolution failed: %s %s", code.name, exc.details())
    return _html(UNAVAILABLE_PAGE, 500)


@router.get(
    "/s/{token}",
    response_class=HTMLResponse,
    status_code=200,
    responses=_PAGE_RESPONSES,
    operation_id="openShareLink",
    response_description="The password form, for a link with a password",
    summary="Open a share link: the file (302), or a password form for a protected link",
)
async def open_link(
    request: Request, settings: SettingsDep, call: ClientCall, token: str = TokenPath
) -> Response:
    return await _resolve(request, token, "", settings, call)


@router.post(
    "/s/{token}",
    response_class=HTMLResponse,
    status_code=200,
    responses=_PAGE_RESPONSES,
    operation_id="unlockShareLink",
    response_description="The password form again, when no password was given",
    summary="Answer a share link's password form (form field `password`): the file (302)",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "password": {
                                "type": "string",
                                "pattern": NO_NUL_PATTERN,
                                "maxLength": 200,
                                "description": "As the page's form sends it; omitted or "
                                "empty: the form again",
                            }
                        },
                        "additionalProperties": False,
                        "examples": [{"password": "correct pony"}],
                    }
                }
            },
        }
    },
)
async def unlock_link(
    request: Request, settings: SettingsDep, call: ClientCall, token: str = TokenPath
) -> Response:
    body = await request.body()
    password = ""
    if len(body) <= MAX_FORM_BYTES:
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=8)
        except (UnicodeDecodeError, ValueError):
            form = {}
        password = (form.get("password") or [""])[0]
    if "\x00" in password:
        password = ""
    return await _resolve(request, token, password, settings, call)
